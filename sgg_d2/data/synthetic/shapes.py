"""Exact rasterisation of the synthetic shapes (amodal masks) with OpenCV.

Coordinates are continuous image coordinates: pixel (row r, column c) covers
``[c, c + 1) x [r, r + 1)``, so a mask's tight box is ``(min col, min row, max col + 1,
max row + 1)``, the convention of pycocotools' ``toBbox``. Drawing is aliased
(``LINE_8``) so that a mask is exactly the set of pixels that get the object's colour.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List

import cv2
import numpy as np

__all__ = [
    "Shape",
    "SHAPE_DRAWERS",
    "draw_mask",
    "hole_mask",
    "mask_box",
    "sample_shape_param",
]

_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel vertex positions (1/16 px)
_SCALE = 1 << _SHIFT


@dataclass(frozen=True)
class Shape:
    """One drawn shape.

    Attributes:
        kind: drawing routine name (key of :data:`SHAPE_DRAWERS`).
        cx, cy: centre in continuous image coordinates (pixels).
        r: size: circumradius (half-length for bars and crosses).
        angle: rotation in radians.
        param: shape-specific ratio (inner/outer radius, thickness/length, ...).
    """

    kind: str
    cx: float
    cy: float
    r: float
    angle: float
    param: float

    def moved(self, cx: float, cy: float) -> "Shape":
        """The same shape with its centre at (cx, cy)."""
        return Shape(self.kind, cx, cy, self.r, self.angle, self.param)


def _to_cv(points: np.ndarray) -> np.ndarray:
    # Pixel centres are at integer OpenCV coordinates, i.e. continuous coordinate - 0.5.
    return np.round((points - 0.5) * _SCALE).astype(np.int32)


def _rotated(shape: Shape, points: np.ndarray) -> np.ndarray:
    cos, sin = np.cos(shape.angle), np.sin(shape.angle)
    x = points[:, 0] * cos - points[:, 1] * sin + shape.cx
    y = points[:, 0] * sin + points[:, 1] * cos + shape.cy
    return np.stack([x, y], axis=1)


def _regular(n: int, radius: float, phase: float = -np.pi / 2) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _fill(canvas: np.ndarray, shape: Shape, polys: List[np.ndarray], value: int) -> None:
    for poly in polys:
        cv2.fillPoly(canvas, [_to_cv(_rotated(shape, poly))], value, cv2.LINE_8, _SHIFT)


def _circle(canvas: np.ndarray, cx: float, cy: float, radius: float, value: int) -> None:
    centre = tuple(int(v) for v in _to_cv(np.array([cx, cy])))
    cv2.circle(canvas, centre, int(round(radius * _SCALE)), value, -1, cv2.LINE_8, _SHIFT)


def _rect(half_len: float, half_thick: float) -> np.ndarray:
    return np.array(
        [[-half_len, -half_thick], [half_len, -half_thick], [half_len, half_thick]]
        + [[-half_len, half_thick]]
    )


def _disk(c: np.ndarray, s: Shape) -> None:
    _circle(c, s.cx, s.cy, s.r, 1)


def _annulus(c: np.ndarray, s: Shape) -> None:
    _circle(c, s.cx, s.cy, s.r, 1)
    _circle(c, s.cx, s.cy, s.r * s.param, 0)


def _square_frame(c: np.ndarray, s: Shape) -> None:
    _fill(c, s, [_regular(4, s.r, np.pi / 4)], 1)
    _fill(c, s, [_regular(4, s.r * s.param, np.pi / 4)], 0)


def _crescent(c: np.ndarray, s: Shape) -> None:
    _circle(c, s.cx, s.cy, s.r, 1)
    off = 0.5 * s.r
    _circle(c, s.cx + off * np.cos(s.angle), s.cy + off * np.sin(s.angle), 0.85 * s.r, 0)


def _star(c: np.ndarray, s: Shape) -> None:
    outer = _regular(5, s.r)
    inner = _regular(5, s.r * s.param, -np.pi / 2 + np.pi / 5)
    _fill(c, s, [np.stack([outer, inner], axis=1).reshape(10, 2)], 1)


def _diamond(c: np.ndarray, s: Shape) -> None:
    q = s.r * s.param
    _fill(c, s, [np.array([[s.r, 0.0], [0.0, q], [-s.r, 0.0], [0.0, -q]])], 1)


def _bar(c: np.ndarray, s: Shape) -> None:
    _fill(c, s, [_rect(s.r, s.r * s.param)], 1)


def _cross(c: np.ndarray, s: Shape) -> None:
    t = s.r * s.param
    _fill(c, s, [_rect(s.r, t), _rect(t, s.r)], 1)


def _arrow(c: np.ndarray, s: Shape) -> None:
    t, neck, head = s.r * s.param, 0.2 * s.r, 0.55 * s.r
    pts = [[-s.r, -t], [neck, -t], [neck, -head], [s.r, 0.0], [neck, head], [neck, t], [-s.r, t]]
    _fill(c, s, [np.array(pts)], 1)


def _square(c: np.ndarray, s: Shape) -> None:
    _fill(c, s, [_regular(4, s.r, np.pi / 4)], 1)


def _ellipse(c: np.ndarray, s: Shape) -> None:
    centre = tuple(int(v) for v in _to_cv(np.array([s.cx, s.cy])))
    axes = (int(round(s.r * _SCALE)), int(round(s.r * s.param * _SCALE)))
    cv2.ellipse(c, centre, axes, float(np.degrees(s.angle)), 0.0, 360.0, 1, -1, cv2.LINE_8, _SHIFT)


def _dome(c: np.ndarray, s: Shape) -> None:
    # Half disc, shifted so that every point stays within s.r of the centre.
    t = np.linspace(0.0, np.pi, 25)
    arc = 0.92 * s.r * np.stack([np.cos(t), 0.4 - np.sin(t)], axis=1)
    _fill(c, s, [arc], 1)


def _trapezoid(c: np.ndarray, s: Shape) -> None:
    r = s.r
    _fill(c, s, [np.array([[-0.85 * r, 0.5 * r], [0.85 * r, 0.5 * r], [0.45 * r, -0.5 * r],
                           [-0.45 * r, -0.5 * r]])], 1)  # fmt: skip


def _tee(c: np.ndarray, s: Shape) -> None:
    r, t = s.r, s.r * s.param
    top = np.array([[-0.8 * r, -0.55 * r], [0.8 * r, -0.55 * r], [0.8 * r, -0.55 * r + 2 * t],
                    [-0.8 * r, -0.55 * r + 2 * t]])  # fmt: skip
    stem = np.array([[-t, -0.55 * r], [t, -0.55 * r], [t, 0.9 * r], [-t, 0.9 * r]])
    _fill(c, s, [top, stem], 1)


def _chevron(c: np.ndarray, s: Shape) -> None:
    r = s.r
    pts = [[-0.8 * r, -0.55 * r], [0.0, 0.25 * r], [0.8 * r, -0.55 * r], [0.8 * r, -0.05 * r],
           [0.0, 0.75 * r], [-0.8 * r, -0.05 * r]]  # fmt: skip
    _fill(c, s, [np.array(pts)], 1)


def _hex_frame(c: np.ndarray, s: Shape) -> None:
    _fill(c, s, [_regular(6, s.r)], 1)
    _fill(c, s, [_regular(6, s.r * s.param)], 0)


def _polygon(n: int) -> Callable[[np.ndarray, Shape], None]:
    def draw(c: np.ndarray, s: Shape) -> None:
        _fill(c, s, [_regular(n, s.r)], 1)

    return draw


SHAPE_DRAWERS: Dict[str, Callable[[np.ndarray, Shape], None]] = {
    "disk": _disk,
    "annulus": _annulus,
    "square_frame": _square_frame,
    "crescent": _crescent,
    "triangle": _polygon(3),
    "pentagon": _polygon(5),
    "hexagon": _polygon(6),
    "octagon": _polygon(8),
    "star": _star,
    "diamond": _diamond,
    "bar": _bar,
    "cross": _cross,
    "arrow": _arrow,
    # Crowded-world kinds.
    "square": _square,
    "ellipse": _ellipse,
    "dome": _dome,
    "trapezoid": _trapezoid,
    "tee": _tee,
    "chevron": _chevron,
    "hex_frame": _hex_frame,
}

# (low, high) of the uniform ``param`` of each kind; bars/crosses get a thickness floor.
_PARAM_RANGES = {
    "annulus": (0.5, 0.66),
    "square_frame": (0.55, 0.7),
    "star": (0.4, 0.5),
    "diamond": (0.55, 0.7),
    "bar": (0.13, 0.22),
    "cross": (0.17, 0.25),
    "arrow": (0.14, 0.2),
    "ellipse": (0.5, 0.7),
    "tee": (0.14, 0.2),
    "hex_frame": (0.55, 0.7),
}
_MIN_HALF_THICKNESS = {"bar": 3.0, "cross": 3.0, "arrow": 2.5, "tee": 2.5}


def sample_shape_param(rng: np.random.Generator, kind: str, r: float) -> float:
    """Shape-specific ratio for a shape of size ``r`` (0 for kinds that need none)."""
    if kind not in SHAPE_DRAWERS:
        raise KeyError(f"unknown shape kind {kind!r}; known: {', '.join(SHAPE_DRAWERS)}")
    if kind not in _PARAM_RANGES:
        return 0.0
    low, high = _PARAM_RANGES[kind]
    low = max(low, _MIN_HALF_THICKNESS.get(kind, 0.0) / r)
    return float(rng.uniform(low, max(low, high)))


def draw_mask(shape: Shape, height: int, width: int) -> np.ndarray:
    """Amodal mask of ``shape``: bool array (height, width)."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    SHAPE_DRAWERS[shape.kind](canvas, shape)
    return canvas.astype(bool)


def hole_mask(mask: np.ndarray) -> np.ndarray:
    """Pixels enclosed by ``mask`` but not part of it (a ring's hole): bool (H, W).

    Flood-fills the background from outside a one-pixel zero border, so shapes that
    touch the image border are handled; concavities open to the outside are not holes.
    """
    padded = np.ascontiguousarray(np.pad(mask.astype(np.uint8), 1))
    flood = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), dtype=np.uint8)
    cv2.floodFill(padded, flood, (0, 0), 1)
    return padded[1:-1, 1:-1] == 0


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight box (x1, y1, x2, y2) of a non-empty mask, float64 (4,), x2 = last col + 1."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask_box: the mask is empty")
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)
