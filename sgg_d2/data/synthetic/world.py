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
    "WorldSpec",
    "DEFAULT_WORLD",
    "CROWDED_WORLD",
    "WORLDS",
    "world_spec",
    "CROWDED_THING_CLASSES",
    "CROWDED_PREDICATES",
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


# --------------------------------------------------------------------------------------
# The crowded world (``--preset crowded``): a VG-like density of objects and relations.
# Its classes and predicates *extend* the default ones (same names at the same indices),
# so the drawing and rule code indexes both worlds the same way.

CROWDED_TARGET_CLASSES: Tuple[ShapeClass, ...] = TARGET_CLASSES + (
    ShapeClass("pentagon", "pentagon", 0.6),
    ShapeClass("octagon", "octagon", 0.55),
    ShapeClass("square", "square", 0.5),
    ShapeClass("ellipse", "ellipse", 0.45),
    ShapeClass("dome", "dome", 0.4),
    ShapeClass("trapezoid", "trapezoid", 0.35),
    ShapeClass("tee", "tee", 0.3),
    ShapeClass("chevron", "chevron", 0.3),
    ShapeClass("nut", "hex_frame", 0.3),
)
CROWDED_THING_CLASSES: Tuple[str, ...] = tuple(c.name for c in CROWDED_TARGET_CLASSES)
CROWDED_HOLLOW_CLASSES: Tuple[str, ...] = HOLLOW_CLASSES + ("nut",)
CROWDED_CONTAINER_CLASSES: Tuple[str, ...] = CONTAINER_CLASSES + ("octagon", "square")
CROWDED_TARGET_TO_AUX: Dict[str, str] = {
    **TARGET_TO_AUX,
    "pentagon": "polygon",
    "octagon": "polygon",
    "square": "polygon",
    "ellipse": "circle",
    "dome": "circle",
    "trapezoid": "polygon",
    "tee": "stripe",
    "chevron": "stripe",
    "nut": "annulus",
}
# Geometric predicates added by the crowded world (rules in relations.py, "crowded rules").
CROWDED_EXTRA_PREDICATES: Tuple[str, ...] = (
    "beside",
    "far from",
    "larger than",
    "smaller than",
    "diagonal to",
)
CROWDED_PREDICATES: Tuple[str, ...] = PREDICATES + CROWDED_EXTRA_PREDICATES
CROWDED_PLANT_WEIGHTS: Dict[str, float] = {
    "in hole of": 0.2,
    "touching": 0.2,
    "near": 0.1,
    "on": 0.14,
    "inside": 0.2,
    "behind": 0.1,
    "around": 0.06,
}
CROWDED_PLANTS_PER_SCENE: Tuple[int, ...] = (2, 3, 3, 4, 4)
CROWDED_MIN_OBJECTS, CROWDED_MAX_OBJECTS = 8, 20
# Per-pair annotation probabilities: a crowded image has 56-380 ordered pairs, so far
# lower than in the default world for the (numerous) geometric pairs.
CROWDED_ANNOTATION_WEIGHTS: Dict[str, float] = {
    "left of": 0.05,
    "above": 0.04,
    "near": 0.15,
    "on": 0.75,
    "touching": 0.35,
    "behind": 0.4,
    "right of": 0.015,
    "below": 0.008,
    "in hole of": 0.7,
    "inside": 0.75,
    "around": 0.25,
    "beside": 0.06,
    "far from": 0.006,
    "larger than": 0.02,
    "smaller than": 0.004,
    "diagonal to": 0.006,
}


@dataclass(frozen=True, eq=False)  # hashed by identity (holds dicts)
class WorldSpec:
    """Everything that differs between the synthetic worlds (presets).

    Attributes:
        name: preset name (``default`` or ``crowded``).
        classes: target classes; a prefix of :data:`CROWDED_TARGET_CLASSES`.
        predicates: predicate names; a prefix of :data:`CROWDED_PREDICATES`.
        hollow_classes, container_classes: class names with a hole / able to hold a
            small object inside their silhouette.
        target_to_aux: auxiliary concept of each class (word vectors).
        plant_weights, plants_per_scene: planted predicates and count per scene.
        min_objects, max_objects: objects per scene (uniform).
        annotation_weights: annotation probability per primary predicate.
        secondary_probability: see :data:`SECONDARY_PROBABILITY`.
        free_radius: (min px, fraction of long side, floor px) of free objects' size.
        container_radius: (low, high) fractions of the long side for containers.
        crowded_rules: whether the extra geometric rules (beside, far from, larger
            than, smaller than, diagonal to) are applied.
        confusion_probability: chance per planted pair of adding a same-class
            distractor next to its subject or object (entity-instance confusion).
        proximal_probability: chance per planted pair of planting a twin pair with the
            same predicate next to it (proximal relationship ambiguity).
        tag_gap_fraction: "near" for the image tags = mask gap <= this x long side.
    """

    name: str
    classes: Tuple[ShapeClass, ...]
    predicates: Tuple[str, ...]
    hollow_classes: Tuple[str, ...]
    container_classes: Tuple[str, ...]
    target_to_aux: Dict[str, str]
    plant_weights: Dict[str, float]
    plants_per_scene: Tuple[int, ...]
    min_objects: int
    max_objects: int
    annotation_weights: Dict[str, float]
    secondary_probability: float
    free_radius: Tuple[float, float, float]
    container_radius: Tuple[float, float]
    crowded_rules: bool
    confusion_probability: float
    proximal_probability: float
    tag_gap_fraction: float

    @property
    def thing_classes(self) -> Tuple[str, ...]:
        """Class names in index order."""
        return tuple(c.name for c in self.classes)

    @property
    def predicate_groups(self) -> Dict[str, list]:
        """``{"mask_dependent": [...], "geometric": [...]}`` predicate names (every
        predicate in exactly one group, in index order)."""
        mask = [p for p in self.predicates if p in MASK_DEPENDENT_PREDICATES]
        return {
            "mask_dependent": mask,
            "geometric": [p for p in self.predicates if p not in MASK_DEPENDENT_PREDICATES],
        }


DEFAULT_WORLD = WorldSpec(
    name="default",
    classes=TARGET_CLASSES,
    predicates=PREDICATES,
    hollow_classes=HOLLOW_CLASSES,
    container_classes=CONTAINER_CLASSES,
    target_to_aux=TARGET_TO_AUX,
    plant_weights=PLANT_WEIGHTS,
    plants_per_scene=PLANTS_PER_SCENE,
    min_objects=MIN_OBJECTS,
    max_objects=MAX_OBJECTS,
    annotation_weights=ANNOTATION_WEIGHTS,
    secondary_probability=SECONDARY_PROBABILITY,
    free_radius=(8.0, 0.13, 12.0),
    container_radius=(0.19, 0.24),
    crowded_rules=False,
    confusion_probability=0.0,
    proximal_probability=0.0,
    tag_gap_fraction=0.1,
)
CROWDED_WORLD = WorldSpec(
    name="crowded",
    classes=CROWDED_TARGET_CLASSES,
    predicates=CROWDED_PREDICATES,
    hollow_classes=CROWDED_HOLLOW_CLASSES,
    container_classes=CROWDED_CONTAINER_CLASSES,
    target_to_aux=CROWDED_TARGET_TO_AUX,
    plant_weights=CROWDED_PLANT_WEIGHTS,
    plants_per_scene=CROWDED_PLANTS_PER_SCENE,
    min_objects=CROWDED_MIN_OBJECTS,
    max_objects=CROWDED_MAX_OBJECTS,
    annotation_weights=CROWDED_ANNOTATION_WEIGHTS,
    secondary_probability=0.2,
    free_radius=(7.0, 0.085, 12.0),
    container_radius=(0.12, 0.16),
    crowded_rules=True,
    confusion_probability=0.35,
    proximal_probability=0.3,
    tag_gap_fraction=0.06,
)
WORLDS: Dict[str, WorldSpec] = {"default": DEFAULT_WORLD, "crowded": CROWDED_WORLD}


def world_spec(name: str) -> WorldSpec:
    """The :class:`WorldSpec` of a preset name; ``KeyError`` naming it if unknown."""
    if name not in WORLDS:
        raise KeyError(f"unknown synthetic world preset {name!r}; known: {', '.join(WORLDS)}")
    return WORLDS[name]
