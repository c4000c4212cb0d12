"""Frequency bias initialisation, predictor shapes and the relation-stage losses."""

import pytest
import torch

from sgg_d2.modeling.relation.losses import object_loss, relation_loss
from sgg_d2.modeling.relation.predictor import FrequencyBias, RelationPredictor


def test_frequency_bias_is_log_frequency():
    freq = torch.zeros(2, 2, 3)
    freq[0, 1] = torch.tensor([6.0, 3.0, 1.0])  # bg, predicate 0, predicate 1
    bias = FrequencyBias(freq, eps=0.0 + 1e-12)
    out = bias(torch.tensor([0]), torch.tensor([1]))
    assert torch.allclose(out.softmax(1), torch.tensor([[0.6, 0.3, 0.1]]), atol=1e-5)


def test_predictor_bias_only_and_with_features():
    freq = torch.ones(3, 3, 5)
    only_bias = RelationPredictor(None, 4, freq)
    labels = torch.tensor([0, 2])
    assert only_bias(None, labels, labels).shape == (2, 5)
    both = RelationPredictor(7, 4, freq)
    assert both(torch.randn(2, 7), labels, labels).shape == (2, 5)
    with pytest.raises(ValueError, match="pair features, a frequency bias"):
        RelationPredictor(None, 4, None)


def test_relation_loss_empty_is_zero_with_graph():
    logits = torch.randn(0, 5, requires_grad=True)
    loss = relation_loss(logits, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert float(loss) == 0.0


def test_relation_loss_value():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    assert (
        abs(float(relation_loss(logits, torch.tensor([1]))) - float(-torch.log(torch.tensor(0.25))))
        < 1e-6
    )


def test_object_loss_ignores_unmatched():
    logits = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    loss = object_loss(logits, torch.tensor([0, -1]))
    assert abs(float(loss) - float(-torch.log(torch.tensor(0.5)))) < 1e-6
    assert float(object_loss(logits, torch.tensor([-1, -1]))) == 0.0


def test_frequency_bias_default_follows_each_paper():
    from detectron2.config import get_cfg

    from sgg_d2 import add_sgg_config
    from sgg_d2.modeling.context import CONTEXT_REGISTRY
    from sgg_d2.modeling.relation.predictor import use_frequency_bias

    cfg = get_cfg()
    add_sgg_config(cfg)
    assert cfg.MODEL.SGG.USE_FREQUENCY_BIAS is None  # "auto"
    paper = {
        "FrequencyBaseline": True,
        "MotifsContext": True,
        "VCTreeContext": True,
        "IMPContext": False,
        "LinkNetContext": False,
    }
    for name, expected in paper.items():
        context = CONTEXT_REGISTRY.get(name).__new__(CONTEXT_REGISTRY.get(name))
        assert use_frequency_bias(cfg, context) is expected, name
        for forced in (True, False):  # the flag turns it on/off for any model
            cfg.MODEL.SGG.USE_FREQUENCY_BIAS = forced
            assert use_frequency_bias(cfg, context) is forced, name
        cfg.MODEL.SGG.USE_FREQUENCY_BIAS = "auto"
        assert use_frequency_bias(cfg, context) is expected, name
        cfg.MODEL.SGG.USE_FREQUENCY_BIAS = None
    # yacs accepts a bool over the None default (YAML / command line)
    cfg.merge_from_list(["MODEL.SGG.USE_FREQUENCY_BIAS", "True"])
    assert cfg.MODEL.SGG.USE_FREQUENCY_BIAS is True
    cfg.MODEL.SGG.USE_FREQUENCY_BIAS = "yes"
    with pytest.raises(ValueError, match="MODEL.SGG.USE_FREQUENCY_BIAS is 'yes'"):
        use_frequency_bias(cfg, context)
