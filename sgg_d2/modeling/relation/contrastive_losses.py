"""Graphical contrastive losses (Zhang et al., "Graphical Contrastive Losses for Scene Graph
Parsing", CVPR 2019), usable with any context model.

The affinity of a pair is Φ(s, o) = 1 - p(background | s, o), from the softmax of the
relation logits. An entity instance (a GT object; ``TrainingTargets.obj_gt_index``) is an
*anchor*, once as subject and once as object. Its positive pairs are the sampled pairs in
which it takes part with a relation, its negative pairs those it takes part in without
one. Every loss is a margin ranking between the *least* related positive and the *most*
related negative of a group, max(0, α - min_pos Φ + max_neg Φ), over the groups that have
both; groups of subject anchors and of object anchors are averaged separately, then added.
How (``MODEL.SGG.CONTRASTIVE.GROUP_WEIGHTING``): ``"anchor"`` (the paper's Eqs. 3, 5, 7)
averages each anchor's groups, then divides by the number of anchors with such a group, so
every anchor weighs 1 / num_anchors (an anchor without a negative leaves the denominator);
``"flat"`` (the earlier form) is one mean over all groups, so an anchor with several
classes (L2) or predicates (L3) weighs more. L1 has one group per anchor: both agree.

- L1, class agnostic: one group per anchor;
- L2, entity-class aware: one group per (anchor, class of the other entity): negatives
  only compete with positives whose other entity has the same class (multiple cups);
- L3, predicate-class aware: one group per (anchor, predicate e): the positives are its
  pairs with GT predicate e, the negatives its unrelated pairs that the model currently
  predicts as e (arg-max over the real predicates), so that a related and an unrelated
  pair sharing the predicate are told apart (proximal relationship ambiguity). This is the
  set construction of the authors' release (the affinity stays 1 - p(background)); the
  related pairs with another predicate are not negatives, as they are positives of L1.
  A pair with several GT predicates takes part with the one the data layer kept
  (``DATASETS.SGG.FILTER_DUPLICATE_RELATIONS`` keeps one at random in training; Eq. 7
  would make it a positive of each of its predicates' groups): the pair labels are
  single-label throughout the relation stage, a documented difference.

Which pairs take part (the paper's sampling): anchors are drawn per image and side
(``MODEL.SGG.CONTRASTIVE.ANCHORS_PER_IMAGE``, 128 in RelDN's release) among the GT entities
that have a relation, independently of the cross-entropy (L0) sample, and *every*
candidate pair of a drawn anchor is scored (the ROI heads run the relation model on them,
``TrainingTargets.contrastive_anchors``), so the hardest negative of an anchor is never
missed. With ``ANCHORS_PER_IMAGE: 0`` (ablation) the groups are formed within the L0
sample. Detections matched to no GT object (SGDet, index -1) are never anchors and never
positives; they are negatives of the anchors they are paired with. The class of the
"other" entity in L2 is its GT class, or for an unmatched detection its detector class (a
badly localised cup is exactly the paper's same-class confusion).

Diagnostics (is the claim's mechanism at work?): each call stores in
:attr:`GraphicalContrastiveLoss.last_diagnostics` and, inside a Detectron2 trainer, puts
in the event storage (``contrastive/*`` scalars, averaged over the logging period): the
number of anchor groups with a positive, those that also have a negative, those whose
margin is violated (a *hard* negative: non-zero loss), and per loss L1/L2/L3 the number
of groups with both and the fraction of them with non-zero loss (``active``).
"""

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.utils.events import get_event_storage
from torch import nn

from .loss_registry import RELATION_LOSS_REGISTRY

__all__ = [
    "GROUP_WEIGHTINGS",
    "GraphicalContrastiveLoss",
    "anchor_mean",
    "pair_affinity",
    "group_margin_loss",
    "group_margins",
    "graphical_contrastive_terms",
]


GROUP_WEIGHTINGS = ("anchor", "flat")


def pair_affinity(rel_logits: torch.Tensor) -> torch.Tensor:
    """Φ = 1 - p(background): (R, P + 1) logits (background at 0) -> (R,)."""
    return 1.0 - rel_logits.softmax(dim=1)[:, 0]


def group_margins(
    affinity: torch.Tensor,
    keys: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float,
) -> Tuple[torch.Tensor, int]:
    """Per group max(0, margin - min positive affinity + max negative affinity).

    Args:
        affinity: (R,) affinity of each pair.
        keys: (R, K) int64 group key of each pair; a row with a negative entry is in no group.
        positive, negative: (R,) bool, disjoint: the pair's role in its group.
        margin: α.

    Returns:
        ``(violations, num_with_positive)``: (G,) the hinge of each of the G groups having
        both a positive and a negative, and the number of groups having a positive.
    """
    member = (keys >= 0).all(dim=1) & (positive | negative)
    if not bool(member.any()):
        return affinity[:0], 0
    aff, pos = affinity[member], positive[member]
    _, group = torch.unique(keys[member], dim=0, return_inverse=True)
    num_groups = int(group.max()) + 1
    inf = aff.new_full((num_groups,), float("inf"))
    min_pos = inf.scatter_reduce(0, group[pos], aff[pos], reduce="amin")
    max_neg = (-inf).scatter_reduce(0, group[~pos], aff[~pos], reduce="amax")
    has_pos = torch.isfinite(min_pos)
    both = has_pos & torch.isfinite(max_neg)
    return F.relu(margin - min_pos[both] + max_neg[both]), int(has_pos.sum())


def group_anchors(keys: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor):
    """(G,) anchor (column 0 of ``keys``) of each group that :func:`group_margins` returns,
    in the same order (arguments as there, without the affinities)."""
    member = (keys >= 0).all(dim=1) & (positive | negative)
    if not bool(member.any()):
        return keys[:0, 0]
    unique, group = torch.unique(keys[member], dim=0, return_inverse=True)
    pos = positive[member]
    has_pos = torch.zeros(len(unique), dtype=torch.bool, device=keys.device)
    has_neg = torch.zeros_like(has_pos)
    has_pos[group[pos]] = True
    has_neg[group[~pos]] = True
    return unique[has_pos & has_neg, 0]


def anchor_mean(violations: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Eqs. 3, 5, 7: ``(1 / num_anchors) sum_a (1 / |G_a|) sum_{g in G_a} violation_g``.

    Args:
        violations: (G,) hinge of each group; anchors: (G,) int64 anchor of each group.

    Returns:
        A scalar (G >= 1): each anchor's groups averaged, then the anchors averaged.
    """
    _, anchor = torch.unique(anchors, return_inverse=True)
    num = int(anchor.max()) + 1
    total = violations.new_zeros(num).index_add(0, anchor, violations)
    count = violations.new_zeros(num).index_add(0, anchor, torch.ones_like(violations))
    return (total / count).mean()


def group_margin_loss(
    affinity: torch.Tensor,
    keys: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """Mean over groups of max(0, margin - min positive affinity + max negative affinity).

    Arguments as :func:`group_margins`. Returns a scalar over the groups having both a
    positive and a negative; 0 (connected to the graph) when there is none.
    """
    violations, _ = group_margins(affinity, keys, positive, negative, margin)
    if len(violations) == 0:
        return affinity.sum() * 0.0
    return violations.mean()


def graphical_contrastive_terms(
    affinity: torch.Tensor,
    pair_labels: torch.Tensor,
    pairs: torch.Tensor,
    entity_ids: torch.Tensor,
    entity_classes: torch.Tensor,
    predicted: torch.Tensor,
    margins: Tuple[float, float, float],
    anchors: Optional[torch.Tensor] = None,
    stats: Optional[Dict[str, float]] = None,
    weighting: str = "anchor",
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
        anchors: (N, 2) bool, the sampled anchors as subject / as object; a pair takes part
            on a side only when its object on that side is an anchor. None: every matched
            entity is an anchor.
        stats: if given, filled with the diagnostics of the module docstring.
        weighting: one of :data:`GROUP_WEIGHTINGS` (see the module docstring).

    Returns:
        (L1, L2, L3) scalars.
    """
    positive, negative = pair_labels > 0, pair_labels == 0
    l3_predicate = torch.where(positive, pair_labels, predicted)
    terms = [affinity.sum() * 0.0 for _ in range(3)]
    counts = {"groups": [0, 0, 0], "active": [0, 0, 0], "anchors": 0}
    for side in (0, 1):  # the anchor is the subject, then the object
        anchor = entity_ids[pairs[:, side]]
        if anchors is not None:
            anchor = torch.where(anchors[pairs[:, side], side], anchor, torch.full_like(anchor, -1))
        other_class = entity_classes[pairs[:, 1 - side]]
        keys = (
            anchor[:, None],
            torch.stack([anchor, other_class], dim=1),
            torch.stack([anchor, l3_predicate], dim=1),
        )
        for k in range(3):
            violations, with_positive = group_margins(
                affinity, keys[k], positive, negative, margins[k]
            )
            if len(violations) and weighting == "anchor":
                terms[k] = terms[k] + anchor_mean(
                    violations, group_anchors(keys[k], positive, negative)
                )
            elif len(violations):
                terms[k] = terms[k] + violations.mean()
            counts["groups"][k] += len(violations)
            counts["active"][k] += int((violations > 0).sum())
            if k == 0:
                counts["anchors"] += with_positive
    if stats is not None:
        stats["anchors"] = float(counts["anchors"])
        stats["anchors_with_negative"] = float(counts["groups"][0])
        stats["anchors_with_hard_negative"] = float(counts["active"][0])
        for k in range(3):
            groups = counts["groups"][k]
            stats[f"l{k + 1}_groups"] = float(groups)
            stats[f"l{k + 1}_active"] = counts["active"][k] / groups if groups else 0.0
    return terms[0], terms[1], terms[2]


@RELATION_LOSS_REGISTRY.register()
class GraphicalContrastiveLoss(nn.Module):
    """L1, L2, L3 of RelDN, weighted: ``loss_contrastive_l1`` / ``_l2`` / ``_l3``.

    Enabled with ``MODEL.SGG.EXTRA_RELATION_LOSSES: ["GraphicalContrastiveLoss"]``; weights
    λ and margins α from ``MODEL.SGG.CONTRASTIVE.WEIGHTS`` / ``MARGINS``, each loss switched
    by ``USE_L1`` / ``USE_L2`` / ``USE_L3`` (a switched-off loss is not returned), anchors
    per image and side ``ANCHORS_PER_IMAGE`` (read by the ROI heads through
    :attr:`anchors_per_image`, which then give ``inputs.training.contrastive_anchors``).
    """

    @configurable
    def __init__(
        self,
        *,
        weights: Tuple[float, float, float] = (1.0, 0.5, 0.1),
        margins: Tuple[float, float, float] = (0.2, 0.2, 0.2),
        use: Tuple[bool, bool, bool] = (True, True, True),
        anchors_per_image: int = 128,
        group_weighting: str = "anchor",
    ):
        """
        Args:
            weights: λ1, λ2, λ3 (paper: 1, 0.5, 0.1).
            margins: α1, α2, α3 (paper: 0.2 each).
            use: which of L1, L2, L3 are computed.
            anchors_per_image: anchors drawn per image and side (0: groups within the
                cross-entropy sample).
            group_weighting: one of :data:`GROUP_WEIGHTINGS` (module docstring).
        """
        super().__init__()
        for name, values in (("WEIGHTS", weights), ("MARGINS", margins)):
            if len(values) != 3 or any(float(v) < 0 for v in values):
                raise ValueError(
                    f"MODEL.SGG.CONTRASTIVE.{name} must be 3 non-negative numbers (L1, L2, "
                    f"L3), got {tuple(values)}"
                )
        if int(anchors_per_image) < 0:
            raise ValueError(
                "MODEL.SGG.CONTRASTIVE.ANCHORS_PER_IMAGE must be >= 0, got " f"{anchors_per_image}"
            )
        if group_weighting not in GROUP_WEIGHTINGS:
            raise ValueError(
                f"MODEL.SGG.CONTRASTIVE.GROUP_WEIGHTING is {group_weighting!r}; valid values "
                f"are {', '.join(GROUP_WEIGHTINGS)}"
            )
        self.group_weighting = group_weighting
        self.weights = tuple(float(w) for w in weights)
        self.margins = tuple(float(m) for m in margins)
        self.use = tuple(bool(u) for u in use)
        self.anchors_per_image = int(anchors_per_image)
        self.last_diagnostics: Dict[str, float] = {}

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.SGG.CONTRASTIVE
        return {
            "weights": tuple(c.WEIGHTS),
            "margins": tuple(c.MARGINS),
            "use": (c.USE_L1, c.USE_L2, c.USE_L3),
            "anchors_per_image": c.ANCHORS_PER_IMAGE,
            "group_weighting": c.GROUP_WEIGHTING,
        }

    def forward(self, rel_logits: torch.Tensor, pair_labels: torch.Tensor, inputs):
        """
        Args:
            rel_logits: (R, P + 1) logits of the pairs the model was run on, background at 0.
            pair_labels: (R,) int64, 0 = background, p + 1 = predicate p.
            inputs: the batch's ``ContextInputs`` (``pairs``, ``obj_logits``, and from
                ``training``: ``obj_gt_index``, ``obj_gt_classes``, ``contrastive_anchors``
                when anchors were drawn).

        Returns:
            ``{"loss_contrastive_l<k>": λk Lk}`` for each switched-on k.
        """
        targets = inputs.training
        for field in ("obj_gt_index", "obj_gt_classes"):
            if targets is None or getattr(targets, field) is None:
                raise ValueError(f"GraphicalContrastiveLoss needs inputs.training.{field}")
        if not (len(rel_logits) == len(pair_labels) == len(inputs.pairs)):
            raise ValueError(
                f"rel_logits ({len(rel_logits)} rows), pair_labels ({len(pair_labels)}) and "
                f"inputs.pairs ({len(inputs.pairs)}) must have one row per pair"
            )
        anchors = targets.contrastive_anchors if self.anchors_per_image > 0 else None
        gt_classes = targets.obj_gt_classes
        classes = torch.where(gt_classes >= 0, gt_classes, inputs.obj_logits.argmax(dim=1))
        predicted = rel_logits[:, 1:].argmax(dim=1) + 1
        stats: Dict[str, float] = {}
        terms = graphical_contrastive_terms(
            pair_affinity(rel_logits),
            pair_labels,
            inputs.pairs,
            targets.obj_gt_index,
            classes,
            predicted,
            self.margins,
            anchors=anchors,
            stats=stats,
            weighting=self.group_weighting,
        )
        self.last_diagnostics = stats
        _put_scalars(stats)
        return {
            f"loss_contrastive_l{k}": w * t
            for k, w, t, on in zip((1, 2, 3), self.weights, terms, self.use)
            if on
        }


def _put_scalars(stats: Dict[str, float]) -> None:
    """Log ``contrastive/<name>`` scalars in the trainer's event storage, if there is one."""
    try:
        storage = get_event_storage()
    except (AssertionError, IndexError):  # outside a Detectron2 training loop
        return
    for name, value in stats.items():
        storage.put_scalar(f"contrastive/{name}", value)
