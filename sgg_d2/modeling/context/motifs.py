"""MOTIFS (Zellers et al., "Neural Motifs: Scene Graph Parsing with Global Context", 2018).

Objects of an image are put in a sequence (default: left to right by box centre) and
read by a BiLSTM (object context), whose output gives refined class logits; a second
BiLSTM over [object context, RoI feature, class embedding] gives the edge context, from
which head/tail projections of the subject and object, gated by the union-box feature,
form each pair's feature. The frequency bias is added by the shared predictor.

Object decoding is a linear layer on the object context (the benchmark variant of the
paper's sequential LSTM decoder, which conditions each label on the previous one).
"""

import torch
from detectron2.config import configurable
from torch import nn

from ..relation.geometry import BOX_LAYOUT_DIM
from .build import CONTEXT_REGISTRY, ContextInputs, ContextOutputs
from .common import BiLSTMContext, ClassEmbedding, PairFromObjects

__all__ = ["MotifsContext", "object_orders"]

ORDERINGS = ("leftright", "confidence", "size", "random")


def object_orders(inputs: ContextInputs, ordering: str):
    """Per image, global object indices in sequence order.

    Args:
        ordering: "leftright" (box centre x), "confidence" (max class probability,
            high first), "size" (box area, large first) or "random".
    """
    if ordering == "leftright":
        key = 0.5 * (inputs.boxes[:, 0] + inputs.boxes[:, 2])
    elif ordering == "confidence":
        key = -inputs.obj_logits.softmax(1).max(1).values
    elif ordering == "size":
        key = -(inputs.boxes[:, 2:] - inputs.boxes[:, :2]).prod(1)
    else:
        key = torch.rand(len(inputs.boxes), device=inputs.boxes.device)
    orders, start = [], 0
    for n in inputs.num_objs:
        orders.append(start + torch.argsort(key[start : start + n]))
        start += n
    return orders


@CONTEXT_REGISTRY.register()
class MotifsContext(nn.Module):
    """BiLSTM object and edge context. See the module docstring."""

    needs_union_features = True

    @configurable
    def __init__(
        self,
        *,
        obj_dim: int,
        union_dim: int,
        num_classes: int,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        num_obj_layers: int = 1,
        num_edge_layers: int = 1,
        ordering: str = "leftright",
        dropout: float = 0.0,
    ):
        """
        Args:
            obj_dim: size of the RoI features; union_dim: size of union-box features.
            num_classes: C, real object classes.
            embed_dim: class and box-layout embedding size.
            hidden_dim: LSTM hidden size per direction.
            ordering: one of ``ORDERINGS``.
        """
        super().__init__()
        if ordering not in ORDERINGS:
            raise ValueError(f"MOTIFS ordering {ordering!r}; valid: {', '.join(ORDERINGS)}")
        self.ordering = ordering
        self.class_embed = ClassEmbedding(num_classes, embed_dim)
        self.edge_class_embed = ClassEmbedding(num_classes, embed_dim)
        self.layout_embed = nn.Sequential(nn.Linear(BOX_LAYOUT_DIM, embed_dim), nn.ReLU())
        self.obj_ctx = BiLSTMContext(obj_dim + 2 * embed_dim, hidden_dim, num_obj_layers, dropout)
        self.decoder = nn.Linear(self.obj_ctx.out_dim, num_classes)
        self.edge_ctx = BiLSTMContext(
            self.obj_ctx.out_dim + obj_dim + embed_dim, hidden_dim, num_edge_layers, dropout
        )
        self.pair = PairFromObjects(self.edge_ctx.out_dim, hidden_dim, union_dim)
        self.pair_dim = union_dim

    @classmethod
    def from_config(cls, cfg, obj_dim, union_dim):
        m = cfg.MODEL.SGG
        return {
            "obj_dim": obj_dim,
            "union_dim": union_dim,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "embed_dim": m.EMBED_DIM,
            "hidden_dim": m.CONTEXT_HIDDEN_DIM,
            "num_obj_layers": m.MOTIFS.NUM_OBJ_LAYERS,
            "num_edge_layers": m.MOTIFS.NUM_EDGE_LAYERS,
            "ordering": m.MOTIFS.ORDERING,
            "dropout": m.CONTEXT_DROPOUT,
        }

    def forward(self, inputs: ContextInputs) -> ContextOutputs:
        orders = object_orders(inputs, self.ordering)
        x = torch.cat(
            [
                inputs.obj_features,
                self.class_embed(inputs.obj_logits, inputs.gt_labels),
                self.layout_embed(inputs.box_layout),
            ],
            dim=1,
        )
        obj_ctx = self.obj_ctx(x, orders)
        obj_logits = self.decoder(obj_ctx)
        if inputs.gt_labels is not None:
            edge_embed = self.edge_class_embed(obj_logits, inputs.gt_labels)
        else:  # the decoded (hard) labels, as in the paper
            edge_embed = self.edge_class_embed(obj_logits, obj_logits.argmax(1).detach())
        edge_ctx = self.edge_ctx(torch.cat([obj_ctx, inputs.obj_features, edge_embed], 1), orders)
        pair_features = self.pair(edge_ctx, inputs.pairs, inputs.union_features)
        return ContextOutputs(obj_logits=obj_logits, pair_features=pair_features, obj_repr=obj_ctx)
