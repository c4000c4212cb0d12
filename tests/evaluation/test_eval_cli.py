"""``python -m sgg_d2.evaluation``: re-evaluation of saved compact predictions."""

import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from sgg_d2.evaluation import save_compact_predictions
from sgg_d2.evaluation.__main__ import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dataset():
    annotations = [
        {"bbox": [0, 0, 10, 10], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
        {"bbox": [20, 0, 30, 10], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1},
    ]
    dicts = [{"image_id": 5, "annotations": annotations, "relations": [[0, 1, 0], [1, 0, 1]]}]
    name = f"sgg_d2_test_cli_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["person", "horse"], predicate_classes=["a", "b"])
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _candidates(pairs, predicates, scores):
    return {
        "pairs": np.array(pairs, dtype=np.int64),
        "predicates": np.array(predicates, dtype=np.int64),
        "scores": np.array(scores, dtype=np.float32),
    }


@pytest.fixture
def predictions(dataset, tmp_path):
    gc = _candidates([[1, 0], [0, 1]], [1, 1], [0.9, 0.8])
    record = {
        "image_id": 5,
        "boxes": np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=np.float32),
        "labels": np.array([0, 1]),
        "candidates": {
            "gc": gc,
            "ng": _candidates([[1, 0], [0, 1], [0, 1]], [1, 1, 0], [0.9, 0.8, 0.1]),
            "pairs": gc,
        },
    }
    settings = {"mode": None, "ks": [1, 3], "iou_threshold": 0.5, "sgdet_overlap_only": False}
    path = tmp_path / "scene_graph_predictions.pth"
    save_compact_predictions(str(path), "scene_graph", dataset, settings, [record])
    np.save(tmp_path / "zs.npy", np.array([[0, 1, 0]]))
    return path


@pytest.fixture
def predictions_in_mode(dataset, predictions, tmp_path):
    """mode -> the ``predictions`` file saved as made in that mode (None: no mode)."""

    def save(mode):
        payload = torch.load(predictions, weights_only=True)
        payload["settings"]["mode"] = mode
        path = tmp_path / f"saved_{mode}.pth"
        torch.save(payload, path)
        return path

    save.zero_shot = tmp_path / "zs.npy"
    return save


def test_cli_reevaluates_saved_predictions(dataset, predictions, tmp_path, capsys):
    zero_shot = str(tmp_path / "zs.npy")
    out_dir = tmp_path / "re"
    args = ["--dataset", dataset, "--predictions", str(predictions), "--zero-shot-triplets"]
    results = main(args + [zero_shot, "--output-dir", str(out_dir)])
    printed = json.loads(capsys.readouterr().out)
    assert printed == results
    # GT (0,1,a) is only reached by ng at rank 2; GT (1,0,b) by both at rank 0.
    assert results["sgg"] == pytest.approx(
        {"R@1": 50, "R@3": 50, "mR@1": 50, "mR@3": 50, "zsR@1": 0, "zsR@3": 0}
        | {"ng-R@1": 50, "ng-R@3": 100, "ng-mR@1": 50, "ng-mR@3": 100}
        | {"ng-zsR@1": 0, "ng-zsR@3": 100}
        | {"F@1": 50, "F@3": 50, "ng-F@1": 50, "ng-F@3": 100}
    )
    assert (
        json.loads((out_dir / "scene_graph_metrics.json").read_text())["metrics"] == printed["sgg"]
    )
    with_mode = main(args + [zero_shot, "--mode", "predcls"])
    assert with_mode["sgg"]["A@1"] == pytest.approx(50) and with_mode["sgg"]["A@3"] == 50


def _fails(argv, capsys) -> str:
    """Runs the CLI on a user mistake: exit status 2 and one error line on stderr."""
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m sgg_d2.evaluation: error: ")
    return lines[0]


def test_unknown_dataset_is_one_line(predictions, capsys):
    line = _fails(["--dataset", "no_such_set", "--predictions", str(predictions)], capsys)
    assert "dataset 'no_such_set' is not registered" in line


def test_missing_and_foreign_prediction_files_are_one_line(dataset, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "scene_graph_predictions.pth"
    line = _fails(["--dataset", dataset, "--predictions", str(missing)], capsys)
    assert f"{missing}: no such file" in line
    line = _fails(["--dataset", dataset, "--predictions", str(tmp_path)], capsys)
    assert f"{tmp_path}: is a folder" in line
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00\x01 not a torch file at all")
    not_ours = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(2)}, not_ours)
    pickled = tmp_path / "pickled.pth"
    torch.save({"logger": logging.getLogger("x")}, pickled)  # needs weights_only=False
    for path in (garbage, not_ours, pickled):
        line = _fails(["--dataset", dataset, "--predictions", str(path)], capsys)
        assert f"{path}: not a compact prediction file" in line
        assert "weights_only=False" not in line and "weights_only` set to `False" not in line


@pytest.mark.parametrize(
    "saved, asked, ok",
    [
        ("predcls", "sgdet", False),
        ("sgcls", "predcls", False),
        ("sgdet", "sgcls", False),
        ("predcls", "predcls", True),
        (None, "sgcls", True),
    ],
)
def test_mode_must_match_the_saved_one(dataset, predictions_in_mode, saved, asked, ok, capsys):
    argv = ["--dataset", dataset, "--predictions", str(predictions_in_mode(saved)), "--mode", asked]
    argv += ["--zero-shot-triplets", str(predictions_in_mode.zero_shot)]
    if ok:
        assert "A@1" in main(argv)["sgg"]
        return
    line = _fails(argv, capsys)
    assert f"--mode {asked}:" in line and f"holds {saved} predictions" in line
    assert f"reported only as {saved}" in line


def test_unregistered_train_split_skips_zero_shot_recall(dataset, predictions, capsys):
    MetadataCatalog.get(dataset).set(train_split="my_train_not_registered")
    results = main(["--dataset", dataset, "--predictions", str(predictions)])["sgg"]
    assert results["R@1"] == pytest.approx(50) and results["ng-R@3"] == pytest.approx(100)
    assert not any("zsR" in name for name in results)
    err = capsys.readouterr().err
    assert "zsR@K skipped" in err and "'my_train_not_registered'" in err
    assert "not registered" in err and "Traceback" not in err


def test_cli_rejects_scene_graph_options_for_other_files(dataset, tmp_path, capsys):
    record = {
        "image_id": 5,
        "boxes": np.zeros((0, 4), np.float32),
        "labels": np.zeros(0, np.int64),
        "candidates": {},
    }
    path = tmp_path / "vrd_predictions.pth"
    save_compact_predictions(str(path), "vrd", dataset, {"recall_ns": [50]}, [record])
    line = _fails(["--dataset", dataset, "--predictions", str(path), "--mode", "predcls"], capsys)
    assert "--mode and --zero-shot-triplets apply to scene_graph" in line


def _module(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sgg_d2.evaluation", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_module_entry_point_runs_quietly():
    done = _module("--help")
    assert done.returncode == 0, done.stderr
    assert "--predictions" in done.stdout and "--mode" in done.stdout
    assert "Warning" not in done.stderr  # e.g. torch.jit deprecation warnings on import


def test_module_user_error_has_no_traceback(tmp_path):
    done = _module("--dataset", "no_such_set", "--predictions", str(tmp_path / "p.pth"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m sgg_d2.evaluation: error:")
    assert "'no_such_set' is not registered" in done.stderr
