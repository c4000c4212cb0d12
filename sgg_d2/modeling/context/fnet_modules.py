"""Factorizable Net, part 2: spatial-weighted message passing (SMP) and spatial-sensitive
relation inference (SRI).

Objects are vectors x (N, H); subgraphs are 2-D maps F (S, C, P, P). Messages follow the
(object, subgraph) links of :class:`~.fnet_subgraph.SubgraphIncidence`.
"""

import math
from dataclasses import dataclass
from typing import Iterator, List, NamedTuple, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .fnet_subgraph import SubgraphIncidence

__all__ = [
    "SPATIAL_NORMS",
    "SubgraphToObject",
    "ObjectToSubgraph",
    "SpatialMessagePassing",
    "SRIVariant",
    "PAPER_SRI",
    "SpatialRelationInference",
]

SPATIAL_NORMS = ("softmax", "sigmoid")


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


@dataclass(frozen=True)
class SRIVariant:
    """Which spatial-sensitive relation inference to build; the defaults are the paper's.

    Attributes:
        kernel_size: K (odd, >= 1), side of the object-generated depth-wise kernels.
        reduce_first: bottleneck the subgraph map before the object kernels (paper); False:
            kernels on the full map, bottleneck per pair (the paper is ambiguous about the
            order; this is the earlier variant).
        extra_fc: ReLU after the read-out, i.e. an extra hidden FC layer (ablation).
        object_shortcut: append the subject and object vectors to the pair feature
            (ablation).
    """

    kernel_size: int = 1
    reduce_first: bool = True
    extra_fc: bool = False
    object_shortcut: bool = False

    def __post_init__(self):
        k = self.kernel_size
        if k < 1 or k % 2 == 0:
            raise ValueError(f"F-Net SRI kernel_size must be odd and >= 1, got {k}")


PAPER_SRI = SRIVariant()  # 1 x 1 kernels on the bottlenecked map, linear read-out


class SpatialRelationInference(nn.Module):
    """Pair feature from its subgraph map, with its subject and object as conv kernels.

    Paper recipe (``reduce_first``): the subgraph map F_k (C channels) goes through a 1x1
    bottleneck conv to B channels once per subgraph, ``G_k = W_b F_k``; the subject and
    object vectors become depth-wise K x K kernels ``w_s``, ``w_o`` (B channels) and the
    pair map is ``h = relu(G_k * w_s + G_k * w_o + G_k)``, read out by a location-aware
    linear layer over the flattened B x P x P map. Without the extra FC that linear
    read-out *is* the paper's predicate FC (the relation predictor's square layer on top
    composes with it into one linear map); per pair only B x P x P products remain.

    With 1 x 1 kernels (K = 1, the default) ``h = relu(G_k * k_r)`` with the pair's kernel
    ``k_r = 1 + w_s + w_o``, and ``relu(g k) = relu(g) relu(k) + relu(-g) relu(-k)`` for
    scalars, so the linear read-out factorises exactly: ``W h = A_k relu(k_r) + A'_k
    relu(-k_r)`` with ``A_k = sum_u W[:, :, u] relu(G_k)[:, u]`` (and ``A'_k`` from
    ``relu(-G_k)``) computed once per subgraph. Per pair only a (2B)-vector times a
    (2B, out_dim) matrix remains: no per-pair B x P x P map is ever built.

    Today's variant (``reduce_first=False``): kernels of C channels on F_k, then the 1x1
    bottleneck over [F_k * w_s, F_k * w_o, F_k] per pair (C x B x P x P per pair).
    Ablation flags: ``extra_fc`` (ReLU after the read-out: a hidden FC layer) and
    ``object_shortcut`` (append x_s, x_o to the pair feature). All four choices are one
    :class:`SRIVariant`.
    """

    def __init__(
        self,
        obj_dim: int,
        map_dim: int,
        pool_size: int,
        bottleneck_dim: int,
        out_dim: int,
        variant: SRIVariant = PAPER_SRI,
        chunk_size: int = 512,
    ):
        """
        Args:
            obj_dim: H, object vector size; map_dim: C, subgraph map channels.
            pool_size: P, side of the subgraph maps.
            bottleneck_dim: B, channels after the bottleneck conv.
            out_dim: size of the linear read-out of the flattened pair map (paper: the
                predicate logits, P + 1; with ``variant.extra_fc`` a hidden size).
            variant: kernel size, order of bottleneck and kernels, extra FC, object
                shortcut (default: the paper's recipe).
            chunk_size: pairs processed at once (bounds inference memory).
        """
        super().__init__()
        self.variant = variant
        self.kernel_size, self.reduce_first = variant.kernel_size, bool(variant.reduce_first)
        self.extra_fc, self.object_shortcut = bool(variant.extra_fc), bool(variant.object_shortcut)
        self.chunk_size = int(chunk_size)
        kernel_channels = bottleneck_dim if self.reduce_first else map_dim
        self.subj_kernel = nn.Linear(obj_dim, kernel_channels * self.kernel_size**2)
        self.obj_kernel = nn.Linear(obj_dim, kernel_channels * self.kernel_size**2)
        # The 1x1 bottleneck; kernel-first, over [F * w_s, F * w_o, F] as three convs
        # summed (no concatenated copy per pair; the F term is computed once per subgraph).
        self.bottleneck_map = nn.Conv2d(map_dim, bottleneck_dim, 1)
        if not self.reduce_first:
            self.bottleneck_subj = nn.Conv2d(map_dim, bottleneck_dim, 1, bias=False)
            self.bottleneck_obj = nn.Conv2d(map_dim, bottleneck_dim, 1, bias=False)
        self.fc = nn.Linear(bottleneck_dim * pool_size**2, out_dim)
        self.out_dim = out_dim + (2 * obj_dim if self.object_shortcut else 0)

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

    def pair_maps(self, maps, map_term, w_s, w_o, pairs, groups) -> torch.Tensor:
        """(r, B, P, P) pair maps of ``pairs`` (r, 2) in subgraphs ``groups`` (r,)."""
        if self.reduce_first:
            g = map_term[groups]
            # convolution is linear in the kernel: G * w_s + G * w_o = G * (w_s + w_o)
            return torch.relu(self.depthwise(g, w_s[pairs[:, 0]] + w_o[pairs[:, 1]]) + g)
        f = maps[groups]
        h = self.bottleneck_subj(self.depthwise(f, w_s[pairs[:, 0]])) + map_term[groups]
        return torch.relu(h + self.bottleneck_obj(self.depthwise(f, w_o[pairs[:, 1]])))

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
        if self.reduce_first and self.kernel_size == 1:
            rel = self.factorised_readout(map_term, w_s, w_o, pairs, pair_to_subgraph)
        else:
            rel = torch.cat(
                [
                    self.fc(self.pair_maps(maps, map_term, w_s, w_o, p, g).flatten(1))
                    for p, g in zip(
                        pairs.split(self.chunk_size), pair_to_subgraph.split(self.chunk_size)
                    )
                ]
            )
        if self.extra_fc:
            rel = torch.relu(rel)
        if self.object_shortcut:
            rel = torch.cat([rel, x[pairs[:, 0]], x[pairs[:, 1]]], dim=1)
        return rel

    def factorised_readout(self, g_maps, w_s, w_o, pairs, pair_to_subgraph) -> torch.Tensor:
        """``fc(relu(G_k * (1 + w_s + w_o)))`` for 1 x 1 kernels, exactly, without pair maps.

        Args:
            g_maps: (S, B, P, P) bottlenecked subgraph maps G; w_s, w_o: (N, B) kernels.
            pairs: (R, 2); pair_to_subgraph: (R,).

        Returns:
            (R, out_dim).
        """
        s, b = g_maps.shape[:2]
        weight = self.fc.weight.reshape(self.fc.out_features, b, -1)  # (D, B, U)
        flat = g_maps.flatten(2)  # (S, B, U)
        # per subgraph: (S, 2B, D) read-out of its positive and negative parts
        a = torch.cat([torch.relu(flat), torch.relu(-flat)], dim=1)
        a = torch.einsum("sbu,dbu->sbd", a, torch.cat([weight, weight], dim=1))
        k = 1.0 + w_s[pairs[:, 0]] + w_o[pairs[:, 1]]  # (R, B) pair kernels
        k = torch.cat([torch.relu(k), torch.relu(-k)], dim=1)  # (R, 2B)
        out = k.new_empty((len(pairs), self.fc.out_features))
        order = torch.argsort(pair_to_subgraph, stable=True)
        counts = torch.bincount(pair_to_subgraph, minlength=s).tolist()
        # one (r_k, 2B) x (2B, D) product per subgraph over its pairs
        rows = [r for r in order.split(counts)]
        for sub, r in enumerate(rows):
            if len(r):
                out[r] = k[r] @ a[sub]
        return out + self.fc.bias
