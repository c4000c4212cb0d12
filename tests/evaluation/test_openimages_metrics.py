"""OpenImages protocol: strict > 0.5, no fallback, VOC AP, pooled ranking, (w)mAP."""

import uuid

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from sgg_d2.evaluation import OpenImagesSGEvaluator, load_compact_predictions
from sgg_d2.evaluation.functional import (
    GroundTruthGraph,
    aggregate_openimages,
    first_use_true_positives,
    match_openimages_image,
    voc_average_precision,
)
from sgg_d2.structures import Relations


def test_strict_threshold_and_no_fallback_to_second_best():
    overlaps = np.array([[0.9, 0.6], [0.95, 0.7], [0.5, -1.0], [-1.0, 0.51]])
    # Row 1's best GT (0) is taken by row 0: false positive although GT 1 qualifies.
    # Row 2 has overlap exactly 0.5: not > 0.5. Row 3 takes GT 1.
    assert first_use_true_positives(overlaps, 0.5).tolist() == [True, False, False, True]
    assert first_use_true_positives(np.zeros((2, 0)), 0.5).tolist() == [False, False]


def test_non_qualifying_best_does_not_use_up_the_gt():
    overlaps = np.array([[0.4, -1.0], [0.8, -1.0]])
    assert first_use_true_positives(overlaps, 0.5).tolist() == [False, True]


def test_voc_average_precision_all_point_interpolation():
    # Precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3; envelope -> 1/3 * 1 + 1/3 * 2/3.
    assert voc_average_precision(np.array([True, False, True]), 3) == pytest.approx(5 / 9)
    assert voc_average_precision(np.array([False, True]), 1) == pytest.approx(0.5)
    assert voc_average_precision(np.zeros(0, bool), 2) == 0.0


def test_match_image_recall_is_inclusive_but_ap_is_strict():
    gt = GroundTruthGraph(
        np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=np.float32),
        np.array([4, 5]),
        np.array([[0, 1, 2]]),
    )
    boxes = np.array([[0, 0, 10, 20], [20, 0, 30, 10]], dtype=np.float32)  # subject IoU 0.5
    out = match_openimages_image(gt, boxes, gt.labels, np.array([[0, 1]]), np.array([2]))
    assert out["ranks"].tolist() == [0]
    assert out["tp_rel"].tolist() == [False]
    # Union boxes [0,0,30,20] vs [0,0,30,10]: IoU 0.5, also not > 0.5.
    assert out["tp_phr"].tolist() == [False]
    exact = match_openimages_image(gt, gt.boxes, gt.labels, np.array([[0, 1]]), np.array([2]))
    assert exact["tp_rel"].tolist() == [True] and exact["tp_phr"].tolist() == [True]


def test_aggregate_pools_detections_by_score_across_images():
    gt_predicates = [np.array([0, 0]), np.array([0, 1]), np.zeros(0, np.int64)]
    detections = [
        (np.array([0.9, 0.3]), np.array([0, 0])),
        (np.array([0.6, 0.2]), np.array([0, 2])),
        (np.array([0.1]), np.array([2])),
    ]
    matches = [
        {"ranks": np.array([0, 60]), "tp_rel": np.array([1, 0], bool), "tp_phr": [1, 1]},
        {"ranks": np.array([1, 99]), "tp_rel": np.array([1, 0], bool), "tp_phr": [1, 0]},
        {"ranks": np.zeros(0, np.int64), "tp_rel": np.zeros(1, bool), "tp_phr": [0]},
    ]
    for m in matches:
        m["tp_phr"] = np.asarray(m["tp_phr"], dtype=bool)
    metrics, per_predicate = aggregate_openimages(gt_predicates, detections, matches, 3)
    # Class 0 pooled: 0.9 TP, 0.6 TP, 0.3 FP with 3 GT -> AP = 2/3 (per-image order would
    # give TP, FP, TP -> 5/9). Class 1: 1 GT, no detection -> 0. Class 2: no GT.
    assert per_predicate["AP_rel"].tolist() == pytest.approx([100 * 2 / 3, 0, 0])
    assert per_predicate["num_gt"].tolist() == [3, 1, 0]
    assert metrics["mAP_rel"] == pytest.approx(100 * (2 / 3) / 2)
    assert metrics["wmAP_rel"] == pytest.approx(100 * (2 / 3 * 3) / 4)
    # Phrase: 0.9 TP, 0.6 TP, 0.3 TP -> AP 1 for class 0.
    assert metrics["wmAP_phr"] == pytest.approx(100 * 3 / 4)
    assert metrics["R@50"] == pytest.approx(100 * 2 / 4)  # ranks 0 and 1 of 4 GT
    expected = 0.2 * 50 + 0.4 * metrics["wmAP_rel"] + 0.4 * metrics["wmAP_phr"]
    assert metrics["score_wtd"] == pytest.approx(expected)


def test_aggregate_ties_keep_dataset_order():
    gt_predicates = [np.array([0]), np.array([0])]
    detections = [(np.array([0.5]), np.array([0])), (np.array([0.5]), np.array([0]))]
    first_fp = [
        {"ranks": np.array([99]), "tp_rel": np.array([False]), "tp_phr": np.array([False])},
        {"ranks": np.array([0]), "tp_rel": np.array([True]), "tp_phr": np.array([True])},
    ]
    metrics, _ = aggregate_openimages(gt_predicates, detections, first_fp, 1)
    # Equal scores: image 0's FP comes first -> precision 0 then 1/2 at recall 1/2.
    assert metrics["mAP_rel"] == pytest.approx(100 * 0.25)


def test_openimages_evaluator_top2_min_score_end_to_end(tmp_path):
    boxes = [[0, 0, 10, 10], [20, 0, 30, 10]]
    annotations = [
        {"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": c} for c, b in enumerate(boxes)
    ]
    dicts = [{"image_id": 7, "annotations": annotations, "relations": np.array([[0, 1, 0]])}]
    name = f"sgg_d2_test_oi_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["a", "b"], predicate_classes=["p", "q", "r"])
    try:
        instances = Instances((40, 40))
        instances.pred_boxes = Boxes(torch.tensor(boxes).float())
        instances.pred_classes = torch.tensor([0, 1])
        instances.scores = torch.tensor([1.0, 0.5])
        probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
        relations = Relations.from_pair_scores(
            (40, 40), torch.tensor([[0, 1], [1, 0]]), probs, instances.scores
        )
        evaluator = OpenImagesSGEvaluator(name, output_dir=str(tmp_path), min_score=0.2)
        evaluator.reset()
        evaluator.process([{"image_id": 7}], [{"instances": instances, "relations": relations}])
        results = evaluator.evaluate()["sgg"]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    # Top-2 per pair: (0,1): p .3, q .15; (1,0): q .25, r .15; > 0.2 keeps .3 and .25.
    saved = load_compact_predictions(str(tmp_path / "openimages_sg_predictions.pth"))
    kept = saved["predictions"][0]["candidates"]["top"]
    assert kept["predicates"].tolist() == [0, 1]
    assert kept["scores"].tolist() == pytest.approx([0.3, 0.25])
    # Only predicate p has GT; its single detection is a TP: AP 1. q's FP has no GT class.
    assert results == pytest.approx(
        {
            "R@50": 100,
            "mAP_rel": 100,
            "mAP_phr": 100,
            "wmAP_rel": 100,
            "wmAP_phr": 100,
            "score_wtd": 100,
        }
    )
