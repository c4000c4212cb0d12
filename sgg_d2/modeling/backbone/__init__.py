"""Backbones the seed papers use beyond Detectron2's own (registering only)."""

from .vgg import VGG16, build_vgg16_backbone

__all__ = ["VGG16", "build_vgg16_backbone"]
