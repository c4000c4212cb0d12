"""Pieces shared by several context models (not a model themselves).

- :class:`ClassEmbedding`, :class:`ObjectInput`, :class:`EdgeInput`: the inputs of the
  object and edge contexts of MOTIFS-style models;
- :class:`BiLSTMContext`, :class:`PairFromObjects`: MOTIFS' sequence context and the pair
  feature from head/tail projections gated by the union-box feature (MOTIFS, VCTree).
"""

from typing import List, Optional

import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

from ..relation.geometry import BOX_LAYOUT_DIM

__all__ = [
    "ClassEmbedding",
    "ObjectInput",
    "EdgeInput",
    "PairFromObjects",
    "BiLSTMContext",
    "object_labels",
    "image_starts",
]


def object_labels(obj_logits: torch.Tensor, gt_labels: Optional[torch.Tensor]) -> torch.Tensor:
    """(N,) labels: the known ones (PredCls), else the arg-max of ``obj_logits`` (N, C).

    The arg-max is not differentiable, so the labels carry no gradient either way.
    """
    return gt_labels if gt_labels is not None else obj_logits.argmax(dim=1)


def image_starts(num_objs: List[int]) -> List[int]:
    """Global index of the first object of each image (images concatenated)."""
    starts, total = [], 0
    for n in num_objs:
        starts.append(total)
        total += n
    return starts


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


class ObjectInput(nn.Module):
    """An object context's input: [RoI feature, class embedding, box-layout embedding].

    The class embedding is of the detector's class distribution (the GT label in PredCls),
    the layout embedding of ``ContextInputs.box_layout`` (MOTIFS, VCTree).
    """

    def __init__(self, obj_dim: int, num_classes: int, embed_dim: int):
        super().__init__()
        self.class_embed = ClassEmbedding(num_classes, embed_dim)
        self.layout_embed = nn.Sequential(nn.Linear(BOX_LAYOUT_DIM, embed_dim), nn.ReLU())
        self.out_dim = obj_dim + 2 * embed_dim

    def forward(self, inputs) -> torch.Tensor:
        """``ContextInputs`` -> (N, obj_dim + 2 E)."""
        return torch.cat(
            [
                inputs.obj_features,
                self.class_embed(inputs.obj_logits, inputs.gt_labels),
                self.layout_embed(inputs.box_layout),
            ],
            dim=1,
        )


class EdgeInput(nn.Module):
    """An edge context's input: [object context, RoI feature, embedding of the decoded label].

    The labels are hard (decoded, or GT in PredCls), as in MOTIFS and VCTree.
    """

    def __init__(self, ctx_dim: int, obj_dim: int, num_classes: int, embed_dim: int):
        super().__init__()
        self.class_embed = ClassEmbedding(num_classes, embed_dim)
        self.out_dim = ctx_dim + obj_dim + embed_dim

    def forward(self, obj_ctx, obj_features, obj_logits, labels) -> torch.Tensor:
        """(N, ctx_dim), (N, obj_dim), (N, C), (N,) int64 -> (N, out_dim)."""
        embed = self.class_embed(obj_logits, labels.detach())
        return torch.cat([obj_ctx, obj_features, embed], dim=1)


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
    With ``gate_with_union`` False, ``pair = W [head_s, tail_o]``: TDE's context branch,
    whose causal predictor reads the union feature in a branch of its own
    (``relation/causal.py``).
    """

    def __init__(self, ctx_dim: int, hidden_dim: int, union_dim: int, gate_with_union=True):
        super().__init__()
        self.head_tail = nn.Linear(ctx_dim, 2 * hidden_dim)
        self.combine = nn.Linear(2 * hidden_dim, union_dim)
        self.out_dim = union_dim
        self.gate_with_union = bool(gate_with_union)

    def forward(self, ctx: torch.Tensor, pairs: torch.Tensor, union: Optional[torch.Tensor]):
        """(N, ctx_dim), (R, 2), (R, union_dim) or None when not gated -> (R, union_dim)."""
        head, tail = self.head_tail(ctx).chunk(2, dim=1)
        rep = torch.cat([head[pairs[:, 0]], tail[pairs[:, 1]]], dim=1)
        if not self.gate_with_union:
            return self.combine(rep)
        if union is None:
            raise ValueError("the pair features need inputs.union_features (needs_union_features)")
        return self.combine(rep) * union
