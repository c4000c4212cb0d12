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

The frequency bias is part of the paper's model (``paper_frequency_bias``).

Training of the tree construction (``MODEL.SGG.VCTREE.TREE_LEARNING``). The tree is
discrete, so the relation loss does not reach the score network. The paper's hybrid
learning ("hybrid", default) trains it with

- a supervised score loss: binary cross-entropy between the directed pair logit of each
  sampled pair and "this pair has a relation" (``pair_labels > 0``), weight
  ``SCORE_LOSS_WEIGHT`` (``loss_vctree_score``);
- REINFORCE on the tree (``loss_vctree_rl``, weight ``RL_LOSS_WEIGHT``): per image a tree
  z is sampled from the policy pi(z | S) (Prim's procedure drawing each new edge with
  probability proportional to S among the edges leaving the current tree,
  ``tree_utils.sample_spanning_tree``); the model is run again (without gradient) on the
  sampled trees, and the reward r(z) is the image's relation recall@K (``REWARD_TOPK``) of
  its sampled pairs: the pairs ranked by their best predicate probability, a hit is a
  positive pair in the top K whose arg-max predicate is its label. The baseline b is the
  same recall of the greedy (maximum spanning) tree, the one used for the relation loss
  and at test (self-critical). Loss: ``-mean_images (r(z) - b) log pi(z | S)``; its
  gradient reaches the score network through S.

"supervised" keeps the score loss only (no sampling). The relation loss is always computed
on the greedy tree, so "supervised" and "hybrid" give the same forward outputs.

The score network and the reward live in ``vctree_scoring`` (re-exported here).
"""

from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .build import CONTEXT_REGISTRY, ContextInputs, ContextModel, ContextOutputs
from .common import EdgeInput, ObjectInput, PairFromObjects, object_labels
from .tree_utils import (
    BinaryForest,
    build_forest,
    forest_from_trees,
    sample_spanning_tree,
    tree_log_prob,
)
from .vctree_scoring import (
    TreeScorer,
    log_rewards,
    recall_reward,
    same_image_pairs,
    symmetric_score_tensors,
    symmetric_scores,
)

__all__ = [
    "VCTreeContext",
    "BinaryTreeLSTM",
    "TopDownTreeLSTM",
    "BiTreeLSTM",
    "TREE_LEARNING",
    # re-exported from vctree_scoring
    "recall_reward",
    "same_image_pairs",
    "symmetric_scores",
]

TREE_LEARNING = ("hybrid", "supervised")


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


@CONTEXT_REGISTRY.register()
class VCTreeContext(ContextModel):
    """Dynamic tree + BiTreeLSTM object and edge context. See the module docstring."""

    paper_frequency_bias = True
    config_section = "VCTREE"
    config_keys = {
        "score_loss_weight": "SCORE_LOSS_WEIGHT",
        "tree_learning": "TREE_LEARNING",
        "rl_loss_weight": "RL_LOSS_WEIGHT",
        "reward_topk": "REWARD_TOPK",
    }

    @configurable
    def __init__(
        self,
        *,
        score_loss_weight: float = 1.0,
        tree_learning: str = "hybrid",
        rl_loss_weight: float = 1.0,
        reward_topk: int = 50,
        **shared,
    ):
        """
        Args:
            score_loss_weight: weight of the tree-score loss (``loss_vctree_score``).
            tree_learning: one of ``TREE_LEARNING``.
            rl_loss_weight: weight of the REINFORCE term (``loss_vctree_rl``).
            reward_topk: K of the recall@K reward.
            shared: the widths of :class:`ContextModel` (``hidden_dim``: TreeLSTM hidden
                size per direction and tree-score width; ``dropout`` on the TreeLSTM inputs).
        """
        super().__init__(**shared)
        if tree_learning not in TREE_LEARNING:
            raise ValueError(
                f"MODEL.SGG.VCTREE.TREE_LEARNING {tree_learning!r}; valid: "
                f"{', '.join(TREE_LEARNING)}"
            )
        c, e, h = self.num_classes, self.embed_dim, self.hidden_dim
        self.score_loss_weight = score_loss_weight
        self.tree_learning = tree_learning
        self.rl_loss_weight = rl_loss_weight
        self.reward_topk = reward_topk
        self.obj_input = ObjectInput(self.obj_dim, c, e)
        self.scorer = TreeScorer(self.obj_input.out_dim, h)
        self.obj_ctx = BiTreeLSTM(self.obj_input.out_dim, h, self.dropout_p)
        self.decoder = nn.Linear(self.obj_ctx.out_dim, c)
        self.edge_input = EdgeInput(self.obj_ctx.out_dim, self.obj_dim, c, e)
        self.edge_ctx = BiTreeLSTM(self.edge_input.out_dim, h, self.dropout_p)
        self.pair = PairFromObjects(self.edge_ctx.out_dim, h, self.union_dim)
        self.pair_dim = self.union_dim

    @property
    def samples_trees(self) -> bool:
        """Whether this forward samples trees for REINFORCE (hybrid learning, training)."""
        return self.training and self.tree_learning == "hybrid"

    def tree_scores(self, x: torch.Tensor, inputs: ContextInputs) -> List[torch.Tensor]:
        """Per image (n_i, n_i) symmetric scores S of every same-image pair.

        With gradient only when trees are sampled (REINFORCE needs it).
        """
        all_pairs = same_image_pairs(inputs.num_objs).to(x.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.samples_trees):
            logits = self.scorer(x, inputs.box_layout[:, :4], all_pairs)
        return symmetric_score_tensors(torch.sigmoid(logits), inputs.num_objs)

    def contexts(self, x: torch.Tensor, inputs: ContextInputs, forest: BinaryForest):
        """Object logits (N, C), pair features (R, union_dim), object context on a forest."""
        obj_ctx = self.obj_ctx(x, forest)
        obj_logits = self.decoder(obj_ctx)
        labels = object_labels(obj_logits, inputs.gt_labels)
        edge_in = self.edge_input(obj_ctx, inputs.obj_features, obj_logits, labels)
        pair_features = self.pair(
            self.edge_ctx(edge_in, forest), inputs.pairs, inputs.union_features
        )
        return obj_logits, pair_features, obj_ctx

    def forward(self, inputs: ContextInputs) -> ContextOutputs:
        """
        Returns:
            ``obj_logits`` (N, C); ``pair_features`` (R, union_dim); ``extras``:
            ``pair_score_logits`` (R,) directed tree-score logits of ``inputs.pairs`` and
            ``forest`` (the ``BinaryForest`` used); when trees are sampled also
            ``tree_log_prob`` (B,) log pi(z | S) of each image's sampled tree and
            ``sampled`` = (obj_logits, pair_features) of the model run on them (no gradient).
        """
        if sum(inputs.num_objs) != len(inputs.obj_features):
            raise ValueError(
                f"num_objs sums to {sum(inputs.num_objs)} but there are "
                f"{len(inputs.obj_features)} object features"
            )
        x = self.obj_input(inputs)
        scores = self.tree_scores(x, inputs)
        greedy = [s.detach().cpu().double().numpy() for s in scores]
        forest = build_forest(greedy, x.device)
        obj_logits, pair_features, obj_ctx = self.contexts(x, inputs, forest)
        extras = {
            "pair_score_logits": self.scorer(x, inputs.box_layout[:, :4], inputs.pairs),
            "forest": forest,
        }
        if self.samples_trees:
            extras.update(self._sample(x, inputs, scores, greedy))
        return ContextOutputs(
            obj_logits=obj_logits, pair_features=pair_features, extras=extras, obj_repr=obj_ctx
        )

    def _sample(self, x, inputs: ContextInputs, scores, greedy) -> dict:
        """Sampled trees (same roots as the greedy ones), their log-probabilities, outputs."""
        trees, log_probs = [], []
        for s_np, s in zip(greedy, scores):
            if len(s_np) == 0:
                trees.append((-1, np.zeros(0, dtype=np.int64)))
                continue
            root = int(np.argmax(s_np.sum(axis=1)))  # the greedy tree's root
            parent, order = sample_spanning_tree(s_np, root)
            trees.append((root, parent))
            log_probs.append(tree_log_prob(s, parent, order))
        with torch.no_grad():
            sampled = self.contexts(x, inputs, forest_from_trees(trees, x.device))[:2]
        log_prob = torch.stack(log_probs) if log_probs else x.new_zeros(0)
        return {"tree_log_prob": log_prob, "sampled": sampled}

    def losses(self, inputs, outputs, pair_labels, relation_predictor):
        """Tree-score loss and, for hybrid learning, the REINFORCE term.

        Args:
            pair_labels: (R,) int64 relation labels of ``inputs.pairs`` (0 = background).
            relation_predictor: the shared predicate classifier, for the REINFORCE term's
                rewards (recall of the relations it scores).

        Returns:
            ``{"loss_vctree_score": scalar[, "loss_vctree_rl": scalar]}`` (0, still in the
            graph, when R = 0).
        """
        logits = outputs.extras["pair_score_logits"]
        if pair_labels.shape != logits.shape:
            raise ValueError(
                f"pair_labels has shape {tuple(pair_labels.shape)}, expected one label per "
                f"pair: {tuple(logits.shape)}"
            )
        if logits.numel() == 0:
            losses = {"loss_vctree_score": logits.sum() * 0.0}
        else:
            target = (pair_labels > 0).to(logits.dtype)
            loss = F.binary_cross_entropy_with_logits(logits, target)
            losses = {"loss_vctree_score": self.score_loss_weight * loss}
        if "tree_log_prob" in outputs.extras:
            losses["loss_vctree_rl"] = self.rl_loss_weight * self.reinforce_loss(
                inputs, outputs, pair_labels, relation_predictor
            )
        return losses

    def reinforce_loss(self, inputs, outputs, pair_labels, predictor) -> torch.Tensor:
        """``-mean_images (r(sampled tree) - r(greedy tree)) log pi(sampled tree)``."""
        if predictor is None:
            raise ValueError(
                "VCTree hybrid learning needs the relation_predictor (passed by the ROI heads "
                "in training); use MODEL.SGG.VCTREE.TREE_LEARNING 'supervised' without it"
            )
        log_prob = outputs.extras["tree_log_prob"]
        sampled_logits, sampled_features = outputs.extras["sampled"]
        nonempty = torch.as_tensor([n > 0 for n in inputs.num_objs], device=log_prob.device)
        with torch.no_grad():
            rewards = []
            for obj_logits, features in (
                (sampled_logits, sampled_features),
                (outputs.obj_logits, outputs.pair_features),
            ):
                labels = object_labels(obj_logits, inputs.gt_labels)
                rel = predictor(features, labels[inputs.pairs[:, 0]], labels[inputs.pairs[:, 1]])
                all_images = recall_reward(rel, pair_labels, inputs.num_pairs, self.reward_topk)
                rewards.append(all_images[nonempty])
        advantage = rewards[0] - rewards[1]
        outputs.extras["advantage"] = advantage
        log_rewards(rewards[0], rewards[1])
        if len(log_prob) == 0:
            return log_prob.sum() * 0.0
        return -(advantage * log_prob).mean()
