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
  Which predicates of a pair (``MODEL.SGG.CONTRASTIVE.L3_PREDICATES``): ``"all"`` (Eq. 7)
  makes a pair with several GT predicates a positive of the group of each of them
  (``TrainingTargets.all_pair_predicates``); ``"sampled"`` (the earlier form) only of the
  group of the one predicate its cross-entropy label carries. The GT relations reaching
  the model hold one predicate per pair when ``DATASETS.SGG.FILTER_DUPLICATE_RELATIONS``
  is True (the data layer keeps one at random in training), so ``"all"`` needs it False
  to see a pair's other predicates (the cross-entropy label is then still one random
  predicate of the pair, drawn by ``sampling.pair_targets``).

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

import logging
from typing import Dict, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.utils.events import get_event_storage
from torch import nn

from ...config import check_choice
from .contrastive_groups import (
    anchor_mean,
    group_margin_loss,
    group_margins,
    pair_affinity,
)
from .loss_registry import RELATION_LOSS_REGISTRY

__all__ = [
    "GROUP_WEIGHTINGS",
    "L3_PREDICATES",
    "GraphicalContrastiveLoss",
    "anchor_mean",
    "pair_affinity",
    "group_margin_loss",
    "group_margins",
    "graphical_contrastive_terms",
]


GROUP_WEIGHTINGS = ("anchor", "flat")
L3_PREDICATES = ("all", "sampled")
logger = logging.getLogger(__name__)


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
    pair_predicates: Optional[torch.Tensor] = None,
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
        pair_predicates: (K, 2) int64 rows ``[pair, p + 1]``, every GT predicate of each
            related pair (its label among them): L3 puts the pair in each one's group. None:
            only the predicate of ``pair_labels``.

    Returns:
        (L1, L2, L3) scalars.
    """
    positive, negative = pair_labels > 0, pair_labels == 0
    l3 = _l3_members(pair_labels, predicted, pair_predicates)
    terms = [affinity.sum() * 0.0 for _ in range(3)]
    counts = {"groups": [0, 0, 0], "active": [0, 0, 0], "anchors": 0}
    for side in (0, 1):  # the anchor is the subject, then the object
        anchor = entity_ids[pairs[:, side]]
        if anchors is not None:
            anchor = torch.where(anchors[pairs[:, side], side], anchor, torch.full_like(anchor, -1))
        other_class = entity_classes[pairs[:, 1 - side]]
        members = (
            (affinity, anchor[:, None], positive, negative),
            (affinity, torch.stack([anchor, other_class], dim=1), positive, negative),
            (
                affinity if l3[0] is None else affinity[l3[0]],
                torch.stack([anchor if l3[0] is None else anchor[l3[0]], l3[1]], dim=1),
                l3[2],
                ~l3[2],
            ),
        )
        for k, (aff, keys, pos, neg) in enumerate(members):
            violations, group_anchor, with_positive = group_margins(aff, keys, pos, neg, margins[k])
            if len(violations) and weighting == "anchor":
                terms[k] = terms[k] + anchor_mean(violations, group_anchor)
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


def _l3_members(pair_labels, predicted, pair_predicates=None):
    """L3's members ``(rows, predicate, positive)``: row r of the pairs takes part with
    predicate e, as a positive (a GT predicate of r) or a negative (r unrelated, e its
    predicted predicate). ``rows`` is None when each pair takes part once (in order).

    Raises:
        ValueError: when ``pair_predicates`` does not list exactly the related pairs, each
            with its label among its predicates.
    """
    positive = pair_labels > 0
    if pair_predicates is None:
        return None, torch.where(positive, pair_labels, predicted), positive
    rows, labels = pair_predicates[:, 0], pair_predicates[:, 1]
    width = int(torch.cat([pair_labels, labels, pair_labels.new_zeros(1)]).max()) + 1
    related = positive.nonzero().flatten()
    listed = torch.isin(related * width + pair_labels[related], rows * width + labels)
    if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= len(pair_labels)):
        raise ValueError(f"pair_predicates: a row outside the {len(pair_labels)} pairs")
    if not bool(listed.all()) or not bool(positive[rows].all()) or bool((labels < 1).any()):
        raise ValueError(
            "pair_predicates must list every related pair (label > 0) with its label and "
            "no unrelated pair (TrainingTargets.all_pair_predicates vs the pair labels)"
        )
    unrelated = (~positive).nonzero().flatten()
    return (
        torch.cat([rows, unrelated]),
        torch.cat([labels, predicted[unrelated]]),
        torch.cat([torch.ones_like(rows, dtype=torch.bool), positive[unrelated]]),
    )


def _run_pair_predicates(targets, num_pairs: int) -> torch.Tensor:
    """``targets.all_pair_predicates`` with rows of ``all_pairs`` turned into rows of the
    ``num_pairs`` pairs the model was run on (``targets.pair_index``); others left out."""
    run = torch.full(
        (len(targets.all_pairs),), -1, dtype=torch.long, device=targets.pair_index.device
    )
    run[targets.pair_index] = torch.arange(num_pairs, device=run.device)
    rows = run[targets.all_pair_predicates[:, 0]]
    keep = rows >= 0
    return torch.stack([rows[keep], targets.all_pair_predicates[keep, 1]], dim=1)


@RELATION_LOSS_REGISTRY.register()
class GraphicalContrastiveLoss(nn.Module):
    """L1, L2, L3 of RelDN, weighted: ``loss_contrastive_l1`` / ``_l2`` / ``_l3``.

    Enabled with ``MODEL.SGG.EXTRA_RELATION_LOSSES: ["GraphicalContrastiveLoss"]``; weights
    λ and margins α from ``MODEL.SGG.CONTRASTIVE.WEIGHTS`` / ``MARGINS``, each loss switched
    by ``USE_L1`` / ``USE_L2`` / ``USE_L3`` (a switched-off loss is not returned), anchors
    per image and side ``ANCHORS_PER_IMAGE`` (read by the ROI heads through
    :attr:`anchors_per_image`, which then give ``inputs.training.contrastive_anchors``),
    L3's predicates of a pair ``L3_PREDICATES`` (module docstring).
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
        l3_predicates: str = "all",
    ):
        """
        Args:
            weights: λ1, λ2, λ3 (paper: 1, 0.5, 0.1).
            margins: α1, α2, α3 (paper: 0.2 each).
            use: which of L1, L2, L3 are computed.
            anchors_per_image: anchors drawn per image and side (0: groups within the
                cross-entropy sample).
            group_weighting: one of :data:`GROUP_WEIGHTINGS` (module docstring).
            l3_predicates: one of :data:`L3_PREDICATES` (module docstring).
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
        check_choice("MODEL.SGG.CONTRASTIVE.L3_PREDICATES", l3_predicates, L3_PREDICATES)
        self.l3_predicates = l3_predicates
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
            "l3_predicates": _l3_predicates_from_config(cfg),
        }

    @property
    def needs_pair_predicates(self) -> bool:
        """Whether L3 reads every GT predicate of a pair (``TrainingTargets.
        all_pair_predicates``, which the ROI heads then compute)."""
        return self.l3_predicates == "all" and self.use[2]

    def forward(self, rel_logits: torch.Tensor, pair_labels: torch.Tensor, inputs):
        """
        Args:
            rel_logits: (R, P + 1) logits of the pairs the model was run on, background at 0.
            pair_labels: (R,) int64, 0 = background, p + 1 = predicate p.
            inputs: the batch's ``ContextInputs`` (``pairs``, ``obj_logits``, and from
                ``training``: ``obj_gt_index``, ``obj_gt_classes``, ``contrastive_anchors``
                when anchors were drawn, ``all_pairs``, ``pair_index`` and
                ``all_pair_predicates`` with ``L3_PREDICATES: "all"`` and L3 on).

        Returns:
            ``{"loss_contrastive_l<k>": λk Lk}`` for each switched-on k.
        """
        targets = inputs.training
        fields = ["obj_gt_index", "obj_gt_classes"]
        if self.needs_pair_predicates:
            fields += ["all_pairs", "pair_index", "all_pair_predicates"]
        for field in fields:
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
        run_predicates = None
        if self.l3_predicates == "all" and self.use[2]:
            run_predicates = _run_pair_predicates(targets, len(pair_labels))
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
            pair_predicates=run_predicates,
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


def _l3_predicates_from_config(cfg) -> str:
    """``MODEL.SGG.CONTRASTIVE.L3_PREDICATES``, with a notice when the data layer leaves
    one predicate per pair (then ``"all"`` and ``"sampled"`` coincide)."""
    c = cfg.MODEL.SGG.CONTRASTIVE
    if c.L3_PREDICATES == "all" and c.USE_L3 and cfg.DATASETS.SGG.FILTER_DUPLICATE_RELATIONS:
        logger.info(
            "MODEL.SGG.CONTRASTIVE.L3_PREDICATES 'all' sees one GT predicate per pair: "
            "DATASETS.SGG.FILTER_DUPLICATE_RELATIONS True keeps one per pair in training "
            "(set it False for every predicate of a pair)"
        )
    return c.L3_PREDICATES
