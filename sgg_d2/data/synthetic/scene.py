"""Sampling of one scene-graph image: objects, masks, boxes, colours and annotated relations."""

from dataclasses import dataclass, field
from functools import cache
from typing import FrozenSet, List, Optional, Tuple

import numpy as np

from .layout import Layout, place_free_object, place_near, plant_pair
from .relations import CrowdedRules, pair_statistics, relation_labels, sample_annotations
from .shapes import Shape, mask_box
from .world import COLOURS, DEFAULT_WORLD, WorldSpec

__all__ = [
    "Scene",
    "sample_scene",
    "visible_masks",
    "assign_colours",
    "image_tags",
    "IMAGE_TAGS",
]

Triplet = Tuple[int, int, int]  # (subject class, predicate, object class), 0-based
_SCENE_TRIES = 50
_COLOUR_GAP = 3.0  # shapes closer than this get different colours (stay separable)
# Per-image tags (see :func:`image_tags`).
IMAGE_TAGS: Tuple[str, ...] = ("confusion", "proximal")


@cache
def _tables(spec: WorldSpec) -> tuple:
    """Sampling tables of a world: class probabilities, annotation weights, plants."""
    classes = spec.classes
    class_p = np.array([c.weight for c in classes]) / sum(c.weight for c in classes)
    weights = np.array([spec.annotation_weights[p] for p in spec.predicates])
    plant_names = tuple(spec.plant_weights)
    plant_p = np.array([spec.plant_weights[p] for p in plant_names]) / sum(
        spec.plant_weights.values()
    )
    return class_p, weights, plant_names, plant_p


@dataclass
class Scene:
    """One sampled image before rendering.

    Attributes:
        height, width: image size.
        labels: int64 (N,) 0-based target classes, in draw order.
        shapes: the N drawn shapes.
        masks: bool (N, H, W) amodal masks.
        visible: bool (N, H, W) visible masks (what the instance annotations hold).
        boxes: float64 (N, 4) XYXY tight boxes of the visible masks (integers).
        colours: int64 (N,) indices into :data:`COLOURS`.
        primary, secondary: int64 (N, N) predicate of every ordered pair (-1: none).
        relations: int64 (R, 3) annotated ``[subject, object, predicate]`` rows.
        tags: the :data:`IMAGE_TAGS` that hold for this scene (:func:`image_tags`).
    """

    height: int
    width: int
    labels: np.ndarray
    shapes: List[Shape]
    masks: np.ndarray
    visible: np.ndarray
    boxes: np.ndarray
    colours: np.ndarray
    primary: np.ndarray
    secondary: np.ndarray
    relations: np.ndarray
    tags: Tuple[str, ...] = field(default_factory=tuple)


def visible_masks(masks: np.ndarray) -> np.ndarray:
    """Visible part of each amodal mask (N, H, W) given draw order (later on top)."""
    visible = masks.copy()
    covered = np.zeros(masks.shape[1:], dtype=bool)
    for i in range(masks.shape[0] - 1, -1, -1):
        visible[i] &= ~covered
        covered |= masks[i]
    return visible


def _plant_classes(
    rng, predicate: str, held_out: FrozenSet[Triplet], spec: WorldSpec
) -> Tuple[int, int]:
    pid = spec.predicates.index(predicate)
    names, class_p = spec.thing_classes, _tables(spec)[0]
    pool = {
        "in hole of": spec.hollow_classes,
        "around": spec.hollow_classes,
        "inside": spec.container_classes,
    }.get(predicate)
    for _ in range(20):
        s = int(rng.choice(len(names), p=class_p))
        if pool:
            o = names.index(pool[int(rng.integers(len(pool)))])
        else:
            o = int(rng.choice(len(names), p=class_p))
        if predicate == "around":  # the subject is the hollow one
            s, o = o, s
        if (s, pid, o) not in held_out:
            return s, o
    raise RuntimeError(f"no class pair for planting {predicate!r} outside the held-out set")


def assign_colours(rng: np.random.Generator, gap: np.ndarray) -> np.ndarray:
    """A colour index (into :data:`COLOURS`) per shape, in draw order: a shape closer than
    ``_COLOUR_GAP`` px to an earlier one avoids that one's colour (their border stays
    visible); ``gap``: (N, N) pairwise mask distances. Returns int64 (N,)."""
    colours = np.zeros(gap.shape[0], dtype=np.int64)
    for i in range(gap.shape[0]):
        taken = {int(colours[j]) for j in range(i) if gap[i, j] <= _COLOUR_GAP}
        free = [c for c in range(len(COLOURS)) if c not in taken] or list(range(len(COLOURS)))
        colours[i] = free[int(rng.integers(len(free)))]
    return colours


def _crowd_extras(rng, layout, spec, predicate, pair, n_objects, held_out, forced) -> None:
    """Around a planted pair: maybe a twin pair with the same predicate next to it
    (proximal ambiguity) and maybe a same-class distractor next to its subject or object
    (entity-instance confusion). Pairs that make a case are appended to ``forced``."""
    s, o = pair
    u_twin, u_distractor, u_same, u_side = rng.random(4)
    gap = spec.tag_gap_fraction * layout.size
    twin = None
    if u_twin < spec.proximal_probability and n_objects - len(layout.labels) >= 2:
        if u_same < 0.5:
            s2, o2 = layout.labels[s], layout.labels[o]
        else:
            s2, o2 = _plant_classes(rng, predicate, held_out, spec)
        hollow_one = layout.shapes[s if predicate == "around" else o]
        anchor = (hollow_one.cx, hollow_one.cy, 2.6 * hollow_one.r)
        twin = plant_pair(rng, layout, predicate, s2, o2, anchor=anchor)
    if u_distractor < spec.confusion_probability and n_objects - len(layout.labels) >= 1:
        near = s if u_side < 0.5 else o
        if place_near(rng, layout, layout.labels[near], near, gap) is not None:
            forced.append((s, o))
    if twin is not None:
        forced += [(s, o), twin]


def _layout(rng, height, width, zero_shot, held_out, spec) -> Tuple[Layout, Optional[tuple], list]:
    rules = CrowdedRules.for_size(max(height, width)) if spec.crowded_rules else None
    layout = Layout(height, width, spec.free_radius, spec.container_radius, rules)
    forced, extra_forced = None, []
    class_p, _, plant_names, plant_p = _tables(spec)
    n_objects = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    if zero_shot is not None:
        s, p, o = zero_shot
        forced = plant_pair(rng, layout, spec.predicates[p], s, o)
        if forced is None:
            return layout, None, extra_forced
    crowd = spec.confusion_probability > 0 or spec.proximal_probability > 0
    n_plants = int(spec.plants_per_scene[rng.integers(len(spec.plants_per_scene))])
    for _ in range(min(n_plants, (n_objects - len(layout.labels)) // 2)):
        if n_objects - len(layout.labels) < 2:
            break
        predicate = plant_names[int(rng.choice(len(plant_names), p=plant_p))]
        classes = _plant_classes(rng, predicate, held_out, spec)
        pair = plant_pair(rng, layout, predicate, *classes)
        if crowd and pair is not None:
            _crowd_extras(rng, layout, spec, predicate, pair, n_objects, held_out, extra_forced)
    while len(layout.labels) < n_objects:
        if not place_free_object(rng, layout, int(rng.choice(len(class_p), p=class_p))):
            break
    return layout, forced, extra_forced


def image_tags(
    labels: np.ndarray,
    primary: np.ndarray,
    gap: np.ndarray,
    relations: np.ndarray,
    max_gap: float,
) -> Tuple[str, ...]:
    """Which :data:`IMAGE_TAGS` hold for an annotated scene.

    - ``confusion``: some annotated (s, o, p) has another instance d of s's class with
      mask gap(d, s) <= ``max_gap`` whose pair (d, o) neither has primary predicate p
      nor is annotated with p (or likewise an instance of o's class next to o).
    - ``proximal``: two annotated rows (s1, o1, p), (s2, o2, p) with four distinct
      objects, some mask gap between {s1, o1} and {s2, o2} <= ``max_gap``, and neither
      cross pair (s1, o2), (s2, o1) having primary predicate p (pairing matters).

    Args:
        labels: int (N,) classes; primary: int (N, N) primary predicates;
        gap: float (N, N) symmetric mask gaps; relations: int (R, 3) annotated rows.
        max_gap: "next to" threshold in pixels.
    """
    annotated = {tuple(int(v) for v in row) for row in relations}
    n = len(labels)
    confusion = False
    for s, o, p in annotated:
        for d in range(n):
            if d in (s, o):
                continue
            if (
                labels[d] == labels[s]
                and gap[d, s] <= max_gap
                and primary[d, o] != p
                and (d, o, p) not in annotated
            ) or (
                labels[d] == labels[o]
                and gap[d, o] <= max_gap
                and primary[s, d] != p
                and (s, d, p) not in annotated
            ):
                confusion = True
                break
        if confusion:
            break
    proximal = False
    rows = sorted(annotated)
    for i, (s1, o1, p) in enumerate(rows):
        for s2, o2, p2 in rows[i + 1 :]:
            if p2 != p or {s1, o1} & {s2, o2}:
                continue
            close = min(gap[a, b] for a in (s1, o1) for b in (s2, o2)) <= max_gap
            if close and primary[s1, o2] != p and primary[s2, o1] != p:
                proximal = True
                break
        if proximal:
            break
    return tuple(t for t, on in zip(IMAGE_TAGS, (confusion, proximal)) if on)


def _attempt(rng, height, width, zero_shot, held_out, spec) -> Optional[Scene]:
    layout, forced, extra_forced = _layout(rng, height, width, zero_shot, held_out, spec)
    if len(layout.labels) < spec.min_objects or (zero_shot is not None and forced is None):
        return None
    labels = np.array(layout.labels, dtype=np.int64)
    masks = np.stack(layout.masks)
    visible = visible_masks(masks)
    boxes = np.stack([mask_box(m) for m in visible])
    keys = {(int(lab), *box.astype(int).tolist()) for lab, box in zip(labels, boxes)}
    if len(keys) < len(labels):  # VRD would merge identical (class, box) objects
        return None
    hollow = np.array([spec.thing_classes[lab] in spec.hollow_classes for lab in labels])
    stats = pair_statistics(masks, hollow)
    primary, secondary = relation_labels(masks, hollow, boxes, stats, layout.rules)
    if forced is not None and primary[forced] != zero_shot[1]:
        return None  # a later object changed the planted pair's predicate

    def forbidden(s: int, o: int, p: int) -> bool:
        return (int(labels[s]), p, int(labels[o])) in held_out

    relations = sample_annotations(
        rng,
        primary,
        secondary,
        _tables(spec)[1],
        spec.secondary_probability,
        forbidden,
        (() if forced is None else (forced,)) + tuple(extra_forced),
    )
    if len(relations) == 0:
        return None
    colours = assign_colours(rng, stats["gap"])
    tags = image_tags(
        labels, primary, stats["gap"], relations, spec.tag_gap_fraction * max(height, width)
    )
    return Scene(
        height, width, labels, layout.shapes, masks, visible, boxes, colours, primary,
        secondary, relations, tags,
    )  # fmt: skip


def sample_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    zero_shot: Optional[Triplet] = None,
    held_out: FrozenSet[Triplet] = frozenset(),
    spec: WorldSpec = DEFAULT_WORLD,
) -> Scene:
    """Sample one annotated scene.

    Args:
        rng: the image's own generator (determinism does not depend on other images).
        height, width: image size in pixels.
        zero_shot: a (subject class, predicate, object class) triplet to plant and
            annotate (test images), or None.
        held_out: triplets never planted and never annotated (train images).
        spec: the world (preset) to sample from.

    Raises:
        RuntimeError: if no valid scene was found within the try budget.
    """
    for _ in range(_SCENE_TRIES):
        scene = _attempt(rng, height, width, zero_shot, held_out, spec)
        if scene is not None:
            return scene
    raise RuntimeError(
        f"could not sample a {width}x{height} scene in {_SCENE_TRIES} tries "
        f"(zero-shot triplet {zero_shot}); use a larger --image-size"
    )
