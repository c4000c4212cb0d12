"""Resample box-frame masks into another box's frame (e.g. a pair's union box).

A mask head predicts each object's mask on an M x M grid spanning the object's own box.
For a relation both masks must live in one frame, the union box: each union-frame pixel
centre is mapped to image coordinates and from there into the object's box, where the mask
is sampled bilinearly (``grid_sample``). Inside the box, the mask's border values extend
to the box edge (no fading towards an imaginary zero beyond the grid); outside, the mask is 0.
"""

import torch
import torch.nn.functional as F

__all__ = ["masks_in_frames"]


def _pixel_centres(frames: torch.Tensor, size: int):
    """Image coordinates (R, size) of the pixel centres of each frame, along x and y."""
    steps = (torch.arange(size, dtype=frames.dtype, device=frames.device) + 0.5) / size
    xs = frames[:, 0:1] + steps[None] * (frames[:, 2:3] - frames[:, 0:1])
    ys = frames[:, 1:2] + steps[None] * (frames[:, 3:4] - frames[:, 1:2])
    return xs, ys


def masks_in_frames(
    masks: torch.Tensor, boxes: torch.Tensor, frames: torch.Tensor, size: int
) -> torch.Tensor:
    """Place each mask, given in its box, into a frame box of ``size x size`` pixels.

    Args:
        masks: (R, M, M) values on a grid spanning ``boxes`` (pixel r, c covers
            ``[x1 + c w / M, x1 + (c + 1) w / M]`` and likewise in y).
        boxes: (R, 4) XYXY image coordinates of the masks' boxes.
        frames: (R, 4) XYXY image coordinates of the target frames.
        size: side of the output grid.

    Returns:
        (R, size, size): mask r sampled at the pixel centres of frame r; 0 outside box r.
    """
    if len(masks) == 0:
        return masks.new_zeros((0, size, size))
    xs, ys = _pixel_centres(frames, size)
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6)
    # grid_sample(align_corners=False): -1 and +1 are the outer edges of the mask grid,
    # i.e. the box edges.
    gx = 2 * (xs - boxes[:, 0:1]) / wh[:, 0:1] - 1  # (R, size)
    gy = 2 * (ys - boxes[:, 1:2]) / wh[:, 1:2] - 1
    grid = torch.stack(
        [gx[:, None, :].expand(-1, size, -1), gy[:, :, None].expand(-1, -1, size)], dim=-1
    )
    grid = grid.to(masks.dtype)
    out = F.grid_sample(
        masks[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )[:, 0]
    inside = (grid.abs() <= 1).all(dim=-1)
    return out * inside.to(out.dtype)
