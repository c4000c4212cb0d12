"""Relation-stage losses: plain functions, tested on their own."""

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["relation_loss", "object_loss"]


def relation_loss(
    rel_logits: torch.Tensor, rel_labels: torch.Tensor, weight: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Cross-entropy over P + 1 classes (0 = background) of the sampled pairs.

    With class weights (``MODEL.SGG.PREDICATE_LOSS_WEIGHTING``,
    :func:`~sgg_d2.modeling.relation.debias.predicate_class_weights`) each pair's loss is
    multiplied by its label's weight and the sum divided by the number of pairs M, as in
    Cui et al.'s class-balanced loss (not by the sum of the weights, PyTorch's weighted
    mean, which would cancel the weights' overall size in every batch).

    Args:
        rel_logits: (M, P + 1); rel_labels: (M,) int64.
        weight: (P + 1,) class weights (background first) or None (plain mean).

    Returns:
        Scalar; 0 (still connected to the graph) when M = 0.
    """
    if rel_labels.numel() == 0:
        return rel_logits.sum() * 0.0
    if weight is None:
        return F.cross_entropy(rel_logits, rel_labels)
    per_pair = F.cross_entropy(rel_logits, rel_labels, reduction="none")
    return (weight.to(per_pair)[rel_labels] * per_pair).mean()


def object_loss(obj_logits: torch.Tensor, obj_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of refined object logits (N, C) against labels (N,); -1 = ignore."""
    if (obj_labels >= 0).sum() == 0:
        return obj_logits.sum() * 0.0
    return F.cross_entropy(obj_logits, obj_labels, ignore_index=-1)
