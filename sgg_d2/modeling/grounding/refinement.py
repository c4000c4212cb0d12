"""Mask refinement: a zero-initialised residual on the auxiliary mask logits.

``l' = l + up(f_M'(z_o))`` where ``z_o`` is the context model's object representation
(``ContextOutputs.obj_repr``) and ``f_M'`` a linear layer to a low-resolution residual per
auxiliary class, bilinearly upsampled to the mask head's resolution. ``f_M'`` starts at
zero, so refinement starts as the identity; it is trained with the pixel loss
(:func:`mask_pixel_loss`) on auxiliary images during the relation stage.
"""

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from torch import nn

from ...structures import all_ordered_pairs
from ..relation.geometry import box_layout

__all__ = ["MaskRefinementHead", "mask_pixel_loss", "context_repr_dim"]


class MaskRefinementHead(nn.Module):
    """``obj_repr`` (N, D) -> residual added to aux mask logits (N, d_m, M, M)."""

    def __init__(self, in_dim: int, num_aux_classes: int, resolution: int = 14):
        """
        Args:
            in_dim: D, width of the context model's object representation.
            num_aux_classes: d_m.
            resolution: side of the residual before upsampling.
        """
        super().__init__()
        self.num_aux_classes, self.resolution = num_aux_classes, resolution
        self.residual = nn.Linear(in_dim, num_aux_classes * resolution * resolution)
        nn.init.zeros_(self.residual.weight)
        nn.init.zeros_(self.residual.bias)

    def forward(self, obj_repr: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """
        Args:
            obj_repr: (N, D); mask_logits: (N, d_m, M, M).

        Returns:
            (N, d_m, M, M) refined logits.
        """
        if obj_repr.shape[0] != mask_logits.shape[0]:
            raise ValueError(
                f"obj_repr has {obj_repr.shape[0]} rows for {mask_logits.shape[0]} masks"
            )
        r = self.resolution
        res = self.residual(obj_repr).view(-1, self.num_aux_classes, r, r)
        if (r, r) != tuple(mask_logits.shape[-2:]):
            size = mask_logits.shape[-2:]
            res = F.interpolate(res, size=size, mode="bilinear", align_corners=False)
        return mask_logits + res


def mask_pixel_loss(
    mask_logits: torch.Tensor, classes: torch.Tensor, gt_masks: torch.Tensor
) -> torch.Tensor:
    """Mean per-pixel binary cross-entropy of each object's mask of its GT class.

    Args:
        mask_logits: (N, d_m, M, M); classes: (N,) int64 in [0, d_m).
        gt_masks: (N, M, M) GT masks cropped to the objects' boxes, values in [0, 1].

    Returns:
        scalar; 0 (still in the graph) when N = 0.
    """
    if len(mask_logits) == 0:
        return mask_logits.sum() * 0.0
    picked = mask_logits[torch.arange(len(classes), device=classes.device), classes]
    return F.binary_cross_entropy_with_logits(picked, gt_masks.to(picked.dtype))


def context_repr_dim(
    context: nn.Module,
    obj_dim: int,
    union_dim: int,
    num_classes: int,
    feature_shapes: Optional[Dict[str, ShapeSpec]] = None,
) -> int:
    """Width of ``ContextOutputs.obj_repr`` of a context model.

    The model's ``obj_repr_dim`` attribute when it declares one; otherwise measured with one
    forward pass (eval mode, no gradient) on two dummy objects in a 64 x 64 image whose
    backbone maps (``feature_shapes``: name -> channels and stride) are zeros.

    Raises:
        ValueError: the model gives no ``obj_repr`` (e.g. the Frequency baseline).
    """
    dim = getattr(context, "obj_repr_dim", None)
    if dim is not None:
        return int(dim)
    from ..context.build import ContextInputs

    size = 64
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 8.0, 32.0, 32.0]])
    pairs = all_ordered_pairs(2)
    features = {
        name: torch.zeros(1, s.channels, -(-size // s.stride), -(-size // s.stride))
        for name, s in (feature_shapes or {}).items()
    }
    inputs = ContextInputs(
        obj_features=torch.zeros(2, obj_dim),
        obj_logits=torch.zeros(2, num_classes),
        box_layout=box_layout(boxes, (size, size)),
        boxes=boxes,
        num_objs=[2],
        pairs=pairs,
        num_pairs=[len(pairs)],
        union_features=torch.zeros(len(pairs), union_dim),
        features=features,
        image_sizes=[(size, size)],
    )
    was_training = context.training
    context.train(False)
    with torch.no_grad():
        out = context(inputs)
    context.train(was_training)
    if out.obj_repr is None:
        raise ValueError(
            f"{type(context).__name__} gives no obj_repr: mask refinement "
            "(MODEL.SGG.GROUNDING.REFINE) needs a context model with an object representation"
        )
    return int(out.obj_repr.shape[1])
