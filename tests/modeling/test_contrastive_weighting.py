"""RelDN, issue 29 item 10: the graphical contrastive losses weigh every anchor 1 /
num_anchors (Eqs. 3, 5, 7), the earlier flat mean over groups is a flag."""

import pytest
import torch

from sgg_d2.modeling.relation.contrastive_losses import (
    GraphicalContrastiveLoss,
    anchor_mean,
    graphical_contrastive_terms,
)


def hand_case():
    """Anchor A (entity 0, class 0) has two entity-class groups as subject: other class 1
    (positive 0.5, negative 0.6: hinge 0.3) and other class 2 (0.5 / 0.4: hinge 0.1).
    Anchor B (entity 3) has one (class 1, 0.5 / 0.8: hinge 0.5). As objects, no entity has
    both a positive and a negative."""
    classes = torch.tensor([0, 1, 2, 0, 1, 1, 2, 1])
    pairs = torch.tensor([[0, 1], [0, 5], [0, 2], [0, 6], [3, 4], [3, 7]])
    affinity = torch.tensor([0.5, 0.6, 0.5, 0.4, 0.5, 0.8])
    labels = torch.tensor([1, 0, 1, 0, 1, 0])
    predicted = torch.ones(6, dtype=torch.long)
    return affinity, labels, pairs, torch.arange(8), classes, predicted


@pytest.mark.parametrize("weighting, l2", [("anchor", (0.2 + 0.5) / 2), ("flat", 0.3)])
def test_each_anchor_weighs_one_over_the_number_of_anchors(weighting, l2):
    stats = {}
    l1, got_l2, _ = graphical_contrastive_terms(
        *hand_case(), (0.2, 0.2, 0.2), stats=stats, weighting=weighting
    )
    assert stats["l2_groups"] == 3 and stats["anchors_with_negative"] == 2
    torch.testing.assert_close(got_l2, torch.tensor(l2))  # anchor: A's 2 groups averaged
    # L1 has one group per anchor: both weightings agree (A: 0.6 - 0.5 + 0.2, B: 0.5)
    torch.testing.assert_close(l1, torch.tensor((0.3 + 0.5) / 2))


def test_anchor_mean_weights_sum_to_one_per_anchor_set():
    violations = torch.tensor([1.0, 0.0, 3.0, 4.0], requires_grad=True)
    anchors = torch.tensor([7, 7, 2, 7])
    out = anchor_mean(violations, anchors)
    torch.testing.assert_close(out, torch.tensor(((1.0 + 0.0 + 4.0) / 3 + 3.0) / 2))
    out.backward()
    # the gradient is each group's weight: 1 / (num_anchors * groups of its anchor)
    torch.testing.assert_close(violations.grad, torch.tensor([1 / 6, 1 / 6, 1 / 2, 1 / 6]))
    assert violations.grad.sum() == pytest.approx(1.0)


def test_anchor_without_a_negative_leaves_the_denominator():
    affinity, labels, pairs, ids, classes, predicted = hand_case()
    # a third anchor (entity 2 as subject) with a positive only
    pairs = torch.cat([pairs, torch.tensor([[2, 4]])])
    affinity = torch.cat([affinity, torch.tensor([0.1])])
    labels = torch.cat([labels, torch.tensor([1])])
    predicted = torch.cat([predicted, torch.tensor([1])])
    l1, l2, _ = graphical_contrastive_terms(
        affinity, labels, pairs, ids, classes, predicted, (0.2, 0.2, 0.2)
    )
    torch.testing.assert_close(l1, torch.tensor(0.4))
    torch.testing.assert_close(l2, torch.tensor(0.35))


def test_flag_is_read_and_validated():
    assert GraphicalContrastiveLoss().group_weighting == "anchor"
    assert GraphicalContrastiveLoss(group_weighting="flat").group_weighting == "flat"
    with pytest.raises(ValueError, match="GROUP_WEIGHTING"):
        GraphicalContrastiveLoss(group_weighting="mean")
