"""Union-box RoI features of object pairs, computed in chunks to bound memory.

Optionally pooled from a separate *relation backbone* (``MODEL.SGG.RELATION_BACKBONE``,
RelDN's "conv body rel"): a second copy of the detector's backbone, initialised from the
detector checkpoint (:func:`copy_detector_backbone`) and trained with the relation stage,
while object features keep coming from the frozen detector.
"""

from typing import Dict, List, Optional

import torch
from detectron2.modeling import build_backbone
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes
from torch import nn

from .geometry import PAIR_GEOMETRY_DIM, pair_geometry, union_boxes

__all__ = ["UnionFeatureExtractor", "build_relation_backbone", "copy_detector_backbone"]


class UnionFeatureExtractor(nn.Module):
    """RoIAlign over each pair's union box, an FC head, plus an embedding of the layout.

    Pooling all union boxes of 80 detections at once (6,320 pairs x C x 7 x 7) costs
    hundreds of MB; the pairs are processed ``chunk_size`` at a time, so peak memory is
    bounded by the chunk and only the (R, out_dim) result is kept.
    """

    def __init__(
        self,
        in_features: List[str],
        strides: List[int],
        in_channels: int,
        out_dim: int,
        pooler_resolution: int = 7,
        sampling_ratio: int = 0,
        pooler_type: str = "ROIAlignV2",
        chunk_size: int = 1024,
        backbone: Optional[nn.Module] = None,
    ):
        """
        Args:
            in_features: feature map names to pool from (e.g. FPN "p2".."p5").
            strides: stride of each of those maps.
            in_channels: channels of the feature maps.
            out_dim: size of the returned feature of each pair.
            chunk_size: pairs pooled at once.
            backbone: the relation backbone (same architecture as the detector's, giving
                ``in_features``), or None to pool from the detector's maps.
        """
        super().__init__()
        self.backbone = backbone
        self.in_features = list(in_features)
        self.chunk_size = int(chunk_size)
        self.pooler = ROIPooler(
            output_size=pooler_resolution,
            scales=tuple(1.0 / s for s in strides),
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
        )
        flat = in_channels * pooler_resolution**2
        self.head = nn.Sequential(
            nn.Linear(flat, out_dim), nn.ReLU(inplace=True), nn.Linear(out_dim, out_dim)
        )
        self.layout = nn.Sequential(
            nn.Linear(PAIR_GEOMETRY_DIM, 128), nn.ReLU(inplace=True), nn.Linear(128, out_dim)
        )
        self.out_dim = out_dim

    def forward(
        self,
        features: Dict[str, torch.Tensor],
        boxes: List[torch.Tensor],
        pairs: List[torch.Tensor],
        image_sizes: List[tuple],
        images: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            features: the detector's backbone maps, each (B, C, H_l, W_l).
            boxes: per image (N_i, 4) XYXY object boxes.
            pairs: per image (R_i, 2) int64 (subject, object) indices into that image's boxes.
            image_sizes: per image (height, width).
            images: (B, 3, H, W) normalised network input; needed with a relation backbone,
                whose maps then replace ``features``.

        Returns:
            (sum R_i, out_dim) pair features, images concatenated in order.
        """
        if self.backbone is not None:
            if images is None:
                raise ValueError(
                    "MODEL.SGG.RELATION_BACKBONE.ENABLED: the union features need the images "
                    "(ContextInputs.images), got None"
                )
            features = self.backbone(images)
        maps = [features[f] for f in self.in_features]
        out = []
        for i, (b, p) in enumerate(zip(boxes, pairs)):
            per_image = [m[i : i + 1] for m in maps]
            if torch.is_grad_enabled():
                visual = self._visual(per_image, b, p)
            else:
                # (i, j) and (j, i) share their union box: pool each unordered pair once
                key = torch.minimum(p[:, 0], p[:, 1]) * len(b) + torch.maximum(p[:, 0], p[:, 1])
                unique, inverse = torch.unique(key, return_inverse=True)
                lo, hi = unique // max(len(b), 1), unique % max(len(b), 1)
                visual = self._visual(per_image, b, torch.stack([lo, hi], 1))[inverse]
            layout = self.layout(pair_geometry(b[p[:, 0]], b[p[:, 1]], image_sizes[i]))
            out.append(torch.relu(visual + layout))
        if not out:
            return maps[0].new_zeros((0, self.out_dim))
        return torch.cat(out)

    def _visual(self, maps: List[torch.Tensor], boxes: torch.Tensor, pairs: torch.Tensor):
        """(R, out_dim) FC head of the RoIAlign features of each pair's union box, pooled
        ``chunk_size`` pairs at a time from one image's ``maps`` (each (1, C, H_l, W_l))."""
        visual = []
        for start in range(0, len(pairs), self.chunk_size):
            chunk = pairs[start : start + self.chunk_size]
            union = Boxes(union_boxes(boxes[chunk[:, 0]], boxes[chunk[:, 1]]))
            visual.append(self.head(self.pooler(maps, [union]).flatten(1)))
        if not visual:
            return maps[0].new_zeros((0, self.out_dim))
        return torch.cat(visual)


def build_relation_backbone(cfg) -> Optional[nn.Module]:
    """A second backbone of the detector's architecture (``MODEL.BACKBONE``) when
    ``MODEL.SGG.RELATION_BACKBONE.ENABLED``, else None. Its weights come from the detector
    checkpoint through :func:`copy_detector_backbone`."""
    if not cfg.MODEL.SGG.RELATION_BACKBONE.ENABLED:
        return None
    return build_backbone(cfg)


def copy_detector_backbone(model: nn.Module) -> int:
    """Initialise every relation backbone of ``model`` from ``model.backbone``.

    Called right after the detector checkpoint is loaded (``load_detector_weights``), so
    that the relation backbone starts equal to the trained detector backbone (RelDN:
    "initialised from the detector, then fine-tuned"). Parameters frozen in the detector
    (``MODEL.BACKBONE.FREEZE_AT``) keep the relation backbone's own ``requires_grad``.

    Returns:
        The number of relation backbones initialised (0 when none is configured).
    """
    detector = getattr(model, "backbone", None)
    count = 0
    for module in model.modules():
        if isinstance(module, UnionFeatureExtractor) and module.backbone is not None:
            if detector is None:
                raise ValueError("a relation backbone needs the model's detector `backbone`")
            module.backbone.load_state_dict(detector.state_dict())
            count += 1
    return count
