"""Predicate classifier shared by every context model: pair features -> logits + bias."""

import logging
from typing import Optional

import torch
from torch import nn

__all__ = ["FrequencyBias", "RelationPredictor", "use_frequency_bias"]

logger = logging.getLogger(__name__)

# Values of MODEL.SGG.USE_FREQUENCY_BIAS: None / "auto" follow the context model's paper.
_AUTO = (None, "auto")


def use_frequency_bias(cfg, context: nn.Module) -> bool:
    """Whether the predictor adds the frequency bias for this context model.

    ``MODEL.SGG.USE_FREQUENCY_BIAS`` True/False force it on/off for any model; None (or
    "auto") takes the context model's class attribute ``paper_frequency_bias``, i.e. what
    its paper does (MOTIFS, VCTree, RelDN's semantic module and the Frequency baseline add
    it; IMP, LinkNet and F-Net do not). A context that declares none keeps the bias on.

    Args:
        cfg: the config; context: the built context model.

    Raises:
        ValueError: the key holds anything else.
    """
    value = cfg.MODEL.SGG.USE_FREQUENCY_BIAS
    if isinstance(value, bool):
        return value
    if value not in _AUTO:
        raise ValueError(
            f"MODEL.SGG.USE_FREQUENCY_BIAS is {value!r}; expected True, False or None "
            "(None / 'auto': the context model's paper default)"
        )
    paper = getattr(type(context), "paper_frequency_bias", None)
    if paper is None:
        logger.warning(
            "%s declares no paper_frequency_bias; using the frequency bias (set "
            "MODEL.SGG.USE_FREQUENCY_BIAS to choose)",
            type(context).__name__,
        )
        return True
    return bool(paper)


class FrequencyBias(nn.Module):
    """Learnable log p(predicate | subject class, object class), one row per class pair.

    Initialised from the data layer's frequency tensor (MOTIFS' frequency baseline).
    """

    def __init__(self, freq_tensor: torch.Tensor, eps: float = 1e-3):
        """
        Args:
            freq_tensor: (C, C, P + 1) counts; index 0 of the last axis is background.
        """
        super().__init__()
        c, c2, p1 = freq_tensor.shape
        if c != c2:
            raise ValueError(f"freq_tensor must be (C, C, P + 1), got {tuple(freq_tensor.shape)}")
        self.num_classes = c
        probs = freq_tensor.float() / freq_tensor.float().sum(-1, keepdim=True).clamp(min=1)
        self.table = nn.Embedding(c * c, p1)
        with torch.no_grad():
            self.table.weight.copy_(torch.log(probs + eps).reshape(c * c, p1))

    def forward(self, subj_labels: torch.Tensor, obj_labels: torch.Tensor) -> torch.Tensor:
        """(R,), (R,) int64 class indices -> (R, P + 1) log-frequency logits."""
        return self.table(subj_labels * self.num_classes + obj_labels)


class RelationPredictor(nn.Module):
    """Predicate logits (R, P + 1), background at index 0, from pair features and labels."""

    def __init__(
        self,
        in_dim: Optional[int],
        num_predicates: int,
        freq_tensor: Optional[torch.Tensor] = None,
    ):
        """
        Args:
            in_dim: size of the pair features, or None for a bias-only predictor.
            num_predicates: P, the number of real predicates.
            freq_tensor: (C, C, P + 1) counts for the frequency bias; None disables it.
        """
        super().__init__()
        if in_dim is None and freq_tensor is None:
            raise ValueError("RelationPredictor needs pair features, a frequency bias, or both")
        self.classifier = nn.Linear(in_dim, num_predicates + 1) if in_dim else None
        self.freq_bias = FrequencyBias(freq_tensor) if freq_tensor is not None else None

    def forward(
        self,
        pair_features: Optional[torch.Tensor],
        subj_labels: torch.Tensor,
        obj_labels: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            pair_features: (R, in_dim) or None.
            subj_labels, obj_labels: (R,) int64 classes of the pair's subject and object.

        Returns:
            (R, P + 1) logits.
        """
        logits = 0
        if self.classifier is not None:
            logits = self.classifier(pair_features)
        if self.freq_bias is not None:
            logits = logits + self.freq_bias(subj_labels, obj_labels)
        return logits
