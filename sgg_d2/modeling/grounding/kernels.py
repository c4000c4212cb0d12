"""Learned 2-D Gaussian kernels that smooth each object's mask (grounded edges).

Each object gets a kernel ``K`` with covariance ``[[sx2, rho*sx*sy], [rho*sx*sy, sy2]]``
whose variances ``sx2, sy2`` (union-frame pixels squared) and correlation ``rho`` are
predicted from the object's class distribution by :class:`KernelParameterNet`.
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["gaussian_kernels", "smooth_masks", "KernelParameterNet"]


def gaussian_kernels(
    var_x: torch.Tensor, var_y: torch.Tensor, rho: torch.Tensor, size: int
) -> torch.Tensor:
    """Discrete zero-mean 2-D Gaussians, each normalised to sum to 1.

    Args:
        var_x, var_y: (N,) positive variances along x (columns) and y (rows), in pixels^2.
        rho: (N,) correlations in (-1, 1).
        size: odd kernel side; the centre pixel is the origin.

    Returns:
        (N, size, size) kernels, ``K[n, i, j]`` at offset (x = j - size // 2, y = i - size // 2).
    """
    if size % 2 != 1:
        raise ValueError(f"Gaussian kernel size must be odd, got {size}")
    offsets = torch.arange(size, dtype=var_x.dtype, device=var_x.device) - size // 2
    y, x = torch.meshgrid(offsets, offsets, indexing="ij")
    vx, vy, r = var_x[:, None, None], var_y[:, None, None], rho[:, None, None]
    det = vx * vy * (1 - r**2)
    # Mahalanobis distance with the inverse covariance 1/det [[vy, -r sx sy], [-r sx sy, vx]].
    q = (vy * x**2 - 2 * r * torch.sqrt(vx * vy) * x * y + vx * y**2) / det
    k = torch.exp(-0.5 * (q - q.amin(dim=(1, 2), keepdim=True)))  # shift: no underflow to 0/0
    return k / k.sum(dim=(1, 2), keepdim=True)


def smooth_masks(masks: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve mask n with kernel n ('same' size, zero padding).

    Args:
        masks: (R, H, W); kernels: (R, k, k), k odd.

    Returns:
        (R, H, W).
    """
    if len(masks) == 0:
        return masks
    k = kernels.shape[-1]
    # A Gaussian is point-symmetric (K(x, y) = K(-x, -y)), so correlation = convolution.
    out = F.conv2d(masks[None], kernels[:, None], padding=k // 2, groups=len(masks))
    return out[0]


class KernelParameterNet(nn.Module):
    """Class distribution (N, C) -> Gaussian parameters (variances and correlation).

    ``var = min_var + softplus(.)``, ``rho = max_rho * tanh(.)``; the output bias starts the
    kernels round with variance ``init_var``.
    """

    def __init__(
        self,
        num_classes: int,
        hidden_dim: int = 32,
        min_var: float = 0.1,
        init_var: float = 2.0,
        max_rho: float = 0.9,
    ):
        super().__init__()
        self.min_var, self.max_rho = min_var, max_rho
        self.mlp = nn.Sequential(
            nn.Linear(num_classes, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 3)
        )
        raw_var = torch.log(torch.expm1(torch.tensor(init_var - min_var)))  # softplus^-1
        with torch.no_grad():
            self.mlp[2].bias.copy_(torch.stack([raw_var, raw_var, torch.tensor(0.0)]))

    def forward(self, class_probs: torch.Tensor):
        """(N, C) -> three (N,) tensors ``var_x, var_y, rho``."""
        raw = self.mlp(class_probs)
        var = self.min_var + F.softplus(raw[:, :2])
        return var[:, 0], var[:, 1], self.max_rho * torch.tanh(raw[:, 2])
