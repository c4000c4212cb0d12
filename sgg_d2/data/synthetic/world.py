"""Vocabulary of the synthetic world: target classes, auxiliary classes, predicates, colours.

Everything here is a constant; the sampling lives in :mod:`.layout`, the drawing in
:mod:`.shapes` / :mod:`.render`, the predicate rules in :mod:`.relations`.
"""

from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Tuple

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


# Target classes of both worlds, one row per class: name, drawing routine, sampling weight
# (see ShapeClass) and the auxiliary class it is "made of" (drives the word vectors). The
# default world has the first _NUM_DEFAULT_CLASSES rows, mildly long-tailed (ratio 2.5
# between first and last) as in VG; the crowded world has them all, so a class has the same
# index in both worlds.
_CLASS_TABLE: Tuple[Tuple[str, str, float, str], ...] = (
    ("ball", "disk", 1.0, "circle"),
    ("ring", "annulus", 1.0, "annulus"),
    ("triangle", "triangle", 0.9, "polygon"),
    ("star", "star", 0.9, "polygon"),
    ("bar", "bar", 0.8, "stripe"),
    ("cross", "cross", 0.7, "stripe"),
    ("diamond", "diamond", 0.7, "polygon"),
    ("frame", "square_frame", 0.6, "annulus"),
    ("hexagon", "hexagon", 0.6, "polygon"),
    ("crescent", "crescent", 0.5, "circle"),
    ("arrow", "arrow", 0.4, "polygon"),
    # The crowded world's extra classes.
    ("pentagon", "pentagon", 0.6, "polygon"),
    ("octagon", "octagon", 0.55, "polygon"),
    ("square", "square", 0.5, "polygon"),
    ("ellipse", "ellipse", 0.45, "circle"),
    ("dome", "dome", 0.4, "circle"),
    ("trapezoid", "trapezoid", 0.35, "polygon"),
    ("tee", "tee", 0.3, "stripe"),
    ("chevron", "chevron", 0.3, "stripe"),
    ("nut", "hex_frame", 0.3, "annulus"),
)
_NUM_DEFAULT_CLASSES = 11

CROWDED_TARGET_CLASSES: Tuple[ShapeClass, ...] = tuple(
    ShapeClass(name, shape, weight) for name, shape, weight, _ in _CLASS_TABLE
)
TARGET_CLASSES: Tuple[ShapeClass, ...] = CROWDED_TARGET_CLASSES[:_NUM_DEFAULT_CLASSES]
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
TARGET_TO_AUX: Dict[str, str] = {row[0]: row[3] for row in _CLASS_TABLE[:_NUM_DEFAULT_CLASSES]}

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

# Number of planted pairs per scene (uniform over this tuple, capped by the object count).
PLANTS_PER_SCENE: Tuple[int, ...] = (0, 1, 1, 2, 2)
# Objects per scene: uniform in [MIN_OBJECTS, MAX_OBJECTS].
MIN_OBJECTS, MAX_OBJECTS = 2, 6
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

CROWDED_THING_CLASSES: Tuple[str, ...] = tuple(c.name for c in CROWDED_TARGET_CLASSES)
CROWDED_HOLLOW_CLASSES: Tuple[str, ...] = HOLLOW_CLASSES + ("nut",)
CROWDED_CONTAINER_CLASSES: Tuple[str, ...] = CONTAINER_CLASSES + ("octagon", "square")
CROWDED_TARGET_TO_AUX: Dict[str, str] = {row[0]: row[3] for row in _CLASS_TABLE}
# Geometric predicates added by the crowded world (rules in relations.py, "crowded rules").
CROWDED_EXTRA_PREDICATES: Tuple[str, ...] = (
    "beside",
    "far from",
    "larger than",
    "smaller than",
    "diagonal to",
)
CROWDED_PREDICATES: Tuple[str, ...] = PREDICATES + CROWDED_EXTRA_PREDICATES
CROWDED_PLANTS_PER_SCENE: Tuple[int, ...] = (2, 3, 3, 4, 4)
CROWDED_MIN_OBJECTS, CROWDED_MAX_OBJECTS = 8, 20


# --------------------------------------------------------------------------------------
# Tables of both worlds, side by side.

# Per predicate, for the default and the crowded world:
# - annotate: probability that a pair whose primary predicate it is gets annotated. Labels
#   are a deterministic function of the geometry; only *which* pairs are annotated is
#   random (like VG annotators), which makes the predicate distribution long-tailed. A
#   crowded image has 56-380 ordered pairs, hence far lower values there for the
#   (numerous) geometric pairs.
# - plant: weight among the predicates that scenes plant on purpose (None: never planted);
#   the rest of a scene is free objects at random positions.
# ANNOTATION_WEIGHTS keeps the row order, CROWDED_ANNOTATION_WEIGHTS the index order, and
# PLANT_WEIGHTS / CROWDED_PLANT_WEIGHTS the order of _PLANT_ORDER (the draw depends on it).
# fmt: off
_PREDICATE_WEIGHTS: Dict[str, Tuple[Optional[float], ...]] = {
    #               annotate          plant
    #               default  crowded  default  crowded
    "left of":      (0.55,   0.05,    None,    None),
    "above":        (0.42,   0.04,    None,    None),
    "near":         (0.55,   0.15,    0.14,    0.1),
    "right of":     (0.16,   0.015,   None,    None),
    "on":           (0.9,    0.75,    0.12,    0.14),
    "below":        (0.09,   0.008,   None,    None),
    "touching":     (0.5,    0.35,    0.22,    0.2),
    "behind":       (0.45,   0.4,     0.08,    0.1),
    "in hole of":   (0.7,    0.7,     0.24,    0.2),
    "inside":       (0.8,    0.75,    0.2,     0.2),
    "around":       (0.35,   0.25,    None,    0.06),
    "beside":       (None,   0.06,    None,    None),
    "far from":     (None,   0.006,   None,    None),
    "larger than":  (None,   0.02,    None,    None),
    "smaller than": (None,   0.004,   None,    None),
    "diagonal to":  (None,   0.006,   None,    None),
}
# fmt: on
_PLANT_ORDER = ("in hole of", "touching", "near", "on", "inside", "behind", "around")


def _weights(column: int, order: Iterable[str]) -> Dict[str, float]:
    """Column ``column`` of :data:`_PREDICATE_WEIGHTS` as ``{predicate: weight}`` in
    ``order``, leaving out the predicates without a value."""
    values = {name: row[column] for name, row in _PREDICATE_WEIGHTS.items()}
    return {name: values[name] for name in order if values[name] is not None}


ANNOTATION_WEIGHTS: Dict[str, float] = _weights(0, _PREDICATE_WEIGHTS)
CROWDED_ANNOTATION_WEIGHTS: Dict[str, float] = _weights(1, CROWDED_PREDICATES)
PLANT_WEIGHTS: Dict[str, float] = _weights(2, _PLANT_ORDER)
CROWDED_PLANT_WEIGHTS: Dict[str, float] = _weights(3, _PLANT_ORDER)


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


# Every WorldSpec field but the name, side by side: (default world, crowded world).
# fmt: off
_WORLD_FIELDS: Dict[str, Tuple[Any, Any]] = {
    "classes":               (TARGET_CLASSES,        CROWDED_TARGET_CLASSES),
    "predicates":            (PREDICATES,            CROWDED_PREDICATES),
    "hollow_classes":        (HOLLOW_CLASSES,        CROWDED_HOLLOW_CLASSES),
    "container_classes":     (CONTAINER_CLASSES,     CROWDED_CONTAINER_CLASSES),
    "target_to_aux":         (TARGET_TO_AUX,         CROWDED_TARGET_TO_AUX),
    "plant_weights":         (PLANT_WEIGHTS,         CROWDED_PLANT_WEIGHTS),
    "plants_per_scene":      (PLANTS_PER_SCENE,      CROWDED_PLANTS_PER_SCENE),
    "min_objects":           (MIN_OBJECTS,           CROWDED_MIN_OBJECTS),
    "max_objects":           (MAX_OBJECTS,           CROWDED_MAX_OBJECTS),
    "annotation_weights":    (ANNOTATION_WEIGHTS,    CROWDED_ANNOTATION_WEIGHTS),
    "secondary_probability": (SECONDARY_PROBABILITY, 0.2),
    "free_radius":           ((8.0, 0.13, 12.0),     (7.0, 0.085, 12.0)),
    "container_radius":      ((0.19, 0.24),          (0.12, 0.16)),
    "crowded_rules":         (False,                 True),
    "confusion_probability": (0.0,                   0.35),
    "proximal_probability":  (0.0,                   0.3),
    "tag_gap_fraction":      (0.1,                   0.06),
}
# fmt: on
WORLDS: Dict[str, WorldSpec] = {
    name: WorldSpec(name=name, **{field: pair[column] for field, pair in _WORLD_FIELDS.items()})
    for column, name in enumerate(("default", "crowded"))
}
DEFAULT_WORLD: WorldSpec = WORLDS["default"]
CROWDED_WORLD: WorldSpec = WORLDS["crowded"]


def world_spec(name: str) -> WorldSpec:
    """The :class:`WorldSpec` of a preset name; ``KeyError`` naming it if unknown."""
    if name not in WORLDS:
        raise KeyError(f"unknown synthetic world preset {name!r}; known: {', '.join(WORLDS)}")
    return WORLDS[name]
