"""Vocabulary of the synthetic world: target classes, auxiliary classes, predicates, colours.

Everything here is a constant; the sampling lives in :mod:`.layout`, the drawing in
:mod:`.shapes` / :mod:`.render`, the predicate rules in :mod:`.relations`.
"""

from dataclasses import dataclass
from typing import Dict, Tuple

__all__ = [
    "ShapeClass",
    "TARGET_CLASSES",
    "THING_CLASSES",
    "HOLLOW_CLASSES",
    "CONTAINER_CLASSES",
    "AUX_CLASSES",
    "AUX_SHAPES",
    "TARGET_TO_AUX",
    "PREDICATES",
    "MASK_DEPENDENT_PREDICATES",
    "PLANT_WEIGHTS",
    "PLANTS_PER_SCENE",
    "MIN_OBJECTS",
    "MAX_OBJECTS",
    "ANNOTATION_WEIGHTS",
    "SECONDARY_PROBABILITY",
    "HELD_OUT_TRIPLETS",
    "ZERO_SHOT_PLANT_EVERY",
    "COLOURS",
    "predicate_index",
    "class_index",
]


@dataclass(frozen=True)
class ShapeClass:
    """A target object class: its name, how it is drawn and how often it is sampled.

    Attributes:
        name: class name (also the word-vector key).
        shape: drawing routine name in :data:`sgg_d2.data.synthetic.shapes.SHAPE_DRAWERS`.
        weight: relative sampling frequency of the class for free-standing objects.
    """

    name: str
    shape: str
    weight: float


# Mildly long-tailed object classes (ratio 2.5 between first and last), as in VG.
TARGET_CLASSES: Tuple[ShapeClass, ...] = (
    ShapeClass("ball", "disk", 1.0),
    ShapeClass("ring", "annulus", 1.0),
    ShapeClass("triangle", "triangle", 0.9),
    ShapeClass("star", "star", 0.9),
    ShapeClass("bar", "bar", 0.8),
    ShapeClass("cross", "cross", 0.7),
    ShapeClass("diamond", "diamond", 0.7),
    ShapeClass("frame", "square_frame", 0.6),
    ShapeClass("hexagon", "hexagon", 0.6),
    ShapeClass("crescent", "crescent", 0.5),
    ShapeClass("arrow", "arrow", 0.4),
)
THING_CLASSES: Tuple[str, ...] = tuple(c.name for c in TARGET_CLASSES)

# Classes whose shape encloses a hole ("in hole of" / "around" need one of these).
HOLLOW_CLASSES: Tuple[str, ...] = ("ring", "frame")
# Filled classes big enough to carry a small object fully inside their silhouette.
CONTAINER_CLASSES: Tuple[str, ...] = ("ball", "hexagon", "diamond", "triangle", "star")

# Auxiliary mask dataset: a few base shapes under their own names (1-based COCO ids in
# this order). Each name maps to a drawing routine of :mod:`.shapes`.
AUX_CLASSES: Tuple[str, ...] = ("circle", "annulus", "polygon", "stripe")
AUX_SHAPES: Dict[str, Tuple[str, ...]] = {
    "circle": ("disk",),
    "annulus": ("annulus",),
    "polygon": ("triangle", "pentagon", "hexagon", "octagon", "star"),
    "stripe": ("bar",),
}
# Which auxiliary class each target class is "made of" (drives the word vectors).
TARGET_TO_AUX: Dict[str, str] = {
    "ball": "circle",
    "ring": "annulus",
    "triangle": "polygon",
    "star": "polygon",
    "bar": "stripe",
    "cross": "stripe",
    "diamond": "polygon",
    "frame": "annulus",
    "hexagon": "polygon",
    "crescent": "circle",
    "arrow": "polygon",
}

# Predicates, 0-based in this order (1-based in the VG files). Rules: relations.py.
PREDICATES: Tuple[str, ...] = (
    "left of",
    "above",
    "near",
    "on",
    "touching",
    "behind",
    "right of",
    "below",
    "in hole of",
    "inside",
    "around",
)
# Predicates that box geometry alone cannot decide (they need the masks / draw order).
MASK_DEPENDENT_PREDICATES: Tuple[str, ...] = (
    "touching",
    "on",
    "behind",
    "inside",
    "in hole of",
    "around",
)

# Predicates that scenes plant on purpose (0-2 pairs per scene), with their weights; the
# rest of a scene is free objects at random positions.
PLANT_WEIGHTS: Dict[str, float] = {
    "in hole of": 0.24,
    "touching": 0.22,
    "near": 0.14,
    "on": 0.12,
    "inside": 0.2,
    "behind": 0.08,
}
# Number of planted pairs per scene (uniform over this tuple, capped by the object count).
PLANTS_PER_SCENE: Tuple[int, ...] = (0, 1, 1, 2, 2)
# Objects per scene: uniform in [MIN_OBJECTS, MAX_OBJECTS].
MIN_OBJECTS, MAX_OBJECTS = 2, 6

# Probability that a pair whose primary predicate is p gets annotated. Labels are a
# deterministic function of the geometry; only *which* pairs are annotated is random
# (like VG annotators), which makes the predicate distribution long-tailed.
ANNOTATION_WEIGHTS: Dict[str, float] = {
    "left of": 0.55,
    "above": 0.42,
    "near": 0.55,
    "right of": 0.16,
    "on": 0.9,
    "below": 0.09,
    "touching": 0.5,
    "behind": 0.45,
    "in hole of": 0.7,
    "inside": 0.8,
    "around": 0.35,
}
# Probability that an annotated "touching"/"near" pair also carries its geometric
# direction as a second predicate (VG has multi-label pairs).
SECONDARY_PROBABILITY = 0.3

# (subject, predicate, object) held out of every training annotation (zero-shot set).
HELD_OUT_TRIPLETS: Tuple[Tuple[str, str, str], ...] = (
    ("star", "in hole of", "frame"),
    ("triangle", "touching", "ring"),
    ("ball", "on", "diamond"),
    ("hexagon", "near", "cross"),
    ("bar", "above", "crescent"),
)
# Every ZERO_SHOT_PLANT_EVERY-th test image gets one held-out triplet planted (round robin).
ZERO_SHOT_PLANT_EVERY = 4

# Distractor colours (RGB); also written as the VG "attributes" of the objects.
COLOURS: Tuple[Tuple[str, Tuple[int, int, int]], ...] = (
    ("red", (220, 45, 45)),
    ("green", (45, 185, 70)),
    ("blue", (60, 100, 235)),
    ("yellow", (235, 215, 50)),
    ("magenta", (215, 60, 205)),
    ("cyan", (50, 205, 215)),
    ("orange", (245, 145, 35)),
    ("white", (240, 240, 240)),
)


def class_index(name: str) -> int:
    """0-based index of a target class name; ``KeyError`` naming it if unknown."""
    if name not in THING_CLASSES:
        raise KeyError(f"unknown synthetic class {name!r}; known: {', '.join(THING_CLASSES)}")
    return THING_CLASSES.index(name)


def predicate_index(name: str) -> int:
    """0-based index of a predicate name; ``KeyError`` naming it if unknown."""
    if name not in PREDICATES:
        raise KeyError(f"unknown synthetic predicate {name!r}; known: {', '.join(PREDICATES)}")
    return PREDICATES.index(name)
