"""ResNet-18/34 (BasicBlock) FPN backbone of any width, for small CPU-trained detectors.

Detectron2's ``build_resnet_backbone`` requires ``MODEL.RESNETS.RES2_OUT_CHANNELS = 64``
for depths 18 and 34. This builder takes the same keys (``DEPTH`` 18 or 34,
``STEM_OUT_CHANNELS``, ``RES2_OUT_CHANNELS``, ``NORM``, ``OUT_FEATURES``,
``MODEL.BACKBONE.FREEZE_AT``) and honours any ``RES2_OUT_CHANNELS``; each later stage
doubles it, as in the paper's ResNet. With ``RES2_OUT_CHANNELS: 64`` it builds exactly
Detectron2's R18/R34 (same modules, same parameter names), so checkpoints load either way.

Config: ``MODEL.BACKBONE.NAME: "build_basic_resnet_fpn_backbone"``; the FPN keys as for
``build_resnet_fpn_backbone``. Output: ``{"p2".."p6": (B, FPN.OUT_CHANNELS, H/s, W/s)}``.
"""

from __future__ import annotations

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, ResNet

BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


def build_basic_resnet(cfg, input_shape: ShapeSpec) -> ResNet:
    """The bottom-up ResNet (stages res2..res5 of BasicBlocks, widths w, 2w, 4w, 8w)."""
    r = cfg.MODEL.RESNETS
    if r.DEPTH not in BLOCKS_PER_STAGE:
        raise ValueError(
            f"MODEL.RESNETS.DEPTH = {r.DEPTH}: build_basic_resnet_fpn_backbone builds "
            f"BasicBlock ResNets, depth 18 or 34 (use build_resnet_fpn_backbone for 50+)"
        )
    stem = BasicStem(input_shape.channels, r.STEM_OUT_CHANNELS, norm=r.NORM)
    stages, in_channels, out_channels = [], r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS
    for idx, num_blocks in enumerate(BLOCKS_PER_STAGE[r.DEPTH]):
        first_stride = 1 if idx == 0 else 2
        stages.append(
            ResNet.make_stage(
                block_class=BasicBlock,
                num_blocks=num_blocks,
                stride_per_block=[first_stride] + [1] * (num_blocks - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                norm=r.NORM,
            )
        )
        in_channels, out_channels = out_channels, out_channels * 2
    return ResNet(stem, stages, out_features=r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_basic_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """FPN (P2..P6) on :func:`build_basic_resnet`, as Detectron2's ``build_resnet_fpn_backbone``."""
    return FPN(
        bottom_up=build_basic_resnet(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
