"""MOTIFS (Zellers et al., "Neural Motifs: Scene Graph Parsing with Global Context", 2018).

Objects of an image are put in a sequence (default: left to right by box centre, the
paper's best order) and read by a BiLSTM (object context). An LSTM decoder reads the
object context in the same order and predicts each object's class conditioned on the
previous objects' classes (the paper's sequential decoding): its input at step t is
[object context of object t, embedding of the class of object t - 1] (a start token for
t = 0). The class fed back is the decoded one (arg-max), in training the GT class where the
object has one (teacher forcing), in PredCls the GT label. A second BiLSTM over [object
context, RoI feature, embedding of the decoded class] gives the edge context, from which
head/tail projections of the subject and object, gated by the union-box feature, form each
pair's feature. The frequency bias is added by the shared predictor (the paper's model
includes it: ``paper_frequency_bias``). In SGDet the paper suppresses, per decoded class,
overlapping detections: the generic per-class NMS of the post-processing on the refined
labels (``TEST.SGG.OBJECT_NMS_THRESH``, set in the MOTIFS configs).

Flag (not the paper): ``MODEL.SGG.MOTIFS.DECODER: "linear"`` decodes each object's class by
a linear layer on its object context alone (the benchmark codebases' variant).
"""

import torch
from detectron2.config import configurable
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from .build import CONTEXT_REGISTRY, ContextInputs, ContextModel, ContextOutputs
from .common import BiLSTMContext, EdgeInput, ObjectInput, PairFromObjects

__all__ = ["MotifsContext", "LSTMObjectDecoder", "object_orders", "DECODERS"]

ORDERINGS = ("leftright", "confidence", "size", "random")
DECODERS = ("lstm", "linear")


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


class LSTMObjectDecoder(nn.Module):
    """Sequential class decoder: each object's class conditioned on the previous ones.

    ``h_t = LSTM([ctx_t; E(y_{t-1})], h_{t-1})``, ``logits_t = W h_t``, with ``y_{t-1}`` the
    previous object's class (fed label, else the decoded arg-max) and ``E`` a learned
    embedding with an extra start token. All images of the batch advance together, one
    step per sequence position.
    """

    def __init__(self, ctx_dim: int, num_classes: int, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.label_embed = nn.Embedding(num_classes + 1, embed_dim)  # last row: start token
        self.cell = nn.LSTMCell(ctx_dim + embed_dim, hidden_dim)
        self.classifier = nn.Linear(hidden_dim, num_classes)

    def forward(self, obj_ctx: torch.Tensor, orders, feed_labels=None) -> torch.Tensor:
        """
        Args:
            obj_ctx: (N, ctx_dim) object contexts, images concatenated.
            orders: per image, global object indices in sequence order.
            feed_labels: optional (N,) int64 class to feed back for each object (GT in
                PredCls or teacher forcing); entries < 0 feed the decoded arg-max instead.

        Returns:
            (N, C) class logits in the original object order.
        """
        orders = sorted((o for o in orders if len(o)), key=len, reverse=True)
        if not orders:
            return obj_ctx.new_zeros((obj_ctx.shape[0], self.num_classes))
        index = pad_sequence(orders, batch_first=True, padding_value=-1)  # (B, T), longest first
        active = (index >= 0).sum(0).tolist()  # images still running at each step
        h = obj_ctx.new_zeros((len(orders), self.cell.hidden_size))
        c = torch.zeros_like(h)
        prev = torch.full((len(orders),), self.num_classes, device=obj_ctx.device)
        rows, outs = [], []
        for t, k in enumerate(active):
            idx = index[:k, t]
            step_in = torch.cat([obj_ctx[idx], self.label_embed(prev[:k])], dim=1)
            h_t, c_t = self.cell(step_in, (h[:k], c[:k]))
            logits = self.classifier(h_t)
            label = logits.argmax(1)
            if feed_labels is not None:
                known = feed_labels[idx]
                label = torch.where(known >= 0, known, label)
            h, c, prev = h_t, c_t, label  # finished (shorter) images are dropped from the end
            rows.append(idx)
            outs.append(logits)
        out = obj_ctx.new_zeros((obj_ctx.shape[0], self.num_classes))
        out[torch.cat(rows)] = torch.cat(outs)
        return out


@CONTEXT_REGISTRY.register()
class MotifsContext(ContextModel):
    """BiLSTM object and edge contexts, sequential class decoding. See the module docstring."""

    paper_frequency_bias = True
    config_section = "MOTIFS"
    config_keys = {
        "num_obj_layers": "NUM_OBJ_LAYERS",
        "num_edge_layers": "NUM_EDGE_LAYERS",
        "ordering": "ORDERING",
        "decoder": "DECODER",
    }

    @configurable
    def __init__(
        self,
        *,
        num_obj_layers: int = 1,
        num_edge_layers: int = 1,
        ordering: str = "leftright",
        decoder: str = "lstm",
        **shared,
    ):
        """
        Args:
            num_obj_layers, num_edge_layers: BiLSTM layers of the object and edge contexts.
            ordering: one of ``ORDERINGS``.
            decoder: one of ``DECODERS``: "lstm" (paper) or "linear".
            shared: the widths of :class:`ContextModel` (``hidden_dim``: LSTM hidden size
                per direction).
        """
        super().__init__(**shared)
        if ordering not in ORDERINGS:
            raise ValueError(f"MOTIFS ordering {ordering!r}; valid: {', '.join(ORDERINGS)}")
        if decoder not in DECODERS:
            raise ValueError(f"MODEL.SGG.MOTIFS.DECODER {decoder!r}; valid: {', '.join(DECODERS)}")
        c, e, h = self.num_classes, self.embed_dim, self.hidden_dim
        self.ordering = ordering
        self.obj_input = ObjectInput(self.obj_dim, c, e)
        self.obj_ctx = BiLSTMContext(self.obj_input.out_dim, h, num_obj_layers, self.dropout_p)
        if decoder == "lstm":
            self.decoder = LSTMObjectDecoder(self.obj_ctx.out_dim, c, e, h)
        else:
            self.decoder = nn.Linear(self.obj_ctx.out_dim, c)
        self.edge_input = EdgeInput(self.obj_ctx.out_dim, self.obj_dim, c, e)
        self.edge_ctx = BiLSTMContext(self.edge_input.out_dim, h, num_edge_layers, self.dropout_p)
        self.pair = PairFromObjects(self.edge_ctx.out_dim, h, self.union_dim)
        self.pair_dim = self.union_dim

    def decode(self, obj_ctx: torch.Tensor, orders, inputs: ContextInputs) -> torch.Tensor:
        """(N, C) refined class logits from the object context."""
        if isinstance(self.decoder, nn.Linear):
            return self.decoder(obj_ctx)
        feed = inputs.gt_labels
        if feed is None and self.training and inputs.training is not None:
            # teacher forcing; -1 (no GT) feeds the decoded class
            feed = inputs.training.obj_gt_classes
        return self.decoder(obj_ctx, orders, feed)

    def forward(self, inputs: ContextInputs) -> ContextOutputs:
        orders = object_orders(inputs, self.ordering)
        obj_ctx = self.obj_ctx(self.obj_input(inputs), orders)
        obj_logits = self.decode(obj_ctx, orders, inputs)
        labels = inputs.gt_labels if inputs.gt_labels is not None else obj_logits.argmax(1)
        edge_in = self.edge_input(obj_ctx, inputs.obj_features, obj_logits, labels)
        pair_features = self.pair(
            self.edge_ctx(edge_in, orders), inputs.pairs, inputs.union_features
        )
        return ContextOutputs(obj_logits=obj_logits, pair_features=pair_features, obj_repr=obj_ctx)
