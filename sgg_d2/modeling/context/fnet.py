"""Factorizable Net (Li, Ouyang, Zhou, Shi, Zhang, Wang, "Factorizable Net: An Efficient
Subgraph-based Framework for Scene Graph Generation", ECCV 2018).

The fully-connected graph of objects is factorised into *subgraphs*: candidate pairs
whose union boxes overlap (IoU > ``nms_thresh``, NMS over union boxes scored by the
product of the two objects' scores) share one subgraph, and every pair is assigned to the
kept union box most overlapping its own (``fnet_subgraph``). Clustering always runs on
*all* ordered pairs of the image's objects, in training too, so training and test see the
same subgraphs for the same boxes; only the sampled pairs are then read out (and get the
loss). Each subgraph has a 2-D feature map (RoIAlign of its box to P x P, two 3x3 convs),
each object a vector (its RoI feature, projected). ``num_mps`` rounds of spatial-weighted
message passing exchange information along the object-subgraph links (each object attends
over its subgraphs' average-pooled vectors and adds FC(ReLU s~), the paper's form; objects
paint themselves onto subgraph maps, the attention normalised across the objects of the
subgraph at every location). Spatial-sensitive relation inference then reads each pair's
feature off its subgraph map, with the subject's and object's vectors as depth-wise conv
kernels and the three maps concatenated [S(i); S_k; S(j)] (``fnet_modules``,
``fnet_sri``).

Relation features come from S subgraph maps instead of R per-pair union-box features
(S << R), so ``needs_union_features`` is False: the cost the paper removes.

Differences from the paper, each a documented choice: the detector is frozen (two-stage
recipe; the paper trains RPN and F-Net jointly); the subgraph maps are pooled from the
FPN levels of the Detectron2 backbone; the SRI read-out is a linear layer to the predicate
logits followed by the relation predictor's own (square) linear layer, which compose into
the paper's single FC; a ReLU on the concatenated SRI map. Earlier forms as flags (issue
29): ``MODEL.SGG.FNET.SMP_OBJECT_UPDATE: "spatial"`` (attention over every location of the
linked subgraphs, ``relu(x + W m)``) and ``SRI_COMBINE: "sum"`` (the three maps summed,
one shared read-out; fewer parameters, about 2.4x faster SRI on CPU, docs/MODELS.md).
Ablation flags: ``num_mps``, ``spatial_norm`` and the SRI variant
(:class:`~.fnet_modules.SRIVariant`: ``reduce_first``, ``extra_fc``, ``object_shortcut``;
the earlier recipe: 1 round, 256/128 channels, kernel-first SRI (the paper is ambiguous
about the order) with the extra FC and object shortcut, frequency bias on).
"""

from typing import Dict, List, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import build_backbone
from torch import nn

from ...structures import all_ordered_pairs
from .build import CONTEXT_REGISTRY, ContextInputs, ContextModel, ContextOutputs
from .fnet_modules import PAPER_SRI, SpatialMessagePassing, SpatialRelationInference, SRIVariant
from .fnet_subgraph import SubgraphFeatures, cluster_subgraphs, object_scores, subgraph_incidence

__all__ = [
    "FactorizableNetContext",
    "all_candidate_pairs",
    "backbone_feature_shapes",
    "locate_pairs",
]


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


def all_candidate_pairs(num_objs: Sequence[int], device) -> Tuple[torch.Tensor, List[int]]:
    """All ordered pairs (i != j) of each image's objects, global indices, images in order.

    Returns:
        ``(pairs (M, 2) int64, pairs per image)``; M = sum n_i (n_i - 1).
    """
    offsets = [0]
    for n in num_objs[:-1]:
        offsets.append(offsets[-1] + n)
    pairs = [all_ordered_pairs(n, device=device) + o for n, o in zip(num_objs, offsets)]
    if not pairs:
        return torch.zeros((0, 2), dtype=torch.int64, device=device), []
    return torch.cat(pairs), [n * (n - 1) for n in num_objs]


def locate_pairs(pairs: torch.Tensor, candidates: torch.Tensor, num_objects: int) -> torch.Tensor:
    """(R,) row of each of ``pairs`` (R, 2) in ``candidates`` (M, 2), both global indices.

    Raises:
        ValueError: a pair that is not a candidate (e.g. i == j).
    """
    key = candidates[:, 0] * num_objects + candidates[:, 1]
    sorted_key, order = key.sort()
    query = pairs[:, 0] * num_objects + pairs[:, 1]
    pos = torch.searchsorted(sorted_key, query).clamp(max=max(len(key) - 1, 0))
    if len(query) and (len(key) == 0 or not torch.equal(sorted_key[pos], query)):
        raise ValueError("F-Net: a pair to score is not an ordered pair of distinct objects")
    return order[pos]


@CONTEXT_REGISTRY.register()
class FactorizableNetContext(ContextModel):
    """Subgraph clustering, SMP and SRI. See the module docstring.

    ``pair_dim``: the SRI read-out size (``rel_dim``), plus ``2 * hidden_dim`` with the
    object shortcut.
    """

    needs_union_features = False
    paper_frequency_bias = False  # F-Net's predicate scores come from the SRI alone

    @configurable
    def __init__(
        self,
        *,
        in_features: Sequence[str],
        in_channels: int,
        feature_strides: Sequence[int],
        subgraph_dim: int = 512,
        bottleneck_dim: int = 256,
        rel_dim: int = 51,
        pool_size: int = 5,
        nms_thresh: float = 0.5,
        num_mps: int = 2,
        enlarge_subgraph_boxes: bool = False,
        spatial_norm: str = "softmax",
        smp_object_update: str = "paper",
        sri: SRIVariant = PAPER_SRI,
        sampling_ratio: int = 0,
        pooler_type: str = "ROIAlignV2",
        **shared,
    ):
        """
        Args:
            in_features, in_channels, feature_strides: backbone maps the subgraph features
                are pooled from (the RoI heads' in-features), their channels and strides.
            subgraph_dim: channels of the subgraph maps (paper: 512).
            bottleneck_dim: channels of the SRI bottleneck (paper: 256).
            rel_dim: size of the SRI read-out (paper: the P + 1 predicate logits; with
                ``sri.extra_fc`` a hidden size).
            pool_size: P, side of the subgraph maps.
            nms_thresh: union-box IoU above which pairs share a subgraph.
            num_mps: rounds of spatial-weighted message passing (paper: 2; 0 = none).
            enlarge_subgraph_boxes: subgraph box covers all its pairs' union boxes (False:
                the representative pair's union box, as in the paper).
            spatial_norm: object -> subgraph attention, "softmax" across the subgraph's
                objects at each location (paper) or "sigmoid" gates.
            smp_object_update: subgraph -> object message, "paper" (pooled subgraph
                vectors, attention over the linked subgraphs, residual update) or
                "spatial" (attention over all locations, relu update; earlier form).
            sri: the relation inference variant (default: the paper's), see
                :class:`~.fnet_modules.SRIVariant`.
            sampling_ratio, pooler_type: of the subgraph maps' RoI pooler.
            shared: the widths of :class:`ContextModel` (``hidden_dim``: H, the object
                vector size; ``dropout`` on the object vectors; ``union_dim`` and
                ``embed_dim`` are unused).
        """
        super().__init__(**shared)
        if num_mps < 0:
            raise ValueError(f"F-Net num_mps must be >= 0, got {num_mps}")
        if not 0.0 <= nms_thresh <= 1.0:
            raise ValueError(f"F-Net nms_thresh must be in [0, 1], got {nms_thresh}")
        for name, v in [("subgraph_dim", subgraph_dim), ("bottleneck_dim", bottleneck_dim)]:
            if v < 1:
                raise ValueError(f"F-Net {name} must be >= 1, got {v}")
        self.nms_thresh = float(nms_thresh)
        self.enlarge = bool(enlarge_subgraph_boxes)
        hidden_dim = self.hidden_dim
        self.obj_proj = nn.Sequential(
            nn.Linear(self.obj_dim, hidden_dim), nn.ReLU(inplace=True), nn.Dropout(self.dropout_p)
        )
        self.subgraph_features = SubgraphFeatures(
            in_features,
            feature_strides,
            in_channels,
            out_channels=subgraph_dim,
            pool_size=pool_size,
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
        )
        self.mps = nn.ModuleList(
            SpatialMessagePassing(
                hidden_dim, subgraph_dim, subgraph_dim, spatial_norm, smp_object_update
            )
            for _ in range(num_mps)
        )
        self.sri = SpatialRelationInference(
            hidden_dim, subgraph_dim, pool_size, bottleneck_dim, rel_dim, sri
        )
        self.classifier = nn.Linear(hidden_dim, self.num_classes)
        self.pair_dim = self.sri.out_dim

    @classmethod
    def model_config(cls, cfg) -> dict:
        """F-Net's own arguments: ``MODEL.SGG.FNET``, the RoI heads' backbone maps (shapes
        read from the configured backbone) and the box pooler's settings."""
        m = cfg.MODEL.SGG
        f = m.FNET
        names = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        shapes = backbone_feature_shapes(cfg, names)
        channels = {shapes[n][0] for n in names}
        if len(channels) != 1:
            raise ValueError(f"F-Net pools from maps of one width; IN_FEATURES have {shapes}")
        return {
            "in_features": names,
            "in_channels": channels.pop(),
            "feature_strides": [shapes[n][1] for n in names],
            "subgraph_dim": f.SUBGRAPH_DIM,
            "bottleneck_dim": f.BOTTLENECK_DIM,
            # the paper's FC scores the predicates; the extra FC is a hidden layer
            "rel_dim": m.CONTEXT_HIDDEN_DIM if f.SRI_EXTRA_FC else m.NUM_PREDICATES + 1,
            "pool_size": f.SUBGRAPH_POOL_SIZE,
            "nms_thresh": f.SUBGRAPH_NMS_THRESH,
            "num_mps": f.NUM_MPS,
            "spatial_norm": f.SPATIAL_NORM,
            "smp_object_update": f.SMP_OBJECT_UPDATE,
            "sri": SRIVariant(
                reduce_first=f.SRI_REDUCE_FIRST,
                extra_fc=f.SRI_EXTRA_FC,
                object_shortcut=f.SRI_OBJECT_SHORTCUT,
                combine=f.SRI_COMBINE,
            ),
            "sampling_ratio": cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
            "pooler_type": cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
        }

    def cluster(self, inputs: ContextInputs):
        """Subgraphs of all candidate pairs of each image (train and test alike): the
        ROI heads' ``inputs.training.all_pairs`` in training, else every ordered pair
        (i != j) of each image (the same set), so the same boxes always give the same
        subgraphs.

        Returns:
            ``(clusters, links, pair_to_subgraph (R,))``: :class:`SubgraphClusters` and
            :class:`SubgraphIncidence` of all candidate pairs, and the subgraph of each of
            ``inputs.pairs``.
        """
        t = inputs.training
        if t is not None and t.all_pairs is not None:  # training: the heads' candidates
            candidates, num_candidates, rows = t.all_pairs, list(t.num_all_pairs), t.pair_index
        else:
            candidates, num_candidates = all_candidate_pairs(inputs.num_objs, inputs.boxes.device)
            rows = locate_pairs(inputs.pairs, candidates, len(inputs.boxes))
        clusters = cluster_subgraphs(
            inputs.boxes,
            candidates,
            num_candidates,
            object_scores(inputs.obj_logits, inputs.gt_labels),
            self.nms_thresh,
            self.enlarge,
        )
        links = subgraph_incidence(candidates, clusters, inputs.num_objs)
        return clusters, links, clusters.pair_to_subgraph[rows]

    def forward(self, inputs: ContextInputs) -> ContextOutputs:
        """
        Returns:
            ``obj_logits`` (N, C) and ``obj_repr`` (N, H) from the final object vectors;
            ``pair_features`` (R, pair_dim) for ``inputs.pairs``; ``extras``:
            ``pair_to_subgraph`` (R,), ``subgraph_boxes`` (S, 4) and ``num_subgraphs``.
        """
        if inputs.features is None:
            raise ValueError("FactorizableNetContext needs inputs.features (backbone maps)")
        clusters, links, pair_to_subgraph = self.cluster(inputs)
        maps = self.subgraph_features(inputs.features, clusters.boxes, clusters.num_subgraphs)
        x = self.obj_proj(inputs.obj_features)
        for layer in self.mps:
            x, maps = layer(x, maps, links)
        pair_features = self.sri(x, maps, inputs.pairs, pair_to_subgraph)
        return ContextOutputs(
            obj_logits=self.classifier(x),
            pair_features=pair_features,
            extras={
                "pair_to_subgraph": pair_to_subgraph,
                "subgraph_boxes": clusters.boxes,
                "num_subgraphs": clusters.num_subgraphs,
            },
            obj_repr=x,
        )
