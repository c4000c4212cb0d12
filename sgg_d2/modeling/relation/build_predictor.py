"""The ROI heads' relation predictor from the config: the shared ``RelationPredictor``,
or TDE's :class:`~sgg_d2.modeling.relation.causal.CausalPredictor` with
``MODEL.SGG.CAUSAL.ENABLED``."""

import numpy as np
import torch
from torch import nn

from ...config import check_choice
from ..context.common import PairFromObjects
from .causal import EFFECT_TYPES, FUSIONS, CausalPredictor
from .predictor import RelationPredictor, use_frequency_bias

__all__ = ["build_relation_predictor"]


def build_relation_predictor(cfg, context) -> nn.Module:
    """The ROI heads' predictor: ``RelationPredictor``, or :class:`CausalPredictor` with
    ``MODEL.SGG.CAUSAL.ENABLED`` (frequency branch unless ``USE_FREQUENCY_BIAS`` is False).

    Raises:
        ValueError: a bad ``MODEL.SGG.CAUSAL`` value, an effect type without the causal
            predictor, or a context model without pair features (naming the key).
    """
    from ..statistics import training_statistics

    sgg, causal = cfg.MODEL.SGG, cfg.MODEL.SGG.CAUSAL
    check_choice("MODEL.SGG.CAUSAL.EFFECT_TYPE", causal.EFFECT_TYPE, EFFECT_TYPES)
    check_choice("MODEL.SGG.CAUSAL.FUSION", causal.FUSION, FUSIONS)
    if not causal.ENABLED:
        if causal.EFFECT_TYPE != "none":
            raise ValueError(
                f"MODEL.SGG.CAUSAL.EFFECT_TYPE is {causal.EFFECT_TYPE!r} but "
                "MODEL.SGG.CAUSAL.ENABLED is False: effects need the causal predictor"
            )
        freq = training_statistics(cfg)["freq_tensor"] if use_frequency_bias(cfg, context) else None
        return RelationPredictor(
            context.pair_dim, sgg.NUM_PREDICATES, None if freq is None else torch.as_tensor(freq)
        )
    if context.pair_dim is None:
        raise ValueError(
            f"MODEL.SGG.CAUSAL.ENABLED needs a context model with pair features (the context "
            f"branch); MODEL.SGG.CONTEXT {sgg.CONTEXT!r} gives none"
        )
    spatial = _ungate_pair_features(context) > 0
    # None / "auto": on, the paper's causal model has the frequency branch
    use_bias = sgg.USE_FREQUENCY_BIAS in (None, "auto") or use_frequency_bias(cfg, context)
    freq = (
        torch.as_tensor(np.asarray(training_statistics(cfg)["freq_tensor"])) if use_bias else None
    )
    return CausalPredictor(
        pair_dim=context.pair_dim,
        union_dim=sgg.UNION_DIM,
        obj_dim=context.obj_dim,
        num_classes=context.num_classes,
        num_predicates=sgg.NUM_PREDICATES,
        freq_tensor=freq,
        fusion=causal.FUSION,
        effect_type=causal.EFFECT_TYPE,
        momentum=causal.MOMENTUM,
        aux_loss_weight=causal.AUX_LOSS_WEIGHT,
        spatial_context=spatial,
    )


def _ungate_pair_features(context: nn.Module) -> int:
    """The paper's context branch for MOTIFS / VCTree: their pair features without the
    union-box gating (``PairFromObjects.gate_with_union`` False), since the visual branch
    reads the union feature itself. Gated, the counterfactual pass kept each pair's visual
    evidence and TDE cancelled it (crowded world, MOTIFS PredCls: R@50 1.2, mR@50 0.4).

    Returns:
        How many pair modules were switched (0 for the other context models).
    """
    pairs = [m for m in context.modules() if isinstance(m, PairFromObjects)]
    for module in pairs:
        module.gate_with_union = False
    return len(pairs)
