"""Sampling of one scene-graph image: objects, masks, boxes, colours and annotated relations."""

from dataclasses import dataclass
from typing import FrozenSet, List, Optional, Tuple

import numpy as np

from .layout import Layout, place_free_object, plant_pair
from .relations import pair_statistics, relation_labels, sample_annotations
from .shapes import Shape, mask_box
from .world import (
    ANNOTATION_WEIGHTS,
    COLOURS,
    CONTAINER_CLASSES,
    HOLLOW_CLASSES,
    MAX_OBJECTS,
    MIN_OBJECTS,
    PLANT_WEIGHTS,
    PLANTS_PER_SCENE,
    PREDICATES,
    SECONDARY_PROBABILITY,
    TARGET_CLASSES,
    THING_CLASSES,
    class_index,
    predicate_index,
)

__all__ = ["Scene", "sample_scene", "visible_masks"]

Triplet = Tuple[int, int, int]  # (subject class, predicate, object class), 0-based
_SCENE_TRIES = 50
_COLOUR_GAP = 3.0  # shapes closer than this get different colours (stay separable)
_CLASS_P = np.array([c.weight for c in TARGET_CLASSES]) / sum(c.weight for c in TARGET_CLASSES)
_WEIGHTS = np.array([ANNOTATION_WEIGHTS[p] for p in PREDICATES])
_PLANT_NAMES = tuple(PLANT_WEIGHTS)
_PLANT_P = np.array([PLANT_WEIGHTS[p] for p in _PLANT_NAMES]) / sum(PLANT_WEIGHTS.values())


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


def visible_masks(masks: np.ndarray) -> np.ndarray:
    """Visible part of each amodal mask (N, H, W) given draw order (later on top)."""
    visible = masks.copy()
    covered = np.zeros(masks.shape[1:], dtype=bool)
    for i in range(masks.shape[0] - 1, -1, -1):
        visible[i] &= ~covered
        covered |= masks[i]
    return visible


def _plant_classes(rng, predicate: str, held_out: FrozenSet[Triplet]) -> Tuple[int, int]:
    pid = predicate_index(predicate)
    pool = {"in hole of": HOLLOW_CLASSES, "inside": CONTAINER_CLASSES}.get(predicate)
    for _ in range(20):
        s = int(rng.choice(len(THING_CLASSES), p=_CLASS_P))
        if pool:
            o = class_index(pool[int(rng.integers(len(pool)))])
        else:
            o = int(rng.choice(len(THING_CLASSES), p=_CLASS_P))
        if (s, pid, o) not in held_out:
            return s, o
    raise RuntimeError(f"no class pair for planting {predicate!r} outside the held-out set")


def _assign_colours(rng: np.random.Generator, gap: np.ndarray) -> np.ndarray:
    colours = np.zeros(gap.shape[0], dtype=np.int64)
    for i in range(gap.shape[0]):
        taken = {int(colours[j]) for j in range(i) if gap[i, j] <= _COLOUR_GAP}
        free = [c for c in range(len(COLOURS)) if c not in taken]
        colours[i] = free[int(rng.integers(len(free)))]
    return colours


def _layout(rng, height, width, zero_shot, held_out) -> Tuple[Layout, Optional[tuple]]:
    layout, forced = Layout(height, width), None
    n_objects = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    if zero_shot is not None:
        s, p, o = zero_shot
        forced = plant_pair(rng, layout, PREDICATES[p], s, o)
        if forced is None:
            return layout, None
    n_plants = int(PLANTS_PER_SCENE[rng.integers(len(PLANTS_PER_SCENE))])
    for _ in range(min(n_plants, (n_objects - len(layout.labels)) // 2)):
        predicate = _PLANT_NAMES[int(rng.choice(len(_PLANT_NAMES), p=_PLANT_P))]
        plant_pair(rng, layout, predicate, *_plant_classes(rng, predicate, held_out))
    while len(layout.labels) < n_objects:
        if not place_free_object(rng, layout, int(rng.choice(len(THING_CLASSES), p=_CLASS_P))):
            break
    return layout, forced


def _attempt(rng, height, width, zero_shot, held_out) -> Optional[Scene]:
    layout, forced = _layout(rng, height, width, zero_shot, held_out)
    if len(layout.labels) < MIN_OBJECTS or (zero_shot is not None and forced is None):
        return None
    labels = np.array(layout.labels, dtype=np.int64)
    masks = np.stack(layout.masks)
    visible = visible_masks(masks)
    boxes = np.stack([mask_box(m) for m in visible])
    keys = {(int(lab), *box.astype(int).tolist()) for lab, box in zip(labels, boxes)}
    if len(keys) < len(labels):  # VRD would merge identical (class, box) objects
        return None
    hollow = np.array([THING_CLASSES[lab] in HOLLOW_CLASSES for lab in labels])
    stats = pair_statistics(masks, hollow)
    primary, secondary = relation_labels(masks, hollow, boxes, stats)
    if forced is not None and primary[forced] != zero_shot[1]:
        return None  # a later object changed the planted pair's predicate

    def forbidden(s: int, o: int, p: int) -> bool:
        return (int(labels[s]), p, int(labels[o])) in held_out

    relations = sample_annotations(
        rng,
        primary,
        secondary,
        _WEIGHTS,
        SECONDARY_PROBABILITY,
        forbidden,
        () if forced is None else (forced,),
    )
    if len(relations) == 0:
        return None
    colours = _assign_colours(rng, stats["gap"])
    return Scene(
        height, width, labels, layout.shapes, masks, visible, boxes, colours, primary,
        secondary, relations,
    )  # fmt: skip


def sample_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    zero_shot: Optional[Triplet] = None,
    held_out: FrozenSet[Triplet] = frozenset(),
) -> Scene:
    """Sample one annotated scene.

    Args:
        rng: the image's own generator (determinism does not depend on other images).
        height, width: image size in pixels.
        zero_shot: a (subject class, predicate, object class) triplet to plant and
            annotate (test images), or None.
        held_out: triplets never planted and never annotated (train images).

    Raises:
        RuntimeError: if no valid scene was found within the try budget.
    """
    for _ in range(_SCENE_TRIES):
        scene = _attempt(rng, height, width, zero_shot, held_out)
        if scene is not None:
            return scene
    raise RuntimeError(
        f"could not sample a {width}x{height} scene in {_SCENE_TRIES} tries "
        f"(zero-shot triplet {zero_shot}); use a larger --image-size"
    )
