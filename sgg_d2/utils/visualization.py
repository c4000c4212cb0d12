"""Pictures of scene graphs: the image with objects and relation arrows, and a graph panel.

Readability rules: the image is drawn at least ``MIN_SIDE`` pixels on its long side; every
object scoring at least ``score_threshold`` is drawn (plus the objects of the drawn
relations), with its mask when the model gives masks (``pred_masks``: models with
segmentation grounding); labels never overprint each other (:class:`LabelPlacer` moves a
label to the nearest free spot); when both directions of a pair are drawn, the two arrows
curve to opposite sides and each carries its own label.
"""

import logging
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle, Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

__all__ = [
    "LabelPlacer",
    "SceneGraphPicture",
    "curve_midpoint",
    "curve_point",
    "draw_scene_graph",
    "objects_to_draw",
    "render_scene_graph",
]

logger = logging.getLogger(__name__)

MIN_SIDE = 640  # pixels of the drawn image's long side
DPI = 100
FONT = 9  # points
_PAD = 0.25  # label box padding, in font sizes
_MARGIN = 1.0  # pixels kept free around each label box
_GRAPH_HALF = 420  # the graph panel spans [-420, 420]^2 (node circle at radius 300)
_NODE_RADIUS = 14


class LabelPlacer:
    """Deterministic placement of rectangular labels that never intersect.

    A label goes to the first free spot among: its ``anchors`` in the caller's order
    (e.g. points along its edge, best first), then the spots of a grid around the first
    anchor (steps of a quarter width and half a height), nearest first, scanning the
    whole ``bounds``. A spot is free when the label's rectangle stays inside ``bounds``
    and intersects no placed label and no obstacle (:meth:`block`). When no spot of the
    whole area is free, the label is not placed (``place`` returns None).
    """

    def __init__(self, bounds: Tuple[float, float, float, float]):
        """
        Args:
            bounds: (x0, y0, x1, y1) of the drawing area, x0 < x1 and y0 < y1.
        """
        self.bounds = bounds
        self.rects: List[Tuple[float, float, float, float]] = []  # placed labels
        self.obstacles: List[Tuple[float, float, float, float]] = []

    def block(self, rect: Tuple[float, float, float, float]) -> None:
        """Keep labels off ``rect`` (x0, y0, x1, y1), e.g. a graph node."""
        self.obstacles.append(tuple(float(v) for v in rect))

    def _candidates(self, anchors: np.ndarray, width: float, height: float) -> np.ndarray:
        """(C, 2) centres: the anchors, then the grid around anchors[0], nearest first."""
        x0, y0, x1, y1 = self.bounds
        ax, ay = anchors[0]
        sx, sy = width / 4, height / 2
        i = np.arange(np.ceil((x0 + width / 2 - ax) / sx), np.floor((x1 - width / 2 - ax) / sx) + 1)
        j = np.arange(
            np.ceil((y0 + height / 2 - ay) / sy), np.floor((y1 - height / 2 - ay) / sy) + 1
        )
        dx, dy = np.meshgrid(i * sx, j * sy, indexing="ij")
        offsets = np.stack([dx.ravel(), dy.ravel()], axis=1)
        order = np.argsort(np.hypot(offsets[:, 0], offsets[:, 1]), kind="stable")
        return np.concatenate([anchors, anchors[:1] + offsets[order]])

    def place(self, anchors, width: float, height: float) -> Optional[Tuple[float, float]]:
        """Centre (x, y) of a ``width`` x ``height`` label, remembered; None if no spot
        of the bounds is free.

        Args:
            anchors: one (x, y) point or a (A, 2) sequence of preferred centres, best first.
        """
        anchors = np.asarray(anchors, dtype=float).reshape(-1, 2)
        centres = self._candidates(anchors, width, height)
        half = np.array([width / 2, height / 2])
        rects = np.concatenate([centres - half, centres + half], axis=1)  # (C, 4)
        x0, y0, x1, y1 = self.bounds
        ok = (rects[:, 0] >= x0) & (rects[:, 1] >= y0) & (rects[:, 2] <= x1) & (rects[:, 3] <= y1)
        taken = np.asarray(self.rects + self.obstacles, dtype=float).reshape(-1, 4)
        if len(taken):
            w = np.minimum(rects[:, None, 2], taken[:, 2]) - np.maximum(
                rects[:, None, 0], taken[:, 0]
            )
            h = np.minimum(rects[:, None, 3], taken[:, 3]) - np.maximum(
                rects[:, None, 1], taken[:, 1]
            )
            ok &= ~((w > 0) & (h > 0)).any(axis=1)
        free = np.flatnonzero(ok)
        if len(free) == 0:
            return None
        self.rects.append(tuple(float(v) for v in rects[free[0]]))
        return float(centres[free[0], 0]), float(centres[free[0], 1])


def curve_point(p: np.ndarray, q: np.ndarray, rad: float, y_down: bool, t: float) -> np.ndarray:
    """Point at parameter ``t`` in [0, 1] of matplotlib's ``arc3,rad=rad`` curve from ``p``
    to ``q`` (a quadratic Bezier curve; data coords of an axes with equal x/y scale;
    ``y_down`` for image axes)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    d = q - p
    normal = np.array([-d[1], d[0]]) if y_down else np.array([d[1], -d[0]])
    control = 0.5 * (p + q) + rad * normal
    return (1 - t) ** 2 * p + 2 * t * (1 - t) * control + t**2 * q


def curve_midpoint(p: np.ndarray, q: np.ndarray, rad: float, y_down: bool) -> np.ndarray:
    """Midpoint of matplotlib's ``arc3,rad=rad`` curve from ``p`` to ``q`` (see
    :func:`curve_point`)."""
    return curve_point(p, q, rad, y_down, 0.5)


# Where a relation's label may sit along its edge, best first.
_EDGE_TS = (0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74)


class _Labels:
    """The labels of one panel: measured with the figure's renderer, placed by a
    :class:`LabelPlacer` in data coordinates, and kept to report their drawn boxes."""

    def __init__(self, ax, bounds):
        ax.apply_aspect()  # final data-to-pixel scale before measuring
        self.ax, self.placer = ax, LabelPlacer(bounds)
        self.renderer = ax.figure.canvas.get_renderer()
        scale = ax.transData.transform((1, 1)) - ax.transData.transform((0, 0))
        self.px_per_unit = np.abs(scale)
        self.texts = []
        self.dropped = 0

    def size(self, artist) -> np.ndarray:
        """(width, height) in data units of ``artist``'s box, padding and margin included."""
        extent = artist.get_window_extent(renderer=self.renderer)
        pad = 2 * _PAD * artist.get_fontsize() * self.ax.figure.dpi / 72.0 + 2 * _MARGIN
        return np.array([extent.width + pad, extent.height + pad]) / self.px_per_unit

    def add(self, anchors, text, face, color="black", shifts=None, leader=False) -> None:
        """Draw ``text`` at the first free spot for it.

        Args:
            anchors: (A, 2) points (data units), best first.
            shifts: (A, 2) label centre = anchor + shift * (width / 2, height / 2), e.g.
                (1, -1) puts the label's corner on the anchor; None: centred on it.
            leader: draw a thin line to the first spot when the label had to move away.
        """
        artist = self.ax.text(
            0, 0, text, ha="center", va="center", fontsize=FONT, color=color, zorder=5
        )
        artist.set_bbox({"boxstyle": f"round,pad={_PAD}", "fc": face, "ec": "none", "alpha": 0.85})
        w, h = self.size(artist)
        spots = np.asarray(anchors, float).reshape(-1, 2)
        if shifts is not None:
            spots = spots + np.asarray(shifts, float).reshape(-1, 2) * (w / 2, h / 2)
        spot = self.placer.place(spots, w, h)
        if spot is None:  # the whole panel is full
            artist.remove()
            self.dropped += 1
            return
        artist.set_position(spot)
        self.texts.append(artist)
        if leader and np.hypot(*(np.asarray(spot) - spots[0])) > h:
            (x, y), (x0, y0) = spot, spots[0]
            self.ax.plot([x, x0], [y, y0], color="0.3", lw=0.6, ls=":", zorder=4.5)

    def drawn_boxes(self, picture_height: int) -> np.ndarray:
        """(L, 4) XYXY picture-pixel boxes of the drawn labels (after ``canvas.draw``)."""
        boxes = []
        for artist in self.texts:
            e = artist.get_bbox_patch().get_window_extent(renderer=self.renderer)
            boxes.append([e.x0, picture_height - e.y1, e.x1, picture_height - e.y0])
        return np.asarray(boxes, dtype=float).reshape(-1, 4)


def _colors(n: int) -> np.ndarray:
    cmap = plt.get_cmap("tab10")
    return np.array([cmap(i % 10)[:3] for i in range(n)])


def _curvatures(relations: Sequence[Dict]) -> List[float]:
    """arc3 radius per relation: reciprocal pairs bend apart, others slightly."""
    pairs = {(r["subject"], r["object"]) for r in relations}
    return [0.35 if (r["object"], r["subject"]) in pairs else 0.12 for r in relations]


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


def _edge_anchors(p, q, rad, y_down: bool) -> np.ndarray:
    """(T, 2) label spots along the curved edge from ``p`` to ``q``, best first."""
    return np.stack([curve_point(p, q, rad, y_down, t) for t in _EDGE_TS])


def _draw_image_panel(ax, image, inst, keep, graph, relations, colors, scale) -> _Labels:
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
    labels = _Labels(ax, (0, 0, width, height))
    for i in keep:
        x1, y1, x2, y2 = boxes[i]
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colors[i], lw=2))
    for i in keep:  # object labels first: on their boxes' top-left corners (else inside)
        obj = graph["objects"][i]
        text, corner = f"{i}: {obj['class']} {obj['score']:.2f}", boxes[i, :2]
        labels.add([corner, corner], text, colors[i], "white", shifts=[(1, -1), (1, 1)])
    for rel, rad in zip(relations, _curvatures(relations)):
        p, q = _anchors(boxes, rel["subject"], rel["object"])
        _arrow(ax, p, q, rad, "yellow", 1.8)
        labels.add(_edge_anchors(p, q, rad, True), rel["predicate"], "yellow", leader=True)
    return labels


def _draw_graph_panel(ax, graph, keep, relations, colors) -> Optional[_Labels]:
    ax.set_axis_off()
    ax.set_title(f"top {len(relations)} relations", fontsize=FONT + 2)
    ax.set_aspect("equal")
    nodes = sorted(set(keep) | {i for r in relations for i in (r["subject"], r["object"])})
    if not nodes:
        return None
    g = nx.MultiDiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from((r["subject"], r["object"]) for r in relations)
    pos = nx.circular_layout(g) if len(nodes) > 2 else nx.spring_layout(g, seed=0)
    pos = {k: np.asarray(v, dtype=float) * 300 for k, v in pos.items()}  # pixel-like units
    ax.set_xlim(-_GRAPH_HALF, _GRAPH_HALF)
    ax.set_ylim(-_GRAPH_HALF, _GRAPH_HALF)
    labels = _Labels(ax, (-_GRAPH_HALF, -_GRAPH_HALF, _GRAPH_HALF, _GRAPH_HALF))
    for n in nodes:
        ax.add_patch(Circle(pos[n], _NODE_RADIUS, fc=colors[n], ec="black", zorder=3))
        labels.placer.block((*(pos[n] - _NODE_RADIUS), *(pos[n] + _NODE_RADIUS)))
    for n in nodes:  # above the node, else below it
        ends = [pos[n] + (0, _NODE_RADIUS), pos[n] - (0, _NODE_RADIUS)]
        labels.add(
            ends, f"{n}: {graph['objects'][n]['class']}", "#e0e0e0", shifts=[(0, 1), (0, -1)]
        )
    for rel, rad in zip(relations, _curvatures(relations)):
        p, q = pos[rel["subject"]], pos[rel["object"]]
        _arrow(ax, p, q, rad, "#444444", 1.2)
        labels.add(_edge_anchors(p, q, rad, False), rel["predicate"], "#fff59d", leader=True)
    return labels


def objects_to_draw(graph: Dict, top_k: int, score_threshold: float) -> List[int]:
    """Sorted ids of the objects drawn: score >= ``score_threshold``, or used by one of
    the ``top_k`` best relations."""
    used = {i for r in graph["relations"][: max(0, top_k)] for i in (r["subject"], r["object"])}
    return sorted({o["id"] for o in graph["objects"] if o["score"] >= score_threshold} | used)


class SceneGraphPicture(NamedTuple):
    """A rendered scene graph and where its labels were drawn.

    Attributes:
        picture: (H', W', 3) uint8 RGB picture: image panel + graph panel.
        label_boxes: panel name (``"image"``, ``"graph"``) -> (L, 4) float XYXY boxes in
            picture pixels of the drawn labels (object and relation labels, padding
            included); no two of a panel intersect.
        dropped: labels left out because their panel had no free spot at all.
    """

    picture: np.ndarray
    label_boxes: Dict[str, np.ndarray]
    dropped: int


def render_scene_graph(
    image_rgb: np.ndarray,
    outputs: Dict,
    graph: Dict,
    top_k: int = 10,
    score_threshold: float = 0.0,
) -> SceneGraphPicture:
    """:func:`draw_scene_graph`, also reporting the drawn label boxes (arguments there)."""
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
    panels = {
        "image": _draw_image_panel(left, image, inst, keep, graph, relations, colors, scale),
        "graph": _draw_graph_panel(right, graph, keep, relations, colors),
    }
    fig.canvas.draw()
    picture = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    boxes = {
        name: labels.drawn_boxes(picture.shape[0]) if labels else np.zeros((0, 4))
        for name, labels in panels.items()
    }
    dropped = sum(labels.dropped for labels in panels.values() if labels)
    plt.close(fig)
    if dropped:
        logger.warning(f"{dropped} labels left out: no free spot in their panel")
    return SceneGraphPicture(picture, boxes, dropped)


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
    return render_scene_graph(image_rgb, outputs, graph, top_k, score_threshold).picture
