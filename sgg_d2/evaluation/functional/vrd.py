"""VRD relationship and phrase detection recall (Lu et al. 2016, "k" protocol).

Per image and per candidate list (``"k1"``, ``"k10"``, ``"k70"``: each pair's top-k
predicates, global top N), predictions are matched to GT triplets greedily one-to-one in
score order (:func:`~.matching.greedy_one_to_one`):

- relationship detection: labels and predicate equal, IoU(subject) >= t and
  IoU(object) >= t (overlap = the smaller of the two);
- phrase detection: labels and predicate equal, IoU of the union boxes >= t.

Recall is summed over the dataset: total true positives / total GT triplets, not a mean
of per-image recalls.
"""

from typing import Dict, Sequence

import numpy as np

from .matching import (
    GroundTruthGraph,
    ImagePrediction,
    box_iou,
    greedy_one_to_one,
    phrase_overlaps,
    relation_overlaps,
)

__all__ = ["VRD_CRITERIA", "match_vrd_image", "aggregate_vrd_recall"]

VRD_CRITERIA = ("rel", "phr")


def match_vrd_image(
    gt: GroundTruthGraph, prediction: ImagePrediction, iou_threshold: float = 0.5
) -> Dict[str, np.ndarray]:
    """Greedy one-to-one true positives of each candidate list, for both criteria.

    Args:
        gt: the image's ground truth (G relations).
        prediction: its predicted boxes (N, 4) float32, labels (N,) int64 and candidate
            lists name -> (pairs (T, 2), predicates (T,)), best first.
        iou_threshold: minimum overlap, inclusive.

    Returns:
        ``"<criterion>_<name>"`` (e.g. ``"rel_k1"``, ``"phr_k70"``) -> (T,) bool true
        positives, in rank order.
    """
    boxes = prediction.boxes
    iou = box_iou(boxes, gt.boxes) if len(gt.relations) and len(boxes) else None
    true_positives = {}
    for name in prediction.candidates:
        pred = prediction.triplets(name)
        overlaps = {
            "rel": relation_overlaps(gt, pred, iou),
            "phr": phrase_overlaps(gt, pred),
        }
        for criterion in VRD_CRITERIA:
            tp = greedy_one_to_one(overlaps[criterion], iou_threshold)
            true_positives[f"{criterion}_{name}"] = tp
    return true_positives


def aggregate_vrd_recall(
    num_gt: Sequence[int],
    true_positives: Sequence[Dict[str, np.ndarray]],
    recall_ns: Sequence[int] = (50, 100),
) -> Dict[str, float]:
    """Dataset-level recall in percent: true positives among each image's top N / GT.

    Args:
        num_gt: per image, its number of GT triplets.
        true_positives: per image, the output of :func:`match_vrd_image`.
        recall_ns: the N values (each image's top-N predictions count).

    Returns:
        ``"<criterion>_<name>_R@<N>"`` -> percent, e.g. ``"rel_k1_R@50"``; NaN when the
        dataset has no GT triplet.
    """
    total_gt = int(np.sum(num_gt)) if len(num_gt) else 0
    keys = sorted({key for tps in true_positives for key in tps}, key=_key_order)
    metrics = {}
    for key in keys:
        for n in recall_ns:
            hits = sum(int(np.count_nonzero(tps[key][:n])) for tps in true_positives)
            metrics[f"{key}_R@{n}"] = 100 * hits / total_gt if total_gt else float("nan")
    return metrics


def _key_order(key: str):
    """Sort "rel_k1" < "rel_k10" < ... < "phr_k1" (criterion first, then numeric k)."""
    criterion, name = key.split("_", 1)
    digits = "".join(ch for ch in name if ch.isdigit())
    return VRD_CRITERIA.index(criterion), int(digits) if digits else 0, name
