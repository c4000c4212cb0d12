"""tools/research/sgdet_top_triplets.py: top-K precision with the library's SGDet matching
(``relation_overlaps``), on a hand-made image."""

import numpy as np
import torch
from detectron2.structures import Boxes, Instances

from sgg_d2.evaluation.functional import GroundTruthGraph
from sgg_d2.structures import Relations
from tools.research.sgdet_top_triplets import duplicates, top_k_hits

# Two GT objects, class 0 at [0, 0, 10, 10] and class 1 at [20, 0, 30, 10]; one relation
# 0 -(predicate 2)-> 1.
GT = GroundTruthGraph(
    boxes=np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=np.float32),
    labels=np.array([0, 1]),
    relations=np.array([[0, 1, 2]]),
)


def _objects(boxes, classes):
    inst = Instances((40, 40))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.pred_classes = torch.tensor(classes)
    return inst


def _relations(pairs, predicates):
    """Relations in the given order (best first)."""
    return Relations(
        (40, 40),
        pair_indices=torch.tensor(pairs),
        predicates=torch.tensor(predicates),
        scores=torch.linspace(1.0, 0.5, len(pairs)),
    )


def test_top_k_counts_triplets_matching_classes_predicate_and_both_boxes():
    # 0: the GT subject; 1: the GT object shifted by 4 px (IoU 6/14 < 0.5);
    # 2: the GT object shifted by 2 px (IoU 8/12 >= 0.5); 3: the GT object with class 0.
    inst = _objects(
        [[0, 0, 10, 10], [24, 0, 34, 10], [22, 0, 32, 10], [20, 0, 30, 10]], [0, 1, 1, 0]
    )
    rels = _relations(
        [[0, 1], [0, 2], [0, 2], [0, 3], [2, 0]],
        # object box too far | match | wrong predicate | wrong object class | reversed
        [2, 2, 1, 2, 2],
    )
    assert top_k_hits(inst, rels, GT, k=5) == (1, 5)
    assert top_k_hits(inst, rels, GT, k=1) == (0, 1)  # only the far box is counted
    assert top_k_hits(inst, rels, GT, k=2) == (1, 2)
    # a looser IoU threshold accepts the 4-px shift too
    assert top_k_hits(inst, rels, GT, k=2, iou_threshold=0.4) == (2, 2)


def test_top_k_counts_every_matching_triplet_and_fewer_than_k():
    inst = _objects([[0, 0, 10, 10], [20, 0, 30, 10], [21, 0, 31, 10]], [0, 1, 1])
    rels = _relations([[0, 1], [0, 2]], [2, 2])  # two predictions of the same GT triplet
    assert top_k_hits(inst, rels, GT, k=5) == (2, 2)
    no_gt = GroundTruthGraph(GT.boxes, GT.labels, np.zeros((0, 3), dtype=np.int64))
    assert top_k_hits(inst, rels, no_gt, k=5) == (0, 2)
    assert top_k_hits(inst, rels[:0], GT, k=5) == (0, 0)


def test_duplicates_counts_same_class_overlapping_pairs_once():
    inst = _objects(
        [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [30, 30, 40, 40]], [0, 0, 1, 0]
    )
    assert duplicates(inst, 0.5) == 1  # 0 ~ 1 (IoU 9/11); 2 has another class; 3 is apart
    assert duplicates(inst, 0.9) == 0
