"""Turn relation-stage logits into the output contract: ``Instances`` + ``Relations``."""

from typing import List, Optional, Tuple

import torch
from detectron2.structures import Boxes, Instances

from ...structures import Relations
from .triplet_nms import triplet_nms

__all__ = ["scene_graph_outputs"]


def scene_graph_outputs(
    boxes: List[torch.Tensor],
    image_sizes: List[Tuple[int, int]],
    obj_logits: torch.Tensor,
    gt_labels: Optional[torch.Tensor],
    pairs: List[torch.Tensor],
    rel_logits: torch.Tensor,
    triplet_nms_thresh: float = 0.0,
) -> List[dict]:
    """Per image ``{"instances": Instances, "relations": Relations}`` (input frame).

    Object class and score: the known label with score 1 in PredCls (``gt_labels`` given),
    else the arg-max of ``softmax(obj_logits)`` and its probability. Predicate scores are
    ``softmax(rel_logits)`` without the background column; ``Relations`` sorts the pairs
    by triplet score.

    Args:
        boxes: per image (N_i, 4) XYXY boxes.
        image_sizes: per image (height, width) of the network input.
        obj_logits: (N, C) refined object logits, images concatenated.
        gt_labels: (N,) int64 or None.
        pairs: per image (R_i, 2) local (subject, object) indices.
        rel_logits: (R, P + 1) logits, background at index 0, images concatenated.
        triplet_nms_thresh: > 0 applies triplet NMS (``triplet_nms``) at that IoU.
    """
    probs = obj_logits.softmax(dim=1)
    if gt_labels is not None:
        labels, scores = gt_labels, torch.ones_like(probs[:, 0])
    else:
        scores, labels = probs.max(dim=1)
    pred_probs = rel_logits.softmax(dim=1)[:, 1:]
    results, o, r = [], 0, 0
    for b, size, p in zip(boxes, image_sizes, pairs):
        n, m = len(b), len(p)
        inst = Instances(size)
        inst.pred_boxes = Boxes(b)
        inst.pred_classes = labels[o : o + n]
        inst.scores = scores[o : o + n]
        inst.pred_class_probs = probs[o : o + n]  # (N_i, C), e.g. for visualisation
        rels = Relations.from_pair_scores(size, p, pred_probs[r : r + m], inst.scores)
        if triplet_nms_thresh > 0:
            rels = rels[
                triplet_nms(
                    b,
                    inst.pred_classes,
                    rels.pair_indices,
                    rels.predicates,
                    rels.scores,
                    triplet_nms_thresh,
                )
            ]
        results.append({"instances": inst, "relations": rels})
        o, r = o + n, r + m
    return results
