"""Factorizable Net (Li, Ouyang, Zhou, Shi, Zhang, Wang, "Factorizable Net: An Efficient
Subgraph-based Framework for Scene Graph Generation", ECCV 2018).

The fully-connected graph of objects is factorised into *subgraphs*: candidate pairs
whose union boxes overlap (IoU > ``nms_thresh``, NMS over union boxes scored by the
product of the two objects' scores) share one subgraph, and every pair is assigned to the
kept union box most overlapping its own (``fnet_subgraph``). Each subgraph has a 2-D
feature map (RoIAlign of its box to P x P, two 3x3 convs), each object a vector (its RoI
feature, projected). ``num_mps`` rounds of spatial-weighted message passing exchange
information along the object-subgraph links (objects attend over their subgraphs; objects
paint themselves onto subgraph maps through per-location attention). Spatial-sensitive
relation inference then reads each pair's feature off its subgraph map, with the
subject's and object's vectors as depth-wise conv kernels (``fnet_modules``).

Relation features come from S subgraph maps instead of R per-pair union-box features
(S << R), so ``needs_union_features`` is False: the cost the paper removes.
"""

from typing import Dict, List, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import build_backbone
from torch import nn

from .build import CONTEXT_REGISTRY, ContextInputs, ContextOutputs
from .fnet_modules import SpatialMessagePassing, SpatialRelationInference
from .fnet_subgraph import SubgraphFeatures, cluster_subgraphs, object_scores, subgraph_incidence

__all__ = ["FactorizableNetContext", "backbone_feature_shapes"]


def backbone_feature_shapes(cfg, names: Sequence[str]) -> Dict[str, Tuple[int, int]]:
    """(channels, stride) of the named backbone maps, read from the configured backbone.

    The context registry passes no backbone shapes, so the backbone is built on the
    "meta" device (no memory, no weights) only to ask its ``output_shape()``.

    Raises:
        KeyError: a name that the backbone does not output.
    """
    with torch.device("meta"):
        shapes = build_backbone(cfg).output_shape()
    missing = [n for n in names if n not in shapes]
    if missing:
        raise KeyError(
            f"MODEL.ROI_HEADS.IN_FEATURES {missing} are not backbone outputs {sorted(shapes)}"
        )
    return {n: (shapes[n].channels, shapes[n].stride) for n in names}


@CONTEXT_REGISTRY.register()
class FactorizableNetContext(nn.Module):
    """Subgraph clustering, SMP and SRI. See the module docstring.

    ``pair_dim`` = ``hidden_dim + 2 * hidden_dim`` (SRI feature, subject, object vectors).
    """

    needs_union_features = False

    @configurable
    def __init__(
        self,
        *,
        obj_dim: int,
        num_classes: int,
        in_features: Sequence[str],
        in_channels: int,
        feature_strides: Sequence[int],
        hidden_dim: int = 256,
        subgraph_dim: int = 0,
        pool_size: int = 5,
        nms_thresh: float = 0.5,
        num_mps: int = 1,
        enlarge_subgraph_boxes: bool = False,
        spatial_norm: str = "softmax",
        sri_kernel_size: int = 1,
        dropout: float = 0.0,
        sampling_ratio: int = 0,
        pooler_type: str = "ROIAlignV2",
    ):
        """
        Args:
            obj_dim: size of the RoI features.
            num_classes: C, real object classes.
            in_features, in_channels, feature_strides: backbone maps the subgraph features
                are pooled from (the RoI heads' in-features), their channels and strides.
            hidden_dim: H, object vector size (also the SRI output size).
            subgraph_dim: channels of the subgraph maps; 0 = ``hidden_dim // 2``.
            pool_size: P, side of the subgraph maps.
            nms_thresh: union-box IoU above which pairs share a subgraph.
            num_mps: rounds of spatial-weighted message passing (0 = none).
            enlarge_subgraph_boxes: subgraph box covers all its pairs' union boxes (False:
                the representative pair's union box, as in the paper).
            spatial_norm: object -> subgraph attention over locations, "softmax"/"sigmoid".
            sri_kernel_size: side of the object-generated depth-wise kernels (odd).
            dropout: on the object vectors.
        """
        super().__init__()
        if num_mps < 0:
            raise ValueError(f"F-Net num_mps must be >= 0, got {num_mps}")
        if not 0.0 <= nms_thresh <= 1.0:
            raise ValueError(f"F-Net nms_thresh must be in [0, 1], got {nms_thresh}")
        map_dim = subgraph_dim or max(hidden_dim // 2, 1)
        self.nms_thresh = float(nms_thresh)
        self.enlarge = bool(enlarge_subgraph_boxes)
        self.obj_proj = nn.Sequential(
            nn.Linear(obj_dim, hidden_dim), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )
        self.subgraph_features = SubgraphFeatures(
            in_features,
            feature_strides,
            in_channels,
            out_channels=map_dim,
            pool_size=pool_size,
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
        )
        self.mps = nn.ModuleList(
            SpatialMessagePassing(hidden_dim, map_dim, map_dim, spatial_norm)
            for _ in range(num_mps)
        )
        self.sri = SpatialRelationInference(
            hidden_dim, map_dim, pool_size, max(map_dim // 2, 1), hidden_dim, sri_kernel_size
        )
        self.classifier = nn.Linear(hidden_dim, num_classes)
        self.pair_dim = self.sri.out_dim

    @classmethod
    def from_config(cls, cfg, obj_dim, union_dim):
        m = cfg.MODEL.SGG
        names = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        shapes = backbone_feature_shapes(cfg, names)
        channels = {shapes[n][0] for n in names}
        if len(channels) != 1:
            raise ValueError(f"F-Net pools from maps of one width; IN_FEATURES have {shapes}")
        return {
            "obj_dim": obj_dim,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "in_features": names,
            "in_channels": channels.pop(),
            "feature_strides": [shapes[n][1] for n in names],
            "hidden_dim": m.CONTEXT_HIDDEN_DIM,
            "pool_size": m.FNET.SUBGRAPH_POOL_SIZE,
            "nms_thresh": m.FNET.SUBGRAPH_NMS_THRESH,
            "num_mps": m.FNET.NUM_MPS,
            "dropout": m.CONTEXT_DROPOUT,
            "sampling_ratio": cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
            "pooler_type": cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
        }

    def forward(self, inputs: ContextInputs) -> ContextOutputs:
        """
        Returns:
            ``obj_logits`` (N, C) and ``obj_repr`` (N, H) from the final object vectors;
            ``pair_features`` (R, pair_dim); ``extras``: ``pair_to_subgraph`` (R,) and
            ``num_subgraphs`` (per image).
        """
        if inputs.features is None:
            raise ValueError("FactorizableNetContext needs inputs.features (backbone maps)")
        num_pairs: List[int] = list(inputs.num_pairs)
        clusters = cluster_subgraphs(
            inputs.boxes,
            inputs.pairs,
            num_pairs,
            object_scores(inputs.obj_logits, inputs.gt_labels),
            self.nms_thresh,
            self.enlarge,
        )
        maps = self.subgraph_features(inputs.features, clusters.boxes, clusters.num_subgraphs)
        links = subgraph_incidence(inputs.pairs, clusters, inputs.num_objs)
        x = self.obj_proj(inputs.obj_features)
        for layer in self.mps:
            x, maps = layer(x, maps, links)
        pair_features = self.sri(x, maps, inputs.pairs, clusters.pair_to_subgraph)
        return ContextOutputs(
            obj_logits=self.classifier(x),
            pair_features=pair_features,
            extras={
                "pair_to_subgraph": clusters.pair_to_subgraph,
                "num_subgraphs": clusters.num_subgraphs,
            },
            obj_repr=x,
        )
