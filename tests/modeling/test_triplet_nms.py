"""Triplet NMS (Factorizable Net) on hand-made triplets, and its hook in post-processing."""

import pytest
import torch

from sgg_d2.modeling.relation.postprocess import scene_graph_outputs
from sgg_d2.modeling.relation.triplet_nms import triplet_nms

# Objects: 0 and 1 are near-duplicates (IoU 0.81), 2 and 3 too (IoU 0.81); 4 overlaps 2
# with IoU 0.25 only. Classes: 0, 1 -> class 0; 2, 3, 4 -> class 1.
BOXES = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [0.0, 0.0, 10.0, 9.0],
        [20.0, 0.0, 30.0, 10.0],
        [20.0, 0.0, 30.0, 9.0],
        [25.0, 5.0, 35.0, 15.0],
    ]
)
LABELS = torch.tensor([0, 0, 1, 1, 1])


def test_duplicate_triplet_suppressed_only_when_classes_predicate_and_both_boxes_match():
    pairs = torch.tensor([[0, 2], [1, 3], [1, 2], [0, 4], [0, 3], [3, 0]])
    predicates = torch.tensor([5, 5, 6, 5, 5, 5])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    keep = triplet_nms(BOXES, LABELS, pairs, predicates, scores, 0.4)
    # 1: same classes/predicate, both boxes overlap triplet 0 -> dropped
    # 2: other predicate -> kept; 3: object 4 overlaps 2 only at IoU 0.25 -> kept
    # 4: duplicate of 0 -> dropped; 5: reversed direction (other classes order) -> kept
    assert keep.tolist() == [0, 2, 3, 5]
    # at a threshold above the duplicates' IoU (0.81) nothing is suppressed
    assert triplet_nms(BOXES, LABELS, pairs, predicates, scores, 0.9).tolist() == list(range(6))


def test_greedy_order_and_suppressed_triplets_suppress_nothing():
    # subjects a=[0,0,10,10], b=[0,0,10,8], c=[0,0,10,6.4]: IoU(a,b) = IoU(b,c) = 0.8 but
    # IoU(a,c) = 0.64; objects: a -> box 3, b and c -> box 4 (IoU(3,4) = 0.9)
    boxes = torch.tensor(
        [[0.0, 0, 10, 10], [0, 0, 10, 8], [0, 0, 10, 6.4], [50, 0, 60, 10], [50, 0, 60, 9]]
    )
    labels = torch.zeros(5, dtype=torch.long)
    pairs = torch.tensor([[2, 4], [0, 3], [1, 4]])  # c, a, b
    scores = torch.tensor([0.2, 0.9, 0.5])
    keep = triplet_nms(boxes, labels, pairs, torch.zeros(3, dtype=torch.long), scores, 0.7)
    # a kept, b suppressed by a, c survives: its only overlap (b) was suppressed
    assert keep.tolist() == [1, 0]


def test_bad_arguments_and_empty():
    empty = torch.zeros((0, 2), dtype=torch.long)
    none = torch.zeros(0, dtype=torch.long)
    assert triplet_nms(BOXES, LABELS, empty, none, torch.zeros(0), 0.4).numel() == 0
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        triplet_nms(BOXES, LABELS, empty, none, torch.zeros(0), 0.0)
    with pytest.raises(ValueError, match="same R triplets"):
        triplet_nms(BOXES, LABELS, torch.tensor([[0, 1]]), none, torch.zeros(1), 0.4)


def test_postprocess_applies_triplet_nms_only_when_asked():
    # two images; image 0 has the duplicate pair (0, 2) / (1, 3) with the same predicate
    pairs = [torch.tensor([[0, 2], [1, 3], [2, 0]]), torch.tensor([[0, 1]])]
    rel_logits = torch.full((4, 3), -5.0)
    rel_logits[:, 1] = torch.tensor([5.0, 4.0, 3.0, 5.0])  # predicate 0 everywhere
    obj_logits = torch.full((7, 2), -5.0)
    obj_logits[torch.arange(5), LABELS] = 5.0
    obj_logits[5:, 0] = 5.0
    boxes = [BOXES, BOXES[:2]]
    sizes = [(40, 40), (40, 40)]
    off = scene_graph_outputs(boxes, sizes, obj_logits, None, pairs, rel_logits)
    on = scene_graph_outputs(boxes, sizes, obj_logits, None, pairs, rel_logits, 0.4)
    assert len(off[0]["relations"]) == 3 and len(off[1]["relations"]) == 1
    assert on[0]["relations"].pair_indices.tolist() == [[0, 2], [2, 0]]
    assert len(on[1]["relations"]) == 1


@pytest.mark.parametrize("mode", ["predcls", "sgcls", "sgdet"])
def test_roi_heads_apply_triplet_nms_in_sgdet_only(make_cfg, mode):
    from detectron2.modeling import build_model

    cfg = make_cfg("IMPContext", mode)
    cfg.TEST.SGG.TRIPLET_NMS_THRESH = 0.4
    heads = build_model(cfg).roi_heads
    assert heads.triplet_nms_thresh == (0.4 if mode == "sgdet" else 0.0)
