"""Many-to-many triplet matching (R@K family) for many images at once.

For every GT triplet: the rank of the first (best-scored) candidate of its image with
the same subject class, object class and predicate whose subject and object boxes both
have IoU >= threshold with the GT boxes. Candidates are joined to GT triplets by a sorted
(image, subject class, object class, predicate) key, so IoU is computed only for
label-agreeing (candidate, GT) pairs, in one Detectron2 ``matched_pairwise_iou`` call per
chunk of images; no Python loop runs per image or per triplet.
"""

from typing import Dict, List, Sequence

import numpy as np

from .matching import NO_MATCH, GroundTruthGraph, ImagePrediction, matched_box_iou

__all__ = ["ImagePrediction", "match_scene_graph_images"]


def match_scene_graph_images(
    gts: Sequence[GroundTruthGraph],
    predictions: Sequence[ImagePrediction],
    iou_threshold: float = 0.5,
    chunk_size: int = 1024,
) -> List[Dict[str, np.ndarray]]:
    """First-match rank of each GT triplet of each image, per candidate list.

    Args:
        gts: per image, its ground truth (G_i relations).
        predictions: per image, its :class:`~.matching.ImagePrediction` (or a plain
            ``(boxes, labels, candidates)`` tuple); every image must have the same list
            names; lists are best first.
        iou_threshold: minimum IoU for subject and for object, inclusive.
        chunk_size: images joined at once (bounds memory).

    Returns:
        Per image, name -> (G_i,) int64 ranks (``NO_MATCH`` when unmatched).
    """
    if len(gts) != len(predictions):
        raise ValueError(f"{len(gts)} ground truths but {len(predictions)} predictions")
    results: List[Dict[str, np.ndarray]] = []
    for start in range(0, len(gts), chunk_size):
        stop = start + chunk_size
        results.extend(_match_chunk(gts[start:stop], predictions[start:stop], iou_threshold))
    return results


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _flatten_objects(boxes_list, labels_list, counts):
    """Concatenate per-image objects; returns boxes, labels and per-image index offsets."""
    boxes = np.concatenate([np.asarray(b, np.float32).reshape(-1, 4) for b in boxes_list])
    labels = np.concatenate([np.asarray(x, np.int64).reshape(-1) for x in labels_list])
    return boxes, labels, _offsets(counts)


def _flatten_triplets(triplets_list, object_offsets):
    """Per-image (pairs, predicates) -> global subject/object rows, predicates, image, rank."""
    counts = np.array([len(t[1]) for t in triplets_list], dtype=np.int64)
    pairs = np.concatenate([np.asarray(t[0], np.int64).reshape(-1, 2) for t in triplets_list])
    predicates = np.concatenate([np.asarray(t[1], np.int64).reshape(-1) for t in triplets_list])
    image = np.repeat(np.arange(len(counts)), counts)
    shift = object_offsets[image]
    rank = np.arange(len(image)) - _offsets(counts)[image]
    return pairs[:, 0] + shift, pairs[:, 1] + shift, predicates, image, rank, counts


def _keys(image, subject_labels, object_labels, predicates, radix):
    """One int64 per triplet, equal iff image, both classes and predicate are equal."""
    label_radix, predicate_radix = radix
    return ((image * label_radix + subject_labels) * label_radix + object_labels) * (
        predicate_radix
    ) + predicates


def _match_chunk(gts, predictions, iou_threshold):
    names = list(predictions[0][2]) if predictions else []
    for i, pred in enumerate(predictions):
        if list(pred[2]) != names:
            raise ValueError(f"image {i} has candidate lists {list(pred[2])}, expected {names}")
    gt_boxes, gt_labels, gt_off = _flatten_objects(
        [g.boxes for g in gts], [g.labels for g in gts], np.array([len(g.labels) for g in gts])
    )
    gt_rel = [(g.relations[:, :2], g.relations[:, 2]) for g in gts]
    g_sub, g_obj, g_pred, g_img, _, g_counts = _flatten_triplets(gt_rel, gt_off)
    boxes, labels, off = _flatten_objects(
        [p[0] for p in predictions], [p[1] for p in predictions], [len(p[1]) for p in predictions]
    )
    per_list = {}
    for name in names:
        cand = _flatten_triplets([p[2][name] for p in predictions], off)
        first = _first_ranks(
            (gt_boxes, gt_labels, g_sub, g_obj, g_pred, g_img),
            (boxes, labels, *cand[:5]),
            iou_threshold,
        )
        per_list[name] = np.split(first, np.cumsum(g_counts)[:-1])
    return [{name: per_list[name][i] for name in names} for i in range(len(gts))]


def _first_ranks(gt, cand, iou_threshold):
    """(sum G,) first-match rank of every flattened GT triplet."""
    gt_boxes, gt_labels, g_sub, g_obj, g_pred, g_img = gt
    boxes, labels, c_sub, c_obj, c_pred, c_img, c_rank = cand
    first = np.full(len(g_sub), NO_MATCH, dtype=np.int64)
    if len(g_sub) == 0 or len(c_sub) == 0:
        return first
    label_radix = int(max(gt_labels.max(initial=0), labels.max(initial=0))) + 1
    radix = (label_radix, int(max(g_pred.max(), c_pred.max())) + 1)
    g_key = _keys(g_img, gt_labels[g_sub], gt_labels[g_obj], g_pred, radix)
    c_key = _keys(c_img, labels[c_sub], labels[c_obj], c_pred, radix)
    order = np.argsort(g_key, kind="stable")
    lo = np.searchsorted(g_key[order], c_key, side="left")
    counts = np.searchsorted(g_key[order], c_key, side="right") - lo
    # Expand each candidate into its label-agreeing GT triplets (ragged repeat).
    c_idx = np.repeat(np.arange(len(c_key)), counts)
    within = np.arange(len(c_idx)) - np.repeat(np.cumsum(counts) - counts, counts)
    g_idx = order[np.repeat(lo, counts) + within]
    subject_iou = matched_box_iou(boxes[c_sub[c_idx]], gt_boxes[g_sub[g_idx]])
    object_iou = matched_box_iou(boxes[c_obj[c_idx]], gt_boxes[g_obj[g_idx]])
    hit = (subject_iou >= iou_threshold) & (object_iou >= iou_threshold)
    np.minimum.at(first, g_idx[hit], c_rank[c_idx[hit]])
    return first
