"""Graphical contrastive losses on hand-computed affinity tables."""

import math
from dataclasses import replace

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from sgg_d2 import add_sgg_config
from sgg_d2.modeling.context import ContextInputs, TrainingTargets
from sgg_d2.modeling.relation.contrastive_losses import (
    GraphicalContrastiveLoss,
    graphical_contrastive_terms,
    group_margin_loss,
    pair_affinity,
)
from sgg_d2.modeling.relation.loss_registry import RELATION_LOSS_REGISTRY

P = 3  # predicates; labels 1..3, 0 = background


def logits_for(affinity, predicted):
    """(R, P + 1) logits whose softmax has p(bg) = 1 - affinity and arg-max ``predicted``."""
    rows = []
    for a, e in zip(affinity, predicted):
        probs = [1 - a] + [a * (0.6 if k == e else 0.2) for k in range(1, P + 1)]
        rows.append([math.log(p) for p in probs])
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, P + 1).requires_grad_()


# The scene: 0 man (class 0), 1 guitar (class 1), 2 guitar (class 1), 3 chair (class 2);
# detections 4 (a guitar, class 1) and 5 (a chair, class 2) match no GT object.
ENTITY_IDS = torch.tensor([0, 1, 2, 3, -1, -1])
GT_CLASSES = torch.tensor([0, 1, 1, 2, -1, -1])
DET_CLASSES = torch.tensor([0, 1, 1, 2, 1, 2])
#            pair     label  Φ     predicted
TABLE = [
    ((0, 1), 2, 0.70, 2),  # a: man plays guitar 1
    ((0, 2), 0, 0.60, 2),  # b: man - guitar 2, unrelated, predicted "plays"
    ((0, 3), 0, 0.80, 3),  # c: man - chair, unrelated
    ((0, 4), 0, 0.30, 2),  # d: man - unmatched guitar detection
    ((3, 1), 3, 0.90, 3),  # e: chair - guitar 1, predicate 3
    ((5, 1), 0, 0.95, 3),  # f: unmatched chair detection - guitar 1
]
MARGINS = (0.2, 0.3, 0.5)
# L1: subject 0: 0.2 - 0.7 + max(0.6, 0.8, 0.3) = 0.3; object 1: 0.2 - min(0.7, 0.9) + 0.95.
L1 = 0.3 + 0.45
# L2: (subject 0, guitars): 0.3 - 0.7 + max(b 0.6, d 0.3) = 0.2 (c is a chair: left out);
#     (object 1, chairs): 0.3 - 0.9 (e) + 0.95 (f, detector class) = 0.35.
L2 = 0.2 + 0.35
# L3: (subject 0, pred 2): 0.5 - 0.7 + max(b, d) = 0.4 (c is predicted 3: left out);
#     (object 1, pred 3): 0.5 - 0.9 (e) + 0.95 (f) = 0.55; (object 1, pred 2) has no negative.
L3 = 0.4 + 0.55


def single_predicates(labels):
    """``all_pair_predicates`` when every related pair has one GT predicate: its label."""
    rows = (labels > 0).nonzero().flatten()
    return torch.stack([rows, labels[rows]], dim=1)


def table_inputs(table=TABLE, gt_classes=GT_CLASSES):
    pairs = torch.tensor([row[0] for row in table], dtype=torch.long).reshape(-1, 2)
    labels = torch.tensor([row[1] for row in table], dtype=torch.long)
    rel_logits = logits_for([row[2] for row in table], [row[3] for row in table])
    training = TrainingTargets(
        obj_gt_classes=gt_classes,
        obj_gt_index=ENTITY_IDS,
        all_pairs=pairs,
        pair_index=torch.arange(len(pairs)),
        all_pair_predicates=single_predicates(labels),
    )
    inputs = ContextInputs(
        obj_features=torch.zeros(6, 1),
        obj_logits=torch.nn.functional.one_hot(DET_CLASSES, 3).float(),
        box_layout=torch.zeros(6, 9),
        boxes=torch.zeros(6, 4),
        num_objs=[6],
        pairs=pairs,
        num_pairs=[len(pairs)],
        training=training,
    )
    return rel_logits, labels, inputs


def terms(table, margins=MARGINS, classes=DET_CLASSES):
    rel_logits, labels, inputs = table_inputs(table)
    return graphical_contrastive_terms(
        pair_affinity(rel_logits),
        labels,
        inputs.pairs,
        ENTITY_IDS,
        classes,
        torch.tensor([row[3] for row in table]),
        margins,
    )


def test_affinity_is_one_minus_background_probability():
    rel_logits, _, _ = table_inputs()
    assert torch.allclose(pair_affinity(rel_logits), torch.tensor([r[2] for r in TABLE]))


def test_group_margin_loss_uses_min_positive_and_max_negative():
    affinity = torch.tensor([0.9, 0.6, 0.5, 0.8, 0.1, 0.99], requires_grad=True)
    keys = torch.tensor([[0], [0], [0], [1], [1], [-1]])
    positive = torch.tensor([True, True, False, True, False, True])
    # Group 0: 0.2 - 0.6 + 0.5 = 0.1; group 1: 0.2 - 0.8 + 0.1 < 0 -> 0; key -1: no group.
    loss = group_margin_loss(affinity, keys, positive, ~positive, 0.2)
    assert loss.item() == pytest.approx(0.05)
    loss.backward()
    assert torch.allclose(affinity.grad, torch.tensor([0, -0.5, 0.5, 0, 0, 0]))
    # A larger margin wakes group 1 up: (0.1 + 0.6 + (0.9 - 0.8 + 0.1)) / 2.
    assert group_margin_loss(affinity, keys, positive, ~positive, 0.9).item() == pytest.approx(
        ((0.9 - 0.6 + 0.5) + (0.9 - 0.8 + 0.1)) / 2
    )


def test_group_without_negatives_is_zero_and_connected():
    affinity = torch.tensor([0.1, 0.2], requires_grad=True)
    keys = torch.tensor([[0], [1]])
    positive = torch.tensor([True, False])
    loss = group_margin_loss(affinity, keys, positive, ~positive, 0.2)  # one group each
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert torch.equal(affinity.grad, torch.zeros(2))


def test_three_losses_on_the_hand_table():
    l1, l2, l3 = terms(TABLE)
    assert l1.item() == pytest.approx(L1)
    assert l2.item() == pytest.approx(L2)
    assert l3.item() == pytest.approx(L3)


def test_entity_class_aware_loss_only_compares_same_class_objects():
    table = [TABLE[0], ((0, 3), 0, 0.95, 2)]  # positive with a guitar, negative a chair
    l1, l2, _ = terms(table)
    assert l1.item() == pytest.approx(0.2 - 0.7 + 0.95)
    assert l2.item() == 0  # different class: no competition
    same_class = [TABLE[0], ((0, 2), 0, 0.95, 3)]
    assert terms(same_class)[1].item() == pytest.approx(0.3 - 0.7 + 0.95)


def test_predicate_class_aware_loss_groups_by_predicate():
    # Negative predicted with the positive's predicate (2): it competes in L3.
    competing = [TABLE[0], ((0, 2), 0, 0.95, 2)]
    assert terms(competing)[2].item() == pytest.approx(0.5 - 0.7 + 0.95)
    # Same pair predicted as predicate 3: no L3 group has both.
    other = [TABLE[0], ((0, 2), 0, 0.95, 3)]
    assert terms(other)[2].item() == 0
    # A related pair with another predicate is not an L3 negative.
    related = [TABLE[0], ((0, 2), 3, 0.10, 2)]
    assert terms(related)[2].item() == 0


def test_unmatched_detections_are_negatives():
    # Raise the unmatched guitar detection's affinity above every other negative of man 0.
    table = [*TABLE[:3], ((0, 4), 0, 0.99, 2), *TABLE[4:]]
    l1, l2, l3 = terms(table)
    assert l1.item() == pytest.approx((0.2 - 0.7 + 0.99) + 0.45)
    assert l2.item() == pytest.approx((0.3 - 0.7 + 0.99) + 0.35)
    assert l3.item() == pytest.approx((0.5 - 0.7 + 0.99) + 0.55)


def test_no_positives_or_no_negatives_gives_zero():
    only_negatives = [row for row in TABLE if row[1] == 0]
    only_positives = [row for row in TABLE if row[1] > 0]
    for table in (only_negatives, only_positives, []):
        rel_logits, labels, inputs = table_inputs(table)
        losses = GraphicalContrastiveLoss()(rel_logits, labels, inputs)
        assert all(v.item() == 0 for v in losses.values())
        sum(losses.values()).backward()
        assert torch.equal(rel_logits.grad, torch.zeros_like(rel_logits))


def test_module_weights_and_gradients():
    rel_logits, labels, inputs = table_inputs()
    loss = GraphicalContrastiveLoss(weights=(1.0, 0.5, 0.1), margins=MARGINS)
    out = loss(rel_logits, labels, inputs)
    assert set(out) == {"loss_contrastive_l1", "loss_contrastive_l2", "loss_contrastive_l3"}
    assert out["loss_contrastive_l1"].item() == pytest.approx(L1)
    assert out["loss_contrastive_l2"].item() == pytest.approx(0.5 * L2)
    assert out["loss_contrastive_l3"].item() == pytest.approx(0.1 * L3)
    sum(out.values()).backward()
    moved = rel_logits.grad.abs().sum(1) > 0
    # a, b, c, e, f are a min positive or a max negative somewhere; d never is.
    assert moved.tolist() == [True, True, True, False, True, True]


def test_built_from_config_and_validated():
    cfg = get_cfg()
    add_sgg_config(cfg)
    cfg.MODEL.SGG.CONTRASTIVE.WEIGHTS = (2.0, 0.0, 1.0)
    cfg.MODEL.SGG.CONTRASTIVE.MARGINS = (0.1, 0.2, 0.3)
    loss = RELATION_LOSS_REGISTRY.get("GraphicalContrastiveLoss")(cfg)
    assert loss.weights == (2.0, 0.0, 1.0) and loss.margins == (0.1, 0.2, 0.3)
    with pytest.raises(ValueError, match="MODEL.SGG.CONTRASTIVE.WEIGHTS"):
        GraphicalContrastiveLoss(weights=(1.0, 0.5))
    with pytest.raises(ValueError, match="MODEL.SGG.CONTRASTIVE.MARGINS"):
        GraphicalContrastiveLoss(margins=(0.2, -0.1, 0.2))


def test_bad_inputs_are_refused():
    rel_logits, labels, inputs = table_inputs()
    inputs = replace(inputs, training=replace(inputs.training, obj_gt_index=None))
    with pytest.raises(ValueError, match="inputs.training.obj_gt_index"):
        GraphicalContrastiveLoss()(rel_logits, labels, inputs)
    with pytest.raises(ValueError, match="inputs.training.obj_gt_index"):
        GraphicalContrastiveLoss()(rel_logits, labels, replace(inputs, training=None))
    rel_logits, labels, inputs = table_inputs()
    with pytest.raises(ValueError, match="pair_labels \\(5\\)"):
        GraphicalContrastiveLoss()(rel_logits, labels[:5], inputs)


@pytest.mark.parametrize(
    ("context", "mode"), [("RelDNContext", "sgdet"), ("MotifsContext", "sgcls")]
)
def test_train_step_with_any_context(make_cfg, make_input, context, mode):
    cfg = make_cfg(context, mode)
    cfg.MODEL.SGG.EXTRA_RELATION_LOSSES = ["GraphicalContrastiveLoss"]
    torch.manual_seed(0)
    model = build_model(cfg).train()
    # Two instances of a class in one image: entity-class-aware groups exist.
    rels = [[0, 1, 0], [2, 3, 1], [0, 3, 2]]
    losses = model([make_input(5, relations=rels, seed=1), make_input(3, seed=2)])
    names = {"loss_contrastive_l1", "loss_contrastive_l2", "loss_contrastive_l3"}
    assert names <= set(losses) and all(torch.isfinite(v) for v in losses.values())
    if mode == "sgcls":  # GT boxes: every entity is matched, groups certainly exist
        assert losses["loss_contrastive_l1"] > 0
    sum(losses.values()).backward()


# Issue 29 item 10, Eq. 7: pair a (man 0 - guitar 1) holds two GT predicates, 2 (its
# cross-entropy label) and 3; e holds 3. Rows [pair, p + 1].
TWO_PREDICATES = torch.tensor([[0, 2], [0, 3], [4, 3]])
# L3 with every predicate: subject 0 has the groups (0, pred 2): 0.5 - 0.7 + max(b 0.6,
# d 0.3) = 0.4 and (0, pred 3): 0.5 - 0.7 + c 0.8 = 0.6 (c, predicted 3, now competes with
# a), averaged: 0.5; object 1 has (1, pred 3): 0.5 - min(a 0.7, e 0.9) + f 0.95 = 0.75 ((1,
# pred 2) has no negative). With only the label (L3 above): 0.4 + 0.55.
L3_ALL = (0.4 + 0.6) / 2 + 0.75


def with_predicates(inputs, predicates, **changes):
    return replace(
        inputs, training=replace(inputs.training, all_pair_predicates=predicates, **changes)
    )


@pytest.mark.parametrize("how, l3", [("all", L3_ALL), ("sampled", L3)])
def test_l3_puts_a_pair_in_the_group_of_each_of_its_predicates(how, l3):
    rel_logits, labels, inputs = table_inputs()
    inputs = with_predicates(inputs, TWO_PREDICATES)
    loss = GraphicalContrastiveLoss(weights=(1.0, 1.0, 1.0), margins=MARGINS, l3_predicates=how)
    out = loss(rel_logits, labels, inputs)
    assert out["loss_contrastive_l3"].item() == pytest.approx(l3)
    # L1 and L2 see the pair once, whatever its predicates.
    assert out["loss_contrastive_l1"].item() == pytest.approx(L1)
    assert out["loss_contrastive_l2"].item() == pytest.approx(L2)
    out["loss_contrastive_l3"].backward()
    # c (predicted 3) is the hardest negative of the group (0, pred 3) only with "all".
    assert bool(rel_logits.grad[2].abs().sum() > 0) == (how == "all")


def test_l3_predicates_of_pairs_outside_the_run_are_left_out():
    # all_pairs: an extra pair (2, 3) with predicate 1 first, then the run pairs.
    rel_logits, labels, inputs = table_inputs()
    extra = torch.tensor([[2, 3]])
    inputs = with_predicates(
        inputs,
        torch.cat([torch.tensor([[0, 1]]), TWO_PREDICATES + torch.tensor([1, 0])]),
        all_pairs=torch.cat([extra, inputs.pairs]),
        pair_index=torch.arange(1, 7),
    )
    out = GraphicalContrastiveLoss(weights=(1.0, 1.0, 1.0), margins=MARGINS)(
        rel_logits, labels, inputs
    )
    assert out["loss_contrastive_l3"].item() == pytest.approx(L3_ALL)


def test_l3_predicates_are_checked_and_configured():
    rel_logits, labels, inputs = table_inputs()
    with pytest.raises(ValueError, match="inputs.training.all_pair_predicates"):
        GraphicalContrastiveLoss()(rel_logits, labels, with_predicates(inputs, None))
    # Without L3, or with the sampled predicate, the field is not needed.
    GraphicalContrastiveLoss(use=(True, True, False))(
        rel_logits, labels, with_predicates(inputs, None)
    )
    GraphicalContrastiveLoss(l3_predicates="sampled")(
        rel_logits, labels, with_predicates(inputs, None)
    )
    for bad in (TWO_PREDICATES[1:], torch.cat([TWO_PREDICATES, torch.tensor([[1, 2]])])):
        with pytest.raises(ValueError, match="every related pair"):  # a's label / b unrelated
            GraphicalContrastiveLoss()(rel_logits, labels, with_predicates(inputs, bad))
    cfg = add_sgg_config(get_cfg())
    assert cfg.MODEL.SGG.CONTRASTIVE.L3_PREDICATES == "all"
    cfg.MODEL.SGG.CONTRASTIVE.L3_PREDICATES = "sampled"
    assert RELATION_LOSS_REGISTRY.get("GraphicalContrastiveLoss")(cfg).l3_predicates == "sampled"
    with pytest.raises(ValueError, match="MODEL.SGG.CONTRASTIVE.L3_PREDICATES is 'some'"):
        GraphicalContrastiveLoss(l3_predicates="some")
