"""Shared by the engine tests: the tiny synthetic world (generated once per session by the
``world`` fixture of ``tests/conftest.py``), tiny config overrides, and the repository's
scripts run as subprocesses on that world."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from sgg_d2.data.synthetic import WorldConfig

REPO = Path(__file__).resolve().parents[1]
DETECTOR = "configs/synthetic/faster_rcnn_R18_FPN_detector.yaml"
MOTIFS = "configs/synthetic/motifs_R18_FPN_{}.yaml"  # .format(mode)

# The one world of the engine tests: ``<datasets root>/synthetic``, read-only (a test that
# changes it must copy it first). Val is carved from train: 8 train, 4 val, 4 test images.
TINY_WORLD = WorldConfig(num_train=12, num_val=4, num_test=4, num_mask_train=3, num_mask_val=3)

# Config overrides: CPU, data loading in the main process, two images a batch ...
CPU = ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2"]
# ... and a narrow relation head.
NARROW = ["MODEL.SGG.UNION_DIM", "32", "MODEL.SGG.CONTEXT_HIDDEN_DIM", "16"]


def vg_files(root) -> tuple:
    """The tiny world's VG150 files under ``root`` (``<datasets>/synthetic``), in the order
    of ``register_visual_genome``'s h5, dicts, image-data and image-root arguments."""
    names = ("VG-SGG-with-attri.h5", "VG-SGG-dicts-with-attri.json", "image_data.json", "images")
    return tuple(str(root / n) for n in names)


def schedule(max_iter: int, warmup: int) -> list:
    """A short constant-rate schedule: ``max_iter`` iterations, ``warmup`` of warm-up."""
    iters = ["SOLVER.MAX_ITER", str(max_iter), "SOLVER.WARMUP_ITERS", str(warmup)]
    return [*iters, "SOLVER.STEPS", "()"]


def script_env(datasets, one_thread: bool = False) -> dict:
    """This environment with ``$SGG_DATASETS`` = ``datasets`` (and one OpenMP thread)."""
    env = dict(os.environ, SGG_DATASETS=str(datasets))
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"
    return env


def run_script(args, datasets, module=None, one_thread=False) -> subprocess.CompletedProcess:
    """``python [-m module] *args`` from the repository root on ``datasets``, output kept."""
    cmd = [sys.executable, *(["-m", module] if module else []), *args]
    env = script_env(datasets, one_thread)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def succeeded(proc: subprocess.CompletedProcess) -> str:
    """Asserts the process succeeded (showing its output's tail if not); its output."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def failed(proc: subprocess.CompletedProcess) -> str:
    """Asserts the process failed; its stderr."""
    assert proc.returncode != 0, proc.stdout[-3000:]
    return proc.stderr


def train_net(datasets, *args, one_thread=False) -> str:
    """A successful ``train_net.py *args`` run; its output."""
    return succeeded(run_script(["train_net.py", *args], datasets, one_thread=one_thread))


def train_net_fails(datasets, *args) -> str:
    """A ``train_net.py *args`` run that must fail; its stderr."""
    return failed(run_script(["train_net.py", *args], datasets))


def metrics_rows(out_dir: Path) -> list:
    """The rows of ``out_dir/metrics.json`` (Detectron2's JSON writer)."""
    return [json.loads(line) for line in (out_dir / "metrics.json").read_text().splitlines()]


def model_weights(path, weights_only=True) -> dict:
    return torch.load(path, map_location="cpu", weights_only=weights_only)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:5]}"
