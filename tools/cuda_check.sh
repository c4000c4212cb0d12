#!/usr/bin/env bash
# The CUDA check: build Detectron2 with its CUDA ops on a GPU machine without network,
# run the CUDA-marked tests and the relation-stage benchmark on the GPU, write results.
#
#   bash tools/cuda_check.sh --prepare [D2_SOURCE]  # here (network): fill $WHEELS
#   bash tools/cuda_check.sh --dry-run              # here: is $WHEELS complete for it?
#   bash tools/cuda_check.sh                        # on the GPU machine (results in $OUT)
#
# The GPU machine this is written for: Python 3.12, torch 2.11 with CUDA, numpy 2, nvcc,
# h5py, opencv, networkx, scipy, tqdm, matplotlib, pytest (its package list:
# GPU_MACHINE_HAS below) but no Detectron2, fvcore, iopath, yacs, pycocotools, omegaconf,
# hydra or gensim, and no network. `--prepare` puts Python 3.12 wheels of the missing
# packages (pure-Python ones built here with `pip wheel` where only sdists exist) and a
# copy of Detectron2's source archive into $WHEELS (default .cuda_wheels, git-ignored,
# ~30 MB), to be carried along. On the GPU machine the script installs them offline,
# builds Detectron2 from the archive with FORCE_CUDA=1 for the machine's GPU only
# (tools/install_detectron2.py --source), runs `pytest -m cuda`, a short `train_net.py`
# run of the detector and of MOTIFS on the GPU, the end-to-end SGDet latency per image of
# every context model at VG150 size with the X-101-FPN and R-50-FPN detectors
# (`tools/benchmark_relation.py --latency --device cuda`, random weights) and the
# relation-stage benchmark (`tools/benchmark_relation.py --device cuda`, 20/40/80
# detections: time, FLOPs, fraction of the GPU's fp32 matmul peak, peak allocated bytes,
# top kernels), and writes into $OUT (default output/cuda_check), 7 files: summary.txt,
# pytest_cuda.xml, latency.md / latency.json, benchmark_relation.md /
# benchmark_relation.json (the .md files are tables that drop into docs/BENCHMARKS.md),
# and logs.tar.gz (every step's log).
# Budget: the whole check ends within CHECK_BUDGET seconds (default 560); each step runs
# under its own cap, cut to what is left, and the benchmark gets the rest.
# CHECK_SKIP (space-separated step names: install build_detectron2 pytest_cuda synthetic
# train_net latency benchmark_relation) skips steps: CHECK_SKIP="pytest_cuda train_net"
# for the figures alone. BENCH_SIZES / BENCH_CONTEXTS narrow the relation benchmark,
# LATENCY_BACKBONES ("X101 R50") / LATENCY_CONTEXTS the latency table to fit.
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=${WHEELS:-.cuda_wheels}
OUT=${OUT:-output/cuda_check}
PYTHON=${PYTHON:-python3}
# Missing there, pinned as in requirements-common.txt / requirements.txt.
PINNED=(fvcore==0.1.5.post20221221 iopath==0.1.9 yacs==0.1.8 pycocotools==2.0.11
  omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 hydra-core==1.3.2 gensim==4.4.0
  termcolor==2.4.0 smart-open)
# Built with `pip wheel` here (no wheels on the registry), the others downloaded.
SDIST_ONLY=(fvcore==0.1.5.post20221221 iopath==0.1.9 antlr4-python3-runtime==4.9.3)
# The GPU machine's Python packages that the wheels above may depend on (from the
# machine's package list; normalised names).
GPU_MACHINE_HAS=${GPU_MACHINE_HAS:-"numpy scipy pyyaml tqdm pillow tabulate packaging portalocker wrapt torch
torchvision matplotlib h5py opencv-python-headless networkx pytest tensorboard cloudpickle
typing-extensions setuptools"}
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
  --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)

say() { printf '[cuda_check] %s\n' "$*"; }
fail() { printf '[cuda_check] FAILED: %s\n' "$*" >&2; exit 1; }
d2_archive() { ls "$WHEELS"/detectron2*.tar.gz 2>/dev/null | head -1; }

prepare() {
  local src=${1:-../shared/vendor/detectron2-02b5c4e.tar.gz}
  mkdir -p "$WHEELS"
  [ -f "$src" ] || fail "--prepare: Detectron2 source archive $src not found"
  cp "$src" "$WHEELS/" || fail "copy $src"
  local download=()
  for req in "${PINNED[@]}"; do
    [[ " ${SDIST_ONLY[*]} " == *" $req "* ]] || download+=("$req")
  done
  "$PYTHON" -m pip download -q --no-deps "${PLATFORM[@]}" -d "$WHEELS" "${download[@]}" \
    || fail "pip download"
  local dest
  dest=$(cd "$WHEELS" && pwd)  # absolute: pip wheel runs from /tmp (no local sources)
  (cd /tmp && "$PYTHON" -m pip wheel -q --no-deps -w "$dest" "${SDIST_ONLY[@]}") \
    || fail "pip wheel ${SDIST_ONLY[*]}"
  say "prepared $(ls "$WHEELS" | wc -l) files, $(du -sh "$WHEELS" | cut -f1), in $WHEELS"
}

dry_run() {
  [ -d "$WHEELS" ] || fail "no $WHEELS: run 'bash tools/cuda_check.sh --prepare' first"
  local archive
  archive=$(d2_archive)
  [ -n "$archive" ] || fail "no detectron2*.tar.gz in $WHEELS"
  tar tzf "$archive" | grep -c 'detectron2/layers/csrc/vision.cpp$' >/dev/null \
    || fail "$archive holds no detectron2/layers/csrc/vision.cpp (C++/CUDA sources)"
  say "Detectron2 source: $archive (C++/CUDA sources present)"
  # 1. Each pinned package resolves to a Python 3.12 x86_64 wheel from $WHEELS alone.
  local tmp
  tmp=$(mktemp -d)
  "$PYTHON" -m pip install -q --dry-run --no-index --find-links "$WHEELS" --no-deps \
    "${PLATFORM[@]}" --target "$tmp/site" --report "$tmp/report.json" "${PINNED[@]}" \
    || fail "the wheels in $WHEELS do not cover ${PINNED[*]} for Python 3.12"
  # 2. Every dependency of those wheels is among them or already on the GPU machine.
  "$PYTHON" - "$WHEELS" "$GPU_MACHINE_HAS" "$tmp/report.json" <<'EOF' || exit 1
import email.parser, json, re, sys, zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

folder, has, report = Path(sys.argv[1]), set(sys.argv[2].split()), json.load(open(sys.argv[3]))
env = default_environment() | {"python_version": "3.12", "python_full_version": "3.12.3",
                               "sys_platform": "linux", "platform_machine": "x86_64"}
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
wheels = {}
for w in folder.glob("*.whl"):
    with zipfile.ZipFile(w) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(z.read(meta).decode())
    wheels[norm(msg["Name"])] = (msg["Version"], msg.get_all("Requires-Dist") or [])
names = [norm(item["metadata"]["name"]) for item in report["install"]]
missing = []
for name in names:
    for line in wheels[name][1]:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env | {"extra": ""}):
            continue
        dep = norm(req.name)
        if dep in wheels:
            if not req.specifier.contains(wheels[dep][0], prereleases=True):
                missing.append(f"{name} needs {req}, {folder} has {wheels[dep][0]}")
        elif dep not in has:
            missing.append(f"{name} needs {req}: neither a wheel here nor on the GPU machine")
if missing:
    sys.exit("[cuda_check] FAILED: incomplete wheel set:\n  " + "\n  ".join(missing))
print(f"[cuda_check] {len(names)} wheels for Python 3.12 cover every dependency: "
      + ", ".join(f"{n} {wheels[n][0]}" for n in sorted(names)))
EOF
  rm -rf "$tmp"
  local size
  size=$(du -sm "$WHEELS" | cut -f1)
  [ "$size" -lt 60 ] || fail "$WHEELS is ${size} MiB: too big to carry (64 MiB with the tree)"
  bash -n "$0" || fail "syntax of $0"
  say "dry run OK (${size} MiB to carry). On the GPU machine: carry $WHEELS and run"
  say "  bash tools/cuda_check.sh   (results in \$OUT)"
}

DEADLINE=$(($(date +%s) + ${CHECK_BUDGET:-560}))

step() {  # step NAME SECONDS CMD...: run with a timeout, log to $OUT/NAME.log, time it
  local name=$1 limit=$2 t0 rc left
  shift 2
  if [[ " ${CHECK_SKIP:-} " == *" $name "* ]]; then
    echo "$name skipped: CHECK_SKIP" | tee -a "$OUT/summary.txt"
    return 0
  fi
  t0=$(date +%s)
  left=$((DEADLINE - t0 - 5))
  [ "$left" -gt 0 ] || { echo "$name skipped: CHECK_BUDGET spent" | tee -a "$OUT/summary.txt"; return 124; }
  [ "$limit" -le "$left" ] || limit=$left
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc seconds=$(($(date +%s) - t0))" | tee -a "$OUT/summary.txt"
  return $rc
}

pack_logs() {  # the step logs as one file: at most 8 files come back from a GPU machine
  local logs
  logs=$(cd "$OUT" && ls -- *.log 2>/dev/null)
  [ -n "$logs" ] || return 0
  # shellcheck disable=SC2086
  tar czf "$OUT/logs.tar.gz" -C "$OUT" $logs && (cd "$OUT" && rm -f -- $logs)
}

gpu_run() {
  mkdir -p "$OUT"
  : >"$OUT/summary.txt"
  trap pack_logs EXIT
  command -v nvcc >/dev/null || fail "no nvcc on this machine"
  "$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no GPU visible to torch'" \
    || fail "torch sees no CUDA GPU"
  local archive
  archive=$(d2_archive)
  [ -n "$archive" ] || fail "no detectron2*.tar.gz in $WHEELS (carry it)"
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    nvcc --version | tail -1
    "$PYTHON" -c "import sys, torch, numpy; print('python', sys.version.split()[0], \
'| torch', torch.__version__, 'cuda', torch.version.cuda, '| numpy', numpy.__version__)"
  } >>"$OUT/summary.txt" 2>&1
  cat "$OUT/summary.txt"
  step install 120 "$PYTHON" -m pip install --no-index --no-deps --find-links "$WHEELS" \
    "${PINNED[@]}" || fail "offline install (see $OUT/install.log)"
  step build_detectron2 380 "$PYTHON" tools/install_detectron2.py --source "$archive" \
    || fail "Detectron2 CUDA build (see $OUT/build_detectron2.log)"
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  for call in has_cuda get_cuda_version get_compiler_version; do  # diagnostics only
    "$PYTHON" -c "import torch; from detectron2 import _C; print('_C.$call():', _C.$call())" \
      >>"$OUT/summary.txt" 2>&1 || echo "_C.$call(): crashed, rc=$?" >>"$OUT/summary.txt"
  done
  # The compiled CUDA ops themselves (get_cuda_version() crashed in _C on CUDA 13 builds):
  # rotated-box IoU on the GPU must equal the CPU result.
  "$PYTHON" -X faulthandler -c "import torch, sgg_d2; \
from detectron2.layers.rotated_boxes import pairwise_iou_rotated as iou; \
assert sgg_d2.HAS_COMPILED_D2_OPS, 'sgg_d2 sees no compiled ops'; \
a = torch.tensor([[10., 10, 8, 6, 30], [20, 20, 10, 10, 0]]); b = a + 1; \
g = iou(a.cuda(), b.cuda()).cpu(); c = iou(a, b); assert torch.allclose(g, c, atol=1e-5), (g, c); \
print('detectron2 CUDA ops: yes (box_iou_rotated on', torch.cuda.get_device_name(), 'matches CPU)')" \
    2>&1 | tee -a "$OUT/summary.txt"; [ "${PIPESTATUS[0]}" = 0 ] \
    || fail "Detectron2 was built without CUDA ops"
  step pytest_cuda 150 "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider -rs tests \
    --junitxml="$OUT/pytest_cuda.xml"
  [ -f "$OUT/pytest_cuda.log" ] && tail -3 "$OUT/pytest_cuda.log" | tee -a "$OUT/summary.txt"
  # The synthetic world (train_net and the relation benchmark's frequency statistics), then
  # train_net.py on the GPU (the trainer, default_setup's collect_env, evaluation): a short
  # detector training and a short MOTIFS SGCls training on it.
  step synthetic 60 "$PYTHON" -m sgg_d2.data.synthetic --root datasets/synthetic \
    --num-train 60 --num-val 5 --num-test 5 --num-mask-train 5 --num-mask-val 5 --no-progress
  step train_net 240 bash -c 'set -e; P=$1; T=$2
    export SGG_DATASETS=datasets
    "$P" train_net.py --config-file configs/synthetic/faster_rcnn_R18_FPN_detector.yaml \
      MODEL.DEVICE cuda SOLVER.MAX_ITER 40 OUTPUT_DIR "$T/detector" \
      DATASETS.TEST "(\"synthetic_val\",)"
    "$P" train_net.py --config-file configs/synthetic/motifs_R18_FPN_sgcls.yaml \
      MODEL.DEVICE cuda SOLVER.MAX_ITER 40 OUTPUT_DIR "$T/motifs" \
      MODEL.SGG.DETECTOR_WEIGHTS "$T/detector/model_final.pth"' _ "$PYTHON" "$(mktemp -d)"
  [ -f "$OUT/train_net.log" ] \
    && grep -E "crash|Starting training|copypaste: [0-9]|Traceback|Error" "$OUT/train_net.log" \
    | tail -n 12 | tee -a "$OUT/summary.txt"
  # End-to-end SGDet latency per image at VG150 size (600 x 811 input), every context
  # model, X-101-FPN and R-50-FPN detectors, random weights: the GPU table of the docs.
  local latency_contexts=()
  [ -z "${LATENCY_CONTEXTS:-}" ] || latency_contexts=(--contexts $LATENCY_CONTEXTS)
  PYTHONUNBUFFERED=1 step latency 240 "$PYTHON" tools/benchmark_relation.py --latency \
    --device cuda --backbones ${LATENCY_BACKBONES:-X101 R50} "${latency_contexts[@]}" \
    --repeats 10 --top-ops 8 --json "$OUT/latency.json" --markdown "$OUT/latency.md"
  [ -f "$OUT/latency.md" ] && tee -a "$OUT/summary.txt" <"$OUT/latency.md"
  local sizes=(${BENCH_SIZES:-20 40 80}) contexts=()
  [ -z "${BENCH_CONTEXTS:-}" ] || contexts=(--contexts $BENCH_CONTEXTS)
  SGG_DATASETS=datasets PYTHONUNBUFFERED=1 step benchmark_relation 600 "$PYTHON" \
    tools/benchmark_relation.py --device cuda --sizes "${sizes[@]}" "${contexts[@]}" \
    --top-ops 8 --json "$OUT/benchmark_relation.json" \
    --markdown "$OUT/benchmark_relation.md"
  [ -f "$OUT/benchmark_relation.log" ] && cat "$OUT/benchmark_relation.log"
  say "done: $OUT/summary.txt"
  cat "$OUT/summary.txt"
}

case "${1:-}" in
  --prepare) prepare "${2:-}" ;;
  --dry-run) dry_run ;;
  "") gpu_run ;;
  *) fail "usage: bash tools/cuda_check.sh [--prepare [D2_SOURCE] | --dry-run]" ;;
esac
