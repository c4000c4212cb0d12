"""Mask encoder and grounded nodes: object features from ``[RoI feature, mask]``."""

import torch
from torch import nn

__all__ = ["MaskEncoder", "NodeGrounding"]


class MaskEncoder(nn.Module):
    """(N, H, W) masks -> (N, out_dim): two stride-2 convolutions, 4 x 4 pooling, a linear
    layer (any input side >= 4 works)."""

    def __init__(self, out_dim: int, channels: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(channels * 16, out_dim),
            nn.ReLU(),
        )
        self.out_dim = out_dim

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        if len(masks) == 0:
            return masks.new_zeros((0, self.out_dim))
        return self.net(masks[:, None])


class NodeGrounding(nn.Module):
    """f_N: ``z' = ReLU(W [z, enc(m)])``, same width as the RoI feature ``z`` so the context
    model is built unchanged."""

    def __init__(self, obj_dim: int, mask_dim: int = 128):
        """
        Args:
            obj_dim: D, width of the RoI features (and of the output).
            mask_dim: width of the mask encoding.
        """
        super().__init__()
        self.encoder = MaskEncoder(mask_dim)
        self.fuse = nn.Sequential(nn.Linear(obj_dim + mask_dim, obj_dim), nn.ReLU())

    def forward(self, obj_features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(N, D) RoI features, (N, M, M) mask probabilities in the box frame -> (N, D)."""
        return self.fuse(torch.cat([obj_features, self.encoder(masks)], dim=1))
