"""VCTree (Tang et al., "Learning to Compose Dynamic Tree Structures for Visual Contexts",
CVPR 2019).

1. Tree scores. Each object gets a feature ``u_i`` from [RoI feature, class embedding, box
   layout embedding]; a directed pair logit is ``<A u_i, B u_j> / sqrt(H)`` plus an MLP of
   the pair geometry (``pair_geometry`` on the boxes normalised by their image size). The
   symmetric score matrix is ``S_ij = (sigmoid(logit_ij) + sigmoid(logit_ji)) / 2``.
2. Tree. Per image, the maximum spanning tree of S (networkx), rooted at the object with
   the largest total score, converted to a binary tree by left-child right-sibling
   (``tree_utils``). The tree is discrete: no gradient flows through its construction.
3. Context. A bidirectional TreeLSTM (bottom-up binary TreeLSTM over left/right children,
   top-down LSTM from the binary parent) over [RoI feature, class embedding, layout
   embedding] gives the object context and refined logits (N, C); a second one over
   [object context, RoI feature, class embedding of the decoded labels (GT in PredCls)]
   gives the edge context; subject/object projections gated by the union-box feature
   (``PairFromObjects``, as in MOTIFS) give the pair features. The frequency bias is
   added by the shared predictor. Both TreeLSTMs update a whole depth level of every tree
   of the batch at once.

Training of the tree scores: the paper learns the tree by hybrid learning, i.e. a
supervised loss on the scores plus REINFORCE on the sampled tree structure with the
relation loss as reward. Only the supervised part is implemented here: ``losses`` gives a
binary cross-entropy between the directed pair logit of each sampled pair and "this pair
has a relation" (``pair_labels > 0``), weighted by ``MODEL.SGG.VCTREE.SCORE_LOSS_WEIGHT``.
The relation loss does not reach the score network (the tree is built from detached
scores). There is no REINFORCE and no tree sampling: the tree is always the maximum one.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from ..relation.geometry import BOX_LAYOUT_DIM, PAIR_GEOMETRY_DIM, pair_geometry
from .build import CONTEXT_REGISTRY, ContextInputs, ContextOutputs
from .common import ClassEmbedding, PairFromObjects
from .tree_utils import BinaryForest, build_forest

__all__ = ["VCTreeContext", "BinaryTreeLSTM", "TopDownTreeLSTM", "BiTreeLSTM"]


class BinaryTreeLSTM(nn.Module):
    """Bottom-up binary (N-ary, N = 2) TreeLSTM with separate left/right child weights."""

    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.input_proj = nn.Linear(in_dim, 5 * hidden_dim)  # gates i, f_l, f_r, o, u
        self.child_proj = nn.Linear(2 * hidden_dim, 5 * hidden_dim, bias=False)

    def cell(self, x, h_left, c_left, h_right, c_right):
        """One step for a batch of nodes: (M, in_dim) and four (M, H) -> (h, c), (M, H)."""
        gates = self.input_proj(x) + self.child_proj(torch.cat([h_left, h_right], 1))
        i, f_l, f_r, o, u = gates.chunk(5, dim=1)
        c = (
            torch.sigmoid(i) * torch.tanh(u)
            + torch.sigmoid(f_l) * c_left
            + torch.sigmoid(f_r) * c_right
        )
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, x: torch.Tensor, forest: BinaryForest) -> torch.Tensor:
        """(N, in_dim) node inputs -> (N, H) states, leaves first, deepest level first."""
        h = x.new_zeros((x.shape[0] + 1, self.hidden_dim))  # last row: absent child
        c = x.new_zeros((x.shape[0] + 1, self.hidden_dim))
        for idx in reversed(forest.levels):
            lft, rgt = forest.left[idx], forest.right[idx]
            # Children live one level deeper, so their rows are final; writes are disjoint.
            h[idx], c[idx] = self.cell(x[idx], h[lft], c[lft], h[rgt], c[rgt])
        return h[:-1]


class TopDownTreeLSTM(nn.Module):
    """Top-down LSTM: each node's state follows from its binary-tree parent's state."""

    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.cell = nn.LSTMCell(in_dim, hidden_dim)

    def forward(self, x: torch.Tensor, forest: BinaryForest) -> torch.Tensor:
        """(N, in_dim) node inputs -> (N, H) states, root level first."""
        h = x.new_zeros((x.shape[0] + 1, self.hidden_dim))  # last row: the root's parent
        c = x.new_zeros((x.shape[0] + 1, self.hidden_dim))
        for idx in forest.levels:
            par = forest.parent[idx]
            h[idx], c[idx] = self.cell(x[idx], (h[par], c[par]))
        return h[:-1]


class BiTreeLSTM(nn.Module):
    """Bottom-up and top-down TreeLSTMs; output (N, 2H) = [bottom-up, top-down]."""

    def __init__(self, in_dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.up = BinaryTreeLSTM(in_dim, hidden_dim)
        self.down = TopDownTreeLSTM(in_dim, hidden_dim)
        self.out_dim = 2 * hidden_dim

    def forward(self, x: torch.Tensor, forest: BinaryForest) -> torch.Tensor:
        x = self.dropout(x)
        return torch.cat([self.up(x, forest), self.down(x, forest)], dim=1)


class TreeScorer(nn.Module):
    """Directed pair logits from object features and pair geometry (VCTree's S)."""

    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.obj = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU())
        self.subj_proj = nn.Linear(hidden_dim, hidden_dim)
        self.obj_proj = nn.Linear(hidden_dim, hidden_dim)
        self.geometry = nn.Sequential(
            nn.Linear(PAIR_GEOMETRY_DIM, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1)
        )
        self.scale = 1.0 / math.sqrt(hidden_dim)

    def forward(self, x: torch.Tensor, norm_boxes: torch.Tensor, pairs: torch.Tensor):
        """
        Args:
            x: (N, in_dim) object features; norm_boxes: (N, 4) XYXY boxes divided by
                their image's width/height; pairs: (R, 2) global (subject, object).

        Returns:
            (R,) logits of "subject and object are related".
        """
        u = self.obj(x)
        s, o = pairs[:, 0], pairs[:, 1]
        bilinear = (self.subj_proj(u)[s] * self.obj_proj(u)[o]).sum(1) * self.scale
        geo = pair_geometry(norm_boxes[s], norm_boxes[o], (1.0, 1.0))
        return bilinear + self.geometry(geo).squeeze(1)


def same_image_pairs(num_objs) -> torch.Tensor:
    """(sum n_i (n_i - 1), 2) global ordered pairs within each image, images in order,
    row-major inside an image."""
    img = torch.repeat_interleave(
        torch.arange(len(num_objs)), torch.as_tensor(num_objs, dtype=torch.long)
    )
    same = img[:, None] == img[None, :]
    same.fill_diagonal_(False)
    return same.nonzero()


def symmetric_scores(probs: np.ndarray, num_objs):
    """Per image (n_i, n_i) ``(P + P^T) / 2`` from the probabilities of ``same_image_pairs``."""
    out, start = [], 0
    for n in num_objs:
        mat = np.zeros((n, n), dtype=np.float64)
        mat[~np.eye(n, dtype=bool)] = probs[start : start + n * (n - 1)]
        out.append(0.5 * (mat + mat.T))
        start += n * (n - 1)
    return out


@CONTEXT_REGISTRY.register()
class VCTreeContext(nn.Module):
    """Dynamic tree + BiTreeLSTM object and edge context. See the module docstring."""

    needs_union_features = True

    @configurable
    def __init__(
        self,
        *,
        obj_dim: int,
        union_dim: int,
        num_classes: int,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        dropout: float = 0.0,
        score_loss_weight: float = 1.0,
    ):
        """
        Args:
            obj_dim: size of the RoI features; union_dim: size of union-box features.
            num_classes: C, real object classes.
            embed_dim: class and box-layout embedding size.
            hidden_dim: TreeLSTM hidden size per direction, and tree-score width.
            dropout: dropout on the TreeLSTM inputs.
            score_loss_weight: weight of the tree-score loss (``loss_vctree_score``).
        """
        super().__init__()
        self.score_loss_weight = score_loss_weight
        self.class_embed = ClassEmbedding(num_classes, embed_dim)
        self.edge_class_embed = ClassEmbedding(num_classes, embed_dim)
        self.layout_embed = nn.Sequential(nn.Linear(BOX_LAYOUT_DIM, embed_dim), nn.ReLU())
        in_dim = obj_dim + 2 * embed_dim
        self.scorer = TreeScorer(in_dim, hidden_dim)
        self.obj_ctx = BiTreeLSTM(in_dim, hidden_dim, dropout)
        self.decoder = nn.Linear(self.obj_ctx.out_dim, num_classes)
        self.edge_ctx = BiTreeLSTM(self.obj_ctx.out_dim + obj_dim + embed_dim, hidden_dim, dropout)
        self.pair = PairFromObjects(self.edge_ctx.out_dim, hidden_dim, union_dim)
        self.pair_dim = union_dim

    @classmethod
    def from_config(cls, cfg, obj_dim, union_dim):
        m = cfg.MODEL.SGG
        return {
            "obj_dim": obj_dim,
            "union_dim": union_dim,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "embed_dim": m.EMBED_DIM,
            "hidden_dim": m.CONTEXT_HIDDEN_DIM,
            "dropout": m.CONTEXT_DROPOUT,
            "score_loss_weight": m.VCTREE.SCORE_LOSS_WEIGHT,
        }

    def build_trees(self, x: torch.Tensor, inputs: ContextInputs) -> BinaryForest:
        """Binary trees from the (detached) scores of every same-image pair."""
        all_pairs = same_image_pairs(inputs.num_objs).to(x.device)
        with torch.no_grad():
            logits = self.scorer(x, inputs.box_layout[:, :4], all_pairs)
        probs = torch.sigmoid(logits).cpu().numpy()
        return build_forest(symmetric_scores(probs, inputs.num_objs), x.device)

    def forward(self, inputs: ContextInputs) -> ContextOutputs:
        """
        Returns:
            ``obj_logits`` (N, C); ``pair_features`` (R, union_dim); ``extras``:
            ``pair_score_logits`` (R,) directed tree-score logits of ``inputs.pairs`` and
            ``forest`` (the ``BinaryForest`` used).
        """
        if sum(inputs.num_objs) != len(inputs.obj_features):
            raise ValueError(
                f"num_objs sums to {sum(inputs.num_objs)} but there are "
                f"{len(inputs.obj_features)} object features"
            )
        x = torch.cat(
            [
                inputs.obj_features,
                self.class_embed(inputs.obj_logits, inputs.gt_labels),
                self.layout_embed(inputs.box_layout),
            ],
            dim=1,
        )
        forest = self.build_trees(x, inputs)
        obj_ctx = self.obj_ctx(x, forest)
        obj_logits = self.decoder(obj_ctx)
        labels = inputs.gt_labels if inputs.gt_labels is not None else obj_logits.argmax(1)
        edge_embed = self.edge_class_embed(obj_logits, labels.detach())
        edge_ctx = self.edge_ctx(torch.cat([obj_ctx, inputs.obj_features, edge_embed], 1), forest)
        pair_features = self.pair(edge_ctx, inputs.pairs, inputs.union_features)
        pair_score_logits = self.scorer(x, inputs.box_layout[:, :4], inputs.pairs)
        return ContextOutputs(
            obj_logits=obj_logits,
            pair_features=pair_features,
            extras={"pair_score_logits": pair_score_logits, "forest": forest},
            obj_repr=obj_ctx,
        )

    def losses(self, inputs: ContextInputs, outputs: ContextOutputs, pair_labels: torch.Tensor):
        """Tree-score loss: BCE of each sampled pair's logit vs ``pair_labels > 0``.

        Args:
            pair_labels: (R,) int64 relation labels of ``inputs.pairs`` (0 = background).

        Returns:
            ``{"loss_vctree_score": scalar}`` (0, still in the graph, when R = 0).
        """
        logits = outputs.extras["pair_score_logits"]
        if pair_labels.shape != logits.shape:
            raise ValueError(
                f"pair_labels has shape {tuple(pair_labels.shape)}, expected one label per "
                f"pair: {tuple(logits.shape)}"
            )
        if logits.numel() == 0:
            return {"loss_vctree_score": logits.sum() * 0.0}
        loss = F.binary_cross_entropy_with_logits(logits, (pair_labels > 0).to(logits.dtype))
        return {"loss_vctree_score": self.score_loss_weight * loss}
