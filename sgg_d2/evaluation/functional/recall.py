"""Scene-graph recall metrics: R@K, ng-R@K, mR@K, ng-mR@K, zsR@K, ng-zsR@K, A@K, F@K.

Two steps, so that the per-image step can run where the predictions are (each process
of a distributed run) and only small arrays travel:

1. :func:`match_scene_graph_image`: for each ranked candidate list of an image (e.g.
   ``"gc"`` graph-constrained, ``"ng"`` no graph constraint, ``"pairs"`` graph-constrained
   restricted to GT pairs), the rank of the first prediction that matches each GT triplet
   (many-to-many, both IoUs >= threshold).
2. :func:`aggregate_scene_graph_recall`: the metrics over images, in percent.

Averaging rules (PROTOCOLS.md): R@K and zsR@K are means of per-image recalls over images
that have at least one (zero-shot) GT triplet; mR@K averages per-class recall over images
containing the class, then over *all* predicate classes (0 for a class never present),
with no slot reserved for "all classes"; A@K is dataset-level (recalled / GT triplets).

Derived from those (:func:`f_scores`, :func:`group_mean_recall`): F@K, the harmonic mean
of R@K and mR@K; mR@K over a group of predicate classes (e.g. the head / body / tail
groups of :mod:`~sgg_d2.evaluation.predicate_groups`).
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .many_to_many import match_scene_graph_images
from .matching import GroundTruthGraph, ImagePrediction

__all__ = [
    "match_scene_graph_image",
    "zero_shot_mask",
    "aggregate_scene_graph_recall",
    "f_scores",
    "group_mean_recall",
]

# Result prefix of each candidate list: "gc" -> "R@K"/"mR@K"/"zsR@K", "ng" -> "ng-R@K"...
CRITERION_PREFIX = {"gc": "", "ng": "ng-"}


def match_scene_graph_image(
    gt: GroundTruthGraph, prediction: ImagePrediction, iou_threshold: float = 0.5
) -> Dict[str, np.ndarray]:
    """First-match rank of each GT triplet, per candidate list (one image).

    The batched :func:`~.many_to_many.match_scene_graph_images` does the same for many
    images at once.

    Args:
        gt: the image's ground truth (G relations).
        prediction: its predicted boxes (N, 4) float32 (XYXY, original image coordinates),
            labels (N,) int64 and candidate lists name -> (pairs (T, 2) int64, predicates
            (T,) int64), best first.
        iou_threshold: minimum IoU for subject and for object, inclusive.

    Returns:
        name -> (G,) int64 ranks (``NO_MATCH`` when unmatched).
    """
    return match_scene_graph_images([gt], [prediction], iou_threshold)[0]


def zero_shot_mask(triplet_classes: np.ndarray, zero_shot_triplets: np.ndarray) -> np.ndarray:
    """Which triplets are zero-shot.

    Args:
        triplet_classes: (G, 3) int64 rows (subject class, object class, predicate).
        zero_shot_triplets: (Z, 3) int64 rows in the same order.

    Returns:
        (G,) bool.
    """
    if len(triplet_classes) == 0 or len(zero_shot_triplets) == 0:
        return np.zeros(len(triplet_classes), dtype=bool)
    both = np.concatenate([triplet_classes, zero_shot_triplets]).astype(np.int64)
    radix = both.max(axis=0) + 1
    # Mixed-radix code: one int64 per row, so membership is a 1-D isin.
    codes = (both[:, 0] * radix[1] + both[:, 1]) * radix[2] + both[:, 2]
    return np.isin(codes[: len(triplet_classes)], codes[len(triplet_classes) :])


def _per_image_mean(image_index: np.ndarray, hits: np.ndarray, weight: np.ndarray, n: int):
    """Mean over images with weight > 0 of (weighted hits / weight); NaN if none."""
    sums = np.bincount(image_index, weights=hits * weight, minlength=n)
    counts = np.bincount(image_index, weights=weight, minlength=n)
    present = counts > 0
    if not present.any():
        return float("nan")
    return float(np.mean(sums[present] / counts[present]))


def _per_class_recall(image_index, predicates, hits, num_predicates):
    """Per-class recall averaged over images containing the class: (P,) and (P,) counts."""
    keys = image_index.astype(np.int64) * num_predicates + predicates
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    recall = np.bincount(inverse, weights=hits) / np.bincount(inverse)
    classes = unique_keys % num_predicates
    total = np.bincount(classes, weights=recall, minlength=num_predicates)
    images = np.bincount(classes, minlength=num_predicates)
    per_class = np.divide(total, images, out=np.zeros(num_predicates), where=images > 0)
    return per_class, images


def aggregate_scene_graph_recall(
    gt_predicates: Sequence[np.ndarray],
    ranks: Sequence[Dict[str, np.ndarray]],
    ks: Sequence[int],
    num_predicates: int,
    zero_shot: Optional[Sequence[np.ndarray]] = None,
    pair_accuracy: bool = False,
) -> Tuple[Dict[str, float], Dict[str, np.ndarray]]:
    """Scene-graph recall metrics over images, in percent.

    Args:
        gt_predicates: per image, (G_i,) int64 GT predicates (G_i may be 0).
        ranks: per image, the output of :func:`match_scene_graph_image`; uses ``"gc"``,
            ``"ng"`` and (with ``pair_accuracy``) ``"pairs"`` when present.
        ks: the K values.
        num_predicates: P, number of predicate classes.
        zero_shot: per image, (G_i,) bool zero-shot mask; zsR@K is left out when it is
            None or marks no GT triplet at all.
        pair_accuracy: also compute A@K from the ``"pairs"`` ranks.

    Returns:
        (metrics, per_predicate): metrics such as ``"R@50"``, ``"ng-mR@20"``, ``"zsR@100"``,
        ``"A@50"``; per_predicate maps ``"R@K"``/``"ng-R@K"`` to (P,) per-class recalls
        in percent, ``"num_gt"`` and ``"num_images"`` to (P,) counts.
    """
    counts = np.array([len(p) for p in gt_predicates], dtype=np.int64)
    n = len(counts)
    image_index = np.repeat(np.arange(n), counts)
    predicates = _concat([np.asarray(p, dtype=np.int64) for p in gt_predicates], np.int64)
    ones = np.ones(len(predicates))
    zs = _concat(list(zero_shot), bool) if zero_shot is not None else None
    metrics: Dict[str, float] = {}
    per_predicate: Dict[str, np.ndarray] = {
        "num_gt": np.bincount(predicates, minlength=num_predicates)
    }
    for name, prefix in CRITERION_PREFIX.items():
        if not all(name in r for r in ranks):
            continue
        first = _concat([r[name] for r in ranks], np.int64)
        for k in ks:
            hits = (first < k).astype(np.float64)
            metrics[f"{prefix}R@{k}"] = 100 * _per_image_mean(image_index, hits, ones, n)
            per_class, images = _per_class_recall(image_index, predicates, hits, num_predicates)
            metrics[f"{prefix}mR@{k}"] = 100 * float(per_class.mean())
            per_predicate[f"{prefix}R@{k}"] = 100 * per_class
            per_predicate["num_images"] = images
            if zs is not None and zs.any():
                zs_recall = _per_image_mean(image_index, hits, zs.astype(np.float64), n)
                metrics[f"{prefix}zsR@{k}"] = 100 * zs_recall
    if pair_accuracy:
        first = _concat([r["pairs"] for r in ranks], np.int64)
        for k in ks:
            recalled = float(np.count_nonzero(first < k))
            metrics[f"A@{k}"] = 100 * recalled / len(first) if len(first) else float("nan")
    return metrics, per_predicate


def f_scores(metrics: Dict[str, float], ks: Sequence[int]) -> Dict[str, float]:
    """F@K = 2 R@K mR@K / (R@K + mR@K), for each K and each criterion present.

    Args:
        metrics: as returned by :func:`aggregate_scene_graph_recall` (percent).
        ks: the K values.

    Returns:
        ``"F@K"`` (from R@K and mR@K) and ``"ng-F@K"`` (from ng-R@K and ng-mR@K), in
        percent, for every K whose two inputs are both in ``metrics``; 0 when both are 0,
        NaN when R@K is NaN (no image with a GT relation).
    """
    out: Dict[str, float] = {}
    for prefix in CRITERION_PREFIX.values():
        for k in ks:
            recall = metrics.get(f"{prefix}R@{k}")
            mean_recall = metrics.get(f"{prefix}mR@{k}")
            if recall is None or mean_recall is None:
                continue
            total = recall + mean_recall
            out[f"{prefix}F@{k}"] = 2 * recall * mean_recall / total if total else 0.0
    return out


def group_mean_recall(per_class: np.ndarray, groups: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Mean of the per-class recalls of each group of predicate classes.

    The per-class recalls are those mR@K averages (:func:`aggregate_scene_graph_recall`'s
    ``per_predicate["R@K"]``, 0 for a class absent from the evaluated images), so the
    group means weighted by group size average back to mR@K when the groups partition
    the classes.

    Args:
        per_class: (P,) per-class recall.
        groups: name -> predicate class indices (Q,) int64; an empty group is left out.

    Returns:
        name -> mean recall of the group's classes, in the unit of ``per_class``.
    """
    per_class = np.asarray(per_class, dtype=np.float64)
    return {
        name: float(per_class[np.asarray(indices, dtype=np.int64)].mean())
        for name, indices in groups.items()
        if len(indices)
    }


def _concat(arrays: List[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype=dtype)
