"""Hand-computed checks of the scene-graph recall core (candidates, matching, aggregation)."""

import math

import numpy as np
import pytest
import torch

from sgg_d2.evaluation.functional import (
    NO_MATCH,
    GroundTruthGraph,
    ImagePrediction,
    aggregate_scene_graph_recall,
    box_iou,
    first_match_ranks,
    match_scene_graph_image,
    match_scene_graph_images,
    overlapping_pairs,
    relation_overlaps,
    select_graph_constrained,
    select_pair_predicates,
    stable_top_indices,
    zero_shot_mask,
)

NO = NO_MATCH


def _gt():
    boxes = np.array(
        [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [0, 20, 10, 30]], dtype=np.float32
    )
    labels = np.array([1, 2, 1, 3])
    # r0 and r1 are duplicates: one prediction must recall both (many-to-many).
    relations = np.array([[0, 1, 0], [0, 1, 0], [2, 1, 2], [3, 0, 1]])
    return GroundTruthGraph(boxes, labels, relations)


def test_box_iou_is_continuous_without_plus_one():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 20], [5, 0, 15, 10]]))
    # +1 convention would give 121/231 and 66/176 instead.
    assert iou.tolist() == [[0.5, pytest.approx(50 / 150)]]


def test_first_match_ranks_many_to_many_with_duplicates():
    gt = _gt()
    pairs = np.array([[0, 1], [2, 1], [3, 0], [0, 1]])
    predicates = np.array([0, 1, 1, 0])
    ranks = match_scene_graph_image(
        gt, ImagePrediction(gt.boxes, gt.labels, {"gc": (pairs, predicates)})
    )
    # r0, r1 both by rank 0; r2 needs predicate 2 (none); r3 by rank 2.
    assert ranks["gc"].tolist() == [0, 0, NO, 2]


def test_iou_threshold_is_inclusive_and_labels_must_agree():
    gt = _gt()
    pred_boxes = gt.boxes.copy()
    pred_boxes[0] = [0, 0, 10, 20]  # IoU exactly 0.5 with GT object 0
    pred_boxes[3] = [0, 20, 10, 41]  # IoU 100/210 < 0.5 with GT object 3
    pairs, predicates = np.array([[0, 1], [3, 0]]), np.array([0, 1])
    ranks = match_scene_graph_image(
        gt, ImagePrediction(pred_boxes, gt.labels, {"gc": (pairs, predicates)})
    )
    assert ranks["gc"].tolist() == [0, 0, NO, NO]
    wrong_labels = gt.labels.copy()
    wrong_labels[1] = 0  # object class of r0/r1 no longer agrees
    ranks = match_scene_graph_image(
        gt, ImagePrediction(gt.boxes, wrong_labels, {"gc": (pairs, predicates)})
    )
    assert ranks["gc"].tolist() == [NO, NO, NO, 1]


def test_match_with_no_predictions_or_no_gt():
    gt = _gt()
    empty = (np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64))
    no_boxes = np.zeros((0, 4), dtype=np.float32)
    ranks = match_scene_graph_image(
        gt, ImagePrediction(no_boxes, np.zeros(0, dtype=np.int64), {"gc": empty})
    )
    assert ranks["gc"].tolist() == [NO] * 4
    no_gt = GroundTruthGraph(gt.boxes, gt.labels, np.zeros((0, 3), dtype=np.int64))
    ranks = match_scene_graph_image(
        no_gt, ImagePrediction(gt.boxes, gt.labels, {"gc": (np.array([[0, 1]]), [0])})
    )
    assert ranks["gc"].shape == (0,)


def _ranks_fixture():
    """4 images: 0 has GT, 1 has none (skipped), 2 has GT but no matches, 3 has GT."""
    gt_predicates = [np.array([0, 0, 2, 1]), np.array([], dtype=np.int64), np.array([1, 1]), [2]]
    ranks = [
        {"gc": np.array([0, 0, NO, 2]), "ng": np.array([0, 0, 1, 2]), "pairs": [0, 0, NO, 1]},
        {"gc": np.zeros(0), "ng": np.zeros(0), "pairs": np.zeros(0)},
        {"gc": np.array([NO, NO]), "ng": np.array([NO, 4]), "pairs": np.array([NO, NO])},
        {"gc": np.array([0]), "ng": np.array([0]), "pairs": np.array([0])},
    ]
    ranks = [{k: np.asarray(v, dtype=np.int64) for k, v in r.items()} for r in ranks]
    zero_shot = [np.array([0, 0, 1, 0], bool), np.zeros(0, bool), np.zeros(2, bool), [True]]
    return gt_predicates, ranks, [np.asarray(z, dtype=bool) for z in zero_shot]


def test_recall_mean_recall_zero_shot_and_pair_accuracy_by_hand():
    gt_predicates, ranks, zero_shot = _ranks_fixture()
    metrics, per_class = aggregate_scene_graph_recall(
        gt_predicates, ranks, (1, 3), 4, zero_shot=zero_shot, pair_accuracy=True
    )
    # R@1: images 0, 2, 3 -> (2/4 + 0 + 1) / 3; image 1 has no GT and is skipped.
    assert metrics["R@1"] == pytest.approx(100 * 1.5 / 3)
    assert metrics["R@3"] == pytest.approx(100 * 1.75 / 3)
    # mR@1: class 0 -> 1, class 1 -> mean(0/1, 0/2) = 0, class 2 -> mean(0, 1) = 0.5,
    # class 3 never appears -> 0; averaged over all four classes.
    assert metrics["mR@1"] == pytest.approx(100 * 1.5 / 4)
    assert metrics["mR@3"] == pytest.approx(100 * 2.0 / 4)
    # Predicate 0 keeps its own recall (no "all classes" slot overwriting it).
    assert per_class["R@1"].tolist() == pytest.approx([100, 0, 50, 0])
    assert per_class["num_gt"].tolist() == [2, 3, 2, 0]
    assert per_class["num_images"].tolist() == [1, 2, 2, 0]
    # ng: image 0 recalls 4/4 at K=3, image 2 recalls 0 (rank 4 >= 3), image 3 1.
    assert metrics["ng-R@3"] == pytest.approx(100 * 2 / 3)
    assert metrics["ng-mR@3"] == pytest.approx(100 * (1 + 0.5 + 1 + 0) / 4)
    # zsR: image 0 (its zero-shot triplet unmatched) -> 0, image 3 -> 1; image 2 has none.
    assert metrics["zsR@1"] == pytest.approx(50)
    assert metrics["ng-zsR@3"] == pytest.approx(100)
    # A@K is dataset-level over all 7 GT triplets.
    assert metrics["A@1"] == pytest.approx(100 * 3 / 7)
    assert metrics["A@3"] == pytest.approx(100 * 4 / 7)


def test_without_zero_shot_or_pairs_those_metrics_are_absent():
    gt_predicates, ranks, _ = _ranks_fixture()
    metrics, _ = aggregate_scene_graph_recall(gt_predicates, ranks, (1,), 4)
    assert not any(key.startswith(("zsR", "ng-zsR", "A@")) for key in metrics)
    no_zs = [np.zeros(len(p), bool) for p in gt_predicates]
    metrics, _ = aggregate_scene_graph_recall(gt_predicates, ranks, (1,), 4, zero_shot=no_zs)
    assert "zsR@1" not in metrics


def test_no_image_with_relations_gives_nan_recall():
    ranks = [{"gc": np.zeros(0, np.int64), "ng": np.zeros(0, np.int64)}]
    metrics, _ = aggregate_scene_graph_recall([np.zeros(0, np.int64)], ranks, (5,), 3)
    assert math.isnan(metrics["R@5"]) and metrics["mR@5"] == 0


def test_zero_shot_mask_matches_whole_rows():
    triplets = np.array([[1, 2, 0], [2, 1, 0], [1, 2, 3]])
    assert zero_shot_mask(triplets, np.array([[1, 2, 0], [9, 9, 9]])).tolist() == [1, 0, 0]
    assert zero_shot_mask(triplets, np.zeros((0, 3), np.int64)).tolist() == [0, 0, 0]


def test_stable_top_indices_breaks_ties_by_position():
    scores = torch.tensor([1.0, 3.0, 2.0, 3.0, 3.0, 0.5])
    assert stable_top_indices(scores, 2).tolist() == [1, 3]
    assert stable_top_indices(scores, 4).tolist() == [1, 3, 4, 2]
    assert stable_top_indices(scores, 10).tolist() == [1, 3, 4, 2, 0, 5]
    assert stable_top_indices(scores, 0).tolist() == []


def test_graph_constrained_keeps_model_order_and_k():
    pairs = torch.tensor([[0, 1], [1, 0], [1, 2]])
    chosen = select_graph_constrained(
        pairs, torch.tensor([2, 0, 1]), torch.tensor([0.5, 0.5, 0.9]), k=2
    )
    assert chosen.pairs.tolist() == [[1, 2], [0, 1]]
    assert chosen.predicates.tolist() == [1, 2]


def test_no_graph_constraint_ranks_every_pair_predicate():
    pairs = torch.tensor([[0, 1], [1, 0]])
    predicate_scores = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    object_scores = torch.tensor([1.0, 0.5])
    # Scores: pair (0,1): 0.3, 0.15, 0.05; pair (1,0): 0.1, 0.15, 0.25.
    chosen = select_pair_predicates(pairs, predicate_scores, object_scores, k=3)
    assert chosen.pairs.tolist() == [[0, 1], [1, 0], [0, 1]]
    assert chosen.predicates.tolist() == [0, 2, 1]  # tie 0.15: first pair row wins
    assert chosen.scores.tolist() == pytest.approx([0.3, 0.25, 0.15])


def test_per_pair_limit_and_min_score():
    pairs = torch.tensor([[0, 1], [1, 0]])
    predicate_scores = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    object_scores = torch.tensor([1.0, 0.5])
    chosen = select_pair_predicates(pairs, predicate_scores, object_scores, k=10, per_pair=1)
    assert chosen.predicates.tolist() == [0, 2] and chosen.pairs.tolist() == [[0, 1], [1, 0]]
    chosen = select_pair_predicates(
        pairs, predicate_scores, object_scores, k=10, per_pair=2, min_score=0.15
    )
    # Top-2 per pair: (0,1): 0.3, 0.15; (1,0): 0.25, 0.15 -> > 0.15 keeps two.
    assert chosen.scores.tolist() == pytest.approx([0.3, 0.25])
    tie = select_pair_predicates(pairs[:1], torch.tensor([[0.4, 0.4, 0.4]]), object_scores, 5, 2)
    assert tie.predicates.tolist() == [0, 1]


def test_overlapping_pairs_uses_iou_above_zero():
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 15], [10, 0, 20, 10]])
    pairs = torch.tensor([[0, 1], [0, 2], [2, 1]])
    # Boxes 0 and 2 only touch along an edge: IoU 0.
    assert overlapping_pairs(boxes, pairs).tolist() == [True, False, True]


def _random_image(rng, num_gt_objects, num_pred_objects):
    def boxes(n):
        xy = rng.integers(0, 4, (n, 2)) * 5
        return np.concatenate([xy, xy + rng.integers(1, 4, (n, 2)) * 5], 1).astype(np.float32)

    num_rel = int(rng.integers(0, 6)) if num_gt_objects else 0
    relations = np.concatenate(
        [rng.integers(0, max(num_gt_objects, 1), (num_rel, 2)), rng.integers(0, 3, (num_rel, 1))],
        axis=1,
    )
    gt = GroundTruthGraph(boxes(num_gt_objects), rng.integers(0, 2, num_gt_objects), relations)
    # Predicted objects start as (partly shifted / relabelled) copies of the GT objects.
    shared = min(num_gt_objects, num_pred_objects)
    pred_boxes, pred_labels = boxes(num_pred_objects), rng.integers(0, 2, num_pred_objects)
    pred_boxes[:shared] = gt.boxes[:shared] + 5 * (rng.random((shared, 1)) < 0.3)
    pred_labels[:shared] = np.where(rng.random(shared) < 0.8, gt.labels[:shared], 1)
    lists = {}
    for name in ("gc", "ng"):
        num = int(rng.integers(0, 12)) if num_pred_objects else 0
        pairs = rng.integers(0, max(num_pred_objects, 1), (num, 2))
        triplets = np.concatenate([pairs, rng.integers(0, 3, (num, 1))], axis=1)
        # Copies of the GT triplets (where the objects exist) make sure matches happen.
        copies = relations[(relations[:, :2] < num_pred_objects).all(axis=1)]
        triplets = rng.permutation(np.concatenate([triplets, copies]))
        lists[name] = (triplets[:, :2], triplets[:, 2])
    return gt, ImagePrediction(pred_boxes, pred_labels, lists)


def test_batched_matching_equals_per_image_overlap_matrices():
    rng = np.random.default_rng(0)
    sizes = [(4, 4), (0, 3), (3, 0), (5, 5), (2, 6), (6, 2), (4, 4), (5, 3)]
    images = [_random_image(rng, m, n) for m, n in sizes * 4]
    gts, predictions = [im[0] for im in images], [im[1] for im in images]
    batched = match_scene_graph_images(gts, predictions, 0.5, chunk_size=3)
    hits = 0
    for gt, prediction, got in zip(gts, predictions, batched):
        for name in prediction.candidates:
            overlaps = relation_overlaps(gt, prediction.triplets(name))
            expected = first_match_ranks(overlaps >= 0.5)
            assert got[name].tolist() == expected.tolist()
            hits += int((expected != NO).sum())
    assert hits > 10  # the random images do produce matches
