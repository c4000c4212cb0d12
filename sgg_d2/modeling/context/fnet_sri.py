"""Factorizable Net, part 3: spatial-sensitive relation inference (SRI).

A pair's feature is read off its subgraph's 2-D map with the subject's and object's
vectors as depth-wise conv kernels. The paper concatenates the subject-, subgraph- and
object-maps ``[S(i); S_k; S(j)]`` before its predicate FC_p (``combine: "concat"``, the
default); the earlier form sums the three maps and reads them out with one shared
weight (``"sum"``). Both keep the exact per-subgraph factorisation of the read-out for
1 x 1 kernels (:meth:`SpatialRelationInference.factorised_readout`).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...config import check_choice

__all__ = ["SRI_COMBINES", "SRIVariant", "PAPER_SRI", "SpatialRelationInference"]

SRI_COMBINES = ("concat", "sum")


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
        combine: ``"concat"`` (paper: ``relu([S(i); S_k; S(j)])``, read out by one FC over
            the 3B channels) or ``"sum"`` (``relu(S(i) + S_k + S(j))``, one read-out over B
            channels; the earlier form).
    """

    kernel_size: int = 1
    reduce_first: bool = True
    extra_fc: bool = False
    object_shortcut: bool = False
    combine: str = "concat"

    def __post_init__(self):
        k = self.kernel_size
        if k < 1 or k % 2 == 0:
            raise ValueError(f"F-Net SRI kernel_size must be odd and >= 1, got {k}")
        check_choice("MODEL.SGG.FNET.SRI_COMBINE", self.combine, SRI_COMBINES)


PAPER_SRI = SRIVariant()  # 1 x 1 kernels on the bottlenecked map, concat, linear read-out


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
        self.combine = variant.combine
        parts = 3 if self.combine == "concat" else 1  # [S(i); S_k; S(j)] or their sum
        self.fc = nn.Linear(parts * bottleneck_dim * pool_size**2, out_dim)
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
        """(r, B, P, P) pair maps of ``pairs`` (r, 2) in subgraphs ``groups`` (r,);
        (r, 3B, P, P) with ``combine: "concat"``."""
        if self.combine == "concat":
            return torch.relu(
                torch.cat(self.pair_parts(maps, map_term, w_s, w_o, pairs, groups), 1)
            )
        if self.reduce_first:
            g = map_term[groups]
            # convolution is linear in the kernel: G * w_s + G * w_o = G * (w_s + w_o)
            return torch.relu(self.depthwise(g, w_s[pairs[:, 0]] + w_o[pairs[:, 1]]) + g)
        f = maps[groups]
        h = self.bottleneck_subj(self.depthwise(f, w_s[pairs[:, 0]])) + map_term[groups]
        return torch.relu(h + self.bottleneck_obj(self.depthwise(f, w_o[pairs[:, 1]])))

    def pair_parts(self, maps, map_term, w_s, w_o, pairs, groups):
        """``[S(i), S_k, S(j)]``, each (r, B, P, P): the subject- and object-convolved maps
        and the subgraph's own (bottlenecked) map, before the ReLU."""
        if self.reduce_first:
            g = map_term[groups]
            return [self.depthwise(g, w_s[pairs[:, 0]]), g, self.depthwise(g, w_o[pairs[:, 1]])]
        f = maps[groups]
        subj = self.bottleneck_subj(self.depthwise(f, w_s[pairs[:, 0]]))
        return [subj, map_term[groups], self.bottleneck_obj(self.depthwise(f, w_o[pairs[:, 1]]))]

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
        if self.reduce_first and self.kernel_size == 1 and self.combine == "concat":
            rel = self.factorised_concat_readout(map_term, w_s, w_o, pairs, pair_to_subgraph)
        elif self.reduce_first and self.kernel_size == 1:
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
        b = g_maps.shape[1]
        weight = self.fc.weight.reshape(self.fc.out_features, b, -1)  # (D, B, U)
        a = _signed_readout(_signed(g_maps.flatten(2)), weight)  # (S, 2B, D)
        k = _signed(1.0 + w_s[pairs[:, 0]] + w_o[pairs[:, 1]])  # (R, 2B) pair kernels
        # one (r_k, 2B) x (2B, D) product per subgraph over its pairs
        return per_subgraph_products(k, a, pair_to_subgraph) + self.fc.bias

    def factorised_concat_readout(self, g_maps, w_s, w_o, pairs, pair_to_subgraph):
        """``fc(relu([G_k w_s; G_k; G_k w_o]))`` for 1 x 1 kernels, exactly, without pair maps.

        The read-out is a sum over the three parts: ``W_s relu(G_k w_s) + W_g relu(G_k) +
        W_o relu(G_k w_o)``; the first and last factorise as in :meth:`factorised_readout`
        (per subgraph (2B, D) matrices, per pair a (2B)-vector each), the middle is one
        (D,) vector per subgraph.

        Args:
            g_maps: (S, B, P, P) bottlenecked subgraph maps G; w_s, w_o: (N, B) kernels.
            pairs: (R, 2); pair_to_subgraph: (R,).

        Returns:
            (R, out_dim).
        """
        b = g_maps.shape[1]
        weight = self.fc.weight.reshape(self.fc.out_features, 3, b, -1)  # (D, 3, B, U)
        flat = g_maps.flatten(2)  # (S, B, U)
        signed = _signed(flat)  # (S, 2B, U)
        own = torch.einsum("sbu,dbu->sd", torch.relu(flat), weight[:, 1])  # (S, D)
        ks, a_s = [], []
        for part, kernels in ((0, w_s[pairs[:, 0]]), (2, w_o[pairs[:, 1]])):
            a_s.append(_signed_readout(signed, weight[:, part]))  # (S, 2B, D)
            ks.append(_signed(kernels))  # (R, 2B)
        out = per_subgraph_products(torch.cat(ks, 1), torch.cat(a_s, 1), pair_to_subgraph)
        return out + own[pair_to_subgraph] + self.fc.bias


def _signed(x: torch.Tensor) -> torch.Tensor:
    """``[relu(x); relu(-x)]`` along dim 1: (S, B, ...) -> (S, 2B, ...). Splitting a map
    into its positive and negative parts makes ``relu(map * k)`` linear in ``k``'s parts."""
    return torch.cat([torch.relu(x), torch.relu(-x)], dim=1)


def _signed_readout(signed: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per subgraph, the read-out of its positive and negative parts.

    Args:
        signed: (S, 2B, U) from :func:`_signed`; weight: (D, B, U) read-out weights.

    Returns:
        (S, 2B, D).
    """
    return torch.einsum("sbu,dbu->sbd", signed, torch.cat([weight, weight], dim=1))


def per_subgraph_products(k: torch.Tensor, a: torch.Tensor, pair_to_subgraph) -> torch.Tensor:
    """Row r of the result is ``k[r] @ a[pair_to_subgraph[r]]``, one matmul per subgraph
    (no (R, K, D) gather).

    Args:
        k: (R, K) per-pair vectors; a: (S, K, D) per-subgraph matrices;
        pair_to_subgraph: (R,) int64.

    Returns:
        (R, D).
    """
    out = k.new_empty((len(k), a.shape[2]))
    order = torch.argsort(pair_to_subgraph, stable=True)
    counts = torch.bincount(pair_to_subgraph, minlength=len(a)).tolist()
    for sub, r in enumerate(order.split(counts)):
        if len(r):
            out[r] = k[r] @ a[sub]
    return out
