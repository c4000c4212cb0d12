"""Pair targets, GT assignment and sampling (internal labels: 0 = bg, p + 1 = predicate p)."""

import torch

from sgg_d2.modeling.relation.sampling import match_to_gt, pair_targets, sample_pairs
from sgg_d2.structures import all_ordered_pairs


def test_match_to_gt_needs_iou_and_label():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]])
    gt_labels = torch.tensor([1, 2])
    pred = torch.tensor(
        [
            [0.0, 0, 10, 12],  # IoU 10/12 with gt 0, same label -> 0
            [0.0, 0, 10, 10],  # perfect box, wrong label -> -1
            [20.0, 20, 40, 60],  # IoU 0.5 with gt 1 exactly -> 1 (>= 0.5)
            [20.0, 20, 40, 61],  # IoU < 0.5 -> -1
        ]
    )
    pred_labels = torch.tensor([1, 3, 2, 2])
    assert match_to_gt(pred, pred_labels, gt, gt_labels).tolist() == [0, -1, 1, -1]


def test_match_to_gt_empty():
    empty = torch.zeros((0, 4))
    out = match_to_gt(
        torch.ones((3, 4)), torch.zeros(3, dtype=torch.long), empty, empty[:, 0].long()
    )
    assert out.tolist() == [-1, -1, -1]


def test_predicate_zero_is_a_positive():
    pairs = all_ordered_pairs(3)
    rel = torch.tensor([[0, 1, 0], [2, 0, 3]])
    labels = pair_targets(pairs, torch.arange(3), rel, 3)
    by_pair = {tuple(p): int(y) for p, y in zip(pairs.tolist(), labels)}
    assert by_pair[(0, 1)] == 1  # predicate 0 -> label 1
    assert by_pair[(2, 0)] == 4
    assert sum(v > 0 for v in by_pair.values()) == 2
    keep = sample_pairs(labels, batch_size=4, positive_fraction=0.5)
    assert set(keep[:2].tolist()) == {pairs.tolist().index([0, 1]), pairs.tolist().index([2, 0])}
    assert (labels[keep[:2]] > 0).all() and (labels[keep[2:]] == 0).all()


def test_positive_fraction_caps_positives():
    labels = torch.tensor([1, 2, 3, 1, 0, 0, 0, 0, 0, 0])
    keep = sample_pairs(labels, batch_size=4, positive_fraction=0.25)
    assert len(keep) == 4 and int((labels[keep] > 0).sum()) == 1


def test_duplicate_predicates_choose_one_at_random():
    pairs = torch.tensor([[0, 1]])
    rel = torch.tensor([[0, 1, 0], [0, 1, 2]])
    seen = set()
    for seed in range(30):
        torch.manual_seed(seed)
        seen.add(int(pair_targets(pairs, torch.arange(2), rel, 2)[0]))
    assert seen == {1, 3}


def test_sgdet_targets_follow_the_gt_assignment():
    # detections 0 and 3 both match GT 0, detection 1 matches GT 1, detection 2 unmatched
    obj_to_gt = torch.tensor([0, 1, -1, 0])
    rel = torch.tensor([[0, 1, 5]])
    pairs = torch.tensor([[0, 1], [3, 1], [1, 0], [2, 1], [0, 3]])
    assert pair_targets(pairs, obj_to_gt, rel, 2).tolist() == [6, 6, 0, 0, 0]
