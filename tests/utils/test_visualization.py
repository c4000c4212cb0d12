"""Scene-graph pictures: label placement, curved reciprocal edges, what is drawn, export."""

import networkx as nx
import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances
from matplotlib.patches import ConnectionStyle

from sgg_d2.utils.export import scene_graph_to_networkx, write_scene_graph
from sgg_d2.utils.visualization import (
    MIN_SIDE,
    LabelPlacer,
    curve_midpoint,
    draw_scene_graph,
    objects_to_draw,
    render_scene_graph,
)


def _overlaps(a, b):
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def _any_overlap(rects):
    return any(_overlaps(a, b) for i, a in enumerate(rects) for b in rects[i + 1 :])


def test_labels_at_one_anchor_do_not_overlap():
    placer = LabelPlacer((0, 0, 640, 640))
    for _ in range(12):
        x, y = placer.place((320, 320), 80, 16)
        assert 0 <= x - 40 and x + 40 <= 640
    rects = placer.rects
    assert len(rects) == 12
    assert not _any_overlap(rects)


def test_placer_prefers_the_given_spots_then_the_nearest_free_one():
    placer = LabelPlacer((0, 0, 200, 100))
    placer.block((90, 40, 110, 60))  # a node at the centre
    # first spot blocked, second free: the label takes the second
    assert placer.place([(100, 50), (100, 20)], 40, 10) == (100, 20)
    # both spots taken: the nearest free grid spot, deterministic
    first = placer.place([(100, 20)], 40, 10)
    again = LabelPlacer((0, 0, 200, 100))
    again.block((90, 40, 110, 60))
    again.place([(100, 20)], 40, 10)
    assert again.place([(100, 20)], 40, 10) == first
    assert np.hypot(first[0] - 100, first[1] - 20) <= 10
    assert not _any_overlap(placer.rects + placer.obstacles)
    # a full area: the label is not placed rather than overprinted
    full = LabelPlacer((0, 0, 40, 10))
    assert full.place((20, 5), 40, 10) == (20, 5) and full.place((20, 5), 40, 10) is None


@pytest.mark.parametrize("rad", [0.12, -0.35, 0.35])
def test_curve_midpoint_matches_matplotlib_arc3(rad):
    p, q = np.array([10.0, 20.0]), np.array([110.0, 60.0])
    path = ConnectionStyle.Arc3(rad=rad)(tuple(p), tuple(q))  # display coords (y up)
    p0, c, p1 = path.vertices[:3]
    expected = 0.25 * p0 + 0.5 * c + 0.25 * p1
    assert curve_midpoint(p, q, rad, y_down=False) == pytest.approx(expected, abs=0.01)
    # image axes (y down): the same curve seen mirrored
    flip = np.array([1.0, -1.0])
    mid = curve_midpoint(p * flip, q * flip, rad, y_down=True)
    assert mid * flip == pytest.approx(expected, abs=0.01)
    # a reciprocal pair with the same rad bends to the other side: distinct label spots
    back = curve_midpoint(q, p, rad, y_down=False)
    assert np.linalg.norm(back - expected) > 10


def _graph_and_outputs(with_masks=True):
    boxes = torch.tensor([[10.0, 10, 60, 60], [20, 20, 40, 40], [100, 100, 150, 150]])
    inst = Instances((160, 160))
    inst.pred_boxes = Boxes(boxes)
    inst.scores = torch.tensor([0.9, 0.05, 0.5])
    inst.pred_classes = torch.tensor([0, 1, 2])
    if with_masks:
        masks = torch.zeros(3, 160, 160, dtype=torch.bool)
        masks[0, 10:60, 10:60] = True
        inst.pred_masks = masks
    names = ["frame", "star", "ball"]
    objects = [
        {"id": i, "class": names[i], "score": float(inst.scores[i]), "box": boxes[i].tolist()}
        for i in range(3)
    ]
    relations = [
        {"subject": 1, "object": 0, "predicate": "inside", "score": 0.4},
        {"subject": 0, "object": 1, "predicate": "around", "score": 0.3},
        {"subject": 2, "object": 0, "predicate": "right of", "score": 0.1},
    ]
    return {"instances": inst}, {"objects": objects, "relations": relations}


def test_objects_to_draw_threshold_and_relations():
    _, graph = _graph_and_outputs()
    # object 1 scores 0.05 but is used by a drawn relation; object 2 (0.5) only by the third
    assert objects_to_draw(graph, top_k=2, score_threshold=0.6) == [0, 1]
    assert objects_to_draw(graph, top_k=0, score_threshold=0.3) == [0, 2]
    assert objects_to_draw(graph, top_k=3, score_threshold=0.95) == [0, 1, 2]


@pytest.mark.parametrize("with_masks", [True, False])
def test_picture_is_large_and_masks_change_it(with_masks):
    outputs, graph = _graph_and_outputs(with_masks)
    image = np.full((160, 160, 3), 60, np.uint8)
    pic = draw_scene_graph(image, outputs, graph, None, top_k=3, score_threshold=0.3)
    assert pic.dtype == np.uint8 and pic.shape[0] >= MIN_SIDE and pic.shape[1] >= 2 * MIN_SIDE
    # inside the frame's box, away from its edges and labels: tinted only by the mask
    left = pic[:, : pic.shape[0]]
    patch = left[200:220, 60:80].reshape(-1, 3).astype(int)
    tinted = np.abs(patch - 60).max() > 20
    assert tinted == with_masks


def test_export_graphml_and_dot(tmp_path):
    _, graph = _graph_and_outputs()
    g = scene_graph_to_networkx(graph, top_k=2)
    assert sorted(g.edges()) == [(0, 1), (1, 0)] and g.nodes[2]["label"] == "ball"
    write_scene_graph(graph, str(tmp_path / "g.graphml"), "graphml")
    back = nx.read_graphml(tmp_path / "g.graphml")
    assert back.number_of_nodes() == 3 and back.number_of_edges() == 3
    write_scene_graph(graph, str(tmp_path / "g.dot"), "dot")
    dot = (tmp_path / "g.dot").read_text()
    assert dot.startswith("digraph") and '"2" -> "0" [label="right of (0.100)"];' in dot
    with pytest.raises(ValueError, match="export format 'svg'"):
        write_scene_graph(graph, str(tmp_path / "g.svg"), "svg")


def _crowded_scene(num_objects=12, num_relations=30, seed=0):
    """Objects packed into a 240 x 320 image, relations among them (some reciprocal)."""
    rng = np.random.default_rng(seed)
    corners = rng.uniform([0, 0], [260, 180], (num_objects, 2))
    boxes = torch.tensor(np.hstack([corners, corners + rng.uniform(20, 60, (num_objects, 2))]))
    inst = Instances((240, 320))
    inst.pred_boxes = Boxes(boxes.float())
    inst.scores = torch.linspace(0.99, 0.5, num_objects)
    inst.pred_classes = torch.arange(num_objects) % 5
    names = ["person", "horse", "table", "cup", "window"]
    objects = [
        {"id": i, "class": names[i % 5], "score": float(inst.scores[i]), "box": []}
        for i in range(num_objects)
    ]
    predicates = ["near", "above", "on top of", "has", "left of", "holding", "behind"]
    pairs = [(s, o) for s in range(num_objects) for o in range(num_objects) if s != o]
    chosen = [pairs[k] for k in rng.permutation(len(pairs))[:num_relations]]
    chosen[1] = chosen[0][::-1]  # a reciprocal pair: "near" both ways
    relations = [
        {"subject": s, "object": o, "predicate": predicates[j % 7], "score": 1 - j / 100}
        for j, (s, o) in enumerate(chosen)
    ]
    relations[1]["predicate"] = "near"
    image = np.full((240, 320, 3), 90, np.uint8)
    return image, {"instances": inst}, {"objects": objects, "relations": relations}


def test_crowded_picture_labels_never_intersect():
    """12 objects, 30 relations: every label is drawn, and the drawn label boxes (measured
    by matplotlib after rendering) of a panel intersect none of the others."""
    image, outputs, graph = _crowded_scene()
    drawn = render_scene_graph(image, outputs, graph, top_k=30)
    assert drawn.dropped == 0
    image_boxes, graph_boxes = drawn.label_boxes["image"], drawn.label_boxes["graph"]
    assert len(image_boxes) == 12 + 30 and len(graph_boxes) == 12 + 30
    for boxes in (image_boxes, graph_boxes):
        assert not _any_overlap(boxes.tolist())
    # labels stay inside their panel: the image is drawn at 480 x 640 on the left
    assert image_boxes[:, :2].min() >= 0 and image_boxes[:, 2].max() <= 640
    assert graph_boxes[:, 0].min() >= 640 and graph_boxes[:, 2].max() <= drawn.picture.shape[1]
    assert np.array_equal(drawn.picture, draw_scene_graph(image, outputs, graph, top_k=30))
