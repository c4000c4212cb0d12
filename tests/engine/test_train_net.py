"""train_net.py end to end on a tiny synthetic world: both stages train, checkpoint,
evaluate, and hand off (detector -> relation model)."""

from engine_support import CPU, DETECTOR, MOTIFS, metrics_rows, schedule, train_net, train_net_fails

SGCLS = MOTIFS.format("sgcls")


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
    assert "copypaste: AP,AP50,AP75" in log


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
