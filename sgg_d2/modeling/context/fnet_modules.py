"""Factorizable Net, part 2: spatial-weighted message passing (SMP); spatial-sensitive
relation inference (SRI) is in ``fnet_sri`` (re-exported here).

Objects are vectors x (N, H); subgraphs are 2-D maps F (S, C, P, P). Messages follow the
(object, subgraph) links of :class:`~.fnet_subgraph.SubgraphIncidence`.
"""

import math
from typing import Iterator, List, NamedTuple, Tuple

import torch
from torch import nn

from ...config import check_choice
from .fnet_sri import PAPER_SRI, SRI_COMBINES, SpatialRelationInference, SRIVariant
from .fnet_subgraph import SubgraphIncidence

__all__ = [
    "SPATIAL_NORMS",
    "SMP_OBJECT_UPDATES",
    "SRI_COMBINES",
    "PooledSubgraphToObject",
    "SubgraphToObject",
    "ObjectToSubgraph",
    "SpatialMessagePassing",
    "SRIVariant",
    "PAPER_SRI",
    "SpatialRelationInference",
]

SPATIAL_NORMS = ("softmax", "sigmoid")
SMP_OBJECT_UPDATES = ("paper", "spatial")


class ImageLinks(NamedTuple):
    """One image's share of a :class:`~.fnet_subgraph.SubgraphIncidence`."""

    objs: slice  # the image's n rows of the (N, ...) object tensors
    subs: slice  # the image's k rows of the (S, ...) subgraph tensors
    obj: torch.Tensor  # (M_i,) int64 local object index of each of the image's links
    sub: torch.Tensor  # (M_i,) int64 local subgraph index of each of the image's links

    @property
    def num_objs(self) -> int:
        """n, the image's objects."""
        return self.objs.stop - self.objs.start

    @property
    def num_subgraphs(self) -> int:
        """k, the image's subgraphs."""
        return self.subs.stop - self.subs.start

    def linked(self, subgraphs_first: bool, device) -> torch.Tensor:
        """(n, k, 1) bool, True where object and subgraph are linked ((k, n, 1) with
        ``subgraphs_first``)."""
        n, k = self.num_objs, self.num_subgraphs
        if subgraphs_first:
            mask = torch.zeros((k, n, 1), dtype=torch.bool, device=device)
            mask[self.sub, self.obj] = True
        else:
            mask = torch.zeros((n, k, 1), dtype=torch.bool, device=device)
            mask[self.obj, self.sub] = True
        return mask


class LinkMessages(nn.Module):
    """Base of the two SMP directions: messages along the (object, subgraph) links.

    ``forward(x, maps, links)`` takes x (N, H) object vectors, maps (S, C, P, P) subgraph
    maps and the M links, and returns ``(messages, attention (M, P, P))``, one attention map
    per link. Both directions work image by image (:meth:`image_links`) with dense
    (objects x subgraphs x locations) products: two matmuls, where gathering one (C, U)
    map per link would copy M maps.
    """

    @staticmethod
    def image_links(links: SubgraphIncidence) -> Iterator[ImageLinks]:
        """The images of ``links`` in order, each with its links in local indices."""
        obj_start = sub_start = 0
        for n, k, rows in zip(links.num_objs, links.num_subgraphs, links.per_image()):
            yield ImageLinks(
                slice(obj_start, obj_start + n),
                slice(sub_start, sub_start + k),
                links.obj_index[rows] - obj_start,
                links.sub_index[rows] - sub_start,
            )
            obj_start += n
            sub_start += k


class SubgraphToObject(LinkMessages):
    """Each object attends over every location of every subgraph it is linked to.

    ``a_ik(u) = softmax_{k, u}(<W_q x_i, W_k F_k(u)> / sqrt(d))`` jointly over the P x P
    locations u of the subgraphs k linked to object i (spatial-weighted: the object picks
    the locations that concern it); message ``m_i = sum_{k, u} a_ik(u) W_v F_k(u)`` (0 if
    i has no subgraph).
    """

    def __init__(self, obj_dim: int, map_dim: int, att_dim: int):
        super().__init__()
        self.query = nn.Linear(obj_dim, att_dim)
        self.key = nn.Linear(map_dim, att_dim)
        self.value = nn.Linear(map_dim, obj_dim)

    def forward(
        self, x: torch.Tensor, maps: torch.Tensor, links: SubgraphIncidence
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(messages (N, H), weights (M, P, P))`` (see :class:`LinkMessages`); the maps of
        each object's links sum to 1 over links and locations together."""
        s, c, p, _ = maps.shape
        flat = maps.flatten(2).transpose(1, 2)  # (S, U, C)
        # <W_q x + b_q, W_k F(u) + b_k> = <W_k^T (W_q x + b_q), F(u)> + a per-object constant
        # that the softmax over (k, u) cancels: no per-location key projection is needed.
        q = self.query(x) @ self.key.weight  # (N, C)
        scale = math.sqrt(self.query.out_features)
        pooled = x.new_zeros((len(x), c))
        atts: List[torch.Tensor] = []
        for img in self.image_links(links):
            f_img = flat[img.subs]
            n, k = img.num_objs, img.num_subgraphs
            logits = torch.einsum("nc,suc->nsu", q[img.objs], f_img)
            linked = img.linked(subgraphs_first=False, device=maps.device)
            weight = (logits / scale).masked_fill(~linked, float("-inf"))
            weight = weight.flatten(1).softmax(dim=1).nan_to_num(0.0)  # (n, k * U)
            # sum_{k,u} a W_v F = W_v sum_{k,u} a F (the weights sum to 1): value applied once
            pooled[img.objs] = weight @ f_img.reshape(k * p * p, c)
            atts.append(weight.reshape(n, k, p * p)[img.obj, img.sub])
        has_link = torch.zeros(len(x), 1, dtype=x.dtype, device=x.device)
        has_link[links.obj_index] = 1.0
        msg = self.value(pooled) * has_link  # 0 for an object without subgraphs
        att = torch.cat(atts) if atts else x.new_zeros((0, p * p))
        return msg, att.reshape(-1, p, p)


class PooledSubgraphToObject(nn.Module):
    """The paper's subgraph -> object message (``SMP_OBJECT_UPDATE: "paper"``).

    Each subgraph map is average-pooled to a vector ``s_k`` (C); object i attends over the
    subgraphs it is linked to, ``a_ik = softmax_k(o_i . FC_a(ReLU s_k))``, pools
    ``s~_i = sum_k a_ik s_k`` and its update is ``FC_u(ReLU s~_i)`` (0 for an object
    without subgraphs), added to ``o_i`` by :class:`SpatialMessagePassing`.
    """

    def __init__(self, obj_dim: int, map_dim: int):
        super().__init__()
        self.attend = nn.Linear(map_dim, obj_dim)  # FC_a
        self.update = nn.Linear(map_dim, obj_dim)  # FC_u

    def forward(
        self, x: torch.Tensor, maps: torch.Tensor, links: SubgraphIncidence
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(updates (N, H), weights (M,))``: the weights of each object's links sum to 1."""
        pooled = maps.mean(dim=(2, 3))  # (S, C): s_k
        obj, sub = links.obj_index, links.sub_index
        logits = (x[obj] * self.attend(torch.relu(pooled))[sub]).sum(dim=1)  # (M,)
        weight = link_softmax(logits, obj, len(x))
        summary = pooled.new_zeros((len(x), pooled.shape[1]))
        summary = summary.index_add(0, obj, weight[:, None] * pooled[sub])  # s~
        has_link = torch.zeros(len(x), 1, dtype=x.dtype, device=x.device)
        has_link[obj] = 1.0
        return self.update(torch.relu(summary)) * has_link, weight


def link_softmax(logits: torch.Tensor, group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Softmax of (M,) ``logits`` within each group of ``group`` (M,) int64 in [0, G)."""
    if len(logits) == 0:
        return logits
    top = logits.new_full((num_groups,), float("-inf"))
    top = top.scatter_reduce(0, group, logits, reduce="amax")
    e = torch.exp(logits - top[group])
    total = e.new_zeros(num_groups).index_add(0, group, e)
    return e / total[group]


class ObjectToSubgraph(LinkMessages):
    """Each linked object paints its vector onto the subgraph map where it is attended.

    Attention ``A_ik(u)`` from ``l_ik(u) = <W_q x_i, F_k(u)> / sqrt(C)`` at each of the
    P x P locations u of subgraph k. "softmax" (the paper): normalised across the objects
    i linked to subgraph k, separately at every location (no constraint along the spatial
    dimensions), and ``M_k(u) = sum_i A_ik(u) W_v x_i``. "sigmoid" (ablation): an
    independent gate per (object, location) and ``M_k(u) = mean_i A_ik(u) W_v x_i``.
    """

    def __init__(self, obj_dim: int, map_dim: int, spatial_norm: str = "softmax"):
        super().__init__()
        if spatial_norm not in SPATIAL_NORMS:
            raise ValueError(f"F-Net spatial_norm {spatial_norm!r}; valid: {SPATIAL_NORMS}")
        self.spatial_norm = spatial_norm
        self.query = nn.Linear(obj_dim, map_dim)
        self.value = nn.Linear(obj_dim, map_dim)

    def forward(
        self, x: torch.Tensor, maps: torch.Tensor, links: SubgraphIncidence
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(messages (S, C, P, P), attention (M, P, P))`` (see :class:`LinkMessages`);
        with "softmax", the maps of the links of one subgraph sum to 1 at every location."""
        s, c, p, _ = maps.shape
        q, v = self.query(x), self.value(x)
        flat = maps.flatten(2)  # (S, C, U)
        msgs: List[torch.Tensor] = []
        atts: List[torch.Tensor] = []
        for img in self.image_links(links):
            logits = torch.einsum("nc,scu->snu", q[img.objs], flat[img.subs])
            logits = logits / math.sqrt(c)
            linked = img.linked(subgraphs_first=True, device=maps.device)
            if self.spatial_norm == "softmax":  # over the objects of a subgraph, per u
                weight = logits.masked_fill(~linked, float("-inf")).softmax(dim=1)
                weight = weight.nan_to_num(0.0)  # a subgraph without objects (none in use)
                atts.append(weight[img.sub, img.obj])
            else:
                gate = logits.sigmoid() * linked
                degree = linked.sum(dim=1, keepdim=True).clamp(min=1)
                weight = gate / degree
                atts.append(gate[img.sub, img.obj])
            msgs.append(torch.einsum("snu,nc->scu", weight, v[img.objs]))
        msg = torch.cat(msgs) if msgs else flat.new_zeros((0, c, p * p))
        att = torch.cat(atts) if atts else flat.new_zeros((0, p * p))
        return msg.reshape(s, c, p, p), att.reshape(-1, p, p)


class SpatialMessagePassing(nn.Module):
    """One SMP round; both messages are computed from the states before the round.

    ``F <- relu(F + M_sub)``; objects: ``x <- x + FC_u(ReLU s~)`` (``object_update:
    "paper"``, :class:`PooledSubgraphToObject`) or ``x <- relu(x + W m_obj)`` (``"spatial"``,
    the earlier form: :class:`SubgraphToObject`, attention over every location).
    """

    def __init__(
        self,
        obj_dim: int,
        map_dim: int,
        att_dim: int,
        spatial_norm: str = "softmax",
        object_update: str = "paper",
    ):
        super().__init__()
        check_choice("MODEL.SGG.FNET.SMP_OBJECT_UPDATE", object_update, SMP_OBJECT_UPDATES)
        self.object_update = object_update
        if object_update == "paper":
            self.to_object = PooledSubgraphToObject(obj_dim, map_dim)
        else:
            self.to_object = SubgraphToObject(obj_dim, map_dim, att_dim)
        self.to_subgraph = ObjectToSubgraph(obj_dim, map_dim, spatial_norm)
        if object_update == "spatial":
            self.obj_update = nn.Linear(obj_dim, obj_dim)

    def forward(self, x: torch.Tensor, maps: torch.Tensor, links: SubgraphIncidence):
        """(N, H), (S, C, P, P) -> updated (N, H), (S, C, P, P)."""
        obj_msg, _ = self.to_object(x, maps, links)
        sub_msg, _ = self.to_subgraph(x, maps, links)
        if self.object_update == "paper":
            return x + obj_msg, torch.relu(maps + sub_msg)
        return torch.relu(x + self.obj_update(obj_msg)), torch.relu(maps + sub_msg)
