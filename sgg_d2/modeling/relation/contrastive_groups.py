"""Margin ranking over groups of pairs, the arithmetic of the graphical contrastive losses
(``contrastive_losses.py``): affinities, each group's hardest positive and negative, and
the mean over groups or anchors (``MODEL.SGG.CONTRASTIVE.GROUP_WEIGHTING``)."""

from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ["anchor_mean", "group_margin_loss", "group_margins", "pair_affinity"]


def pair_affinity(rel_logits: torch.Tensor) -> torch.Tensor:
    """Φ = 1 - p(background): (R, P + 1) logits (background at 0) -> (R,)."""
    return 1.0 - rel_logits.softmax(dim=1)[:, 0]


def group_margins(
    affinity: torch.Tensor,
    keys: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float,
) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Per group max(0, margin - min positive affinity + max negative affinity).

    Args:
        affinity: (R,) affinity of each pair.
        keys: (R, K) int64 group key of each pair; a row with a negative entry is in no group.
            Column 0 is the group's anchor.
        positive, negative: (R,) bool, disjoint: the pair's role in its group.
        margin: α.

    Returns:
        ``(violations, anchors, num_with_positive)``: (G,) the hinge of each of the G groups
        having both a positive and a negative, (G,) int64 the anchor of each of them, and
        the number of groups having a positive.
    """
    member = (keys >= 0).all(dim=1) & (positive | negative)
    if not bool(member.any()):
        return affinity[:0], keys[:0, 0], 0
    aff, pos = affinity[member], positive[member]
    unique, group = torch.unique(keys[member], dim=0, return_inverse=True)
    inf = aff.new_full((len(unique),), float("inf"))
    min_pos = inf.scatter_reduce(0, group[pos], aff[pos], reduce="amin")
    max_neg = (-inf).scatter_reduce(0, group[~pos], aff[~pos], reduce="amax")
    has_pos = torch.isfinite(min_pos)
    both = has_pos & torch.isfinite(max_neg)
    violations = F.relu(margin - min_pos[both] + max_neg[both])
    return violations, unique[both, 0], int(has_pos.sum())


def anchor_mean(violations: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Eqs. 3, 5, 7: ``(1 / num_anchors) sum_a (1 / |G_a|) sum_{g in G_a} violation_g``.

    Args:
        violations: (G,) hinge of each group; anchors: (G,) int64 anchor of each group.

    Returns:
        A scalar (G >= 1): each anchor's groups averaged, then the anchors averaged.
    """
    _, anchor = torch.unique(anchors, return_inverse=True)
    num = int(anchor.max()) + 1
    total = violations.new_zeros(num).index_add(0, anchor, violations)
    count = violations.new_zeros(num).index_add(0, anchor, torch.ones_like(violations))
    return (total / count).mean()


def group_margin_loss(
    affinity: torch.Tensor,
    keys: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """Mean over groups of max(0, margin - min positive affinity + max negative affinity).

    Arguments as :func:`group_margins`. Returns a scalar over the groups having both a
    positive and a negative; 0 (connected to the graph) when there is none.
    """
    violations, _, _ = group_margins(affinity, keys, positive, negative, margin)
    if len(violations) == 0:
        return affinity.sum() * 0.0
    return violations.mean()
