"""train_net.py end to end on a tiny synthetic world: both stages train, checkpoint,
evaluate, and hand off (detector -> relation model)."""

import json

import pytest
from engine_support import CPU, DETECTOR, MOTIFS, metrics_rows, schedule, train_net, train_net_fails

SGCLS = MOTIFS.format("sgcls")


def copypaste_figures(log: str) -> dict:
    """The last ``copypaste:`` table of a Detectron2 log: metric name -> value."""
    lines = [line.split("copypaste: ", 1)[1] for line in log.splitlines() if "copypaste: " in line]
    names = [i for i, line in enumerate(lines) if line.startswith("AP,")][-1]
    return dict(zip(lines[names].split(","), map(float, lines[names + 1].split(","))))


def test_detector_trains_checkpoints_and_evaluates(world, trained_detector, tmp_path):
    assert (trained_detector / "model_final.pth").is_file()
    rows = metrics_rows(trained_detector)
    assert any(r.get("iteration") == 19 and "total_loss" in r for r in rows)
    assert any("bbox/AP" in r for r in rows), "the final evaluation lands in metrics.json"
    log = train_net(
        world,
        "--config-file",
        DETECTOR,
        "--eval-only",
        *CPU,
        "MODEL.WEIGHTS",
        str(trained_detector / "model_final.pth"),
        "OUTPUT_DIR",
        str(tmp_path / "eval"),
    )
    final = [r for r in rows if "bbox/AP" in r][-1]  # the run's own final evaluation
    figures = copypaste_figures(log)
    assert {k: final[f"bbox/{k}"] for k in figures} == pytest.approx(figures, abs=1e-3, nan_ok=True)


def test_relation_stage_handoff_trains_from_iteration_zero(world, trained_detector, tmp_path):
    out = tmp_path / "motifs"
    log = train_net(
        world,
        "--config-file",
        SGCLS,
        *CPU,
        *schedule(6, 2),
        "TEST.EVAL_PERIOD",
        "3",
        "MODEL.SGG.DETECTOR_WEIGHTS",
        str(trained_detector / "model_final.pth"),
        "OUTPUT_DIR",
        str(out),
    )
    assert f"Loading detector weights for the relation stage from {trained_detector}" in log
    rows = metrics_rows(out)
    iterations = [r["iteration"] for r in rows if "loss_relation" in r]
    assert iterations and min(iterations) < 6, "training started at iteration 0, not 20"
    assert any("sgg/R@50" in r and "sgg/mR@50" in r for r in rows)
    assert (out / "model_best.pth").is_file(), "best validation checkpoint is kept"
    evaluated = "inference/synthetic_val/scene_graph_metrics.json"
    train_net(
        world,
        "--config-file",
        SGCLS,
        "--eval-only",
        *CPU,
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
        "OUTPUT_DIR",
        str(out / "again"),
    )
    again = json.loads((out / "again" / evaluated).read_text())["metrics"]
    assert again == json.loads((out / evaluated).read_text())["metrics"]
    log = train_net(
        world,
        "--config-file",
        SGCLS,
        "--eval-only",
        *CPU,
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


def test_best_checkpoint_on_a_test_split_is_refused(world, trained_detector, tmp_path):
    err = train_net_fails(
        world,
        "--config-file",
        SGCLS,
        *CPU,
        "SOLVER.MAX_ITER",
        "2",
        "TEST.EVAL_PERIOD",
        "1",
        "DATASETS.TEST",
        "('synthetic_test',)",
        "OUTPUT_DIR",
        str(tmp_path),
        "MODEL.SGG.DETECTOR_WEIGHTS",
        str(trained_detector / "model_final.pth"),
    )
    assert "holds test split(s) ['synthetic_test']" in err


def test_missing_detector_weights_name_the_key(world, tmp_path):
    missing = tmp_path / "nope.pth"
    err = train_net_fails(
        world,
        "--config-file",
        SGCLS,
        *CPU,
        "OUTPUT_DIR",
        str(tmp_path),
        "MODEL.SGG.DETECTOR_WEIGHTS",
        str(missing),
    )
    assert f"MODEL.SGG.DETECTOR_WEIGHTS: no such file {missing}" in err
