"""Predicate rules of the synthetic world on hand-made masks, annotation sampling, planting."""

import numpy as np
import pytest

from sgg_d2.data.synthetic.layout import Layout, plant_pair
from sgg_d2.data.synthetic.relations import (
    pair_statistics,
    relation_labels,
    sample_annotations,
)
from sgg_d2.data.synthetic.scene import sample_scene, visible_masks
from sgg_d2.data.synthetic.shapes import Shape, draw_mask, hole_mask, mask_box
from sgg_d2.data.synthetic.world import PREDICATES, THING_CLASSES, class_index

P = {name: i for i, name in enumerate(PREDICATES)}


def grid(size):
    rows, cols = np.mgrid[0:size, 0:size]
    return rows, cols


def disk(size, cy, cx, radius):
    rows, cols = grid(size)
    return (rows + 0.5 - cy) ** 2 + (cols + 0.5 - cx) ** 2 <= radius**2


def square(size, r0, r1, c0, c1):
    m = np.zeros((size, size), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def labels(masks, hollow=None):
    masks = np.stack(masks)
    hollow = np.zeros(len(masks), bool) if hollow is None else np.array(hollow)
    boxes = np.stack([mask_box(m) for m in visible_masks(masks)])
    return relation_labels(masks, hollow, boxes)


def box_iou(a, b):
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    area = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2])
    return inter / (area - inter)


@pytest.mark.parametrize("k, gap, predicate", [(1, 1.0, "touching"), (6, np.sqrt(18), "near")])
def test_touching_needs_masks_not_boxes(k, gap, predicate):
    rows, cols = grid(40)
    a = (rows >= 5) & (rows < 25) & (cols >= 5) & (cols < 25) & (rows + cols <= 34)
    b = (rows >= 10) & (rows < 30) & (cols >= 10) & (cols < 30) & (rows + cols >= 34 + k)
    # The boxes overlap heavily in both cases; only the masks tell the gap.
    assert box_iou(mask_box(a), mask_box(b)) > 0.25
    stats = pair_statistics(np.stack([a, b]), np.zeros(2, bool))
    assert stats["gap"][0, 1] == pytest.approx(gap, abs=1e-3) and stats["overlap"][0, 1] == 0
    primary, secondary = labels([a, b])
    assert primary[0, 1] == primary[1, 0] == P[predicate]
    # b's centre is down-right of a's (dx == dy): the tie goes to "left of".
    assert secondary[0, 1] == P["left of"] and secondary[1, 0] == P["right of"]


def ring_64():
    outer, hole = disk(64, 32, 32, 20), disk(64, 32, 32, 12)
    return outer & ~hole


@pytest.mark.parametrize("ring_first", [True, False])
def test_in_hole_of_versus_overlapping_the_band(ring_first):
    ring = ring_64()
    in_hole, on_band = disk(64, 32, 32, 6), disk(64, 32, 46, 6)
    ring_box = mask_box(ring)
    for ball in (in_hole, on_band):  # a box inside the ring's box either way
        b = mask_box(ball)
        assert (b[:2] >= ring_box[:2]).all() and (b[2:] <= ring_box[2:]).all()
    order = (lambda r, x: [r, x]) if ring_first else (lambda r, x: [x, r])
    ri, bi = (0, 1) if ring_first else (1, 0)
    hollow = [True, False] if ring_first else [False, True]
    primary, _ = labels(order(ring, in_hole), hollow)
    assert primary[bi, ri] == P["in hole of"] and primary[ri, bi] == P["around"]
    primary, _ = labels(order(ring, on_band), hollow)
    top, under = (bi, ri) if ring_first else (ri, bi)
    assert primary[top, under] == P["on"] and primary[under, top] == P["behind"]


def test_hole_needs_a_hollow_class():
    primary, _ = labels([ring_64(), disk(64, 32, 32, 6)], hollow=[False, False])
    assert primary[1, 0] == P["near"]  # gap 6 px to the band; no hole without the flag


def test_inside_on_behind_and_overlap_threshold():
    big, small = square(64, 10, 50, 10, 50), disk(64, 30, 30, 5)
    primary, _ = labels([big, small])
    assert primary[1, 0] == P["inside"] and primary[0, 1] == P["behind"]
    # 1 x 10 px overlap (< 20 px) counts as touching; 2 x 10 px as on/behind.
    a = square(64, 10, 20, 10, 30)
    for rows, want in ((1, "touching"), (2, "on")):
        b = square(64, 20 - rows, 30, 15, 25)
        primary, _ = labels([a, b])
        assert primary[1, 0] == P[want]
        assert primary[0, 1] == P["touching" if want == "touching" else "behind"]


def test_geometric_directions_from_box_centres():
    a, b = square(64, 10, 20, 2, 12), square(64, 14, 24, 40, 50)
    primary, secondary = labels([a, b])
    assert primary[0, 1] == P["left of"] and primary[1, 0] == P["right of"]
    assert secondary[0, 1] == -1  # far apart: no second predicate
    c = square(64, 40, 50, 6, 16)
    primary, _ = labels([a, c])
    assert primary[0, 1] == P["above"] and primary[1, 0] == P["below"]


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_shapes_masks_holes_and_boxes():
    ring = draw_mask(Shape("annulus", 32.0, 32.0, 20.0, 0.0, 0.6), 64, 64)
    hole = hole_mask(ring)
    # OpenCV includes boundary pixels: masks are about half a pixel larger than ideal.
    assert iou(ring | hole, disk(64, 32, 32, 20)) > 0.9 and iou(hole, disk(64, 32, 32, 12)) > 0.85
    assert not (hole & ring).any() and hole[32, 32] and not hole[0, 0]
    ball = draw_mask(Shape("disk", 20.0, 40.0, 10.0, 0.0, 0.0), 64, 64)
    assert iou(ball, disk(64, 40, 20, 10)) > 0.9 and not hole_mask(ball).any()
    crescent = draw_mask(Shape("crescent", 32.0, 32.0, 20.0, 0.0, 0.0), 64, 64)
    assert not hole_mask(crescent).any()  # its concavity opens to the outside
    assert crescent[32, 14] and not crescent[32, 40]  # the bite faces angle 0 (+x)
    np.testing.assert_array_equal(mask_box(square(64, 3, 8, 2, 10)), [2, 3, 10, 8])
    with pytest.raises(ValueError, match="empty"):
        mask_box(np.zeros((4, 4), bool))


def test_sample_annotations_forced_forbidden_fallback_secondary():
    primary = np.array([[-1, P["touching"], P["left of"]], [P["touching"], -1, 0], [1, 1, -1]])
    secondary = np.full((3, 3), -1)
    secondary[0, 1] = P["left of"]
    rng = np.random.default_rng(0)
    weights = np.zeros(len(PREDICATES))
    rows = sample_annotations(rng, primary, secondary, weights, 1.0, forced=((2, 0),))
    assert rows.tolist() == [[2, 0, 1]]  # weight 0: only the forced pair
    rows = sample_annotations(rng, primary, secondary, weights + 1.0, 1.0)
    assert len(rows) == 7 and [0, 1, P["left of"]] in rows.tolist()  # 6 pairs + 1 secondary
    assert rows.tolist() == sorted(rows.tolist())

    def no_touching(s, o, p):
        return p == P["touching"]

    rows = sample_annotations(rng, primary, secondary, weights + 1.0, 1.0, no_touching)
    assert {(s, o) for s, o, _ in rows.tolist()} == {(0, 2), (1, 2), (2, 0), (2, 1)}
    # Nothing drawn, nothing forced: one allowed pair is still annotated.
    rows = sample_annotations(rng, primary, secondary, weights, 0.0, no_touching)
    assert len(rows) == 1 and tuple(rows[0, :2]) in {(0, 2), (1, 2), (2, 0), (2, 1)}
    everything = sample_annotations(rng, primary, secondary, weights, 0.0, lambda s, o, p: True)
    assert everything.shape == (0, 3)


PLANT_CASES = {
    "in hole of": ("ball", "ring"),
    "around": ("frame", "star"),
    "inside": ("triangle", "hexagon"),
    "on": ("cross", "ring"),
    "behind": ("star", "ball"),
    "touching": ("bar", "crescent"),
    "near": ("hexagon", "cross"),
    "left of": ("arrow", "diamond"),
    "above": ("bar", "crescent"),
}


@pytest.mark.parametrize("predicate", sorted(PLANT_CASES))
def test_planted_pairs_get_the_requested_predicate(predicate):
    s_name, o_name = PLANT_CASES[predicate]
    layout = Layout(160, 128)
    pair = plant_pair(
        np.random.default_rng(3), layout, predicate, class_index(s_name), class_index(o_name)
    )
    assert pair is not None
    s, o = pair
    assert THING_CLASSES[layout.labels[s]] == s_name and THING_CLASSES[layout.labels[o]] == o_name
    masks = np.stack(layout.masks)
    hollow = np.array([THING_CLASSES[i] in ("ring", "frame") for i in layout.labels])
    boxes = np.stack([mask_box(m) for m in visible_masks(masks)])
    primary, _ = relation_labels(masks, hollow, boxes)
    assert PREDICATES[primary[s, o]] == predicate


def test_scene_invariants_zero_shot_and_held_out():
    triplet = (class_index("star"), P["in hole of"], class_index("frame"))
    no_left = frozenset((s, P["left of"], o) for s in range(11) for o in range(11))
    seen_left = 0
    for k in range(12):
        scene = sample_scene(np.random.default_rng([1, k]), 160, 160, zero_shot=triplet)
        got = {(scene.labels[s], p, scene.labels[o]) for s, o, p in scene.relations}
        assert triplet in got
        visible = scene.visible.reshape(len(scene.labels), -1).sum(1)
        assert (visible >= 0.6 * scene.masks.reshape(len(scene.labels), -1).sum(1)).all()
        np.testing.assert_array_equal(scene.boxes, [mask_box(m) for m in scene.visible])
        seen_left += int((scene.relations[:, 2] == P["left of"]).sum())
        held = sample_scene(np.random.default_rng([2, k]), 160, 160, held_out=no_left)
        assert P["left of"] not in held.relations[:, 2] and len(held.relations) >= 1
        assert 2 <= len(held.labels) <= 6
    assert seen_left > 0  # the held-out filter, not chance, removed "left of"
