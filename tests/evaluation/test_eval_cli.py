"""``python -m sgg_d2.evaluation``: re-evaluation of saved compact predictions."""

import json
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
    )
    assert (
        json.loads((out_dir / "scene_graph_metrics.json").read_text())["metrics"] == printed["sgg"]
    )
    with_mode = main(args + [zero_shot, "--mode", "predcls"])
    assert with_mode["sgg"]["A@1"] == pytest.approx(50) and with_mode["sgg"]["A@3"] == 50


def test_cli_errors_name_the_problem(dataset, predictions, tmp_path):
    with pytest.raises(SystemExit, match="dataset 'no_such_set' is not registered"):
        main(["--dataset", "no_such_set", "--predictions", str(predictions)])
    not_ours = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(2)}, not_ours)
    with pytest.raises(ValueError, match=r"other.pth: not a compact prediction file"):
        main(["--dataset", dataset, "--predictions", str(not_ours)])
    with pytest.raises(SystemExit):  # argparse rejects the mode, listing the choices
        main(["--dataset", dataset, "--predictions", str(predictions), "--mode", "det"])


def test_cli_rejects_scene_graph_options_for_other_files(dataset, tmp_path):
    record = {
        "image_id": 5,
        "boxes": np.zeros((0, 4), np.float32),
        "labels": np.zeros(0, np.int64),
        "candidates": {},
    }
    path = tmp_path / "vrd_predictions.pth"
    save_compact_predictions(str(path), "vrd", dataset, {"recall_ns": [50]}, [record])
    with pytest.raises(ValueError, match="--mode and --zero-shot-triplets apply to scene_graph"):
        main(["--dataset", dataset, "--predictions", str(path), "--mode", "predcls"])


def test_module_entry_point_runs():
    done = subprocess.run(
        [sys.executable, "-m", "sgg_d2.evaluation", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--predictions" in done.stdout and "--mode" in done.stdout
