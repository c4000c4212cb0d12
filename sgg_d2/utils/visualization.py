"""Pictures of scene graphs: Detectron2's ``Visualizer`` for objects, arrows for the top
relations, and a graph panel (networkx) beside the image."""

from typing import Dict

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
from detectron2.utils.visualizer import Visualizer  # noqa: E402

__all__ = ["draw_scene_graph"]


def _draw_relation_arrows(vis: Visualizer, boxes: np.ndarray, graph: Dict, top_k: int) -> None:
    ax, scale = vis.output.ax, vis.output.scale
    # draw_text multiplies by the output scale itself; size relative to the image
    font = max(4.0, np.sqrt(vis.output.height * vis.output.width) / scale / 60)
    centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    for rel in graph["relations"][:top_k]:
        s, o = centres[rel["subject"]], centres[rel["object"]]
        ax.annotate(
            "",
            xy=tuple(o),
            xytext=tuple(s),
            arrowprops={"arrowstyle": "->", "color": "yellow", "lw": 1.5 * scale},
        )
        vis.draw_text(rel["predicate"], tuple(0.5 * (s + o)), color="yellow", font_size=font)


def _draw_graph_panel(ax, graph: Dict, top_k: int) -> None:
    g = nx.MultiDiGraph()
    used = {i for r in graph["relations"][:top_k] for i in (r["subject"], r["object"])}
    for obj in graph["objects"]:
        if obj["id"] in used:
            g.add_node(obj["id"], label=f"{obj['id']}: {obj['class']}")
    for rel in graph["relations"][:top_k]:
        g.add_edge(rel["subject"], rel["object"], label=rel["predicate"])
    ax.set_axis_off()
    ax.set_title(f"top {min(top_k, len(graph['relations']))} relations")
    if not g.nodes:
        return
    pos = nx.spring_layout(g, seed=0)
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color="#9ecae1", node_size=900)
    nx.draw_networkx_labels(g, pos, nx.get_node_attributes(g, "label"), ax=ax, font_size=8)
    nx.draw_networkx_edges(
        g, pos, ax=ax, arrows=True, node_size=900, connectionstyle="arc3,rad=0.1"
    )
    edge_labels = {(u, v): d["label"] for u, v, d in g.edges(data=True)}
    nx.draw_networkx_edge_labels(g, pos, edge_labels, ax=ax, font_size=7)


def draw_scene_graph(image_rgb: np.ndarray, outputs: Dict, graph: Dict, metadata, top_k=10):
    """Render the objects of the ``top_k`` relations, those relations as arrows, and the
    graph beside the image.

    Args:
        image_rgb: (H, W, 3) uint8 RGB image.
        outputs: the model's raw output ``{"instances", "relations"}`` (original frame).
        graph: the JSON-ready scene graph of ``SceneGraphPredictor.to_scene_graph``.
        metadata: a ``Metadata`` with ``thing_classes``.
        top_k: number of relations drawn.

    Returns:
        (H', W', 3) uint8 RGB picture (image panel + graph panel).
    """
    inst = outputs["instances"].to("cpu")
    # small images are drawn enlarged so that labels stay readable
    scale = max(1.0, 480.0 / max(image_rgb.shape[:2]))
    vis = Visualizer(image_rgb, metadata, scale=scale)
    # only the objects of the drawn relations (SGDet keeps many low-scoring detections)
    used = sorted({i for r in graph["relations"][:top_k] for i in (r["subject"], r["object"])})
    vis.draw_instance_predictions(inst[used] if used else inst)
    _draw_relation_arrows(vis, inst.pred_boxes.tensor.numpy(), graph, top_k)
    panel = vis.output.get_image()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 6), dpi=100)
    left.imshow(panel)
    left.set_axis_off()
    _draw_graph_panel(right, graph, top_k)
    fig.tight_layout()
    fig.canvas.draw()
    picture = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return picture
