"""Construction helpers shared by the relation stage and the joint detector."""

from typing import Optional

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import build_box_head
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from ...config import check_choice
from .module import SegmentationGrounding

__all__ = [
    "with_num_classes",
    "build_aux_box_head",
    "build_aux_box_heads",
    "build_aux_box_predictor",
    "build_grounding",
]

AUX_BOX_HEADS = ("shared", "separate")


def with_num_classes(cfg, num_classes: int):
    """A copy of ``cfg`` with ``MODEL.ROI_HEADS.NUM_CLASSES = num_classes`` (to build
    Detectron2 heads over the auxiliary classes from the same settings)."""
    out = cfg.clone()
    out.defrost()
    out.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    out.freeze()
    return out


def build_aux_box_predictor(cfg, box_head_shape) -> FastRCNNOutputLayers:
    """Detectron2's box predictor over ``MODEL.SGG.GROUNDING.AUX_NUM_CLASSES`` classes."""
    aux_cfg = with_num_classes(cfg, cfg.MODEL.SGG.GROUNDING.AUX_NUM_CLASSES)
    return FastRCNNOutputLayers(aux_cfg, box_head_shape)


def build_aux_box_head(cfg, input_shape, in_features) -> Optional[torch.nn.Module]:
    """The auxiliary images' own box head (``MODEL.SGG.GROUNDING.AUX_BOX_HEAD: separate``):
    Detectron2's ``ROI_BOX_HEAD`` architecture on the same pooled (C, R, R) features; None
    when the box head is shared.

    Args:
        input_shape: backbone map name -> ``ShapeSpec``.
        in_features: the box pooler's map names.
    """
    kind = cfg.MODEL.SGG.GROUNDING.AUX_BOX_HEAD
    check_choice("MODEL.SGG.GROUNDING.AUX_BOX_HEAD", kind, AUX_BOX_HEADS)
    if kind == "shared":
        return None
    side = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
    pooled = ShapeSpec(channels=input_shape[in_features[0]].channels, height=side, width=side)
    return build_box_head(cfg, pooled)


def build_grounding(cfg, roi_heads_kwargs: dict, context, union_dim: int, input_shape) -> dict:
    """Grounding arguments of ``SceneGraphROIHeads`` (``grounding``, ``aux_box_predictor``,
    ``aux_box_head``).

    Args:
        roi_heads_kwargs: the ROI heads' ``from_config`` dict so far (box and mask heads).
        context: the built context model (its ``obj_repr`` width sizes the refinement).
        union_dim: width of the union-box features.
        input_shape: the ROI heads' input shapes (backbone map name -> ``ShapeSpec``).

    Raises:
        ValueError: the mask head is missing or cannot transfer masks.
    """
    mask_head = roi_heads_kwargs.get("mask_head")
    if mask_head is None or not hasattr(mask_head, "transfer"):
        raise ValueError(
            "MODEL.SGG.GROUNDING.ENABLED needs MODEL.MASK_ON: True and "
            "MODEL.ROI_MASK_HEAD.NAME: 'MaskTransferHead'"
        )
    channels = roi_heads_kwargs["box_head"].output_shape.channels
    grounding = SegmentationGrounding(cfg, channels, union_dim, context, input_shape)
    return {"grounding": grounding, **build_aux_box_heads(cfg, input_shape, roi_heads_kwargs)}


def build_aux_box_heads(cfg, input_shape, roi_heads_kwargs: dict) -> dict:
    """The auxiliary classes' box predictor and (``GROUNDING.AUX_BOX_HEAD: separate``) box
    head, as ROI-heads arguments ``aux_box_predictor`` / ``aux_box_head``, for the joint
    detector and the grounded relation stage alike.

    Args:
        input_shape: the ROI heads' input shapes (backbone map name -> ``ShapeSpec``).
        roi_heads_kwargs: the ROI heads' ``from_config`` dict so far (``box_head``,
            ``box_in_features``).
    """
    shape = roi_heads_kwargs["box_head"].output_shape
    return {
        "aux_box_predictor": build_aux_box_predictor(cfg, shape),
        "aux_box_head": build_aux_box_head(cfg, input_shape, roi_heads_kwargs["box_in_features"]),
    }
