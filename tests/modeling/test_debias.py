"""Debiasing by predicate counts: post-hoc logit adjustment and the reweighted relation
loss, on hand-computed cases, and a tiny model trained and evaluated with each switch on."""

import math

import pytest
import torch
from detectron2.modeling import build_model

from sgg_d2.modeling.relation.debias import (
    debiasing_from_config,
    logit_adjustment,
    predicate_class_weights,
    predicate_counts_from_freq,
)
from sgg_d2.modeling.relation.losses import relation_loss

# ---- post-hoc logit adjustment ----------------------------------------------------------


def test_logit_adjustment_hand_computed():
    # counts 6, 3, 1: priors 0.6, 0.3, 0.1; tau = 1 adds -log(prior) to each predicate
    counts = torch.tensor([6.0, 3.0, 1.0])
    logits = torch.tensor([[2.0, 1.0, 0.8, 0.5]])
    adjusted = logit_adjustment(logits, counts, tau=1.0)
    expected = [2.0, 1.0 - math.log(0.6), 0.8 - math.log(0.3), 0.5 - math.log(0.1)]
    assert torch.allclose(adjusted, torch.tensor([expected]), atol=1e-6)
    assert adjusted[0, 0] == 2.0, "the background logit is untouched"
    # the head predicate ranked first before, the tail predicate after
    assert logits[0, 1:].argsort(descending=True).tolist() == [0, 1, 2]
    assert adjusted[0, 1:].argsort(descending=True).tolist() == [2, 1, 0]
    assert torch.equal(logits, torch.tensor([[2.0, 1.0, 0.8, 0.5]])), "input not modified"


def test_logit_adjustment_tau_scales_and_zero_is_identity():
    counts = torch.tensor([6.0, 3.0, 1.0])
    logits = torch.randn(5, 4)
    assert logit_adjustment(logits, counts, 0.0) is logits
    half = logit_adjustment(logits, counts, 0.5) - logits
    full = logit_adjustment(logits, counts, 1.0) - logits
    assert torch.allclose(2 * half, full)
    # a predicate without training instances counts as one (prior 1 / 10): finite
    boosted = logit_adjustment(logits, torch.tensor([6.0, 3.0, 0.0]), 1.0) - logits
    assert torch.allclose(boosted[:, 3], torch.full((5,), math.log(10.0)))


def test_logit_adjustment_without_counts_names_the_key():
    with pytest.raises(ValueError, match="LOGIT_ADJUSTMENT.TAU"):
        logit_adjustment(torch.zeros(2, 4), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="LOGIT_ADJUSTMENT.TAU"):
        logit_adjustment(torch.zeros(2, 4), None, 1.0)
    with pytest.raises(ValueError, match="P \\+ 1 columns"):
        logit_adjustment(torch.zeros(2, 4), torch.ones(4), 1.0)


def test_predicate_counts_from_freq_skip_background():
    freq = torch.zeros(2, 2, 4, dtype=torch.int64)
    freq[0, 1] = torch.tensor([50, 1, 2, 0])  # index 0: background pairs, not counted
    freq[1, 0] = torch.tensor([7, 3, 0, 1])
    assert predicate_counts_from_freq(freq).tolist() == [4.0, 2.0, 1.0]


# ---- class weights and the weighted loss -----------------------------------------------


def test_inverse_frequency_weights_hand_computed():
    # 1/100, 1/10, 1 have mean 37/100: normalised 1/37, 10/37, 100/37; background 1
    weights = predicate_class_weights(torch.tensor([100.0, 10.0, 1.0]), "inverse")
    assert torch.allclose(weights, torch.tensor([1.0, 1 / 37, 10 / 37, 100 / 37]))


def test_effective_number_weights_hand_computed():
    # E_n = (1 - beta^n) / (1 - beta); beta = 0.9: E_1 = 1, E_10 = 10 (1 - 0.3486784401),
    # E_100 = 10 (1 - 0.9^100); weights 1 / E_n normalised to mean 1
    raw = [1 / (10 * (1 - 0.9**100)), 1 / (10 * (1 - 0.3486784401)), 1.0]
    mean = sum(raw) / 3
    weights = predicate_class_weights(torch.tensor([100.0, 10.0, 1.0]), "effective_number", 0.9)
    expected = torch.tensor([1.0] + [w / mean for w in raw])
    assert torch.allclose(weights, expected, atol=1e-6)
    assert torch.allclose(weights[1:], torch.tensor([0.239329, 0.367442, 2.393229]), atol=1e-5)
    # beta = 0: every class counts as one sample (no reweighting)
    flat = predicate_class_weights(torch.tensor([100.0, 10.0, 1.0]), "effective_number", 0.0)
    assert torch.allclose(flat, torch.ones(4))


def test_weighting_keys_are_checked():
    assert predicate_class_weights(torch.ones(3), "none") is None
    with pytest.raises(ValueError, match="PREDICATE_LOSS_WEIGHTING is 'balanced'"):
        predicate_class_weights(torch.ones(3), "balanced")
    with pytest.raises(ValueError, match="EFFECTIVE_NUMBER_BETA is 1.0"):
        predicate_class_weights(torch.ones(3), "effective_number", 1.0)


def test_weighted_relation_loss_hand_computed():
    # pair 1: uniform logits, label 1: CE = log 3; pair 2: probabilities 1/4, 1/2, 1/4,
    # label 0: CE = log 4; weights (1, 2, 0.5): (2 log 3 + 1 log 4) / 2 pairs
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, math.log(2.0), 0.0]], requires_grad=True)
    labels = torch.tensor([1, 0])
    loss = relation_loss(logits, labels, torch.tensor([1.0, 2.0, 0.5]))
    assert loss.item() == pytest.approx((2 * math.log(3) + math.log(4)) / 2, abs=1e-6)
    assert relation_loss(logits, labels).item() == pytest.approx(
        (math.log(3) + math.log(4)) / 2, abs=1e-6
    )
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    empty = relation_loss(logits[:0], labels[:0], torch.ones(3))
    assert empty.item() == 0.0 and empty.requires_grad


# ---- the model with each switch on ------------------------------------------------------


def test_debiasing_from_config_reads_the_training_counts(make_cfg):
    # the tiny dataset (tests/modeling/conftest.py): per image (i = 0..5) relations
    # [0, 1, i % 4] and [2, 3, 0]: predicate 0 eight times, 1 twice, 2 and 3 once
    cfg = make_cfg()
    off = debiasing_from_config(cfg)
    assert off["predicate_counts"] is None and off["predicate_loss_weights"] is None
    cfg.MODEL.SGG.LOGIT_ADJUSTMENT.TAU = 1.0
    cfg.MODEL.SGG.PREDICATE_LOSS_WEIGHTING = "inverse"
    on = debiasing_from_config(cfg)
    assert on["predicate_counts"].tolist() == [8.0, 2.0, 1.0, 1.0]
    raw = torch.tensor([1 / 8, 1 / 2, 1.0, 1.0])
    expected = torch.cat([torch.ones(1), raw / raw.mean()])
    assert torch.allclose(on["predicate_loss_weights"], expected)


@pytest.mark.parametrize("mode", ["predcls", "sgcls"])
def test_reweighted_model_trains_two_iterations(make_cfg, make_input, mode):
    cfg = make_cfg(mode=mode)
    cfg.MODEL.SGG.PREDICATE_LOSS_WEIGHTING = "effective_number"
    torch.manual_seed(0)
    model = build_model(cfg).train()
    weights = model.roi_heads.predicate_loss_weights
    assert weights is not None and weights[1] < weights[3], "predicate 0 is the most frequent"
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01)
    before = [p.detach().clone() for p in params]
    for step in range(2):
        losses = model([make_input(4, seed=step), make_input(3, seed=step + 10)])
        assert all(torch.isfinite(v) for v in losses.values())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, params))
    assert "predicate_loss_weights" not in model.state_dict(), "rebuilt from the data, not saved"


def test_logit_adjustment_applies_at_evaluation_to_a_trained_model(make_cfg, make_input):
    """The same weights evaluated with TAU 1: per pair, the predicate scores' ratios change
    by the inverse prior ratio (the background is untouched), and the state dicts agree."""
    torch.manual_seed(0)
    plain = build_model(make_cfg(mode="predcls")).eval()
    cfg = make_cfg(mode="predcls")
    cfg.MODEL.SGG.LOGIT_ADJUSTMENT.TAU = 1.0
    adjusted = build_model(cfg).eval()
    adjusted.load_state_dict(plain.state_dict(), strict=True)  # no new saved entries
    inputs = [make_input(4, seed=3)]
    with torch.no_grad():
        a = plain(inputs)[0]["relations"]
        b = adjusted(inputs)[0]["relations"]
    prior = torch.tensor([8.0, 2.0, 1.0, 1.0]) / 12
    # compare the pairs in one order (outputs are sorted by score)
    order_a = (a.pair_indices[:, 0] * 10 + a.pair_indices[:, 1]).argsort()
    order_b = (b.pair_indices[:, 0] * 10 + b.pair_indices[:, 1]).argsort()
    pa, pb = a.predicate_scores[order_a], b.predicate_scores[order_b]
    assert torch.equal(a.pair_indices[order_a], b.pair_indices[order_b])
    ratio_a = pa / pa[:, :1]
    ratio_b = pb / pb[:, :1]
    assert torch.allclose(ratio_b, ratio_a * prior[0] / prior, rtol=1e-4)
    # the rare predicates gained: 3 (prior 1/12) relative to 0 (prior 8/12) by 8
    assert (pb[:, 3] / pb[:, 0] > pa[:, 3] / pa[:, 0]).all()


def test_logit_adjustment_from_the_weights_alone(make_cfg, make_input):
    """Built without its training data (inference from a checkpoint), the adjustment uses
    the counts the weights carry and gives the same scores as with the data."""
    torch.manual_seed(0)
    trained = build_model(make_cfg(mode="predcls")).eval()
    cfgs = [make_cfg(mode="predcls") for _ in range(2)]
    for cfg in cfgs:
        cfg.MODEL.SGG.LOGIT_ADJUSTMENT.TAU = 1.0
    cfgs[1].DATASETS.TRAIN = ("not_registered_here",)  # a saved config in another folder
    with_data, weights_only = (build_model(cfg).eval() for cfg in cfgs)
    assert not bool(weights_only.roi_heads.predicate_counts.any()), "no data: no counts yet"
    for model in (with_data, weights_only):
        model.load_state_dict(trained.state_dict(), strict=True)
    inputs = [make_input(4, seed=3)]
    with torch.no_grad():
        expected = with_data(inputs)[0]["relations"].predicate_scores
        got = weights_only(inputs)[0]["relations"].predicate_scores
    assert torch.equal(got, expected)
