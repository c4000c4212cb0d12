"""Pieces shared by several context models (not a model themselves)."""

from typing import List, Optional

import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

__all__ = ["ClassEmbedding", "PairFromObjects", "BiLSTMContext", "object_labels"]


def object_labels(obj_logits: torch.Tensor, gt_labels: Optional[torch.Tensor]) -> torch.Tensor:
    """(N,) labels: the known ones (PredCls), else the arg-max of ``obj_logits`` (N, C)."""
    return gt_labels if gt_labels is not None else obj_logits.argmax(dim=1)


class ClassEmbedding(nn.Module):
    """Embeds a class distribution (soft) or known labels (one-hot) into E dimensions."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, dim) * 0.1)

    def forward(self, obj_logits: torch.Tensor, gt_labels: Optional[torch.Tensor] = None):
        """(N, C) logits [, (N,) labels] -> (N, E)."""
        if gt_labels is not None:
            return self.weight[gt_labels]
        return obj_logits.softmax(dim=1) @ self.weight


class BiLSTMContext(nn.Module):
    """Bidirectional LSTM over each image's objects in a given order.

    Images are packed into one batch (no Python loop over objects); the output is
    scattered back to the original object order.
    """

    def __init__(self, in_dim: int, hidden_dim: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(
            in_dim,
            hidden_dim,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=True,
        )
        self.out_dim = 2 * hidden_dim

    def forward(self, x: torch.Tensor, orders: List[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            x: (N, in_dim) object inputs, images concatenated.
            orders: per image, a permutation (global indices into N) giving the sequence.

        Returns:
            (N, 2 * hidden_dim) context, in the original object order.
        """
        out = x.new_zeros((x.shape[0], self.out_dim))
        orders = [o for o in orders if len(o)]
        if not orders:
            return out
        packed = pack_sequence([x[o] for o in orders], enforce_sorted=False)
        padded, lengths = pad_packed_sequence(self.lstm(packed)[0])  # (T, B, 2H)
        for b, order in enumerate(orders):
            out[order] = padded[: lengths[b], b]
        return out


class PairFromObjects(nn.Module):
    """Pair feature from subject/object contexts gated by the union-box feature.

    ``ctx -> (head, tail)``; ``pair = W [head_s, tail_o] * union_feature`` (MOTIFS, VCTree).
    """

    def __init__(self, ctx_dim: int, hidden_dim: int, union_dim: int):
        super().__init__()
        self.head_tail = nn.Linear(ctx_dim, 2 * hidden_dim)
        self.combine = nn.Linear(2 * hidden_dim, union_dim)
        self.out_dim = union_dim

    def forward(self, ctx: torch.Tensor, pairs: torch.Tensor, union: torch.Tensor):
        """(N, ctx_dim), (R, 2), (R, union_dim) -> (R, union_dim)."""
        head, tail = self.head_tail(ctx).chunk(2, dim=1)
        rep = torch.cat([head[pairs[:, 0]], tail[pairs[:, 1]]], dim=1)
        return self.combine(rep) * union
