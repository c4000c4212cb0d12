"""train_net.py end to end on a tiny synthetic world: both stages train, checkpoint,
evaluate, and hand off (detector -> relation model)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sgg_d2.data.synthetic import WorldConfig, generate_world

REPO = Path(__file__).resolve().parents[2]
DETECTOR = "configs/synthetic/faster_rcnn_R18_FPN_detector.yaml"
MOTIFS = "configs/synthetic/motifs_R18_FPN_sgcls.yaml"
SMALL = ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    config = WorldConfig(num_train=12, num_val=4, num_test=4, num_mask_train=2, num_mask_val=2)
    generate_world(str(root / "synthetic"), config, progress=False, log=lambda _: None)
    return root


def train_net(world, *args):
    env = dict(os.environ, SGG_DATASETS=str(world))
    proc = subprocess.run(
        [sys.executable, "train_net.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def metrics(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.json").read_text().splitlines()]


@pytest.fixture(scope="module")
def detector(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("detector")
    train_net(
        world,
        "--config-file",
        DETECTOR,
        *SMALL,
        "SOLVER.MAX_ITER",
        "20",
        "SOLVER.WARMUP_ITERS",
        "5",
        "SOLVER.STEPS",
        "()",
        "OUTPUT_DIR",
        str(out),
    )
    return out


def test_detector_trains_checkpoints_and_evaluates(world, detector):
    assert (detector / "model_final.pth").is_file()
    rows = metrics(detector)
    assert any(r.get("iteration") == 19 and "total_loss" in r for r in rows)
    assert any("bbox/AP" in r for r in rows), "the final evaluation lands in metrics.json"
    log = train_net(
        world,
        "--config-file",
        DETECTOR,
        "--eval-only",
        *SMALL,
        "MODEL.WEIGHTS",
        str(detector / "model_final.pth"),
        "OUTPUT_DIR",
        str(detector / "eval"),
    )
    assert "copypaste: AP,AP50,AP75" in log


def test_relation_stage_handoff_trains_from_iteration_zero(world, detector, tmp_path):
    out = tmp_path / "motifs"
    log = train_net(
        world,
        "--config-file",
        MOTIFS,
        *SMALL,
        "SOLVER.MAX_ITER",
        "6",
        "SOLVER.WARMUP_ITERS",
        "2",
        "SOLVER.STEPS",
        "()",
        "TEST.EVAL_PERIOD",
        "3",
        "MODEL.SGG.DETECTOR_WEIGHTS",
        str(detector / "model_final.pth"),
        "OUTPUT_DIR",
        str(out),
    )
    assert f"Loading detector weights for the relation stage from {detector}" in log
    rows = metrics(out)
    iterations = [r["iteration"] for r in rows if "loss_relation" in r]
    assert iterations and min(iterations) < 6, "training started at iteration 0, not 20"
    assert any("sgg/R@50" in r and "sgg/mR@50" in r for r in rows)
    assert (out / "model_best.pth").is_file(), "best validation checkpoint is kept"
    log = train_net(
        world,
        "--config-file",
        MOTIFS,
        "--eval-only",
        *SMALL,
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
        "MODEL.SGG.MODE",
        "predcls",
        "DATASETS.TEST",
        "('synthetic_test',)",
        "OUTPUT_DIR",
        str(out / "eval"),
    )
    assert "copypaste: R@20" in log or "R@20" in log
    assert list((out / "eval").rglob("*_metrics.json"))


def train_net_fails(world, *args):
    env = dict(os.environ, SGG_DATASETS=str(world))
    proc = subprocess.run(
        [sys.executable, "train_net.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    return proc.stderr


def test_best_checkpoint_on_a_test_split_is_refused(world, detector, tmp_path):
    err = train_net_fails(
        world,
        "--config-file",
        MOTIFS,
        *SMALL,
        "SOLVER.MAX_ITER",
        "2",
        "TEST.EVAL_PERIOD",
        "1",
        "DATASETS.TEST",
        "('synthetic_test',)",
        "OUTPUT_DIR",
        str(tmp_path),
        "MODEL.SGG.DETECTOR_WEIGHTS",
        str(detector / "model_final.pth"),
    )
    assert "holds test split(s) ['synthetic_test']" in err


def test_missing_detector_weights_name_the_key(world, tmp_path):
    missing = tmp_path / "nope.pth"
    err = train_net_fails(
        world,
        "--config-file",
        MOTIFS,
        *SMALL,
        "OUTPUT_DIR",
        str(tmp_path),
        "MODEL.SGG.DETECTOR_WEIGHTS",
        str(missing),
    )
    assert f"MODEL.SGG.DETECTOR_WEIGHTS: no such file {missing}" in err
