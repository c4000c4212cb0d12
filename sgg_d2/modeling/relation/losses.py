"""Relation-stage losses: plain functions, tested on their own."""

import torch
import torch.nn.functional as F

__all__ = ["relation_loss", "object_loss"]


def relation_loss(rel_logits: torch.Tensor, rel_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over P + 1 classes (0 = background) of the sampled pairs.

    Args:
        rel_logits: (M, P + 1); rel_labels: (M,) int64.

    Returns:
        Scalar; 0 (still connected to the graph) when M = 0.
    """
    if rel_labels.numel() == 0:
        return rel_logits.sum() * 0.0
    return F.cross_entropy(rel_logits, rel_labels)


def object_loss(obj_logits: torch.Tensor, obj_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of refined object logits (N, C) against labels (N,); -1 = ignore."""
    if (obj_labels >= 0).sum() == 0:
        return obj_logits.sum() * 0.0
    return F.cross_entropy(obj_logits, obj_labels, ignore_index=-1)
