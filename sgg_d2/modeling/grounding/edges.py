"""Grounded edges: the relation mask of each pair, fused with its union-box feature.

For a pair (s, o) with union box u: both objects' masks are resampled into u's frame
(:func:`masks_in_frames`), each smoothed by its own learned Gaussian kernel, then combined:

- ``"product"`` (the paper): ``(K_s * m_s) . (K_o * m_o)`` (where both objects are);
- ``"average"``: ``((K_s * m_s) + (K_o * m_o)) / 2``;
- ``"union"``: ``a + b - a b`` (probabilistic "or" of the two smoothed masks).

``"product"`` is Eq. 6 (symmetric in subject and object); ``"average"`` and ``"union"`` are
ablations, not the paper.

The relation mask is encoded and fused with the union-box feature u (same width):
``f_E = u + W enc(relation mask)`` with W zero-initialised (``FUSION: "residual"``, the
default: the identity at initialisation) or ``ReLU(W [u, enc(relation mask)])``
(``"concat"``, the earlier form); :class:`~.nodes.MaskFusion`.
"""

import torch
from torch import nn

from ..relation.geometry import union_boxes
from .kernels import KernelParameterNet, gaussian_kernels, smooth_masks
from .nodes import MaskEncoder, MaskFusion
from .union_frame import masks_in_frames

__all__ = ["EDGE_COMBINATIONS", "combine_masks", "EdgeGrounding"]

EDGE_COMBINATIONS = ("product", "average", "union")


def combine_masks(a: torch.Tensor, b: torch.Tensor, how: str) -> torch.Tensor:
    """Combine two (R, H, W) smoothed masks (see the module docstring)."""
    if how == "product":
        return a * b
    if how == "average":
        return 0.5 * (a + b)
    if how == "union":
        return a + b - a * b
    raise ValueError(
        f"edge combination {how!r} (MODEL.SGG.GROUNDING.EDGE_COMBINE); "
        f"valid: {', '.join(EDGE_COMBINATIONS)}"
    )


class EdgeGrounding(nn.Module):
    """Relation masks from object masks + Gaussian kernels, fused with union features."""

    def __init__(
        self,
        num_classes: int,
        union_dim: int,
        frame_size: int = 32,
        kernel_size: int = 9,
        combine: str = "product",
        mask_dim: int = 128,
        fusion: str = "residual",
    ):
        """
        Args:
            num_classes: C, classes of the distributions the kernels are predicted from.
            union_dim: width of the union-box features (and of the output).
            frame_size: side of the union-box frame, in pixels.
            kernel_size: odd side of the Gaussian kernels.
            combine: one of :data:`EDGE_COMBINATIONS`.
            mask_dim: width of the relation-mask encoding.
            fusion: ``"residual"`` or ``"concat"`` (:class:`~.nodes.MaskFusion`).
        """
        super().__init__()
        if combine not in EDGE_COMBINATIONS:
            raise ValueError(
                f"edge combination {combine!r} (MODEL.SGG.GROUNDING.EDGE_COMBINE); "
                f"valid: {', '.join(EDGE_COMBINATIONS)}"
            )
        if kernel_size % 2 != 1:
            raise ValueError(f"MODEL.SGG.GROUNDING.KERNEL_SIZE must be odd, got {kernel_size}")
        self.frame_size, self.kernel_size, self.combine = frame_size, kernel_size, combine
        self.kernel_net = KernelParameterNet(num_classes)
        self.encoder = MaskEncoder(mask_dim)
        self.fuse = MaskFusion(union_dim, mask_dim, fusion)

    def relation_masks(
        self,
        masks: torch.Tensor,
        boxes: torch.Tensor,
        class_probs: torch.Tensor,
        pairs: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            masks: (N, M, M) object mask probabilities in their boxes' frames.
            boxes: (N, 4) XYXY object boxes (image coordinates).
            class_probs: (N, C) class distribution of each object (kernel parameters).
            pairs: (R, 2) int64 (subject, object) indices into the N objects.

        Returns:
            (R, S, S) relation masks in the union boxes' frames, S = ``frame_size``.
        """
        s, o = pairs[:, 0], pairs[:, 1]
        frames = union_boxes(boxes[s], boxes[o])
        kernels = gaussian_kernels(*self.kernel_net(class_probs), self.kernel_size)
        smoothed = []
        for idx in (s, o):
            placed = masks_in_frames(masks[idx], boxes[idx], frames, self.frame_size)
            smoothed.append(smooth_masks(placed, kernels[idx]))
        return combine_masks(smoothed[0], smoothed[1], self.combine)

    def forward(self, union_features, masks, boxes, class_probs, pairs) -> torch.Tensor:
        """(R, union_dim) union features + relation masks (see :meth:`relation_masks`)
        -> (R, union_dim) grounded edge features."""
        rel = self.relation_masks(masks, boxes, class_probs, pairs)
        return self.fuse(union_features, self.encoder(rel))
