"""LinkNet (Woo, Kim, Cho, Kweon, "LinkNet: Relational Embedding for Scene Graph",
NeurIPS 2018).

1. Global context encoding. The image's backbone map (the ROI heads' input level with the
   largest stride, e.g. FPN "p5") is average-pooled over the image's own valid area (not
   the batch's padding, so c does not depend on the batch mates) and mapped by an fc to c
   (width ``MODEL.SGG.LINKNET.GLOBAL_CONTEXT_DIM``, 512 in the paper); a multi-label
   classifier on c predicts the classes present in the image, trained with the binary
   cross-entropy summed over the classes (``linknet_modules.global_context_loss``),
   weighted by lambda_2 (``losses``).
2. Object-relational embedding. ``o_i^0 = [f_i^RoI; K0 l_i; c]`` with l_i the detector's
   class distribution (softmax of the logits; the one-hot GT label in PredCls) and K0 a
   learned embedding. K stacked relational embedding modules (paper eqs. 1-6 for K = 2,
   ``linknet_modules.RelationalEmbedding``): R1 = softmax((O0 W1)(O0 U1)^T) row-wise over
   the objects of the image, O1 = O0 (+) fc0(R1 (O0 H1)), O2 = fc1(O1); R2, O3 = O2 (+)
   fc2(R2 (O2 H2)) and O4 = fc3(O3), the refined class logits (N, C). O3 is the contextual
   object embedding; O2 and O3 have width ``MODEL.SGG.LINKNET.EMBEDDING_DIM`` (256).
3. Edge-relational embedding. ``e_i^0 = [K1 argmax(o_i^4); o_i^3]`` (the GT label in
   PredCls) goes through K relational embedding modules of the same form; the last fc gives
   E1 (N, 2 D_u), whose two halves are the subject and object edge features E1^s, E1^o
   (two separate projections of the last embedding).
4. Pair feature. ``G0_ij = E1^s_i * E1^o_j * F_ij`` (element-wise, F_ij the union-box
   feature), concatenated with the embedded geometric layout K2 b_{o|s} (linear, width
   ``MODEL.SGG.LINKNET.LAYOUT_DIM``: the paper's 128), b_{o|s} =
   (dx / w_s, dy / h_s, log(w_o / w_s), log(h_o / h_s)) (box centres): G1 = [G0; K2 b].
   The shared predictor's fc on G1 gives the logits (Eq. 14: no frequency prior, so
   ``paper_frequency_bias = False``; ``MODEL.SGG.USE_FREQUENCY_BIAS: True`` adds it).

Loss: L_obj (ROI heads, SGCls/SGDet) + lambda_1 L_rel (``MODEL.SGG.REL_LOSS_WEIGHT``,
ROI heads) + lambda_2 L_gce (``MODEL.SGG.LINKNET.GLOBAL_CONTEXT_LOSS_WEIGHT``, here).

Ablations (the paper's Table 3): ``MODEL.SGG.LINKNET.GLOBAL_CONTEXT: False`` drops c from
O0 and its loss; ``GEOMETRIC_LAYOUT: False`` drops K2 b from G1 (G1 = G0). Not the paper:
``GLOBAL_CONTEXT_LOSS_REDUCTION: "mean"`` also averages L_gce over the classes;
``PAIR_NORM: True`` applies a LayerNorm to G0 and to K2 b before they are concatenated
(G0, a product of three small factors, is otherwise starved by the layout path: measured
in the README's LinkNet paragraph). The earlier K2 (``LAYOUT_DIM: 0``, ``LAYOUT_ACTIVATION:
"relu"``): ``EMBED_DIM`` wide with a ReLU. Eq. 16 sums the relation loss over all N(N-1)
pairs: the VG150 configs take every pair (``BATCH_SIZE_PER_IMAGE`` above 80 x 79 with
``POSITIVE_FRACTION: 1.0``); the synthetic ones keep the 64-pair, 1/4-positive sample.
"""

from typing import Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import build_backbone
from torch import nn

from ...config import check_choice
from ..relation.geometry import pair_geometry
from .build import CONTEXT_REGISTRY, ContextInputs, ContextModel, ContextOutputs
from .common import ClassEmbedding, object_labels
from .linknet_modules import (
    LOSS_REDUCTIONS,
    GlobalContextEncoding,
    RelationalEmbeddingStack,
    global_context_loss,
    image_positions,
    multilabel_targets,
)

__all__ = ["LinkNetContext", "global_feature_spec", "layout_encoding", "LAYOUT_DIM"]

# b_{o|s} = (dx / w_s, dy / h_s, log(w_o / w_s), log(h_o / h_s)).
LAYOUT_DIM = 4


def global_feature_spec(cfg) -> Tuple[str, int, int]:
    """Name, channels and stride of the backbone map the global context is pooled from.

    The map is the ROI heads' input (``MODEL.ROI_HEADS.IN_FEATURES``) with the largest
    stride: the most semantic level (the paper pools its backbone's last conv layer).
    Shapes come from the configured backbone built on the meta device (no memory, no
    weights), so any registered backbone works.
    """
    with torch.device("meta"):
        shapes = build_backbone(cfg).output_shape()
    names = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
    missing = [n for n in names if n not in shapes]
    if not names or missing:
        raise ValueError(
            f"MODEL.ROI_HEADS.IN_FEATURES {names} must name backbone outputs "
            f"({', '.join(shapes)}); missing: {missing}"
        )
    name = max(names, key=lambda n: shapes[n].stride)
    return name, int(shapes[name].channels), int(shapes[name].stride)


def layout_encoding(subj: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
    """LinkNet's b_{o|s} for each pair: (R, 4) XYXY subject and object boxes -> (R, 4)."""
    # The first four components of pair_geometry are exactly b_{o|s}; they do not depend
    # on the image size, so a unit size is passed.
    return pair_geometry(subj, obj, (1.0, 1.0))[:, :LAYOUT_DIM]


LAYOUT_ACTIVATIONS = ("none", "relu")


def layout_embedding(width: int, activation: str) -> Tuple[nn.Module, int]:
    """K2: (R, 4) b_{o|s} -> (R, width), linear ("none") or followed by a ReLU ("relu")."""
    check_choice("MODEL.SGG.LINKNET.LAYOUT_ACTIVATION", activation, LAYOUT_ACTIVATIONS)
    if width < 1:
        raise ValueError(f"MODEL.SGG.LINKNET.LAYOUT_DIM must be >= 0, got {width}")
    layers = [nn.Linear(LAYOUT_DIM, width)] + ([nn.ReLU()] if activation == "relu" else [])
    return nn.Sequential(*layers), width


@CONTEXT_REGISTRY.register()
class LinkNetContext(ContextModel):
    """Relational embedding, global context and geometric layout. See the module docstring."""

    paper_frequency_bias = False
    config_section = "LINKNET"
    config_keys = {
        "embedding_dim": "EMBEDDING_DIM",
        "global_context_dim": "GLOBAL_CONTEXT_DIM",
        "num_modules": "NUM_MODULES",
        "reduction": "REDUCTION",
        "global_context_loss_weight": "GLOBAL_CONTEXT_LOSS_WEIGHT",
        "global_context_loss_reduction": "GLOBAL_CONTEXT_LOSS_REDUCTION",
        "global_context": "GLOBAL_CONTEXT",
        "geometric_layout": "GEOMETRIC_LAYOUT",
        "pair_norm": "PAIR_NORM",
        "layout_dim": "LAYOUT_DIM",
        "layout_activation": "LAYOUT_ACTIVATION",
    }

    @configurable
    def __init__(
        self,
        *,
        feature_channels: int,
        feature_stride: int = 32,
        global_feature: str = "p5",
        embedding_dim: int = 256,
        global_context_dim: int = 512,
        num_modules: int = 2,
        reduction: int = 2,
        global_context_loss_weight: float = 1.0,
        global_context_loss_reduction: str = "sum",
        global_context: bool = True,
        geometric_layout: bool = True,
        pair_norm: bool = False,
        layout_dim: int = 128,
        layout_activation: str = "none",
        **shared,
    ):
        """
        Args:
            feature_channels, feature_stride: channels and stride of the backbone map
                ``global_feature``.
            global_feature: name of the backbone map (in ``ContextInputs.features``) pooled
                for the global context.
            embedding_dim: width of the intermediate relational embeddings (O2, O3).
            global_context_dim: width of c.
            num_modules: K, relational embedding modules stacked for objects and for edges.
            reduction: r, reduction ratio of the query/key/value projections.
            global_context_loss_weight: lambda_2.
            global_context_loss_reduction: one of ``LOSS_REDUCTIONS`` over the classes.
            global_context: use c (and its loss); geometric_layout: add K2 b to G1.
            pair_norm: LayerNorm on G0 and on K2 b before concatenating (not the paper).
            layout_dim: width of K2 b (paper: 128); 0 = ``embed_dim`` (the earlier form).
            layout_activation: "none" (the paper's linear K2 b) or "relu" (earlier form).
            shared: the widths of :class:`ContextModel` (``embed_dim``: the class embeddings
                K0, K1, and K2 when ``layout_dim`` is 0; ``dropout`` on the intermediate
                relational embeddings; ``hidden_dim`` is unused).
        """
        super().__init__(**shared)
        if global_context_loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(
                f"MODEL.SGG.LINKNET.GLOBAL_CONTEXT_LOSS_REDUCTION "
                f"{global_context_loss_reduction!r}; valid: {', '.join(LOSS_REDUCTIONS)}"
            )
        c, e = self.num_classes, self.embed_dim
        self.global_feature = global_feature
        self.global_context_loss_weight = float(global_context_loss_weight)
        self.global_context_loss_reduction = global_context_loss_reduction
        self.global_context = (
            GlobalContextEncoding(feature_channels, global_context_dim, c, feature_stride)
            if global_context
            else None
        )
        self.class_embed = ClassEmbedding(c, e)  # K0
        context_dim = global_context_dim if global_context else 0
        self.object_embedding = RelationalEmbeddingStack(
            self.obj_dim + e + context_dim, embedding_dim, c, num_modules, reduction, self.dropout_p
        )
        self.edge_class_embed = ClassEmbedding(c, e)  # K1
        self.edge_embedding = RelationalEmbeddingStack(
            e + self.object_embedding.embed_dim,
            embedding_dim,
            2 * self.union_dim,
            num_modules,
            reduction,
            self.dropout_p,
        )
        self.layout_embed, width = None, 0
        if geometric_layout:  # K2
            self.layout_embed, width = layout_embedding(layout_dim or e, layout_activation)
        self.pair_dim = self.union_dim + width
        self.g0_norm = nn.LayerNorm(self.union_dim) if pair_norm else nn.Identity()
        self.layout_norm = nn.LayerNorm(width) if pair_norm and geometric_layout else nn.Identity()

    @classmethod
    def model_config(cls, cfg):
        name, channels, stride = global_feature_spec(cfg)
        spec = {"feature_channels": channels, "feature_stride": stride, "global_feature": name}
        return {**super().model_config(cfg), **spec}

    def forward(self, inputs: ContextInputs) -> ContextOutputs:
        """Object logits O4 (N, C), pair features G1 (R, pair_dim), object embedding O3.

        ``extras["global_logits"]``: (B, C) multi-label scores of the global context (absent
        without it).
        """
        o0 = [inputs.obj_features, self.class_embed(inputs.obj_logits, inputs.gt_labels)]
        extras = {}
        if self.global_context is not None:
            c, extras["global_logits"] = self.global_context(*self._global_map(inputs))
            image, _ = image_positions(inputs.num_objs, c.device)
            o0.append(c[image])
        o3, o4 = self.object_embedding(torch.cat(o0, dim=1), inputs.num_objs)
        # Hard labels (no gradient through arg-max), the GT ones in PredCls.
        labels = object_labels(o4, inputs.gt_labels)
        e0 = torch.cat([self.edge_class_embed(o4, labels), o3], dim=1)
        _, e1 = self.edge_embedding(e0, inputs.num_objs)
        return ContextOutputs(
            obj_logits=o4,
            pair_features=self._pair_features(e1, inputs),
            extras=extras,
            obj_repr=o3,
        )

    def _global_map(self, inputs: ContextInputs):
        """(B, channels, H, W) backbone map of the batch and the B image sizes, checked."""
        features = inputs.features or {}
        if self.global_feature not in features:
            raise ValueError(
                f"LinkNetContext needs the backbone map {self.global_feature!r} in "
                f"inputs.features (has: {', '.join(features) or 'none'})"
            )
        fmap = features[self.global_feature]
        if fmap.shape[0] != len(inputs.num_objs):
            raise ValueError(
                f"inputs.features[{self.global_feature!r}] holds {fmap.shape[0]} images but "
                f"num_objs has {len(inputs.num_objs)}"
            )
        if inputs.image_sizes is None:
            raise ValueError("LinkNetContext needs inputs.image_sizes (the valid area to pool)")
        return fmap, inputs.image_sizes

    def _pair_features(self, e1: torch.Tensor, inputs: ContextInputs) -> torch.Tensor:
        """G1 = [E1^s_s * E1^o_o * F; K2 b_{o|s}] for every pair: (R, pair_dim)."""
        if inputs.union_features is None:
            raise ValueError("LinkNetContext needs inputs.union_features (needs_union_features)")
        subj, obj = inputs.pairs[:, 0], inputs.pairs[:, 1]
        e_subj, e_obj = e1.chunk(2, dim=1)
        g0 = self.g0_norm(e_subj[subj] * e_obj[obj] * inputs.union_features)
        if self.layout_embed is None:
            return g0
        layout = layout_encoding(inputs.boxes[subj], inputs.boxes[obj])
        return torch.cat([g0, self.layout_norm(self.layout_embed(layout))], dim=1)

    def losses(self, inputs, outputs, pair_labels, relation_predictor):
        """Global-context loss: lambda_2 * BCE of the multi-label scores vs GT classes.

        Args:
            inputs: needs ``training.gt_instances``, one per image.
            outputs: this model's outputs (``extras["global_logits"]``, (B, C)).
            pair_labels, relation_predictor: unused (the relation loss is the ROI heads').

        Returns:
            ``{"loss_global_context": scalar}`` (see ``global_context_loss``); empty
            without the global context.
        """
        if self.global_context is None:
            return {}
        if inputs.training is None:
            raise ValueError("LinkNetContext.losses needs inputs.training.gt_instances")
        gt_instances = inputs.training.gt_instances
        logits = outputs.extras["global_logits"]
        if len(gt_instances) != logits.shape[0]:
            raise ValueError(
                f"inputs.training.gt_instances has {len(gt_instances)} images but the global "
                f"context scored {logits.shape[0]}"
            )
        targets = multilabel_targets(
            [t.gt_classes.to(logits.device) for t in gt_instances], self.num_classes
        )
        loss = global_context_loss(logits, targets, self.global_context_loss_reduction)
        return {"loss_global_context": self.global_context_loss_weight * loss}
