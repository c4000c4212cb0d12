"""Graphical contrastive losses (Zhang et al., "Graphical Contrastive Losses for Scene Graph
Parsing", CVPR 2019), usable with any context model.

The affinity of a pair is Φ(s, o) = 1 - p(background | s, o), from the softmax of the
relation logits. An entity instance (a GT object; ``ContextInputs.obj_gt_index``) is an
*anchor*, once as subject and once as object. Its positive pairs are the sampled pairs in
which it takes part with a relation, its negative pairs those it takes part in without
one. Every loss is a margin ranking between the *least* related positive and the *most*
related negative of a group, max(0, α - min_pos Φ + max_neg Φ), averaged over the groups
that have both (groups of subject anchors and of object anchors averaged separately, then
added):

- L1, class agnostic: one group per anchor;
- L2, entity-class aware: one group per (anchor, class of the other entity): negatives
  only compete with positives whose other entity has the same class (multiple cups);
- L3, predicate-class aware: one group per (anchor, predicate e): the positives are its
  pairs with GT predicate e, the negatives its unrelated pairs that the model currently
  predicts as e (arg-max over the real predicates), so that a related and an unrelated
  pair sharing the predicate are told apart (proximal relationship ambiguity). This is the
  set construction of the authors' release (the affinity stays 1 - p(background)); the
  related pairs with another predicate are not negatives, as they are positives of L1.

Which pairs take part: the sampled training pairs of the shared sampler (the paper samples
pairs per positive entity). Detections matched to no GT object (SGDet, index -1) are never
anchors and never positives; they are negatives of the anchors they are paired with. The
class of the "other" entity in L2 is its GT class, or for an unmatched detection its
detector class (a badly localised cup is exactly the paper's same-class confusion).
"""

from typing import Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .loss_registry import RELATION_LOSS_REGISTRY

__all__ = [
    "GraphicalContrastiveLoss",
    "pair_affinity",
    "group_margin_loss",
    "graphical_contrastive_terms",
]


def pair_affinity(rel_logits: torch.Tensor) -> torch.Tensor:
    """Φ = 1 - p(background): (R, P + 1) logits (background at 0) -> (R,)."""
    return 1.0 - rel_logits.softmax(dim=1)[:, 0]


def group_margin_loss(
    affinity: torch.Tensor,
    keys: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """Mean over groups of max(0, margin - min positive affinity + max negative affinity).

    Args:
        affinity: (R,) affinity of each pair.
        keys: (R, K) int64 group key of each pair; a row with a negative entry is in no group.
        positive, negative: (R,) bool, disjoint: the pair's role in its group.
        margin: α.

    Returns:
        Scalar over the groups having both a positive and a negative; 0 (connected to the
        graph) when there is none.
    """
    zero = affinity.sum() * 0.0
    member = (keys >= 0).all(dim=1) & (positive | negative)
    if not bool(member.any()):
        return zero
    aff, pos = affinity[member], positive[member]
    _, group = torch.unique(keys[member], dim=0, return_inverse=True)
    num_groups = int(group.max()) + 1
    inf = aff.new_full((num_groups,), float("inf"))
    min_pos = inf.scatter_reduce(0, group[pos], aff[pos], reduce="amin")
    max_neg = (-inf).scatter_reduce(0, group[~pos], aff[~pos], reduce="amax")
    both = torch.isfinite(min_pos) & torch.isfinite(max_neg)
    if not bool(both.any()):
        return zero
    return F.relu(margin - min_pos[both] + max_neg[both]).mean()


def graphical_contrastive_terms(
    affinity: torch.Tensor,
    pair_labels: torch.Tensor,
    pairs: torch.Tensor,
    entity_ids: torch.Tensor,
    entity_classes: torch.Tensor,
    predicted: torch.Tensor,
    margins: Tuple[float, float, float],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The unweighted L1, L2, L3 of a batch (see the module docstring).

    Args:
        affinity: (R,) Φ of each pair.
        pair_labels: (R,) int64, 0 = no relation, p + 1 = predicate p.
        pairs: (R, 2) int64 (subject, object) indices into the N objects.
        entity_ids: (N,) int64 entity instance of each object, unique across the batch,
            -1 for a detection matched to nothing.
        entity_classes: (N,) int64 class of each object (for L2).
        predicted: (R,) int64 predicted predicate label (in 1..P) of each pair (for L3).
        margins: α1, α2, α3.

    Returns:
        (L1, L2, L3) scalars.
    """
    positive, negative = pair_labels > 0, pair_labels == 0
    l3_predicate = torch.where(positive, pair_labels, predicted)
    terms = [affinity.sum() * 0.0 for _ in range(3)]
    for side in (0, 1):  # the anchor is the subject, then the object
        anchor = entity_ids[pairs[:, side]]
        other_class = entity_classes[pairs[:, 1 - side]]
        keys = (
            anchor[:, None],
            torch.stack([anchor, other_class], dim=1),
            torch.stack([anchor, l3_predicate], dim=1),
        )
        for k in range(3):
            terms[k] = terms[k] + group_margin_loss(
                affinity, keys[k], positive, negative, margins[k]
            )
    return terms[0], terms[1], terms[2]


@RELATION_LOSS_REGISTRY.register()
class GraphicalContrastiveLoss(nn.Module):
    """L1, L2, L3 of RelDN, weighted: ``loss_contrastive_l1`` / ``_l2`` / ``_l3``.

    Enabled with ``MODEL.SGG.EXTRA_RELATION_LOSSES: ["GraphicalContrastiveLoss"]``; weights
    λ and margins α from ``MODEL.SGG.CONTRASTIVE.WEIGHTS`` / ``MARGINS``.
    """

    @configurable
    def __init__(
        self,
        *,
        weights: Tuple[float, float, float] = (1.0, 0.5, 0.1),
        margins: Tuple[float, float, float] = (0.2, 0.2, 0.2),
    ):
        """
        Args:
            weights: λ1, λ2, λ3 (paper: 1, 0.5, 0.1).
            margins: α1, α2, α3 (paper: 0.2 each).
        """
        super().__init__()
        for name, values in (("WEIGHTS", weights), ("MARGINS", margins)):
            if len(values) != 3 or any(float(v) < 0 for v in values):
                raise ValueError(
                    f"MODEL.SGG.CONTRASTIVE.{name} must be 3 non-negative numbers (L1, L2, "
                    f"L3), got {tuple(values)}"
                )
        self.weights = tuple(float(w) for w in weights)
        self.margins = tuple(float(m) for m in margins)

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.SGG.CONTRASTIVE
        return {"weights": tuple(c.WEIGHTS), "margins": tuple(c.MARGINS)}

    def forward(self, rel_logits: torch.Tensor, pair_labels: torch.Tensor, inputs):
        """
        Args:
            rel_logits: (R, P + 1) logits of the sampled pairs, background at 0.
            pair_labels: (R,) int64, 0 = background, p + 1 = predicate p.
            inputs: the batch's ``ContextInputs`` (``pairs``, ``obj_gt_index``,
                ``obj_gt_classes``, ``obj_logits``).

        Returns:
            ``{"loss_contrastive_l1": λ1 L1, "loss_contrastive_l2": λ2 L2,
            "loss_contrastive_l3": λ3 L3}``.
        """
        for field in ("obj_gt_index", "obj_gt_classes"):
            if getattr(inputs, field) is None:
                raise ValueError(f"GraphicalContrastiveLoss needs inputs.{field} (training only)")
        if not (len(rel_logits) == len(pair_labels) == len(inputs.pairs)):
            raise ValueError(
                f"rel_logits ({len(rel_logits)} rows), pair_labels ({len(pair_labels)}) and "
                f"inputs.pairs ({len(inputs.pairs)}) must have one row per pair"
            )
        gt_classes = inputs.obj_gt_classes
        classes = torch.where(gt_classes >= 0, gt_classes, inputs.obj_logits.argmax(dim=1))
        predicted = rel_logits[:, 1:].argmax(dim=1) + 1
        terms = graphical_contrastive_terms(
            pair_affinity(rel_logits),
            pair_labels,
            inputs.pairs,
            inputs.obj_gt_index,
            classes,
            predicted,
            self.margins,
        )
        return {f"loss_contrastive_l{k}": w * t for k, w, t in zip((1, 2, 3), self.weights, terms)}
