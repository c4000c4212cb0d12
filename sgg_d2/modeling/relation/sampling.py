"""Candidate pairs and relation training targets.

Relation labels use the project's internal convention: ``0`` = background (no relation),
``p + 1`` = dataset predicate ``p``. Predicate 0 is therefore label 1, a positive like
any other.
"""

from typing import Tuple

import torch
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Boxes, pairwise_iou

__all__ = [
    "batch_pair_predicates",
    "global_gt_index",
    "match_to_gt",
    "object_targets",
    "pair_predicates",
    "pair_targets",
    "sample_pairs",
    "sample_contrastive_anchors",
    "training_pairs",
]


def match_to_gt(
    pred_boxes: torch.Tensor,
    pred_labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    iou_threshold: float = 0.5,
) -> torch.Tensor:
    """Assign each detection to the GT object of the same label with the highest IoU.

    Args:
        pred_boxes: (N, 4) XYXY; pred_labels: (N,) int64.
        gt_boxes: (G, 4) XYXY; gt_labels: (G,) int64.
        iou_threshold: minimum IoU for a match (SGDet protocol: 0.5).

    Returns:
        (N,) int64 GT index, -1 for detections without a match.
    """
    if len(gt_boxes) == 0 or len(pred_boxes) == 0:
        return torch.full((len(pred_boxes),), -1, dtype=torch.long, device=pred_boxes.device)
    iou = pairwise_iou(Boxes(pred_boxes), Boxes(gt_boxes))
    iou = iou.masked_fill(pred_labels[:, None] != gt_labels[None, :], -1.0)
    best_iou, best = iou.max(dim=1)
    return torch.where(best_iou >= iou_threshold, best, torch.full_like(best, -1))


def pair_targets(
    pairs: torch.Tensor, obj_to_gt: torch.Tensor, gt_relations: torch.Tensor, num_gt: int
) -> torch.Tensor:
    """Relation label of each candidate pair (0 = background, p + 1 = predicate p).

    A pair is positive when its subject and object map to the subject and object of a GT
    relation. When a GT pair carries several predicates, one of them is chosen at random.

    Args:
        pairs: (R, 2) int64 indices of objects.
        obj_to_gt: (N,) int64 GT index of each object, -1 if unmatched (identity for GT
            boxes).
        gt_relations: (G_rel, 3) int64 rows [subject, object, predicate] over GT objects.
        num_gt: number of GT objects.

    Returns:
        (R,) int64 labels.
    """
    device = pairs.device
    table = torch.zeros((num_gt, num_gt), dtype=torch.long, device=device)
    if len(gt_relations):
        rel = gt_relations.to(device)[torch.randperm(len(gt_relations), device=device)]
        table[rel[:, 0], rel[:, 1]] = rel[:, 2] + 1  # a random one wins among duplicates
    gs, go = obj_to_gt[pairs[:, 0]], obj_to_gt[pairs[:, 1]]
    valid = (gs >= 0) & (go >= 0)
    labels = torch.zeros(len(pairs), dtype=torch.long, device=device)
    labels[valid] = table[gs[valid], go[valid]]
    return labels


def sample_pairs(labels: torch.Tensor, batch_size: int, positive_fraction: float) -> torch.Tensor:
    """Sample at most ``batch_size`` pairs with at most ``positive_fraction`` positives.

    Args:
        labels: (R,) relation labels (0 = background).

    Returns:
        (M,) int64 indices into ``labels``, positives first.
    """
    pos, neg = subsample_labels(labels, batch_size, positive_fraction, 0)
    return torch.cat([pos, neg])


def sample_contrastive_anchors(
    pairs: torch.Tensor, labels: torch.Tensor, obj_to_gt: torch.Tensor, per_side: int
) -> torch.Tensor:
    """Sample the anchors of the graphical contrastive losses, independently of the L0 sample.

    An anchor is a GT entity instance taking part in at least one related candidate pair,
    as subject (column 0) or as object (column 1); at most ``per_side`` of them are drawn
    uniformly per side (RelDN's release: 128). Every object matched to a drawn entity is
    marked, so that *all* candidate pairs of the anchor (its positives and every negative,
    the hardest one included) can be given to the losses.

    Args:
        pairs: (M, 2) int64 all candidate (subject, object) pairs of one image (local).
        labels: (M,) int64 their labels (0 = background).
        obj_to_gt: (N,) int64 GT index of each object, -1 if unmatched.
        per_side: anchors drawn per side; <= 0 draws none.

    Returns:
        (N, 2) bool: object i belongs to a drawn subject anchor / object anchor.
    """
    out = torch.zeros((len(obj_to_gt), 2), dtype=torch.bool, device=obj_to_gt.device)
    if per_side <= 0 or len(pairs) == 0:
        return out
    related = labels > 0
    for side in (0, 1):
        entities = torch.unique(obj_to_gt[pairs[related, side]])
        entities = entities[entities >= 0]
        if len(entities) > per_side:
            perm = torch.randperm(len(entities), device=entities.device)[:per_side]
            entities = entities[perm]
        out[:, side] = torch.isin(obj_to_gt, entities)
    return out


def training_pairs(
    labels: torch.Tensor,
    pairs: torch.Tensor,
    obj_to_gt: torch.Tensor,
    batch_size: int,
    positive_fraction: float,
    anchors_per_side: int = 0,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pairs of one training image a relation model is run on.

    The cross-entropy (L0) sample (:func:`sample_pairs`), plus, when ``anchors_per_side``
    > 0, every candidate pair of the contrastive anchors
    (:func:`sample_contrastive_anchors`), drawn independently of the L0 sample.

    Args:
        labels: (M,) labels of all candidate ``pairs`` (M, 2) of the image.
        obj_to_gt: (N,) GT index of each object (-1 unmatched).
        batch_size, positive_fraction: the L0 sample.
        anchors_per_side: contrastive anchors per side (0: none).

    Returns:
        ``keep`` (R,) int64 rows of ``pairs`` to run the model on (sorted; without anchors
        the L0 sample in its own order), ``ce_mask`` (R,) bool the rows in the L0 sample,
        ``anchors`` (N, 2) bool (see :func:`sample_contrastive_anchors`).
    """
    ce = sample_pairs(labels, batch_size, positive_fraction)
    anchors = sample_contrastive_anchors(pairs, labels, obj_to_gt, anchors_per_side)
    if anchors_per_side <= 0:  # the L0 sample alone, in its order (positives first)
        return ce, torch.ones(len(ce), dtype=torch.bool, device=ce.device), anchors
    in_run = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
    in_run[ce] = True
    if len(pairs):
        in_run |= anchors[pairs[:, 0], 0] | anchors[pairs[:, 1], 1]
    keep = in_run.nonzero().flatten()
    in_ce = torch.zeros_like(in_run)
    in_ce[ce] = True
    return keep, in_ce[keep], anchors


def object_targets(obj_to_gt, targets) -> torch.Tensor:
    """(N,) GT class of each object, -1 where unmatched (SGDet).

    Args:
        obj_to_gt: per image (N_i,) int64 matched GT index of each object, -1 if none.
        targets: per image GT ``Instances`` (``gt_classes``).
    """
    out = []
    for m, t in zip(obj_to_gt, targets):
        y = t.gt_classes[m.clamp(min=0)]
        out.append(torch.where(m >= 0, y, torch.full_like(y, -1)))
    return torch.cat(out)


def global_gt_index(obj_to_gt, targets) -> torch.Tensor:
    """(N,) GT index of each object (``obj_to_gt`` as in :func:`object_targets`) made
    unique across the batch: offset by the GT objects of the images before (-1 stays)."""
    out, offset = [], 0
    for m, t in zip(obj_to_gt, targets):
        out.append(torch.where(m >= 0, m + offset, m))
        offset += len(t)
    return torch.cat(out)


def pair_predicates(
    pairs: torch.Tensor, obj_to_gt: torch.Tensor, gt_relations: torch.Tensor, num_gt: int
) -> torch.Tensor:
    """Every GT predicate of each candidate pair (where :func:`pair_targets` picks one).

    Args:
        pairs, obj_to_gt, gt_relations, num_gt: as in :func:`pair_targets`.

    Returns:
        (K, 2) int64 rows ``[row of pairs, p + 1]``, one per (pair, GT predicate p) with the
        pair's subject and object mapped to a GT relation's; unique, sorted. Background
        pairs have no row; a pair with several GT predicates has several.
    """
    empty = torch.zeros((0, 2), dtype=torch.long, device=pairs.device)
    if len(pairs) == 0 or len(gt_relations) == 0:
        return empty
    rel = gt_relations.to(pairs.device)
    gs, go = obj_to_gt[pairs[:, 0]], obj_to_gt[pairs[:, 1]]
    code = torch.where((gs >= 0) & (go >= 0), gs * num_gt + go, torch.full_like(gs, -1))
    rows, which = (code[:, None] == (rel[:, 0] * num_gt + rel[:, 1])[None, :]).nonzero(
        as_tuple=True
    )
    return torch.unique(torch.stack([rows, rel[which, 2] + 1], dim=1), dim=0)


def batch_pair_predicates(all_pairs, obj_to_gt, relations, targets) -> torch.Tensor:
    """:func:`pair_predicates` of every image, rows offset into the images' concatenated
    candidate pairs (``TrainingTargets.all_pair_predicates``).

    Args:
        all_pairs: per image (M_i, 2) int64 local candidate pairs.
        obj_to_gt: per image (N_i,) int64 GT index of each object, -1 if unmatched.
        relations: per image (G_i, 3) int64 GT relations.
        targets: per image GT ``Instances`` (their lengths are the GT object counts).

    Returns:
        (K, 2) int64 ``[row of the concatenated pairs, p + 1]``.
    """
    out, offset = [], 0
    for p, m, r, t in zip(all_pairs, obj_to_gt, relations, targets):
        found = pair_predicates(p, m, r, len(t))
        out.append(found + torch.tensor([offset, 0], device=found.device))
        offset += len(p)
    if not out:
        return torch.zeros((0, 2), dtype=torch.long)
    return torch.cat(out)
