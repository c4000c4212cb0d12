"""Triplet NMS (Factorizable Net, Li et al. ECCV 2018): drop near-duplicate triplets.

A triplet (subject box + class, predicate, object box + class) is suppressed when a
higher-scored triplet that is kept has the same subject class, object class and predicate,
and *both* its subject boxes and its object boxes overlap with IoU > ``thresh``. Greedy,
in score order, like box NMS: a suppressed triplet suppresses nothing. The paper's
threshold is 0.4 (the authors' released evaluation default), applied in SGDet.
"""

import torch
from detectron2.structures import Boxes, pairwise_iou

__all__ = ["triplet_nms"]


def triplet_nms(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    pairs: torch.Tensor,
    predicates: torch.Tensor,
    scores: torch.Tensor,
    thresh: float,
) -> torch.Tensor:
    """Indices of the triplets kept by triplet NMS, in decreasing score order.

    Args:
        boxes: (N, 4) XYXY boxes of the image's objects.
        labels: (N,) int64 object classes.
        pairs: (R, 2) int64 (subject, object) indices into the N objects.
        predicates: (R,) int64 predicate of each triplet.
        scores: (R,) triplet scores.
        thresh: IoU above which both the subject and the object boxes must overlap for a
            triplet to be suppressed; in (0, 1].

    Returns:
        (K,) int64 indices into the R triplets, best first.

    Raises:
        ValueError: ``thresh`` outside (0, 1] or inconsistent shapes.
    """
    if not 0.0 < thresh <= 1.0:
        raise ValueError(f"triplet NMS threshold must be in (0, 1], got {thresh}")
    r = len(pairs)
    if not (len(predicates) == len(scores) == r) or pairs.shape[1:] != (2,):
        raise ValueError(
            f"triplet NMS: pairs {tuple(pairs.shape)}, predicates {tuple(predicates.shape)} "
            f"and scores {tuple(scores.shape)} must describe the same R triplets"
        )
    order = torch.sort(scores, descending=True, stable=True).indices
    if r == 0:
        return order
    iou = pairwise_iou(Boxes(boxes), Boxes(boxes)) > thresh  # (N, N) object overlaps
    s, o = pairs[order, 0], pairs[order, 1]
    key = torch.stack([labels[s], labels[o], predicates[order]], dim=1)
    # Candidate conflicts only within a (subject class, object class, predicate) group.
    _, group = torch.unique(key, dim=0, return_inverse=True)
    keep = torch.ones(r, dtype=torch.bool, device=scores.device)
    for g in torch.unique(group).tolist():
        members = (group == g).nonzero().flatten()  # in score order
        if len(members) < 2:
            continue
        ms, mo = s[members], o[members]
        # (m, m): both boxes overlap; the greedy pass runs on the host once per group
        # (one transfer, no per-triplet device sync on CUDA).
        dup = (iou[ms][:, ms] & iou[mo][:, mo]).cpu()
        alive = torch.ones(len(members), dtype=torch.bool)
        for i in range(len(members)):
            if alive[i]:
                alive[i + 1 :] &= ~dup[i, i + 1 :]
        keep[members] = alive.to(keep.device)
    return order[keep]
