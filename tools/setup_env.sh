#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) idempotently.
#
# Steps: venv -> torch/torchvision (kept if importable) -> pinned libraries -> Detectron2 (kept if importable,
# otherwise tools/install_detectron2.py) -> `pip install -e .`. A stamp keyed on the
# files that define the environment makes a second run with nothing changed a no-op.
#
# Environment: VENV (default .venv), PYTHON (default python3), TORCH_SPEC, VISION_SPEC,
# VENV_ARGS (e.g. --system-site-packages to see a Detectron2 built outside the venv).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
VISION_SPEC=${VISION_SPEC:-torchvision==0.29.1}
STAMP="$VENV/.sgg_d2_setup_stamp"

say() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] FAILED: %s\n' "$*" >&2; exit 1; }

key=$(cat requirements.txt setup.py tools/setup_env.sh tools/install_detectron2.py \
  | { echo "$TORCH_SPEC $VISION_SPEC ${VENV_ARGS:-}"; cat; } | sha256sum | cut -d' ' -f1)
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
  say "installing $TORCH_SPEC $VISION_SPEC (large on first run)"
  "${PIP[@]}" install -q "$TORCH_SPEC" "$VISION_SPEC" || fail "torch/torchvision install"
fi

say "installing pinned libraries from requirements.txt"
"${PIP[@]}" install -q -r requirements.txt || fail "requirements.txt install"

say "making sure Detectron2 is importable"
"$PY" tools/install_detectron2.py || fail "Detectron2 install (tools/install_detectron2.py)"

say "installing sgg_d2 in editable mode"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e . || fail "pip install -e ."

"$PY" -c "import sgg_d2, detectron2, torch; print('[setup] ok: torch', torch.__version__, \
'| detectron2', detectron2.__version__, '| compiled _C:', sgg_d2.HAS_COMPILED_D2_OPS)" \
  || fail "import check of sgg_d2"
echo "$key" > "$STAMP"
say "done"
