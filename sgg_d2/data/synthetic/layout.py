"""Placement of shapes: free objects and *planted* pairs whose predicate is decided by masks.

Random placement alone rarely puts a small ball in a ring's hole or two shapes exactly
edge to edge, so every scene plants 0-2 pairs with a chosen predicate (in hole of, on a
ring's band, inside, touching, near with overlapping boxes, ...), and test scenes can
plant a held-out (zero-shot) triplet. A planted pair is verified with the real rules of
:mod:`.relations`, so labels never depend on how a pair was placed.
"""

from typing import List, Optional, Tuple

import cv2
import numpy as np

from .relations import NEAR_GAP, TOUCH_GAP, CrowdedRules, pair_statistics, relation_labels
from .shapes import Shape, draw_mask, mask_box, sample_shape_param
from .world import (
    CROWDED_HOLLOW_CLASSES,
    CROWDED_TARGET_CLASSES,
    CROWDED_THING_CLASSES,
    predicate_index,
)

__all__ = ["Layout", "plant_pair", "place_free_object", "place_near", "MIN_VISIBLE_FRACTION"]

MIN_VISIBLE_FRACTION = 0.6  # every object keeps >= 60 % of its pixels visible
MIN_VISIBLE_PIXELS = 60
MIN_RADIUS = 8.0  # shapes span >= 16 px
_TRIES = 40
# Class indices of both worlds agree (default classes are a prefix of the crowded ones).
_HOLLOW = tuple(CROWDED_THING_CLASSES.index(c) for c in CROWDED_HOLLOW_CLASSES)
_DIRECTIONS = {"left of": np.pi, "right of": 0.0, "above": -np.pi / 2, "below": np.pi / 2}


class Layout:
    """Shapes placed so far in one image, in draw order (later = on top).

    Attributes:
        height, width: image size in pixels.
        labels: 0-based target classes, one per shape.
        shapes: the placed :class:`Shape` objects.
        masks: bool (H, W) amodal masks, one per shape.
        free_radius: (min px, fraction of the long side, floor px) of free shapes' size:
            uniform in [min, max(floor, fraction x long side)].
        container_radius: (low, high) fractions of the long side for containers.
        rules: the crowded world's extra predicate rules, or None.
    """

    def __init__(
        self,
        height: int,
        width: int,
        free_radius: Tuple[float, float, float] = (MIN_RADIUS, 0.13, 12.0),
        container_radius: Tuple[float, float] = (0.19, 0.24),
        rules: Optional[CrowdedRules] = None,
    ):
        self.height, self.width = height, width
        self.free_radius, self.container_radius, self.rules = free_radius, container_radius, rules
        self.labels: List[int] = []
        self.shapes: List[Shape] = []
        self.masks: List[np.ndarray] = []

    @property
    def size(self) -> float:
        """Long side in pixels (shape sizes scale with it)."""
        return float(max(self.height, self.width))

    def inside_image(self, shape: Shape) -> bool:
        """Whether the whole shape lies in the image with a one-pixel margin."""
        b = _bound(shape)
        return b + 1 <= shape.cx <= self.width - b - 1 and b + 1 <= shape.cy <= self.height - b - 1

    def try_add(self, items: List[Tuple[int, Shape]]) -> bool:
        """Append ``items`` (label, shape) on top if all shapes stay visible enough."""
        if not all(self.inside_image(s) for _, s in items):
            return False
        new_masks = [draw_mask(s, self.height, self.width) for _, s in items]
        masks = self.masks + new_masks
        covered = np.zeros((self.height, self.width), dtype=bool)
        for m in reversed(masks):
            visible = int((m & ~covered).sum())
            if visible < max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * m.sum()):
                return False
            covered |= m
        self.labels += [label for label, _ in items]
        self.shapes += [s for _, s in items]
        self.masks += new_masks
        return True


def _bound(shape: Shape) -> float:
    # Rectangular parts reach past the half-length by their half-thickness.
    if shape.kind in ("bar", "cross", "arrow"):
        return shape.r * float(np.hypot(1.0, shape.param))
    return shape.r


def _shape(rng: np.random.Generator, label: int, r: float, cx=0.0, cy=0.0) -> Shape:
    kind = CROWDED_TARGET_CLASSES[label].shape
    angle = float(rng.uniform(0.0, 2 * np.pi))
    return Shape(kind, cx, cy, float(r), angle, sample_shape_param(rng, kind, r))


def _free_radius(rng: np.random.Generator, layout: Layout) -> float:
    low, fraction, floor = layout.free_radius
    return float(rng.uniform(low, max(floor, fraction * layout.size)))


def _container_radius(rng: np.random.Generator, layout: Layout) -> float:
    low, high = layout.container_radius
    return float(rng.uniform(low * layout.size, high * layout.size))


def _random_position(rng: np.random.Generator, layout: Layout, shape: Shape) -> Shape:
    b = _bound(shape) + 1
    cx = rng.uniform(b, max(b, layout.width - b))
    cy = rng.uniform(b, max(b, layout.height - b))
    return shape.moved(float(cx), float(cy))


def _offset(shape: Shape, dist: float, phi: float) -> Tuple[float, float]:
    return shape.cx + dist * np.cos(phi), shape.cy + dist * np.sin(phi)


def _hole_radius(o: Shape) -> float:
    # Radius of the largest disc inside the hole (inner square: circumradius / sqrt 2).
    inner = o.r * o.param
    if o.kind == "hex_frame":
        return inner * np.cos(np.pi / 6)
    return inner / np.sqrt(2.0) if o.kind == "square_frame" else inner


def _in_hole(rng, o: Shape, s_label: int, band: bool = False) -> Shape:
    hole = _hole_radius(o)
    r = rng.uniform(MIN_RADIUS, max(MIN_RADIUS, 0.85 * hole - 1.5))
    s = _shape(rng, s_label, r)
    if band:  # centred on the band: overlaps it
        dist = 0.5 * (o.r + o.r * o.param) * rng.uniform(0.8, 1.05)
    else:
        dist = max(0.0, hole - _bound(s) - 1.0) * np.sqrt(rng.uniform())
    return s.moved(*_offset(o, dist, rng.uniform(0, 2 * np.pi)))


def _inside(rng, o: Shape, s_label: int) -> Shape:
    s = _shape(rng, s_label, rng.uniform(MIN_RADIUS, max(MIN_RADIUS, 0.42 * o.r)))
    return s.moved(*_offset(o, rng.uniform(0, 0.25 * o.r), rng.uniform(0, 2 * np.pi)))


def _overlapping(rng, layout, o: Shape, s_label: int) -> Shape:
    s = _shape(rng, s_label, _free_radius(rng, layout))
    dist = rng.uniform(0.35, 0.9) * (_bound(o) + _bound(s))
    return s.moved(*_offset(o, dist, rng.uniform(0, 2 * np.pi)))


def _slide(rng, layout, o: Shape, s_label: int, stop_gap: float) -> Optional[Shape]:
    """Move s along a ray towards o until the mask gap first drops to <= stop_gap."""
    s = _shape(rng, s_label, _free_radius(rng, layout))
    phi = rng.uniform(0, 2 * np.pi)
    o_mask = draw_mask(o, layout.height, layout.width)
    field = cv2.distanceTransform((~o_mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    d = _bound(o) + _bound(s) + 2.0
    while d > 0:
        cand = s.moved(*_offset(o, d, phi))
        m = draw_mask(cand, layout.height, layout.width)
        if not m.any():
            return None
        gap = float(field[m].min())
        if gap <= stop_gap:
            return cand
        # The gap shrinks by at most the distance moved: never jump past stop_gap.
        d -= max(0.5, gap - stop_gap)
    return None


def _beside(rng, layout, o: Shape, s_label: int, predicate: str) -> Shape:
    s = _shape(rng, s_label, _free_radius(rng, layout))
    phi = _DIRECTIONS[predicate] + rng.uniform(-0.5, 0.5)
    dist = _bound(o) + _bound(s) + rng.uniform(NEAR_GAP + 3, NEAR_GAP + 30)
    return s.moved(*_offset(o, dist, phi))


def _near_position(rng, layout, shape: Shape, anchor: Tuple[float, float, float]) -> Shape:
    # Centre at anchor distance in [0.5, 1] x anchor radius, random direction.
    cx, cy, radius = anchor
    dist = radius * rng.uniform(0.5, 1.0)
    phi = rng.uniform(0, 2 * np.pi)
    return shape.moved(float(cx + dist * np.cos(phi)), float(cy + dist * np.sin(phi)))


def _propose(rng, layout, predicate: str, s_label: int, o_label: int, anchor=None):
    """One candidate (o_shape, s_shape or None, s_drawn_first) for ``predicate``."""
    big = predicate in ("in hole of", "inside") or (
        predicate in ("on", "behind") and o_label in _HOLLOW
    )
    r_o = _container_radius(rng, layout) if big else _free_radius(rng, layout)
    if anchor is None:
        o = _random_position(rng, layout, _shape(rng, o_label, r_o))
    else:
        o = _near_position(rng, layout, _shape(rng, o_label, r_o), anchor)
    if predicate == "in hole of":
        return o, _in_hole(rng, o, s_label), False
    if predicate == "inside":
        return o, _inside(rng, o, s_label), False
    if predicate in ("on", "behind"):
        if o_label in _HOLLOW:
            s = _in_hole(rng, o, s_label, band=True)
        else:
            s = _overlapping(rng, layout, o, s_label)
        return o, s, predicate == "behind"
    if predicate == "touching":
        stop = TOUCH_GAP if rng.uniform() < 0.7 else 0.0  # some overlap by a few pixels
        return o, _slide(rng, layout, o, s_label, stop), False
    if predicate == "near":
        return o, _slide(rng, layout, o, s_label, rng.uniform(3.0, NEAR_GAP - 1.0)), False
    if predicate in _DIRECTIONS:
        return o, _beside(rng, layout, o, s_label, predicate), False
    raise KeyError(f"no placement rule for predicate {predicate!r}")


def _pair_predicate(layout: Layout, order: List[Tuple[int, Shape]], subject: int) -> int:
    """Primary predicate of (order[subject], order[1 - subject]) in a two-shape scene."""
    masks = np.stack([draw_mask(x, layout.height, layout.width) for _, x in order])
    hollow = np.array([label in _HOLLOW for label, _ in order])
    under = masks[0] & ~masks[1]
    if not under.any():  # fully hidden: rejected anyway
        return -1
    boxes = np.stack([mask_box(under), mask_box(masks[1])])
    stats = pair_statistics(masks, hollow)
    primary, _ = relation_labels(masks, hollow, boxes, stats, layout.rules)
    return int(primary[subject, 1 - subject])


def plant_pair(
    rng: np.random.Generator,
    layout: Layout,
    predicate: str,
    s_label: int,
    o_label: int,
    anchor: Optional[Tuple[float, float, float]] = None,
) -> Optional[Tuple[int, int]]:
    """Add on top of ``layout`` a (subject, object) pair whose primary predicate is
    ``predicate`` (checked with the rules of :mod:`.relations`).

    "around" is planted as "in hole of" with the roles swapped. With ``anchor`` =
    (cx, cy, radius), the object (the hollow one for "around") is centred at a distance
    in [radius / 2, radius] of (cx, cy) instead of anywhere.

    Returns:
        (subject index, object index) in ``layout`` draw order, or None if no valid
        placement was found within the try budget.
    """
    swap = predicate == "around"
    if swap:
        predicate, s_label, o_label = "in hole of", o_label, s_label
    want = predicate_index(predicate)
    for _ in range(_TRIES):
        o, s, s_first = _propose(rng, layout, predicate, s_label, o_label, anchor)
        if s is None or not (layout.inside_image(s) and layout.inside_image(o)):
            continue
        order = [(s_label, s), (o_label, o)] if s_first else [(o_label, o), (s_label, s)]
        subject = 0 if s_first else 1
        if _pair_predicate(layout, order, subject) != want:
            continue
        n = len(layout.labels)
        if layout.try_add(order):
            s_idx, o_idx = n + subject, n + 1 - subject
            return (o_idx, s_idx) if swap else (s_idx, o_idx)
    return None


def place_free_object(rng: np.random.Generator, layout: Layout, label: int) -> bool:
    """Add one object of class ``label`` at a random valid position (on top)."""
    for _ in range(_TRIES):
        shape = _random_position(rng, layout, _shape(rng, label, _free_radius(rng, layout)))
        if layout.try_add([(label, shape)]):
            return True
    return False


def place_near(
    rng: np.random.Generator, layout: Layout, label: int, anchor: int, max_gap: float
) -> Optional[int]:
    """Add one object of class ``label`` on top, its mask within ``max_gap`` px of the mask
    of object ``anchor`` but not overlapping it (a same-class distractor next to it).

    Returns:
        the new object's index, or None if no valid placement was found.
    """
    target = layout.shapes[anchor]
    field = cv2.distanceTransform(
        (~layout.masks[anchor]).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
    )
    for _ in range(_TRIES):
        shape = _shape(rng, label, _free_radius(rng, layout))
        dist = _bound(target) + _bound(shape) + rng.uniform(1.0, max_gap)
        shape = shape.moved(*_offset(target, dist, rng.uniform(0, 2 * np.pi)))
        if not layout.inside_image(shape):
            continue
        mask = draw_mask(shape, layout.height, layout.width)
        if not mask.any() or not 2.0 <= float(field[mask].min()) <= max_gap:
            continue
        if layout.try_add([(label, shape)]):
            return len(layout.labels) - 1
    return None
