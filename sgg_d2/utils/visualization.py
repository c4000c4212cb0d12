"""Pictures of scene graphs: the image with objects and relation arrows, and a graph panel.

Readability rules: the image is drawn at least ``MIN_SIDE`` pixels on its long side; every
object scoring at least ``score_threshold`` is drawn (plus the objects of the drawn
relations), with its mask when the model gives masks (``pred_masks``: models with
segmentation grounding); labels never overprint each other (:class:`LabelPlacer` moves a
label to the nearest free spot); when both directions of a pair are drawn, the two arrows
curve to opposite sides and each carries its own label.
"""

from typing import Dict, List, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle, Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

__all__ = ["LabelPlacer", "curve_midpoint", "draw_scene_graph", "objects_to_draw"]

MIN_SIDE = 640  # pixels of the drawn image's long side
DPI = 100
FONT = 9  # points
_PX = DPI / 72.0  # pixels per point


class LabelPlacer:
    """Greedy placement of rectangular labels without overlaps.

    A label goes to the first candidate spot around its anchor (at the anchor, then above,
    below, left, right, diagonals, at growing distances) that overlaps no placed label and
    stays inside the ``bounds``; if none is free, the spot with the least overlap.
    """

    def __init__(self, bounds: Tuple[float, float, float, float]):
        """
        Args:
            bounds: (x0, y0, x1, y1) of the drawing area.
        """
        self.bounds = bounds
        self.rects: List[Tuple[float, float, float, float]] = []

    def _overlap(self, r) -> float:
        total = 0.0
        for q in self.rects:
            w = min(r[2], q[2]) - max(r[0], q[0])
            h = min(r[3], q[3]) - max(r[1], q[1])
            if w > 0 and h > 0:
                total += w * h
        return total

    def _inside(self, r) -> bool:
        x0, y0, x1, y1 = self.bounds
        return r[0] >= x0 and r[1] >= y0 and r[2] <= x1 and r[3] <= y1

    def place(self, anchor: Tuple[float, float], width: float, height: float):
        """Centre (x, y) of a ``width`` x ``height`` label near ``anchor``; remembered."""
        best, best_cost = None, None
        for step in range(0, 8):
            for ux, uy in ((0, 0), (0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (1, -1), (-1, 1)):
                if step == 0 and (ux, uy) != (0, 0):
                    continue
                cx = anchor[0] + ux * step * 0.55 * width
                cy = anchor[1] + uy * step * 1.1 * height
                r = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
                if not self._inside(r):
                    continue
                cost = self._overlap(r)
                if cost == 0:
                    self.rects.append(r)
                    return cx, cy
                if best_cost is None or cost < best_cost:
                    best, best_cost = r, cost
        if best is None:  # no spot inside the bounds: at the anchor
            best = (
                anchor[0] - width / 2,
                anchor[1] - height / 2,
                anchor[0] + width / 2,
                anchor[1] + height / 2,
            )
        self.rects.append(best)
        return 0.5 * (best[0] + best[2]), 0.5 * (best[1] + best[3])


def _text_size(text: str, font: float = FONT) -> Tuple[float, float]:
    """Approximate (width, height) in pixels of ``text`` in a padded label box."""
    return 0.62 * font * _PX * len(text) + 8, 1.35 * font * _PX + 6


def curve_midpoint(p: np.ndarray, q: np.ndarray, rad: float, y_down: bool) -> np.ndarray:
    """Midpoint of matplotlib's ``arc3,rad=rad`` curve from ``p`` to ``q`` (data coords of
    an axes with equal x/y scale; ``y_down`` for image axes)."""
    mid, d = 0.5 * (p + q), q - p
    if y_down:
        return mid + 0.5 * rad * np.array([-d[1], d[0]])
    return mid + 0.5 * rad * np.array([d[1], -d[0]])


def _colors(n: int) -> np.ndarray:
    cmap = plt.get_cmap("tab10")
    return np.array([cmap(i % 10)[:3] for i in range(n)])


def _curvatures(relations: Sequence[Dict]) -> List[float]:
    """arc3 radius per relation: reciprocal pairs bend apart, others slightly."""
    pairs = {(r["subject"], r["object"]) for r in relations}
    return [0.35 if (r["object"], r["subject"]) in pairs else 0.12 for r in relations]


def _label(ax, placer, anchor, text, face, font=FONT, color="black"):
    w, h = _text_size(text, font)
    x, y = placer.place(anchor, w, h)
    ax.text(
        x,
        y,
        text,
        ha="center",
        va="center",
        fontsize=font,
        color=color,
        bbox={"boxstyle": "round,pad=0.25", "fc": face, "ec": "none", "alpha": 0.85},
        zorder=5,
    )


def _arrow(ax, p, q, rad, color, lw):
    ax.annotate(
        "",
        xy=tuple(q),
        xytext=tuple(p),
        arrowprops={
            "arrowstyle": "-|>",
            "color": color,
            "lw": lw,
            "shrinkA": 4,
            "shrinkB": 4,
            "connectionstyle": f"arc3,rad={rad}",
        },
        zorder=4,
    )


def _anchors(boxes: np.ndarray, s: int, o: int):
    """Arrow end points: box centres; when the centres are close (nested boxes) the arrow
    starts at the subject's top edge instead, so that it stays visible."""
    cs, co = 0.5 * (boxes[s, :2] + boxes[s, 2:]), 0.5 * (boxes[o, :2] + boxes[o, 2:])
    if np.linalg.norm(cs - co) < 40:
        cs = np.array([cs[0], boxes[s, 1]])
        if np.linalg.norm(cs - co) < 40:
            cs = cs + np.array([0.0, -40.0])
    return cs, co


def _draw_image_panel(ax, image, inst, keep, graph, relations, colors, scale):
    height, width = image.shape[:2]
    ax.imshow(image)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    boxes = inst.pred_boxes.tensor.numpy() * scale
    if inst.has("pred_masks"):
        overlay = np.zeros((height, width, 4))
        for i in keep:
            mask = np.asarray(
                Image.fromarray(inst.pred_masks[i].numpy().astype(np.uint8) * 255).resize(
                    (width, height), Image.NEAREST
                )
            )
            overlay[mask > 127] = (*colors[i], 0.45)
        ax.imshow(overlay)
    placer = LabelPlacer((0, 0, width, height))
    for i in keep:
        x1, y1, x2, y2 = boxes[i]
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colors[i], lw=2))
    for i in keep:  # object labels first: they sit on their boxes' top-left corners
        obj = graph["objects"][i]
        text = f"{i}: {obj['class']} {obj['score']:.2f}"
        w, h = _text_size(text)
        anchor = (boxes[i, 0] + w / 2, boxes[i, 1] - h / 2)
        _label(ax, placer, anchor, text, colors[i], color="white")
    for rel, rad in zip(relations, _curvatures(relations)):
        p, q = _anchors(boxes, rel["subject"], rel["object"])
        _arrow(ax, p, q, rad, "yellow", 1.8)
        _label(ax, placer, curve_midpoint(p, q, rad, y_down=True), rel["predicate"], "yellow")


def _draw_graph_panel(ax, graph, keep, relations, colors):
    ax.set_axis_off()
    ax.set_title(f"top {len(relations)} relations", fontsize=FONT + 2)
    ax.set_aspect("equal")
    nodes = sorted(set(keep) | {i for r in relations for i in (r["subject"], r["object"])})
    if not nodes:
        return
    g = nx.MultiDiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from((r["subject"], r["object"]) for r in relations)
    pos = nx.circular_layout(g) if len(nodes) > 2 else nx.spring_layout(g, seed=0)
    pos = {k: np.asarray(v, dtype=float) * 300 for k, v in pos.items()}  # pixel-like units
    ax.set_xlim(-420, 420)
    ax.set_ylim(-420, 420)
    placer = LabelPlacer((-420, -420, 420, 420))
    for n in nodes:
        ax.add_patch(Circle(pos[n], 14, fc=colors[n], ec="black", zorder=3))
    for n in nodes:
        text = f"{n}: {graph['objects'][n]['class']}"
        w, h = _text_size(text)
        _label(ax, placer, (pos[n][0], pos[n][1] + 14 + h / 2), text, "#e0e0e0")
    for rel, rad in zip(relations, _curvatures(relations)):
        p, q = pos[rel["subject"]], pos[rel["object"]]
        _arrow(ax, p, q, rad, "#444444", 1.2)
        _label(ax, placer, curve_midpoint(p, q, rad, y_down=False), rel["predicate"], "#fff59d")


def objects_to_draw(graph: Dict, top_k: int, score_threshold: float) -> List[int]:
    """Sorted ids of the objects drawn: score >= ``score_threshold``, or used by one of
    the ``top_k`` best relations."""
    used = {i for r in graph["relations"][: max(0, top_k)] for i in (r["subject"], r["object"])}
    return sorted({o["id"] for o in graph["objects"] if o["score"] >= score_threshold} | used)


def draw_scene_graph(
    image_rgb: np.ndarray,
    outputs: Dict,
    graph: Dict,
    metadata=None,
    top_k: int = 10,
    score_threshold: float = 0.0,
) -> np.ndarray:
    """Render objects, the ``top_k`` relations as arrows, and the graph beside the image.

    Args:
        image_rgb: (H, W, 3) uint8 RGB image.
        outputs: the model's raw output ``{"instances", "relations"}`` (original frame);
            ``instances.pred_masks`` (N, H, W) are drawn when present.
        graph: the JSON-ready scene graph of ``SceneGraphPredictor.to_scene_graph``.
        metadata: unused (names are in ``graph``); kept for API compatibility.
        top_k: number of relations drawn (best first).
        score_threshold: objects scoring below it are not drawn unless a drawn relation
            uses them.

    Returns:
        (H', W', 3) uint8 RGB picture: image panel (long side >= ``MIN_SIDE``) + graph.
    """
    inst = outputs["instances"].to("cpu")
    relations = graph["relations"][: max(0, top_k)]
    keep = objects_to_draw(graph, top_k, score_threshold)
    scale = max(1.0, MIN_SIDE / max(image_rgb.shape[:2]))
    size = (round(image_rgb.shape[1] * scale), round(image_rgb.shape[0] * scale))
    image = np.asarray(Image.fromarray(image_rgb).resize(size, Image.BILINEAR))
    height, width = image.shape[:2]
    side = max(height, 480)
    fig = plt.figure(figsize=((width + side) / DPI, side / DPI), dpi=DPI)
    left = fig.add_axes((0, (side - height) / side / 2, width / (width + side), height / side))
    right = fig.add_axes((width / (width + side), 0, side / (width + side), 0.95))
    colors = _colors(len(graph["objects"]))
    _draw_image_panel(left, image, inst, keep, graph, relations, colors, scale)
    _draw_graph_panel(right, graph, keep, relations, colors)
    fig.canvas.draw()
    picture = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return picture
