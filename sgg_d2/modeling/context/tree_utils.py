"""Tree construction and level-batched traversal for VCTree (not a context model itself).

Per image, a symmetric pairwise score matrix becomes a maximum spanning tree, rooted at the
node with the largest total score and converted to a binary tree by the left-child
right-sibling rule. The trees of all images of a batch are stored in one ``BinaryForest``
over global object indices, with its nodes grouped by depth, so that a TreeLSTM can update
a whole depth level of every image at once.
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import networkx as nx
import numpy as np
import torch

__all__ = [
    "BinaryForest",
    "build_forest",
    "forest_from_trees",
    "sample_spanning_tree",
    "tree_log_prob",
    "lcrs_binary_tree",
    "maximum_spanning_tree",
    "tree_depths",
]


def maximum_spanning_tree(scores: np.ndarray) -> Tuple[int, np.ndarray]:
    """Maximum spanning tree of a complete graph, oriented away from its root.

    The root is the node with the largest total score to all other nodes (ties: lowest
    index). Every pair is an edge, even with score 0, so the result is always a tree.

    Args:
        scores: (n, n) symmetric scores; the diagonal is ignored.

    Returns:
        ``(root, parent)``: ``parent`` (n,) int64, the parent of each node in the tree,
        -1 for the root.
    """
    n = scores.shape[0]
    if scores.shape != (n, n):
        raise ValueError(f"scores must be a square (n, n) matrix, got {scores.shape}")
    if not np.allclose(scores, scores.T):
        raise ValueError("scores must be symmetric (symmetrise S before building the tree)")
    parent = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return -1, parent
    off_diag = scores * (1 - np.eye(n, dtype=scores.dtype))
    root = int(np.argmax(off_diag.sum(axis=1)))
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    i, j = np.triu_indices(n, k=1)
    graph.add_weighted_edges_from(zip(i.tolist(), j.tolist(), scores[i, j].tolist()))
    tree = nx.maximum_spanning_tree(graph)
    for child, par in nx.bfs_predecessors(tree, root):
        parent[child] = par
    return root, parent


def sample_spanning_tree(scores: np.ndarray, root: int) -> Tuple[np.ndarray, np.ndarray]:
    """Sample a spanning tree by Prim's procedure with random instead of greedy choices.

    Starting from ``root``, each step adds one node outside the tree, attached by the
    edge (i in the tree, j outside) drawn with probability ``S_ij / sum of S over all such
    edges`` (VCTree's tree policy; the greedy choice would give the maximum tree). Uses
    ``torch.rand``, so ``torch.manual_seed`` makes it reproducible.

    Args:
        scores: (n, n) symmetric non-negative scores; root: the first node.

    Returns:
        ``(parent, order)``: ``parent`` (n,) int64 (-1 for the root) and ``order`` (n,)
        int64, the nodes in the order they joined (``order[0] == root``).
    """
    n = scores.shape[0]
    parent = np.full(n, -1, dtype=np.int64)
    order = np.full(n, root, dtype=np.int64)
    in_tree = np.zeros(n, dtype=bool)
    in_tree[root] = True
    weights = np.clip(scores, 1e-12, None) * (1 - np.eye(n))
    for step in range(1, n):
        frontier = weights * np.outer(in_tree, ~in_tree)  # (i in tree, j outside)
        cdf = np.cumsum(frontier.ravel())
        pick = int(np.searchsorted(cdf, float(torch.rand(())) * cdf[-1], side="right"))
        i, j = divmod(min(pick, n * n - 1), n)
        parent[j], order[step], in_tree[j] = i, j, True
    return parent, order


def tree_log_prob(scores: torch.Tensor, parent: np.ndarray, order: np.ndarray) -> torch.Tensor:
    """Log-probability of a tree drawn by :func:`sample_spanning_tree`, differentiable in S.

    ``sum_t log S[parent(j_t), j_t] - log sum_{i in T_t, j not in T_t} S_ij`` over the steps
    t = 1 .. n - 1, with ``T_t`` the nodes that joined before step t.

    Args:
        scores: (n, n) symmetric positive scores (a tensor, with its gradient).
        parent, order: as returned by :func:`sample_spanning_tree`.

    Returns:
        Scalar tensor (0 for n <= 1).
    """
    n = scores.shape[0]
    if n <= 1:
        return scores.sum() * 0.0
    scores = scores.clamp(min=1e-12)
    rank = torch.empty(n, dtype=torch.long, device=scores.device)
    rank[torch.as_tensor(order, device=scores.device)] = torch.arange(n, device=scores.device)
    steps = torch.arange(1, n, device=scores.device)
    member = (rank[None, :] < steps[:, None]).to(scores.dtype)  # (n-1, n): in T_t
    frontier = ((member @ scores) * (1 - member)).sum(dim=1)  # (n-1,)
    child = torch.as_tensor(order[1:], device=scores.device)
    chosen = scores[torch.as_tensor(parent[order[1:]], device=scores.device), child]
    return (chosen.log() - frontier.log()).sum()


def lcrs_binary_tree(parent: np.ndarray, root: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-child right-sibling binary form of a rooted tree.

    A node's first child (lowest index) becomes its left child; each child's next sibling
    (next higher index under the same parent) becomes that child's right child.

    Args:
        parent: (n,) int64 parent of each node, -1 for the root.
        root: index of the root.

    Returns:
        ``(left, right, bparent)``, each (n,) int64, -1 where absent; ``bparent`` is the
        parent in the binary tree.
    """
    n = len(parent)
    left = np.full(n, -1, dtype=np.int64)
    right = np.full(n, -1, dtype=np.int64)
    bparent = np.full(n, -1, dtype=np.int64)
    roots = np.flatnonzero(parent < 0)
    if n and (len(roots) != 1 or roots[0] != root):
        raise ValueError(f"parent must describe one tree rooted at {root}; roots: {roots}")
    children = [[] for _ in range(n)]
    for node in range(n):  # ascending, so every child list is sorted
        if parent[node] >= 0:
            children[parent[node]].append(node)
    for node, kids in enumerate(children):
        if not kids:
            continue
        left[node], bparent[kids[0]] = kids[0], node
        for a, b in zip(kids[:-1], kids[1:]):
            right[a], bparent[b] = b, a
    return left, right, bparent


def tree_depths(bparent: np.ndarray) -> np.ndarray:
    """(n,) depth of each node (root 0) given (n,) parents (-1 = root); rejects cycles."""
    n = len(bparent)
    depth = np.full(n, -1, dtype=np.int64)
    depth[bparent < 0] = 0
    for _ in range(n):
        todo = depth < 0
        if not todo.any():
            return depth
        known_parent = todo & (depth[np.maximum(bparent, 0)] >= 0)
        depth[known_parent] = depth[bparent[known_parent]] + 1
    if (depth < 0).any():
        raise ValueError(f"parent array has a cycle through nodes {np.flatnonzero(depth < 0)}")
    return depth


@dataclass
class BinaryForest:
    """Binary trees of every image of a batch over N global object indices.

    Missing neighbours point to the sentinel index N (a zero state row in the TreeLSTMs).

    Attributes:
        left, right, parent: (N,) int64 tensors; left/right child and binary-tree parent.
        levels: node indices of depth 0, 1, ..., each a (n_d,) int64 tensor gathering that
            depth of every image.
        roots: (B',) int64 root of each non-empty image.
    """

    left: torch.Tensor
    right: torch.Tensor
    parent: torch.Tensor
    levels: List[torch.Tensor]
    roots: torch.Tensor

    @property
    def num_nodes(self) -> int:
        return len(self.left)


def build_forest(scores: Sequence[np.ndarray], device) -> BinaryForest:
    """One binary tree per image: the maximum spanning tree of its symmetric scores.

    Args:
        scores: per image, (n_i, n_i) symmetric scores (images in batch order).
        device: device of the returned tensors.

    Returns:
        ``BinaryForest`` over N = sum(n_i) nodes, image i's nodes offset by sum(n_<i).
    """
    trees = [
        maximum_spanning_tree(s) if s.shape[0] else (-1, np.zeros(0, np.int64)) for s in scores
    ]
    return forest_from_trees(trees, device)


def forest_from_trees(trees: Sequence[Tuple[int, np.ndarray]], device) -> BinaryForest:
    """``BinaryForest`` of given rooted trees, one per image.

    Args:
        trees: per image ``(root, parent)``: parent (n_i,) int64 of each node, -1 for the
            root (root -1 and n_i = 0 for an image without objects).
        device: device of the returned tensors.
    """
    total = int(sum(len(parent) for _, parent in trees))
    left, right, parent, depth, roots = [], [], [], [], []
    offset = 0
    for root, tree_parent in trees:
        n = len(tree_parent)
        if n:
            lft, rgt, bpar = lcrs_binary_tree(tree_parent, root)
            depth.append(tree_depths(bpar))
            # Local -> global indices; absent (-1) -> the sentinel N.
            left.append(np.where(lft >= 0, lft + offset, total))
            right.append(np.where(rgt >= 0, rgt + offset, total))
            parent.append(np.where(bpar >= 0, bpar + offset, total))
            roots.append(root + offset)
        offset += n
    if total == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return BinaryForest(empty, empty, empty, [], empty)
    depth = np.concatenate(depth)
    order = np.argsort(depth, kind="stable")
    splits = np.cumsum(np.bincount(depth))[:-1]
    levels = [torch.as_tensor(lv, device=device) for lv in np.split(order, splits)]

    def cat(parts):
        return torch.as_tensor(np.concatenate(parts), dtype=torch.long, device=device)

    return BinaryForest(cat(left), cat(right), cat(parent), levels, cat([np.array(roots)]))
