#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) idempotently.
#
# Steps: venv -> torch/torchvision (kept if importable) -> libraries of the track ->
# Detectron2 (tools/install_detectron2.py) -> `pip install -e .`. A stamp keyed on the
# files and variables that define the environment makes a second run with nothing
# changed a no-op.
#
# Two tracks:
#   registry (default): Detectron2 v0.6 from the registry copy pb1-detectron2==0.6, no
#     compiled ops (sgg_d2 installs a stand-in for detectron2._C), requirements.txt
#     with the numpy<1.24 / Pillow<10 caps v0.6 needs. Works offline from the registries.
#   upstream: D2_SOURCE=<folder | .tar.gz | git URL> builds Detectron2 from that source
#     with its compiled ops (CUDA where nvcc and a GPU exist, else CPU), and
#     requirements-upstream.txt (current numpy / Pillow / scipy). Also chosen without
#     D2_SOURCE when the venv already holds a Detectron2 newer than v0.6 (e.g. one you
#     built yourself and see through VENV_ARGS=--system-site-packages).
#
# Environment: VENV (default .venv), PYTHON (default python3), TORCH_SPEC, VISION_SPEC,
# SETUP_MIN_FREE_GB (default 7: free disk needed before torch is installed),
# D2_SOURCE, VENV_ARGS (e.g. --system-site-packages to see a Detectron2 built outside).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
VISION_SPEC=${VISION_SPEC:-torchvision==0.29.1}
D2_SOURCE=${D2_SOURCE:-}
STAMP="$VENV/.sgg_d2_setup_stamp"

say() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] FAILED: %s\n' "$*" >&2; exit 1; }

if [ -n "$D2_SOURCE" ] && [ -e "$D2_SOURCE" ]; then
  # a path: make it absolute, so the key and the build do not depend on the cwd
  D2_SOURCE="$(cd "$(dirname "$D2_SOURCE")" && pwd)/$(basename "$D2_SOURCE")"
elif [ -n "$D2_SOURCE" ] && [[ "$D2_SOURCE" != *://* ]]; then
  fail "D2_SOURCE=$D2_SOURCE: no such folder or archive (and not a git URL)"
fi

key=$(cat requirements.txt requirements-common.txt requirements-upstream.txt setup.py \
  tools/setup_env.sh tools/install_detectron2.py \
  | { echo "$TORCH_SPEC $VISION_SPEC ${VENV_ARGS:-} D2_SOURCE=$D2_SOURCE"; cat; } \
  | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] && [ -x "$VENV/bin/python" ]; then
  say "$VENV is up to date (stamp $STAMP matches); nothing to do"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV with $PYTHON"
  "$PYTHON" -m venv ${VENV_ARGS:-} "$VENV" || fail "could not create $VENV with $PYTHON"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

if "$PY" -c "import torch, torchvision" 2>/dev/null; then
  say "keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  # torch's wheel set takes about 6 GB in the venv: say so before pip runs out of disk
  free_gb=$(df -Pk "$VENV" | awk 'NR==2 {print int($4 / 1048576)}')
  if [ "$free_gb" -lt "${SETUP_MIN_FREE_GB:-7}" ]; then
    fail "only ${free_gb} GB free on the disk of $VENV; installing $TORCH_SPEC $VISION_SPEC \
needs about 6 GB and this check asks for ${SETUP_MIN_FREE_GB:-7} (free some space, or set SETUP_MIN_FREE_GB=0 to try anyway)"
  fi
  say "installing $TORCH_SPEC $VISION_SPEC (about 6 GB on first run; ${free_gb} GB free)"
  "${PIP[@]}" install -q "$TORCH_SPEC" "$VISION_SPEC" || fail "torch/torchvision install"
fi

if [ -n "$D2_SOURCE" ]; then
  track=upstream
else
  installed=$("$PY" tools/install_detectron2.py --track) || fail "tools/install_detectron2.py --track"
  if [ "$installed" = upstream ]; then track=upstream; else track=registry; fi
fi
if [ "$track" = upstream ]; then reqs=requirements-upstream.txt; else reqs=requirements.txt; fi

say "track: $track; installing libraries from $reqs"
"${PIP[@]}" install -q -r "$reqs" || fail "$reqs install"

if [ -n "$D2_SOURCE" ]; then
  say "building Detectron2 with its compiled ops from $D2_SOURCE (minutes)"
  "$PY" tools/install_detectron2.py --source "$D2_SOURCE" \
    || fail "Detectron2 build from $D2_SOURCE (tools/install_detectron2.py --source)"
else
  say "making sure Detectron2 is importable"
  "$PY" tools/install_detectron2.py || fail "Detectron2 install (tools/install_detectron2.py)"
fi

say "installing sgg_d2 in editable mode"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e . || fail "pip install -e ."

"$PY" -c "import sgg_d2, detectron2, torch, numpy; print('[setup] ok: torch', torch.__version__, \
'| numpy', numpy.__version__, '| detectron2', detectron2.__version__, \
'| compiled _C:', sgg_d2.HAS_COMPILED_D2_OPS)" || fail "import check of sgg_d2"
if [ -n "$D2_SOURCE" ]; then
  "$PY" -c "import sgg_d2, sys; sys.exit(0 if sgg_d2.HAS_COMPILED_D2_OPS else 1)" \
    || fail "Detectron2 from $D2_SOURCE has no compiled ops (sgg_d2.HAS_COMPILED_D2_OPS is False)"
fi
echo "$key" > "$STAMP"
say "done"
