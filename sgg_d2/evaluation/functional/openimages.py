"""OpenImages relationship metrics (RelDN challenge protocol).

Candidates per image: each pair's top-2 predicates, scored ``s_subj * s_obj * p``,
global top 100, scores <= 1e-5 dropped (see
:func:`~.candidates.select_pair_predicates`).

- R@50: a GT triplet is recalled if any of the image's top-50 candidates matches it
  (labels, predicate, both IoUs >= 0.5; many-to-many); dataset-level sum / total GT.
- AP per predicate c: all images' candidates labelled c, pooled and sorted by score
  (ties: dataset order, then rank). Each takes its best-overlapping GT of class c in its
  image with the same subject and object classes (relationship: min of the two IoUs;
  phrase: IoU of union boxes); true positive iff overlap > 0.5 (strict) and that GT is
  unused; otherwise false positive, with no fallback to the second-best GT. AP is the
  all-point interpolated (VOC) area.
- mAP: mean AP over predicates with at least one GT triplet; wmAP: AP weighted by GT
  count; score_wtd = 0.2 * R@50 + 0.4 * wmAP_rel + 0.4 * wmAP_phr.
"""

from typing import Dict, Sequence, Tuple

import numpy as np

from .matching import (
    GroundTruthGraph,
    PredictedTriplets,
    box_iou,
    first_match_ranks,
    first_use_true_positives,
    phrase_overlaps,
    relation_overlaps,
)

__all__ = ["match_openimages_image", "voc_average_precision", "aggregate_openimages"]


def match_openimages_image(
    gt: GroundTruthGraph,
    boxes: np.ndarray,
    labels: np.ndarray,
    pairs: np.ndarray,
    predicates: np.ndarray,
    recall_iou: float = 0.5,
    ap_overlap: float = 0.5,
) -> Dict[str, np.ndarray]:
    """Per-image matches for R@K and AP.

    Args:
        gt: the image's ground truth (G relations).
        boxes: (N, 4) float32 predicted boxes. labels: (N,) int64 predicted classes.
        pairs: (T, 2) int64, candidates best first. predicates: (T,) int64.
        recall_iou: IoU for recall, inclusive.
        ap_overlap: overlap that AP true positives must strictly exceed.

    Returns:
        ``"ranks"``: (G,) first-match rank of each GT triplet; ``"tp_rel"``, ``"tp_phr"``:
        (T,) bool AP true positives in rank order.
    """
    iou = box_iou(boxes, gt.boxes) if len(gt.relations) and len(boxes) else None
    pred = PredictedTriplets(boxes, labels, pairs, predicates)
    rel = relation_overlaps(gt, pred, iou)
    return {
        "ranks": first_match_ranks(rel >= recall_iou),
        "tp_rel": first_use_true_positives(rel, ap_overlap),
        "tp_phr": first_use_true_positives(phrase_overlaps(gt, pred), ap_overlap),
    }


def voc_average_precision(true_positive: np.ndarray, num_positives: int) -> float:
    """All-point interpolated average precision (VOC 2010+).

    Args:
        true_positive: (D,) bool, detections sorted best first.
        num_positives: number of GT instances (> 0).

    Returns:
        AP in [0, 1].
    """
    tp = np.cumsum(true_positive, dtype=np.float64)
    fp = np.cumsum(~true_positive, dtype=np.float64)
    recall = np.concatenate([[0.0], tp / num_positives, [1.0]])
    precision = np.concatenate([[0.0], tp / np.maximum(tp + fp, 1e-12), [0.0]])
    # Precision envelope: best precision at any recall at least as high.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def _average_precisions(scores, predicates, true_positive, npos) -> np.ndarray:
    """AP of each predicate class, (P,); 0 for classes without GT."""
    aps = np.zeros(len(npos))
    for cls in np.flatnonzero(npos):
        rows = np.flatnonzero(predicates == cls)
        order = rows[np.argsort(-scores[rows], kind="stable")]
        aps[cls] = voc_average_precision(true_positive[order], int(npos[cls]))
    return aps


def aggregate_openimages(
    gt_predicates: Sequence[np.ndarray],
    detections: Sequence[Tuple[np.ndarray, np.ndarray]],
    matches: Sequence[Dict[str, np.ndarray]],
    num_predicates: int,
    recall_k: int = 50,
) -> Tuple[Dict[str, float], Dict[str, np.ndarray]]:
    """Dataset-level OpenImages metrics, in percent.

    Args:
        gt_predicates: per image (dataset order), (G_i,) int64 GT predicates.
        detections: per image, (scores (T_i,) float, predicates (T_i,) int64), best first.
        matches: per image, the output of :func:`match_openimages_image`.
        num_predicates: P.
        recall_k: K of the recall.

    Returns:
        (metrics, per_predicate): metrics ``"R@50"``, ``"mAP_rel"``, ``"mAP_phr"``,
        ``"wmAP_rel"``, ``"wmAP_phr"``, ``"score_wtd"``; per_predicate ``"AP_rel"``,
        ``"AP_phr"`` (P,) in percent and ``"num_gt"`` (P,).
    """
    gt_all = _concat([np.asarray(p, dtype=np.int64) for p in gt_predicates], np.int64)
    npos = np.bincount(gt_all, minlength=num_predicates)
    ranks = _concat([m["ranks"] for m in matches], np.int64)
    scores = _concat([d[0] for d in detections], np.float64)
    predicates = _concat([d[1] for d in detections], np.int64)
    present = npos > 0
    recalled = np.count_nonzero(ranks < recall_k)
    metrics = {f"R@{recall_k}": 100 * recalled / len(ranks) if len(ranks) else float("nan")}
    per_predicate: Dict[str, np.ndarray] = {"num_gt": npos}
    for criterion in ("rel", "phr"):
        true_positive = _concat([m[f"tp_{criterion}"] for m in matches], bool)
        aps = _average_precisions(scores, predicates, true_positive, npos)
        per_predicate[f"AP_{criterion}"] = 100 * aps
        metrics[f"mAP_{criterion}"] = 100 * float(aps[present].mean()) if present.any() else 0.0
        metrics[f"wmAP_{criterion}"] = 100 * float(np.sum(aps * npos) / max(npos.sum(), 1))
    metrics["score_wtd"] = (
        0.2 * metrics[f"R@{recall_k}"] + 0.4 * metrics["wmAP_rel"] + 0.4 * metrics["wmAP_phr"]
    )
    return metrics, per_predicate


def _concat(arrays, dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if len(arrays) else np.zeros(0, dtype=dtype)
