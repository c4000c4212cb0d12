"""VRD protocol: greedy one-to-one matching, phrase detection, dataset-level recall."""

import math
import uuid

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from sgg_d2.evaluation import VRDEvaluator
from sgg_d2.evaluation.functional import (
    GroundTruthGraph,
    ImagePrediction,
    aggregate_vrd_recall,
    first_match_ranks,
    greedy_one_to_one,
    match_vrd_image,
)
from sgg_d2.structures import Relations


def test_greedy_takes_best_unused_gt_in_rank_order():
    overlaps = np.array([[0.9, 0.6], [0.8, -1.0], [0.7, 0.55]])
    # Row 0 takes GT 0 (larger overlap); row 1 only fits GT 0, already used; row 2 -> GT 1.
    assert greedy_one_to_one(overlaps, 0.5).tolist() == [True, False, True]
    # Many-to-many recall of the same matrix recalls both GT at rank 0.
    assert first_match_ranks(overlaps >= 0.5).tolist() == [0, 0]


def test_greedy_falls_back_to_another_unused_gt_and_threshold_is_inclusive():
    overlaps = np.array([[0.9, 0.6], [0.95, 0.5]])
    assert greedy_one_to_one(overlaps, 0.5).tolist() == [True, True]
    assert greedy_one_to_one(overlaps, 0.6).tolist() == [True, False]
    # Equal overlaps: the lowest GT index is taken first.
    tie = greedy_one_to_one(np.array([[0.7, 0.7], [0.7, -1.0]]), 0.5)
    assert tie.tolist() == [True, False]


def _gt():
    boxes = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [30, 30, 40, 40]], dtype=np.float32)
    labels = np.array([0, 1, 2])
    # Two identical triplets: one prediction can only recall one of them (one-to-one).
    relations = np.array([[0, 1, 3], [0, 1, 3], [2, 0, 1]])
    return GroundTruthGraph(boxes, labels, relations)


def test_duplicates_need_two_predictions_and_phrase_uses_union_box():
    gt = _gt()
    # Predicted subject box covers only 40 % of the GT subject (IoU 0.4): relationship
    # detection fails, but the union box equals the GT union box: phrase detection hits.
    boxes = np.array([[0, 0, 4, 10], [4, 0, 20, 10], [30, 30, 40, 40]], dtype=np.float32)
    labels = np.array([0, 1, 2])
    pairs = np.array([[0, 1], [0, 1], [0, 1], [2, 0]])
    candidates = {"k1": (pairs, np.array([3, 3, 3, 1]))}
    tps = match_vrd_image(gt, ImagePrediction(boxes, labels, candidates))
    assert tps["rel_k1"].tolist() == [False, False, False, False]
    # The third (0, 1, 3) finds both duplicate GT triplets used up.
    assert tps["phr_k1"].tolist() == [True, True, False, True]
    tps = match_vrd_image(gt, ImagePrediction(gt.boxes, gt.labels, candidates))
    assert tps["rel_k1"].tolist() == [True, True, False, True]
    single = {"k1": (np.array([[0, 1]]), np.array([3]))}
    tps = match_vrd_image(gt, ImagePrediction(gt.boxes, gt.labels, single))
    assert tps["rel_k1"].tolist() == [True]


def test_recall_is_summed_over_the_dataset_and_cut_at_n():
    true_positives = [
        {"rel_k1": np.array([True]), "phr_k1": np.array([True])},
        {"rel_k1": np.array([False, True, True]), "phr_k1": np.array([True, True, True])},
        {"rel_k1": np.zeros(0, bool), "phr_k1": np.zeros(0, bool)},
    ]
    num_gt = [1, 4, 2]  # image 2 has GT but no prediction
    metrics = aggregate_vrd_recall(num_gt, true_positives, recall_ns=(2, 50))
    # Dataset level: (1 + 1) / 7 at N=2; a mean of per-image recalls would differ.
    assert metrics["rel_k1_R@2"] == pytest.approx(100 * 2 / 7)
    assert metrics["rel_k1_R@50"] == pytest.approx(100 * 3 / 7)
    assert metrics["phr_k1_R@2"] == pytest.approx(100 * 3 / 7)
    assert list(metrics) == ["rel_k1_R@2", "rel_k1_R@50", "phr_k1_R@2", "phr_k1_R@50"]
    assert math.isnan(aggregate_vrd_recall([0], [true_positives[2]], (50,))["rel_k1_R@50"])


def test_metric_keys_sort_k_numerically():
    tps = {f"{c}_k{k}": np.ones(1, bool) for c in ("phr", "rel") for k in (70, 1, 10)}
    keys = list(aggregate_vrd_recall([1], [tps], (50,)))
    assert keys == [f"{c}_k{k}_R@50" for c in ("rel", "phr") for k in (1, 10, 70)]


PREDICATES = ["on", "near", "has"]


def _register_two_images():
    boxes = [[0, 0, 10, 10], [20, 0, 30, 10]]
    annotations = [
        {"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": c} for c, b in enumerate(boxes)
    ]
    dicts = [
        {
            "image_id": "a",
            "annotations": annotations,
            "relations": np.array([[0, 1, 1], [0, 1, 2]]),
        },
        {"image_id": "b", "annotations": annotations, "relations": np.array([[1, 0, 0]])},
    ]
    name = f"sgg_d2_test_vrd_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["x", "y"], predicate_classes=PREDICATES)
    return name, annotations


def test_vrd_evaluator_k_protocol_end_to_end(tmp_path):
    name, annotations = _register_two_images()
    try:
        instances = Instances((40, 40))
        instances.pred_boxes = Boxes(torch.tensor([a["bbox"] for a in annotations]).float())
        instances.pred_classes = torch.tensor([0, 1])
        instances.scores = torch.ones(2)
        probs = torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]])
        relations = Relations.from_pair_scores(
            (40, 40), torch.tensor([[0, 1], [1, 0]]), probs, instances.scores
        )
        empty = {"instances": instances, "relations": Relations.empty((40, 40), 3)}
        evaluator = VRDEvaluator(
            name, output_dir=str(tmp_path), recall_ns=(2, 4), predicate_ks=(1, 2, 3)
        )
        evaluator.reset()
        evaluator.process(
            [{"image_id": "a"}, {"image_id": "b"}],
            [{"instances": instances, "relations": relations}, empty],
        )
        results = evaluator.evaluate()["sgg"]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    # Image a, ranked: k=1: (1,0,on) .9, (0,1,on) .5 -> no hit. k=2 adds (0,1,near) .3 at
    # rank 2. k=3 (all) also ranks (0,1,has) .2 at rank 3. Image b: GT, no prediction.
    # Dataset level: hits / 3 GT triplets.
    expected = {"k1": (0, 0), "k2": (0, 100 / 3), "k3": (0, 200 / 3)}
    for name_k, (at2, at4) in expected.items():
        for criterion in ("rel", "phr"):
            assert results[f"{criterion}_{name_k}_R@2"] == pytest.approx(at2)
            assert results[f"{criterion}_{name_k}_R@4"] == pytest.approx(at4)
    assert (tmp_path / "vrd_metrics.json").exists() and (tmp_path / "vrd_predictions.pth").exists()
