"""Auxiliary (COCO-format) mask scenes: shapes of the auxiliary classes that overlap in
drawing order, annotated with visible-only (modal) masks, as COCO's masks are.

Each image holds 1-4 shapes, drawn in order (a later shape occludes the earlier ones). Each
shape after the first is placed over an earlier one (its centre near that one's, sharing
at least ``MIN_OVERLAP`` pixels with it) with probability ``OVERLAP_PROBABILITY``, else
apart (more than ``APART_GAP`` px from every earlier shape). An instance's mask is the part
of its shape that is visible in the image. Drop rule: an instance whose visible area is
below ``max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION x its shape's area)`` is (almost)
fully hidden and gets no annotation (its few visible pixels stay painted, as unannotated
fragments do in COCO); the world summary counts these drops.
"""

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .relations import TOUCH_GAP, pair_statistics
from .scene import assign_colours, visible_masks
from .shapes import Shape, draw_mask, sample_shape_param
from .world import AUX_CLASSES, AUX_SHAPES

__all__ = [
    "AuxScene",
    "sample_aux_scene",
    "aux_scene_statistics",
    "summarize_aux_statistics",
    "OVERLAP_PROBABILITY",
    "MIN_VISIBLE_FRACTION",
    "MIN_VISIBLE_PIXELS",
]

OVERLAP_PROBABILITY = 0.6  # a shape after the first is placed over an earlier one
MIN_OVERLAP = 20  # px a shape placed over an earlier one shares with it
APART_GAP = 3.0  # px: a shape placed apart is farther than this from every earlier one
MIN_VISIBLE_FRACTION = 0.1  # drop rule (module docstring)
MIN_VISIBLE_PIXELS = 20
_MIN_AREA = 60  # px of a drawn shape
_TRIES_PER_SHAPE = 30


@dataclass
class AuxScene:
    """One auxiliary image: N shapes in drawing order, later ones on top.

    Attributes:
        labels: int64 (N,) 0-based indices into :data:`AUX_CLASSES`.
        shapes: the N drawn shapes.
        masks: bool (N, H, W) whole (amodal) shapes: what is painted, in order.
        visible: bool (N, H, W) the visible part of each shape (pairwise disjoint).
        colours: int64 (N,) colour indices; overlapping or touching shapes differ.
        annotated: bool (N,) False for an instance dropped as (almost) fully hidden.
    """

    labels: np.ndarray
    shapes: List[Shape]
    masks: np.ndarray
    visible: np.ndarray
    colours: np.ndarray
    annotated: np.ndarray


def _aux_shape(
    rng: np.random.Generator, label: int, height: int, width: int, near: Optional[Shape]
) -> Optional[Shape]:
    """A shape of class ``label`` inside the image; with ``near``, centred at 0.3-1.0 x the
    sum of both sizes from ``near``'s centre (None when that centre leaves the image)."""
    kinds = AUX_SHAPES[AUX_CLASSES[label]]
    kind = kinds[int(rng.integers(len(kinds)))]
    r = float(rng.uniform(9.0, max(12.0, 0.2 * min(height, width))))
    # Thin shapes reach past r by their half-thickness; keep the whole shape in the image.
    b = r * 1.1 + 1.0
    if near is None:
        cx = float(rng.uniform(b, max(b, width - b)))
        cy = float(rng.uniform(b, max(b, height - b)))
    else:
        distance = rng.uniform(0.3, 1.0) * (r + near.r)
        direction = rng.uniform(0.0, 2 * np.pi)
        cx = float(near.cx + distance * np.cos(direction))
        cy = float(near.cy + distance * np.sin(direction))
        if not (b <= cx <= width - b and b <= cy <= height - b):
            return None
    return Shape(
        kind, cx, cy, r, float(rng.uniform(0.0, 2 * np.pi)), sample_shape_param(rng, kind, r)
    )


def _fits(mask: np.ndarray, masks: List[np.ndarray], over: Optional[int]) -> bool:
    """Whether a new shape's ``mask`` is placed as intended: inside the image, big enough,
    over shape ``over`` (MIN_OVERLAP shared pixels) or apart from every earlier shape."""
    if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
        return False
    if mask.sum() < _MIN_AREA:
        return False
    if over is not None:
        return int((mask & masks[over]).sum()) >= MIN_OVERLAP
    if not masks:
        return True
    gap = pair_statistics(np.stack(masks + [mask]), np.zeros(len(masks) + 1, bool))["gap"]
    return bool(gap[-1, :-1].min() > APART_GAP)


def sample_aux_scene(rng: np.random.Generator, height: int, width: int) -> AuxScene:
    """Sample 1-4 auxiliary shapes fully inside a (height, width) image (module docstring).

    Raises:
        RuntimeError: if not even one shape fits in the image.
    """
    want = int(rng.integers(1, 5))
    labels, shapes, masks = [], [], []
    for _ in range(want * _TRIES_PER_SHAPE):
        if len(labels) == want:
            break
        label = int(rng.integers(len(AUX_CLASSES)))
        over = None
        if masks and rng.random() < OVERLAP_PROBABILITY:
            over = int(rng.integers(len(masks)))
        shape = _aux_shape(rng, label, height, width, None if over is None else shapes[over])
        if shape is None:
            continue
        mask = draw_mask(shape, height, width)
        if _fits(mask, masks, over):
            labels.append(label)
            shapes.append(shape)
            masks.append(mask)
    if not labels:
        raise RuntimeError(f"could not place an auxiliary shape in a {width}x{height} image")
    amodal = np.stack(masks)
    visible = visible_masks(amodal)
    area, seen = amodal.sum(axis=(1, 2)), visible.sum(axis=(1, 2))
    annotated = seen >= np.maximum(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * area)
    gap = pair_statistics(amodal, np.zeros(len(labels), bool))["gap"]
    colours = assign_colours(rng, gap)
    return AuxScene(np.array(labels, dtype=np.int64), shapes, amodal, visible, colours, annotated)


def aux_scene_statistics(scene: AuxScene) -> dict:
    """Occlusion measurements of one auxiliary image, over its annotated instances.

    Returns:
        dict: ``instances`` (annotated), ``dropped`` (hidden, not annotated), ``occluded``
        (some instance's visible mask is smaller than its shape), ``pairs`` (instance
        pairs), ``touching_pairs`` (pairs whose visible masks are within ``TOUCH_GAP`` px:
        adjacent, as an occluder and the shape it covers are).
    """
    keep = scene.annotated
    amodal, visible = scene.masks[keep], scene.visible[keep]
    n = int(keep.sum())
    touching = 0
    if n > 1:
        gap = pair_statistics(visible, np.zeros(n, bool))["gap"]
        touching = int((gap[np.triu_indices(n, 1)] <= TOUCH_GAP).sum())
    return {
        "instances": n,
        "dropped": int((~keep).sum()),
        "occluded": bool((visible.sum(axis=(1, 2)) < amodal.sum(axis=(1, 2))).any()),
        "pairs": n * (n - 1) // 2,
        "touching_pairs": touching,
    }


def summarize_aux_statistics(per_image: List[dict]) -> dict:
    """Totals of :func:`aux_scene_statistics` over a split (written to ``SUCCESS.json``).

    Returns:
        dict: ``images``, ``instances``, ``dropped_hidden`` (the drop rule's count),
        ``images_with_occlusion`` and its ``occlusion_fraction``, ``touching_pair_fraction``
        (of all instance pairs) and ``images_with_touching_pair``.
    """
    images = len(per_image)
    pairs = sum(s["pairs"] for s in per_image)
    occluded = sum(s["occluded"] for s in per_image)
    return {
        "images": images,
        "instances": sum(s["instances"] for s in per_image),
        "dropped_hidden": sum(s["dropped"] for s in per_image),
        "images_with_occlusion": occluded,
        "occlusion_fraction": round(occluded / max(images, 1), 4),
        "touching_pair_fraction": round(
            sum(s["touching_pairs"] for s in per_image) / max(pairs, 1), 4
        ),
        "images_with_touching_pair": sum(s["touching_pairs"] > 0 for s in per_image),
    }
