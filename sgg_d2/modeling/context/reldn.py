"""RelDN (Zhang et al., "Graphical Contrastive Losses for Scene Graph Parsing", CVPR 2019).

The predicate logits of a pair are the sum of three modules' logits:

- **visual module**: a joint branch, an MLP over ``[f_s, f_u, f_o]`` (subject RoI feature,
  union-box feature, object RoI feature), plus the paper's two skip connections, a
  subject-only and an object-only branch that give logits from ``f_s`` alone and from
  ``f_o`` alone;
- **spatial module**: an MLP over the box deltas Δ(s, o), Δ(s, u), Δ(u, o) between the
  subject, object and union boxes and the normalised coordinates c(s), c(o)
  (:func:`spatial_features`);
- **semantic module**: the frequency distribution log p(pred | s, o), which is the shared
  ``RelationPredictor``'s frequency bias (``MODEL.SGG.USE_FREQUENCY_BIAS``, on by default).

How that maps onto the code: this context returns as pair feature the concatenation
``[h_joint, f_s, f_o, h_spatial]`` (blocks named in :attr:`RelDNContext.blocks`). The shared
predictor applies one linear layer to it, and a linear layer over a concatenation is the
sum of one linear layer per block: ``W [h_joint; f_s; f_o; h_sp] = W_j h_joint + W_s f_s +
W_o f_o + W_sp h_sp``. So its output is exactly joint logits + subject-only logits +
object-only logits + spatial logits (one shared bias), to which the predictor adds the
frequency bias; the softmax over that sum gives the predicate distribution (done by the
post-processing, as for every model). :meth:`RelDNContext.module_logits` splits the
logits back into the modules' terms.

Objects: RelDN does not refine object classes; the detector's class logits are passed
through unchanged (SGCls: labels are their arg-max; PredCls: the GT labels; SGDet: each
detection keeps the detector's own class and score, so the triplet score is
p_det(s) x p_pred x p_det(o)), and the object representation is the RoI feature.

Relation backbone: the paper pools the predicate (union-box) features from a second CNN
("conv body rel"), initialised from the detector and fine-tuned, while subject/object
features come from the frozen detector. Here that is ``MODEL.SGG.RELATION_BACKBONE.ENABLED``
(on in ``configs/*/reldn_*``; usable by any context model): the shared
``UnionFeatureExtractor`` pools from a copy of the detector's backbone, copied from the
detector checkpoint when it is loaded, trained with the relation stage. The graphical
contrastive losses are separate (``relation/contrastive_losses.py``, enabled with
``MODEL.SGG.EXTRA_RELATION_LOSSES: ["GraphicalContrastiveLoss"]``, so that any context
model can use them); their anchors and pairs are drawn apart from the cross-entropy sample
(``relation/sampling.py``).

Differences from the paper, each a config flag or stated here: the union feature is the
shared extractor's (RoIAlign on FPN levels, two FC layers, plus an embedding of the pair
geometry added before the ReLU) rather than the paper's fc6/fc7 head on the union RoI of
the relation backbone; the spatial module's input is the paper's (deltas and normalised
coordinates) and its MLP width is ``MODEL.SGG.RELDN.SPATIAL_DIM``; the semantic module is
the shared predictor's frequency bias (the paper's is the same look-up of log p(pred | s, o)
after Zellers et al.).
"""

from collections import OrderedDict
from typing import Dict

import torch
from detectron2.config import configurable
from detectron2.modeling.box_regression import Box2BoxTransform
from torch import nn

from ..relation.geometry import union_boxes
from .build import CONTEXT_REGISTRY, ContextInputs, ContextModel, ContextOutputs

__all__ = ["RelDNContext", "spatial_features", "SPATIAL_FEATURE_DIM"]

# 3 box deltas (dx, dy, dw, dh) + 2 normalised coordinates (x1, y1, x2, y2, area).
SPATIAL_FEATURE_DIM = 3 * 4 + 2 * 5
# Columns of ``geometry.box_layout`` that are the paper's c(b): x1/W, y1/H, x2/W, y2/H, wh/WH.
_COORD_COLUMNS = (0, 1, 2, 3, 8)
# Degenerate boxes (zero width, e.g. a detection clipped at the border) are widened to one
# pixel, so that the deltas stay finite.
_MIN_BOX_SIZE = 1.0
_DELTAS = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0))


def _at_least_min_size(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + _MIN_BOX_SIZE)], 1)


def spatial_features(
    boxes: torch.Tensor, box_layout: torch.Tensor, pairs: torch.Tensor
) -> torch.Tensor:
    """The spatial module's input: box deltas and normalised coordinates of each pair.

    Δ(a, b) is the Fast R-CNN box delta that maps box a onto box b:
    ((cx_b - cx_a) / w_a, (cy_b - cy_a) / h_a, log(w_b / w_a), log(h_b / h_a)).

    Args:
        boxes: (N, 4) XYXY boxes.
        box_layout: (N, 9) ``geometry.box_layout`` of the boxes in their own image.
        pairs: (R, 2) int64 (subject, object) indices into the N boxes.

    Returns:
        (R, SPATIAL_FEATURE_DIM): Δ(s, o), Δ(s, u), Δ(u, o), c(s), c(o), where u is the union
        box and c(b) = (x1/W, y1/H, x2/W, y2/H, area/(W*H)).
    """
    safe = _at_least_min_size(boxes)
    subj, obj = safe[pairs[:, 0]], safe[pairs[:, 1]]
    union = union_boxes(subj, obj)
    coords = box_layout[:, list(_COORD_COLUMNS)]
    return torch.cat(
        [
            _DELTAS.get_deltas(subj, obj),
            _DELTAS.get_deltas(subj, union),
            _DELTAS.get_deltas(union, obj),
            coords[pairs[:, 0]],
            coords[pairs[:, 1]],
        ],
        dim=1,
    )


@CONTEXT_REGISTRY.register()
class RelDNContext(ContextModel):
    """Visual (joint + subject/object skip) and spatial pair features. See the module doc."""

    needs_union_features = True
    paper_frequency_bias = True  # the semantic module
    config_section = "RELDN"
    config_keys = {"spatial_dim": "SPATIAL_DIM", "skip_connections": "SKIP_CONNECTIONS"}

    @configurable
    def __init__(self, *, spatial_dim: int = 64, skip_connections: bool = True, **shared):
        """
        Args:
            spatial_dim: width of the spatial module's MLP (``MODEL.SGG.RELDN.SPATIAL_DIM``).
            skip_connections: add the subject-only and object-only logit branches.
            shared: the widths of :class:`ContextModel` (``hidden_dim``: width of the visual
                module's joint MLP; ``dropout`` in the joint MLP; ``num_classes`` and
                ``embed_dim`` are unused).
        """
        super().__init__(**shared)
        obj_dim, hidden_dim = self.obj_dim, self.hidden_dim
        self.visual = nn.Sequential(
            nn.Linear(2 * obj_dim + self.union_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(self.dropout_p),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
        )
        self.spatial = nn.Sequential(
            nn.Linear(SPATIAL_FEATURE_DIM, spatial_dim),
            nn.ReLU(inplace=True),
            nn.Linear(spatial_dim, spatial_dim),
            nn.ReLU(inplace=True),
        )
        self.skip_connections = skip_connections
        sizes = [("visual_joint", hidden_dim)]
        if skip_connections:
            sizes += [("visual_subject", obj_dim), ("visual_object", obj_dim)]
        sizes.append(("spatial", spatial_dim))
        self.blocks: Dict[str, slice] = OrderedDict()
        start = 0
        for name, size in sizes:
            self.blocks[name] = slice(start, start + size)
            start += size
        self.pair_dim = start

    def forward(self, inputs: ContextInputs) -> ContextOutputs:
        pairs, union = inputs.pairs, inputs.union_features
        if union is None:
            raise ValueError("RelDNContext needs inputs.union_features (needs_union_features)")
        if union.shape[0] != pairs.shape[0]:
            raise ValueError(
                f"inputs.union_features has {union.shape[0]} rows for {pairs.shape[0]} pairs"
            )
        f_s = inputs.obj_features[pairs[:, 0]]
        f_o = inputs.obj_features[pairs[:, 1]]
        parts = [self.visual(torch.cat([f_s, union, f_o], dim=1))]
        if self.skip_connections:
            parts += [f_s, f_o]
        parts.append(self.spatial(spatial_features(inputs.boxes, inputs.box_layout, pairs)))
        return ContextOutputs(
            obj_logits=inputs.obj_logits,
            pair_features=torch.cat(parts, dim=1),
            obj_repr=inputs.obj_features,
        )

    def module_logits(
        self, classifier: nn.Linear, pair_features: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """Split a linear classifier's logits into each module's term (for analysis).

        Args:
            classifier: the predictor's ``nn.Linear(pair_dim, P + 1)``.
            pair_features: (R, pair_dim) from :meth:`forward`.

        Returns:
            Block name -> (R, P + 1) logits ``pair_features[:, block] @ W[:, block].T``, plus
            ``"bias"`` -> (P + 1,); their sum is ``classifier(pair_features)``.
        """
        if classifier.in_features != self.pair_dim:
            raise ValueError(
                f"classifier takes {classifier.in_features} features, RelDN gives {self.pair_dim}"
            )
        out = {
            name: pair_features[:, sl] @ classifier.weight[:, sl].T
            for name, sl in self.blocks.items()
        }
        bias = classifier.bias
        out["bias"] = bias if bias is not None else pair_features.new_zeros(classifier.out_features)
        return out
