"""VCTree, part 2: the tree scores S and the hybrid-learning reward.

- :class:`TreeScorer`: directed pair logits ``<A u_i, B u_j> / sqrt(H)`` plus an MLP of the
  pair geometry; :func:`symmetric_score_tensors` turns the probabilities of every
  same-image pair (:func:`same_image_pairs`) into the symmetric per-image S the maximum
  spanning tree is built on;
- :func:`recall_reward`: the REINFORCE reward, the relation recall@K of an image's pairs.

See :mod:`~.vctree` for the model.
"""

import math
from typing import List

import numpy as np
import torch
from detectron2.utils.events import get_event_storage
from torch import nn

from ..relation.geometry import PAIR_GEOMETRY_DIM, pair_geometry

__all__ = [
    "TreeScorer",
    "same_image_pairs",
    "symmetric_score_tensors",
    "symmetric_scores",
    "recall_reward",
    "log_rewards",
]


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


def symmetric_score_tensors(probs: torch.Tensor, num_objs) -> List[torch.Tensor]:
    """Per image (n_i, n_i) ``(P + P^T) / 2`` from ``probs`` (sum n_i (n_i - 1),), the
    probabilities of ``same_image_pairs`` (differentiable; zero diagonal)."""
    out, start = [], 0
    for n in num_objs:
        off_diag = ~torch.eye(n, dtype=torch.bool, device=probs.device)
        mat = probs.new_zeros((n, n)).masked_scatter(off_diag, probs[start : start + n * (n - 1)])
        out.append(0.5 * (mat + mat.T))
        start += n * (n - 1)
    return out


def symmetric_scores(probs: np.ndarray, num_objs):
    """:func:`symmetric_score_tensors` in float64 NumPy: (sum n_i (n_i - 1),) -> (n_i, n_i)."""
    mats = symmetric_score_tensors(torch.as_tensor(probs, dtype=torch.float64), num_objs)
    return [m.numpy() for m in mats]


def recall_reward(
    rel_logits: torch.Tensor, pair_labels: torch.Tensor, num_pairs, top_k: int
) -> torch.Tensor:
    """Per image relation recall@K of the pairs' predictions (VCTree's reward).

    Args:
        rel_logits: (R, P + 1) predicate logits (background at 0), images concatenated.
        pair_labels: (R,) int64, 0 = background, p + 1 = predicate p.
        num_pairs: pairs per image; top_k: K.

    Returns:
        (B,) float: hits / positives of each image (0 where it has no positive pair); a hit
        is a positive pair among the K with the best non-background probability whose
        arg-max predicate is its label.
    """
    probs = rel_logits.softmax(dim=1)[:, 1:]
    score, predicate = probs.max(dim=1)
    out = []
    for s, p, y in zip(
        score.split(num_pairs), predicate.split(num_pairs), pair_labels.split(num_pairs)
    ):
        positives = int((y > 0).sum())
        top = torch.argsort(s, descending=True)[:top_k]
        hits = ((y[top] > 0) & (p[top] + 1 == y[top])).sum()
        out.append(hits.float() / max(positives, 1))
    return torch.stack(out) if out else rel_logits.new_zeros(0)


def log_rewards(sampled: torch.Tensor, greedy: torch.Tensor) -> None:
    """Training scalars of the REINFORCE term (when an ``EventStorage`` is open): the
    (B,) rewards of the sampled and of the greedy trees."""
    try:
        storage = get_event_storage()
    except AssertionError:  # no storage outside a Detectron2 training loop
        return
    if len(sampled):
        storage.put_scalar("vctree/reward_sampled", float(sampled.mean()))
        storage.put_scalar("vctree/reward_greedy", float(greedy.mean()))
        storage.put_scalar("vctree/advantage_nonzero", float((sampled != greedy).float().mean()))
