"""VGG-16 backbone (Simonyan & Zisserman 2015), as used by IMP, MOTIFS and VCTree's
original detectors: the 13 conv layers of torchvision's VGG-16 without the last max-pool,
one output map ``"vgg_conv5"`` of stride 16 and 512 channels (Faster R-CNN "C4-style":
RPN and RoI heads both read it).

Config: ``MODEL.BACKBONE.NAME: "build_vgg16_backbone"``, ``MODEL.VGG.NORM`` ("" or "BN"),
``MODEL.BACKBONE.FREEZE_AT`` (number of leading conv blocks frozen, 0-5). Weights from a
torchvision VGG-16 state dict load with the key prefix ``backbone.features.``.
"""

import torch
import torchvision
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

__all__ = ["VGG16", "build_vgg16_backbone"]


class VGG16(Backbone):
    """VGG-16 conv body; ``forward(x: (B, 3, H, W)) -> {"vgg_conv5": (B, 512, H/16, W/16)}``."""

    def __init__(self, batch_norm: bool = False, freeze_at: int = 0):
        """
        Args:
            batch_norm: use VGG-16-BN's layers.
            freeze_at: freeze the first ``freeze_at`` conv blocks (0 = none, 5 = all).
        """
        super().__init__()
        factory = torchvision.models.vgg16_bn if batch_norm else torchvision.models.vgg16
        layers = list(factory(weights=None).features.children())[:-1]  # drop the last pool
        self.features = torch.nn.Sequential(*layers)
        pools = [i for i, m in enumerate(layers) if isinstance(m, torch.nn.MaxPool2d)]
        if freeze_at > 0:
            end = pools[freeze_at - 1] if freeze_at <= len(pools) else len(layers)
            for m in layers[:end]:
                m.requires_grad_(False)

    def forward(self, x):
        return {"vgg_conv5": self.features(x)}

    def output_shape(self):
        return {"vgg_conv5": ShapeSpec(channels=512, stride=16)}


@BACKBONE_REGISTRY.register()
def build_vgg16_backbone(cfg, input_shape):
    """Detectron2 backbone builder for :class:`VGG16`."""
    if input_shape.channels != 3:
        raise ValueError(f"VGG-16 expects 3 input channels, got {input_shape.channels}")
    return VGG16(batch_norm=cfg.MODEL.VGG.NORM == "BN", freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)
