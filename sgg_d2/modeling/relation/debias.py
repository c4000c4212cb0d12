"""Debiasing of the predicate classifier by the training split's predicate counts.

Two plain, tested functions and the config glue that hands them the counts:

- :func:`logit_adjustment`: post-hoc logit adjustment (Menon et al., ICLR 2021, "Long-tail
  learning via logit adjustment"): at inference the predicate logits become
  ``f_p(x) - tau * log pi_p`` with ``pi_p`` the training prior of predicate ``p``; the
  background logit is left as it is (``MODEL.SGG.LOGIT_ADJUSTMENT.TAU``; 0 = off). The
  model is trained as usual, so the adjustment applies to any trained model at evaluation.
- :func:`predicate_class_weights`: class weights of the relation cross-entropy
  (``MODEL.SGG.PREDICATE_LOSS_WEIGHTING``): inverse frequency, ``w_p ~ 1 / n_p``, or
  inverse effective number of samples (Cui et al., CVPR 2019, "Class-Balanced Loss Based
  on Effective Number of Samples"), ``w_p ~ (1 - beta) / (1 - beta ** n_p)``
  (``MODEL.SGG.EFFECTIVE_NUMBER_BETA``). The P predicate weights are normalised to mean 1
  (Cui et al. normalise them to sum to the number of classes) and the background weight
  is 1: background pairs are not a class with a dataset frequency (how many a batch holds
  is set by ``MODEL.SGG.POSITIVE_FRACTION``), so weighting them by a count would only
  rescale the sampler's foreground / background balance.

Counts are the data layer's (``sgg_d2.data.statistics``: every relation row counts once),
read from the frequency tensor that :func:`~sgg_d2.modeling.statistics.training_statistics`
returns. A predicate without training instances counts as one instance (its prior and its
weight stay finite).
"""

from typing import Dict, Optional

import numpy as np
import torch

__all__ = [
    "LOSS_WEIGHTINGS",
    "debiasing_from_config",
    "logit_adjustment",
    "predicate_class_weights",
    "predicate_counts_from_freq",
]

# Values of MODEL.SGG.PREDICATE_LOSS_WEIGHTING.
LOSS_WEIGHTINGS = ("none", "inverse", "effective_number")


def predicate_counts_from_freq(freq_tensor) -> torch.Tensor:
    """(P,) float64 training instances of each predicate, from the (C, C, P + 1) frequency
    tensor (background at index 0 of the last axis)."""
    freq = torch.as_tensor(np.asarray(freq_tensor), dtype=torch.float64)
    return freq[:, :, 1:].sum(dim=(0, 1))


def logit_adjustment(
    rel_logits: torch.Tensor, predicate_counts: Optional[torch.Tensor], tau: float
) -> torch.Tensor:
    """Post-hoc logit adjustment of the predicate logits; the background is untouched.

    Args:
        rel_logits: (R, P + 1) logits, background at index 0.
        predicate_counts: (P,) training instances of each predicate (zeros count as one),
            or None (an error unless ``tau`` is 0).
        tau: the adjustment's strength; 0 returns ``rel_logits`` itself.

    Returns:
        (R, P + 1) logits, column ``p + 1`` lowered by ``tau * log(n_p / sum_q n_q)``.

    Raises:
        ValueError: ``tau != 0`` and no counts (all zero, e.g. a model built without its
            training dataset), or counts of another length than the logits' P.
    """
    if tau == 0:
        return rel_logits
    if predicate_counts is None or not bool((predicate_counts > 0).any()):
        raise ValueError(
            "MODEL.SGG.LOGIT_ADJUSTMENT.TAU is not 0 but the model holds no predicate counts: "
            "build it with DATASETS.TRAIN registered (its training split's statistics)"
        )
    counts = torch.as_tensor(predicate_counts, dtype=torch.float64)
    if counts.shape != (rel_logits.shape[1] - 1,):
        raise ValueError(
            f"logit adjustment: {tuple(counts.shape)} predicate counts for logits of shape "
            f"{tuple(rel_logits.shape)} (expected P + 1 columns, background first)"
        )
    prior = counts.clamp(min=1.0)
    log_prior = (prior / prior.sum()).log().to(rel_logits.device, rel_logits.dtype)
    adjusted = rel_logits.clone()
    adjusted[:, 1:] -= tau * log_prior
    return adjusted


def predicate_class_weights(
    predicate_counts, method: str, beta: float = 0.999
) -> Optional[torch.Tensor]:
    """Class weights of the relation cross-entropy over P + 1 classes (background first).

    Args:
        predicate_counts: (P,) training instances of each predicate (zeros count as one).
        method: "none" (returns None), "inverse" (``1 / n_p``) or "effective_number"
            (``(1 - beta) / (1 - beta ** n_p)``).
        beta: of the effective number, in [0, 1).

    Returns:
        (P + 1,) float32: 1 for the background, the predicates' weights normalised to
        mean 1; or None for "none".

    Raises:
        ValueError: an unknown ``method`` or ``beta`` outside [0, 1) (naming the key).
    """
    if method not in LOSS_WEIGHTINGS:
        raise ValueError(
            f"MODEL.SGG.PREDICATE_LOSS_WEIGHTING is {method!r}; expected one of "
            f"{', '.join(LOSS_WEIGHTINGS)}"
        )
    if method == "none":
        return None
    counts = torch.as_tensor(predicate_counts, dtype=torch.float64).clamp(min=1.0)
    if method == "inverse":
        raw = 1.0 / counts
    else:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"MODEL.SGG.EFFECTIVE_NUMBER_BETA is {beta}; expected 0 <= beta < 1")
        raw = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts))
    foreground = raw / raw.mean()
    return torch.cat([torch.ones(1, dtype=torch.float64), foreground]).float()


def debiasing_from_config(cfg) -> Dict[str, object]:
    """The ROI heads' debiasing arguments from the config (counts only where a switch is on).

    Returns:
        dict with ``logit_adjustment_tau`` (float), ``predicate_counts`` ((P,) float32 or
        None) and ``predicate_loss_weights`` ((P + 1,) float32 or None).
    """
    from ..statistics import training_statistics

    sgg = cfg.MODEL.SGG
    tau = float(sgg.LOGIT_ADJUSTMENT.TAU)
    method = sgg.PREDICATE_LOSS_WEIGHTING
    predicate_class_weights(torch.ones(1), method, sgg.EFFECTIVE_NUMBER_BETA)  # check keys
    counts = None
    if tau != 0 or method != "none":
        counts = torch.zeros(sgg.NUM_PREDICATES, dtype=torch.float64)
        if cfg.DATASETS.TRAIN:  # else: inference without the data, an error if tau is used
            counts = predicate_counts_from_freq(training_statistics(cfg)["freq_tensor"])
    weights = None
    # no counts: a model built for inference only (SceneGraphRCNN refuses to train it)
    if method != "none" and bool((counts > 0).any()):
        weights = predicate_class_weights(counts, method, sgg.EFFECTIVE_NUMBER_BETA)
    return {
        "logit_adjustment_tau": tau,
        "predicate_counts": counts.float() if tau != 0 else None,
        "predicate_loss_weights": weights,
    }
