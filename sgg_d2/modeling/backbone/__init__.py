"""Backbones the seed papers use beyond Detectron2's own (registering only)."""

from .basic_resnet import build_basic_resnet, build_basic_resnet_fpn_backbone
from .vgg import VGG16, build_vgg16_backbone

__all__ = ["VGG16", "build_basic_resnet", "build_basic_resnet_fpn_backbone", "build_vgg16_backbone"]
