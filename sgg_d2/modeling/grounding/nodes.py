"""Mask encoder and grounded nodes: object features from ``[RoI feature, mask]``.

f_N and f_E (the paper leaves these networks open) fuse a mask encoding into the relation
model's own features z; :class:`MaskFusion` gives the two forms
(``MODEL.SGG.GROUNDING.FUSION``):

- ``"residual"`` (default): ``z + W enc(m)`` with W (and its bias) zero-initialised, so a
  grounded model starts exactly as the plain one and learns how much the mask adds (the
  paper uses a zero-initialised residual for its refinement; same principle);
- ``"concat"`` (the earlier form): ``ReLU(W [z, enc(m)])``, freshly initialised, which
  replaces z, so a grounded model starts below the plain one.
"""

import torch
from torch import nn

from ...config import check_choice

__all__ = ["FUSIONS", "MaskEncoder", "MaskFusion", "NodeGrounding"]

FUSIONS = ("residual", "concat")


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


class MaskFusion(nn.Module):
    """(R, D) features z and (R, E) mask encodings -> (R, D) (see the module docstring)."""

    def __init__(self, feature_dim: int, mask_dim: int, how: str = "residual"):
        """
        Args:
            feature_dim: D, width of z (and of the output); mask_dim: E.
            how: one of :data:`FUSIONS`.
        """
        super().__init__()
        check_choice("MODEL.SGG.GROUNDING.FUSION", how, FUSIONS)
        self.how = how
        if how == "residual":
            self.proj = nn.Linear(mask_dim, feature_dim)
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
        else:  # named "0" / "1" as the earlier nn.Sequential: its checkpoints still load
            self.add_module("0", nn.Linear(feature_dim + mask_dim, feature_dim))
            self.add_module("1", nn.ReLU())

    def forward(self, features: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        if self.how == "residual":
            return features + self.proj(encoding)
        linear, relu = self.get_submodule("0"), self.get_submodule("1")
        return relu(linear(torch.cat([features, encoding], dim=1)))


class NodeGrounding(nn.Module):
    """f_N: ``z' = fuse(z, enc(m))``, same width as the RoI feature ``z`` so the context
    model is built unchanged (:class:`MaskFusion`)."""

    def __init__(self, obj_dim: int, mask_dim: int = 128, fusion: str = "residual"):
        """
        Args:
            obj_dim: D, width of the RoI features (and of the output).
            mask_dim: width of the mask encoding.
            fusion: one of :data:`FUSIONS`.
        """
        super().__init__()
        self.encoder = MaskEncoder(mask_dim)
        self.fuse = MaskFusion(obj_dim, mask_dim, fusion)

    def forward(self, obj_features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(N, D) RoI features, (N, M, M) mask probabilities in the box frame -> (N, D)."""
        return self.fuse(obj_features, self.encoder(masks))
