"""Turn relation-stage logits into the output contract: ``Instances`` + ``Relations``.

The steps, each a plain function:

1. :func:`object_predictions`: every object's final class and score, by mode;
2. :func:`scene_graph_outputs`: per image ``Instances`` + sorted ``Relations``;
3. :func:`suppress_duplicate_objects` (SGDet): per-class NMS on the final classes, so that
   a context model that re-labels a detection cannot leave two same-class copies of one
   object (MOTIFS applies per-class NMS to its decoded classes for the same reason);
4. :func:`suppress_duplicate_triplets`: optional triplet NMS (Factorizable Net).
"""

from typing import List, Optional, Tuple

import torch
from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances

from ...structures import Relations
from .triplet_nms import triplet_nms

__all__ = [
    "object_predictions",
    "scene_graph_outputs",
    "suppress_duplicate_objects",
    "suppress_duplicate_triplets",
]


def object_predictions(
    obj_logits: torch.Tensor,
    gt_labels: Optional[torch.Tensor] = None,
    det_probs: Optional[torch.Tensor] = None,
    det_classes: Optional[torch.Tensor] = None,
    refined: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Final class and score of each object.

    - PredCls (``gt_labels``): the known label, score 1.
    - SGDet (``det_probs``): the class is the context's refined arg-max when ``refined``
      (the context model re-classifies), else the detector's own class ``det_classes``; the
      score is the *detector's* probability of that class, a softmax that includes the
      background (what the detector reports, and what the papers multiply into the triplet
      score). When the class is the detector's own, this is exactly its detection score.
    - SGCls: arg-max of ``softmax(obj_logits)`` and its probability (there is no detection
      score: the boxes are given).

    Args:
        obj_logits: (N, C) object logits over the C real classes (refined by the context,
            or the detector's when the context does not re-classify).
        gt_labels: (N,) int64 known classes (PredCls) or None.
        det_probs: (N, C + 1) detector class probabilities of each detection, background
            last (Detectron2's order), or None outside SGDet.
        det_classes: (N,) int64 detector classes (with ``det_probs``).
        refined: whether ``obj_logits`` come from a context model that re-classifies.

    Returns:
        labels (N,) int64 and scores (N,) float.
    """
    if gt_labels is not None:
        return gt_labels, torch.ones(len(gt_labels), device=gt_labels.device)
    if det_probs is None:
        scores, labels = obj_logits.softmax(dim=1).max(dim=1)
        return labels, scores
    if det_classes is None:
        raise ValueError("object_predictions: det_probs given without det_classes")
    labels = obj_logits.argmax(dim=1) if refined else det_classes
    scores = det_probs.gather(1, labels[:, None])[:, 0]
    return labels, scores


def scene_graph_outputs(
    boxes: List[torch.Tensor],
    image_sizes: List[Tuple[int, int]],
    obj_logits: torch.Tensor,
    gt_labels: Optional[torch.Tensor],
    pairs: List[torch.Tensor],
    rel_logits: torch.Tensor,
    triplet_nms_thresh: float = 0.0,
    objects: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
) -> List[dict]:
    """Per image ``{"instances": Instances, "relations": Relations}`` (input frame).

    Predicate scores are ``softmax(rel_logits)`` without the background column;
    ``Relations`` sorts the pairs by the triplet score ``s_subject * s_object * p``.

    Args:
        boxes: per image (N_i, 4) XYXY boxes.
        image_sizes: per image (height, width) of the network input.
        obj_logits: (N, C) object logits, images concatenated (their softmax is kept as
            ``pred_class_probs``).
        gt_labels: (N,) int64 known classes (PredCls) or None.
        pairs: per image (R_i, 2) local (subject, object) indices.
        rel_logits: (R, P + 1) logits, background at index 0, images concatenated.
        triplet_nms_thresh: > 0: :func:`suppress_duplicate_triplets` with this IoU.
        objects: (labels, scores), each (N,), the final classes and scores; default
            ``object_predictions(obj_logits, gt_labels)`` (SGDet passes the detector's).
    """
    labels, scores = objects if objects is not None else object_predictions(obj_logits, gt_labels)
    probs = obj_logits.softmax(dim=1)
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
        results.append({"instances": inst, "relations": rels})
        o, r = o + n, r + m
    return suppress_duplicate_triplets(results, triplet_nms_thresh)


def suppress_duplicate_objects(results: List[dict], iou_threshold: float) -> List[dict]:
    """Per-class NMS on the final classes; relations of a removed object are removed.

    Of two objects of the same class whose boxes overlap with IoU > ``iou_threshold`` the
    lower-scored one is dropped (Detectron2's ``batched_nms``). Kept objects stay in their
    order (pair indices are renumbered) and kept relations keep their order and scores.

    Args:
        results: per image ``{"instances": Instances, "relations": Relations}`` as from
            :func:`scene_graph_outputs` (any extra per-object field, e.g. ``pred_masks``,
            is indexed along).
        iou_threshold: NMS IoU threshold; ``<= 0`` returns ``results`` unchanged.

    Returns:
        New per-image dicts (other keys copied).
    """
    if iou_threshold <= 0:
        return results
    out = []
    for result in results:
        inst, rels = result["instances"], result["relations"]
        keep = batched_nms(inst.pred_boxes.tensor, inst.scores, inst.pred_classes, iou_threshold)
        keep = keep.sort().values
        new_index = torch.full((len(inst),), -1, dtype=torch.long, device=keep.device)
        new_index[keep] = torch.arange(len(keep), device=keep.device)
        pair_ok = (new_index[rels.pair_indices] >= 0).all(dim=1)
        kept_rels = rels[pair_ok]
        kept_rels.pair_indices = new_index[kept_rels.pair_indices]
        out.append({**result, "instances": inst[keep], "relations": kept_rels})
    return out


def suppress_duplicate_triplets(results: List[dict], iou_threshold: float) -> List[dict]:
    """Triplet NMS (Factorizable Net, ``triplet_nms.py``) on each image's relations.

    Args:
        results: per image ``{"instances", "relations"}``.
        iou_threshold: ``<= 0`` returns ``results`` unchanged.

    Returns:
        New per-image dicts whose relations are the kept ones, best first.
    """
    if iou_threshold <= 0:
        return results
    out = []
    for result in results:
        inst, rels = result["instances"], result["relations"]
        keep = triplet_nms(
            inst.pred_boxes.tensor,
            inst.pred_classes,
            rels.pair_indices,
            rels.predicates,
            rels.scores,
            iou_threshold,
        )
        out.append({**result, "relations": rels[keep]})
    return out
