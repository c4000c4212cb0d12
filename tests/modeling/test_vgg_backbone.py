"""The registered VGG-16 backbone: shapes, stride, freezing."""

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone

import sgg_d2.modeling  # noqa: F401
from sgg_d2 import add_sgg_config


def vgg_cfg(freeze_at=0):
    cfg = get_cfg()
    add_sgg_config(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_vgg16_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    return cfg


def test_output_stride_and_channels():
    backbone = build_backbone(vgg_cfg())
    out = backbone(torch.zeros(1, 3, 64, 96))["vgg_conv5"]
    assert out.shape == (1, 512, 4, 6)
    assert backbone.output_shape()["vgg_conv5"].stride == 16


def test_freeze_first_two_blocks():
    backbone = build_backbone(vgg_cfg(freeze_at=2))
    convs = [m for m in backbone.features if isinstance(m, torch.nn.Conv2d)]
    frozen = [not m.weight.requires_grad for m in convs]
    assert frozen == [True] * 4 + [False] * 9  # blocks 1-2 hold 2 + 2 convs
