"""TDE's fusion of the branch logits and its causal effects (Tang et al., CVPR 2020):
the arithmetic of :class:`~sgg_d2.modeling.relation.causal.CausalPredictor`."""

from typing import Optional

import torch

from ...config import check_choice

__all__ = ["EFFECT_TYPES", "FUSIONS", "causal_effect", "fuse"]

# Values of MODEL.SGG.CAUSAL.EFFECT_TYPE and MODEL.SGG.CAUSAL.FUSION.
EFFECT_TYPES = ("none", "TDE", "NIE", "TE")
FUSIONS = ("sum", "gate")

# effect type -> effect from the factual, the labels-kept and the labels-free worlds' logits
_EFFECTS = {
    "TDE": lambda factual, fixed, free: factual - fixed,
    "NIE": lambda factual, fixed, free: fixed - free,
    "TE": lambda factual, fixed, free: factual - free,
}


def fuse(ctx, vis, freq, gate: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The branches' logits fused: ``ctx + vis + freq`` (sum), or with ``gate`` the paper's
    GATE, ``ctx * sigmoid(vis + freq + gate)``.

    Args:
        ctx: (R, P + 1) context-branch logits; vis, freq: (R, P + 1) visual / frequency
            logits (or 0 for a missing branch); gate: (R, P + 1) gate logits or None.
    """
    if gate is None:
        return ctx + vis + freq
    return ctx * torch.sigmoid(vis + freq + gate)


def causal_effect(
    effect_type: str,
    factual: torch.Tensor,
    fixed: Optional[torch.Tensor] = None,
    free: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The effect of ``effect_type`` from fused logits of three worlds.

    Args:
        effect_type: one of ``EFFECT_TYPES``; "none" returns ``factual``.
        factual: (R, P + 1) ``Y_{x, z}``; fixed: ``Y_{x_bar, z}`` (X averaged, labels
            kept); free: ``Y_{x_bar, z_bar}`` (labels the context's on averaged X; TE, NIE).

    Returns:
        (R, P + 1) TDE ``factual - fixed``, NIE ``fixed - free`` or TE ``factual - free``.
    """
    check_choice("MODEL.SGG.CAUSAL.EFFECT_TYPE", effect_type, EFFECT_TYPES)
    if effect_type == "none":
        return factual
    return _EFFECTS[effect_type](factual, fixed, free)
