"""Match ranked predicted triplets of one image to its ground-truth triplets (numpy).

IoU convention: boxes are continuous XYXY and IoU is Detectron2's ``pairwise_iou``
(no "+1" pixel), computed in float32.

Overlap matrices are (T, G): T predicted triplets (best first) by G ground-truth
triplets. An entry is the overlap when subject label, object label and predicate all
agree, and :data:`NOT_COMPARABLE` (-1, below any IoU) otherwise.
"""

from typing import Dict, NamedTuple, Tuple

import numpy as np
import torch
from detectron2.structures import Boxes, pairwise_iou
from detectron2.structures.boxes import matched_pairwise_iou

__all__ = [
    "NO_MATCH",
    "NOT_COMPARABLE",
    "GroundTruthGraph",
    "PredictedTriplets",
    "ImagePrediction",
    "box_iou",
    "matched_box_iou",
    "union_boxes",
    "relation_overlaps",
    "phrase_overlaps",
    "first_match_ranks",
    "greedy_one_to_one",
    "first_use_true_positives",
]

# Rank stored for a ground-truth triplet that no kept prediction matches.
NO_MATCH = np.iinfo(np.int64).max
NOT_COMPARABLE = -1.0


class GroundTruthGraph(NamedTuple):
    """Ground truth of one image.

    Attributes:
        boxes: (M, 4) float32, XYXY absolute.
        labels: (M,) int64, 0-based object classes.
        relations: (G, 3) int64, rows (subject index, object index, predicate); duplicates
            are kept (test ground truth is not de-duplicated).
    """

    boxes: np.ndarray
    labels: np.ndarray
    relations: np.ndarray


class PredictedTriplets(NamedTuple):
    """T ranked predicted triplets of one image with their objects.

    Attributes:
        boxes: (N, 4) float32, XYXY absolute, original image coordinates.
        labels: (N,) int64, predicted object classes.
        pairs: (T, 2) int64, (subject, object) indices into ``boxes``; best first.
        predicates: (T,) int64.
    """

    boxes: np.ndarray
    labels: np.ndarray
    pairs: np.ndarray
    predicates: np.ndarray


class ImagePrediction(NamedTuple):
    """One image's predicted objects and its named ranked candidate lists, what the
    per-image metrics match against :class:`GroundTruthGraph`.

    Attributes:
        boxes: (N, 4) float32, XYXY absolute, original image coordinates.
        labels: (N,) int64, predicted object classes.
        candidates: list name (e.g. ``"gc"``, ``"k1"``) -> (pairs (T, 2) int64 (subject,
            object) indices into ``boxes``, predicates (T,) int64), best first.
    """

    boxes: np.ndarray
    labels: np.ndarray
    candidates: Dict[str, Tuple[np.ndarray, np.ndarray]]

    def triplets(self, name: str) -> PredictedTriplets:
        """The candidate list ``name`` with its objects."""
        pairs, predicates = self.candidates[name]
        return PredictedTriplets(self.boxes, self.labels, pairs, predicates)


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of every box of ``boxes1`` with every box of ``boxes2``.

    Args:
        boxes1: (N, 4) XYXY. boxes2: (M, 4) XYXY.

    Returns:
        (N, M) float32, Detectron2's ``pairwise_iou`` (0 for empty boxes).
    """
    iou = pairwise_iou(Boxes(torch.as_tensor(boxes1)), Boxes(torch.as_tensor(boxes2)))
    return iou.numpy()


def matched_box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of each box of ``boxes1`` with the box at the same row of ``boxes2``.

    Args:
        boxes1, boxes2: (E, 4) XYXY.

    Returns:
        (E,) float32, Detectron2's ``matched_pairwise_iou`` (same arithmetic as
        :func:`box_iou`), 0 for two empty boxes.
    """
    iou = matched_pairwise_iou(Boxes(torch.as_tensor(boxes1)), Boxes(torch.as_tensor(boxes2)))
    return torch.nan_to_num(iou, nan=0.0).numpy()


def union_boxes(subject_boxes: np.ndarray, object_boxes: np.ndarray) -> np.ndarray:
    """Smallest box enclosing each (subject, object) box pair: (T, 4) from two (T, 4)."""
    return np.concatenate(
        [
            np.minimum(subject_boxes[:, :2], object_boxes[:, :2]),
            np.maximum(subject_boxes[:, 2:], object_boxes[:, 2:]),
        ],
        axis=1,
    )


def _labels_agree(gt: GroundTruthGraph, pred: PredictedTriplets) -> np.ndarray:
    """(T, G) bool: subject class, object class and predicate all equal."""
    pred_subj = pred.labels[pred.pairs[:, 0]]
    pred_obj = pred.labels[pred.pairs[:, 1]]
    gt_subj = gt.labels[gt.relations[:, 0]]
    gt_obj = gt.labels[gt.relations[:, 1]]
    return (
        (pred_subj[:, None] == gt_subj[None, :])
        & (pred_obj[:, None] == gt_obj[None, :])
        & (pred.predicates[:, None] == gt.relations[None, :, 2])
    )


def relation_overlaps(gt: GroundTruthGraph, pred: PredictedTriplets, iou=None) -> np.ndarray:
    """min(IoU(subjects), IoU(objects)) for label-agreeing (prediction, GT) triplet pairs.

    Args:
        gt: ground truth of the image (G relations).
        pred: T predicted triplets.
        iou: optional precomputed ``box_iou(pred.boxes, gt.boxes)``, (N, M).

    Returns:
        (T, G) float32; :data:`NOT_COMPARABLE` where labels or predicate differ.
    """
    num_pred, num_gt = len(pred.pairs), len(gt.relations)
    if num_pred == 0 or num_gt == 0:
        return np.full((num_pred, num_gt), NOT_COMPARABLE, dtype=np.float32)
    if iou is None:
        iou = box_iou(pred.boxes, gt.boxes)
    subj_iou = iou[pred.pairs[:, 0][:, None], gt.relations[None, :, 0]]
    obj_iou = iou[pred.pairs[:, 1][:, None], gt.relations[None, :, 1]]
    overlap = np.minimum(subj_iou, obj_iou)
    return np.where(_labels_agree(gt, pred), overlap, np.float32(NOT_COMPARABLE))


def phrase_overlaps(gt: GroundTruthGraph, pred: PredictedTriplets) -> np.ndarray:
    """IoU of union boxes (subject and object) for label-agreeing triplet pairs.

    Returns:
        (T, G) float32; :data:`NOT_COMPARABLE` where labels or predicate differ.
    """
    num_pred, num_gt = len(pred.pairs), len(gt.relations)
    if num_pred == 0 or num_gt == 0:
        return np.full((num_pred, num_gt), NOT_COMPARABLE, dtype=np.float32)
    pred_union = union_boxes(pred.boxes[pred.pairs[:, 0]], pred.boxes[pred.pairs[:, 1]])
    gt_union = union_boxes(gt.boxes[gt.relations[:, 0]], gt.boxes[gt.relations[:, 1]])
    overlap = box_iou(pred_union, gt_union)
    return np.where(_labels_agree(gt, pred), overlap, np.float32(NOT_COMPARABLE))


def first_match_ranks(matches: np.ndarray) -> np.ndarray:
    """Rank of the first (best-scored) prediction matching each GT triplet, many-to-many.

    A GT triplet is recalled at K iff its rank is < K; one prediction may recall several
    GT triplets (duplicates in the ground truth) and several predictions may match one.

    Args:
        matches: (T, G) bool, rows best first.

    Returns:
        (G,) int64, :data:`NO_MATCH` where no row matches.
    """
    if matches.shape[0] == 0:
        return np.full(matches.shape[1], NO_MATCH, dtype=np.int64)
    first = matches.argmax(axis=0).astype(np.int64)
    return np.where(matches.any(axis=0), first, NO_MATCH)


def greedy_one_to_one(overlaps: np.ndarray, threshold: float) -> np.ndarray:
    """Lu et al.'s VRD matching: predictions in rank order each take one unused GT.

    A prediction is a true positive when some still-unused GT triplet has an overlap
    >= ``threshold``; it takes the one with the largest overlap (ties: lowest GT index),
    which is then used up.

    Args:
        overlaps: (T, G) float, rows best first (see :func:`relation_overlaps`).
        threshold: minimum overlap, inclusive.

    Returns:
        (T,) bool, true positives.
    """
    valid = overlaps >= threshold
    true_positive = np.zeros(overlaps.shape[0], dtype=bool)
    used = np.zeros(overlaps.shape[1], dtype=bool)
    # Only rows with some valid GT can match; they are usually few.
    for row in np.flatnonzero(valid.any(axis=1)):
        available = valid[row] & ~used
        if available.any():
            best = np.argmax(np.where(available, overlaps[row], -np.inf))
            used[best] = True
            true_positive[row] = True
    return true_positive


def first_use_true_positives(overlaps: np.ndarray, threshold: float) -> np.ndarray:
    """OpenImages (VOC-style) true positives: best GT only, strict threshold, no fallback.

    Each prediction looks only at its best-overlapping GT (ties: lowest GT index). It is a
    true positive iff that overlap is > ``threshold`` and no earlier prediction took the
    same GT; when the best GT is taken the prediction is a false positive even if another
    GT would qualify.

    Args:
        overlaps: (T, G) float, rows best first.
        threshold: overlap that must be strictly exceeded.

    Returns:
        (T,) bool.
    """
    num_pred = overlaps.shape[0]
    if num_pred == 0 or overlaps.shape[1] == 0:
        return np.zeros(num_pred, dtype=bool)
    best = overlaps.argmax(axis=1)
    qualifies = overlaps[np.arange(num_pred), best] > threshold
    rows = np.flatnonzero(qualifies)
    # np.unique returns the first occurrence of each GT among qualifying rows (rank order).
    _, first = np.unique(best[rows], return_index=True)
    true_positive = np.zeros(num_pred, dtype=bool)
    true_positive[rows[first]] = True
    return true_positive
