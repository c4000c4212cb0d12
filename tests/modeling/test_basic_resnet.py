"""The any-width BasicBlock ResNet-FPN backbone (build_basic_resnet_fpn_backbone)."""

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone

import sgg_d2.modeling  # noqa: F401
from sgg_d2 import add_sgg_config


def resnet_cfg(name, width, fpn=32, depth=18):
    cfg = get_cfg()
    add_sgg_config(cfg)
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = width
    cfg.MODEL.RESNETS.NORM = "GN"
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = fpn
    cfg.MODEL.FPN.NORM = "GN"
    return cfg


def test_width_doubles_per_stage_and_fpn_shapes():
    backbone = build_backbone(resnet_cfg("build_basic_resnet_fpn_backbone", width=32))
    widths = [backbone.bottom_up.output_shape()[f"res{i}"].channels for i in range(2, 6)]
    assert widths == [32, 64, 128, 256]
    out = backbone(torch.zeros(2, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "p2": (2, 32, 16, 24),
        "p3": (2, 32, 8, 12),
        "p4": (2, 32, 4, 6),
        "p5": (2, 32, 2, 3),
        "p6": (2, 32, 1, 2),
    }


def test_width_64_is_detectron2s_r18_parameter_for_parameter():
    ours = build_backbone(resnet_cfg("build_basic_resnet_fpn_backbone", width=64, fpn=64))
    theirs = build_backbone(resnet_cfg("build_resnet_fpn_backbone", width=64, fpn=64))
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(ours.state_dict())  # a checkpoint of one loads into the other
    x = torch.rand(1, 3, 64, 64)
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x)["p3"], theirs(x)["p3"])


def test_narrow_r18_is_smaller_and_trains():
    narrow = build_backbone(resnet_cfg("build_basic_resnet_fpn_backbone", width=32))
    wide = build_backbone(resnet_cfg("build_basic_resnet_fpn_backbone", width=64))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(narrow) < count(wide) / 3
    out = narrow(torch.rand(1, 3, 64, 64))
    sum(v.mean() for v in out.values()).backward()
    assert narrow.bottom_up.stem.conv1.weight.grad.abs().sum() > 0


def test_depth_50_is_refused_with_the_key():
    with pytest.raises(ValueError, match="MODEL.RESNETS.DEPTH = 50"):
        build_backbone(resnet_cfg("build_basic_resnet_fpn_backbone", width=32, depth=50))
