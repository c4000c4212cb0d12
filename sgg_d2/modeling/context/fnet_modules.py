"""Factorizable Net, part 2: spatial-weighted message passing (SMP) and spatial-sensitive
relation inference (SRI).

Objects are vectors x (N, H); subgraphs are 2-D maps F (S, C, P, P). Messages follow the
(object, subgraph) links of :class:`~.fnet_subgraph.SubgraphIncidence`.
"""

import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .fnet_subgraph import SubgraphIncidence

__all__ = [
    "SPATIAL_NORMS",
    "segment_softmax",
    "SubgraphToObject",
    "ObjectToSubgraph",
    "SpatialMessagePassing",
    "SpatialRelationInference",
]

SPATIAL_NORMS = ("softmax", "sigmoid")


def segment_softmax(scores: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Softmax of ``scores`` (M,) within each group given by ``groups`` (M,) int64."""
    if len(scores) == 0:
        return scores
    top = scores.new_full((num_groups,), float("-inf"))
    top = top.scatter_reduce(0, groups, scores.detach(), "amax", include_self=False)
    e = torch.exp(scores - top[groups])
    total = scores.new_zeros(num_groups).index_add(0, groups, e)
    return e / total[groups]


class SubgraphToObject(nn.Module):
    """Each object attends over its subgraphs (pooled to vectors) and sums their values.

    ``a_ik = softmax_k(<W_q x_i, W_k g_k> / sqrt(d))`` over the subgraphs k linked to object
    i, ``g_k`` = spatial mean of F_k; message ``m_i = sum_k a_ik W_v g_k`` (0 if i has none).
    """

    def __init__(self, obj_dim: int, map_dim: int, att_dim: int):
        super().__init__()
        self.query = nn.Linear(obj_dim, att_dim)
        self.key = nn.Linear(map_dim, att_dim)
        self.value = nn.Linear(map_dim, obj_dim)

    def forward(
        self, x: torch.Tensor, maps: torch.Tensor, links: SubgraphIncidence
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (N, H) object vectors; maps: (S, C, P, P) subgraph maps.

        Returns:
            ``(messages (N, H), weights (M,))``, one weight per link; the weights of each
            object's links sum to 1.
        """
        pooled = maps.mean(dim=(2, 3))
        obj, sub = links.obj_index, links.sub_index
        q, k = self.query(x)[obj], self.key(pooled)[sub]
        weights = segment_softmax((q * k).sum(1) / math.sqrt(q.shape[1]), obj, len(x))
        msg = x.new_zeros((len(x), self.value.out_features))
        msg = msg.index_add(0, obj, weights.unsqueeze(1) * self.value(pooled)[sub])
        return msg, weights


class ObjectToSubgraph(nn.Module):
    """Each linked object paints its vector onto the subgraph map where it is attended.

    Attention map ``A_ik(u) = norm_u(<W_q x_i, F_k(u)> / sqrt(C))`` over the P x P locations
    u (softmax over locations, or an independent sigmoid per location); message
    ``M_k(u) = mean_i A_ik(u) W_v x_i`` over the objects i linked to subgraph k.
    """

    def __init__(self, obj_dim: int, map_dim: int, spatial_norm: str = "softmax"):
        super().__init__()
        if spatial_norm not in SPATIAL_NORMS:
            raise ValueError(f"F-Net spatial_norm {spatial_norm!r}; valid: {SPATIAL_NORMS}")
        self.spatial_norm = spatial_norm
        self.query = nn.Linear(obj_dim, map_dim)
        self.value = nn.Linear(obj_dim, map_dim)

    def _normalise(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=1) if self.spatial_norm == "softmax" else logits.sigmoid()

    def forward(
        self, x: torch.Tensor, maps: torch.Tensor, links: SubgraphIncidence
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (N, H) object vectors; maps: (S, C, P, P) subgraph maps.

        Returns:
            ``(messages (S, C, P, P), attention (M, P, P))``, one attention map per link.
        """
        s, c, p, _ = maps.shape
        q, v = self.query(x), self.value(x)
        flat = maps.flatten(2)  # (S, C, U)
        degree = torch.bincount(links.sub_index, minlength=s).clamp(min=1).to(maps.dtype)
        msgs: List[torch.Tensor] = []
        atts: List[torch.Tensor] = []
        obj_start = sub_start = 0
        # Per image, dense object x subgraph products: far smaller than gathering one
        # (C, U) map per link, and nothing is shared across images.
        for n, k, rows in zip(links.num_objs, links.num_subgraphs, links.per_image()):
            i = links.obj_index[rows] - obj_start
            g = links.sub_index[rows] - sub_start
            f_img = flat[sub_start : sub_start + k]
            logits = torch.einsum("nc,scu->nsu", q[obj_start : obj_start + n], f_img)
            att = self._normalise(logits[i, g] / math.sqrt(c))  # (m, U)
            weight = maps.new_zeros((k, n, p * p))
            weight = weight.index_put((g, i), att / degree[g + sub_start].unsqueeze(1))
            msgs.append(torch.einsum("snu,nc->scu", weight, v[obj_start : obj_start + n]))
            atts.append(att)
            obj_start += n
            sub_start += k
        msg = torch.cat(msgs) if msgs else flat.new_zeros((0, c, p * p))
        att = torch.cat(atts) if atts else flat.new_zeros((0, p * p))
        return msg.reshape(s, c, p, p), att.reshape(-1, p, p)


class SpatialMessagePassing(nn.Module):
    """One SMP round; both messages are computed from the states before the round.

    ``x <- relu(x + W m_obj)``, ``F <- relu(F + M_sub)``.
    """

    def __init__(self, obj_dim: int, map_dim: int, att_dim: int, spatial_norm: str = "softmax"):
        super().__init__()
        self.to_object = SubgraphToObject(obj_dim, map_dim, att_dim)
        self.to_subgraph = ObjectToSubgraph(obj_dim, map_dim, spatial_norm)
        self.obj_update = nn.Linear(obj_dim, obj_dim)

    def forward(self, x: torch.Tensor, maps: torch.Tensor, links: SubgraphIncidence):
        """(N, H), (S, C, P, P) -> updated (N, H), (S, C, P, P)."""
        obj_msg, _ = self.to_object(x, maps, links)
        sub_msg, _ = self.to_subgraph(x, maps, links)
        return torch.relu(x + self.obj_update(obj_msg)), torch.relu(maps + sub_msg)


class SpatialRelationInference(nn.Module):
    """Pair feature from its subgraph map, with its subject and object as conv kernels.

    For pair (s, o) in subgraph k: the vectors x_s, x_o are projected to depth-wise
    (per-channel) K x K kernels and convolved with F_k; a 1x1 bottleneck conv over
    [F_k * w_s, F_k * w_o, F_k] (the F_k term is computed once per subgraph), ReLU, then a
    location-aware FC over the flattened map. Output: ``[relu(FC), x_s, x_o]``.
    """

    def __init__(
        self,
        obj_dim: int,
        map_dim: int,
        pool_size: int,
        bottleneck_dim: int,
        hidden_dim: int,
        kernel_size: int = 1,
        chunk_size: int = 512,
    ):
        """
        Args:
            obj_dim: H, object vector size; map_dim: C, subgraph map channels.
            pool_size: P, side of the subgraph maps.
            bottleneck_dim: channels after the bottleneck conv.
            hidden_dim: output size of the location-aware FC.
            kernel_size: K (odd), side of the object-generated depth-wise kernels.
            chunk_size: pairs processed at once (bounds inference memory).
        """
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"F-Net SRI kernel_size must be odd and >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        self.chunk_size = int(chunk_size)
        self.subj_kernel = nn.Linear(obj_dim, map_dim * kernel_size**2)
        self.obj_kernel = nn.Linear(obj_dim, map_dim * kernel_size**2)
        # The 1x1 bottleneck over [F * w_s, F * w_o, F] as three convs summed: no
        # concatenated copy per pair, and the F term is computed once per subgraph.
        self.bottleneck_subj = nn.Conv2d(map_dim, bottleneck_dim, 1)
        self.bottleneck_obj = nn.Conv2d(map_dim, bottleneck_dim, 1, bias=False)
        self.bottleneck_map = nn.Conv2d(map_dim, bottleneck_dim, 1, bias=False)
        self.fc = nn.Linear(bottleneck_dim * pool_size**2, hidden_dim)
        self.out_dim = hidden_dim + 2 * obj_dim

    def depthwise(self, maps: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """Convolve each map (R, C, P, P) with its own depth-wise kernels (R, C * K * K)."""
        if self.kernel_size == 1:
            return maps * kernels[:, :, None, None]
        r, c, p, _ = maps.shape
        k = self.kernel_size
        out = F.conv2d(
            maps.reshape(1, r * c, p, p),
            kernels.reshape(r * c, 1, k, k),
            padding=k // 2,
            groups=r * c,
        )
        return out.reshape(r, c, p, p)

    def forward(
        self, x: torch.Tensor, maps: torch.Tensor, pairs: torch.Tensor, pair_to_subgraph
    ) -> torch.Tensor:
        """
        Args:
            x: (N, H) object vectors; maps: (S, C, P, P) subgraph maps.
            pairs: (R, 2) int64 (subject, object); pair_to_subgraph: (R,) int64.

        Returns:
            (R, out_dim) pair features.
        """
        if len(pairs) == 0:
            return x.new_zeros((0, self.out_dim))
        map_term = self.bottleneck_map(maps)  # once per subgraph, not per pair
        w_s, w_o = self.subj_kernel(x), self.obj_kernel(x)
        out = []
        for start in range(0, len(pairs), self.chunk_size):
            p = pairs[start : start + self.chunk_size]
            g = pair_to_subgraph[start : start + self.chunk_size]
            f = maps[g]
            h = self.bottleneck_subj(self.depthwise(f, w_s[p[:, 0]])) + map_term[g]
            h = torch.relu(h + self.bottleneck_obj(self.depthwise(f, w_o[p[:, 1]])))
            rel = torch.relu(self.fc(h.flatten(1)))
            out.append(torch.cat([rel, x[p[:, 0]], x[p[:, 1]]], dim=1))
        return torch.cat(out)
