"""Scene graphs as networkx graphs, written as GraphML or Graphviz DOT."""

from typing import Dict

import networkx as nx

__all__ = ["scene_graph_to_networkx", "write_scene_graph"]

EXPORT_FORMATS = ("graphml", "dot")


def scene_graph_to_networkx(graph: Dict, top_k: int = 0) -> nx.MultiDiGraph:
    """A ``MultiDiGraph`` of a JSON-ready scene graph (``SceneGraphPredictor``'s dict).

    Nodes are object ids with attributes ``label`` (class), ``score`` and the box
    ``x1, y1, x2, y2`` (pixels); edges go subject -> object with ``label`` (predicate),
    ``score`` and ``rank`` (0 = best relation).

    Args:
        graph: ``{"objects": [...], "relations": [...]}``.
        top_k: keep only the ``top_k`` best relations (0: all).
    """
    g = nx.MultiDiGraph()
    for obj in graph["objects"]:
        x1, y1, x2, y2 = obj["box"]
        g.add_node(obj["id"], label=obj["class"], score=obj["score"], x1=x1, y1=y1, x2=x2, y2=y2)
    relations = graph["relations"][:top_k] if top_k > 0 else graph["relations"]
    for rank, rel in enumerate(relations):
        g.add_edge(
            rel["subject"], rel["object"], label=rel["predicate"], score=rel["score"], rank=rank
        )
    return g


def _dot_id(value) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _write_dot(g: nx.MultiDiGraph, path: str) -> None:
    """Graphviz DOT (written directly: networkx needs pydot/pygraphviz for it)."""
    lines = ["digraph scene_graph {"]
    for node, attrs in g.nodes(data=True):
        label = f"{node}: {attrs['label']} ({attrs['score']:.2f})"
        lines.append(f"  {_dot_id(node)} [label={_dot_id(label)}];")
    for u, v, attrs in g.edges(data=True):
        label = f"{attrs['label']} ({attrs['score']:.3f})"
        lines.append(f"  {_dot_id(u)} -> {_dot_id(v)} [label={_dot_id(label)}];")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_scene_graph(graph: Dict, path: str, fmt: str, top_k: int = 0) -> None:
    """Write ``graph`` to ``path`` as ``fmt`` ("graphml" or "dot").

    Raises:
        ValueError: unknown ``fmt``.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    g = scene_graph_to_networkx(graph, top_k)
    if fmt == "graphml":
        nx.write_graphml(g, path)
    else:
        _write_dot(g, path)
