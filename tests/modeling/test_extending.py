"""A new context model as a newcomer writes it (docs/EXTENDING.md): a module of its own
on the ``ContextModel`` base, registered, built from a config naming it, trained."""

import importlib.util

import pytest
import torch
from conftest import random_input, tiny_cfg
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from detectron2.utils.registry import Registry
from torch import nn

import sgg_d2.modeling.context as context_package
from sgg_d2.modeling.context import build, build_context_model

TOY_MODULE = '''
"""Toy context: objects refined by a linear layer, pairs from an MLP on their features."""
import torch
from detectron2.config import configurable
from torch import nn

from sgg_d2.modeling.context import CONTEXT_REGISTRY, ContextInputs, ContextModel, ContextOutputs


@CONTEXT_REGISTRY.register()
class ToyContext(ContextModel):
    needs_union_features = False
    paper_frequency_bias = False
    config_section = "TOY"  # cfg.MODEL.SGG.TOY
    config_keys = {"pair_hidden": "PAIR_HIDDEN"}

    @configurable
    def __init__(self, *, pair_hidden: int = 16, **shared):
        super().__init__(**shared)
        self.refine = nn.Linear(self.obj_dim, self.num_classes)
        self.pair_mlp = nn.Sequential(nn.Linear(2 * self.obj_dim, pair_hidden), nn.ReLU())
        self.pair_dim = pair_hidden

    def forward(self, inputs: ContextInputs) -> ContextOutputs:
        f = inputs.obj_features
        pairs = torch.cat([f[inputs.pairs[:, 0]], f[inputs.pairs[:, 1]]], dim=1)
        return ContextOutputs(
            obj_logits=inputs.obj_logits + self.refine(f), pair_features=self.pair_mlp(pairs)
        )

    def losses(self, inputs, outputs, pair_labels, relation_predictor):
        return {"loss_toy_l2": 1e-3 * outputs.pair_features.square().mean()}
'''


@pytest.fixture
def scratch_registry(monkeypatch):
    """A fresh context registry in place of the real one for one test, so that the models
    registered here leave no trace in the other tests' registry."""
    registry = Registry("SGG_CONTEXT")
    for module in (context_package, build):
        monkeypatch.setattr(module, "CONTEXT_REGISTRY", registry)
    return registry


def _import_toy(folder):
    path = folder / "toy_context.py"
    path.write_text(TOY_MODULE)
    spec = importlib.util.spec_from_file_location("toy_context", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registers ToyContext
    return module


def test_a_toy_context_model_builds_from_the_config_and_trains(tmp_path, scratch_registry):
    toy = _import_toy(tmp_path)
    assert "ToyContext" in scratch_registry
    cfg = tiny_cfg("ToyContext", "sgcls")
    cfg.MODEL.SGG.TOY = CfgNode({"PAIR_HIDDEN": 12})
    torch.manual_seed(0)
    model = build_model(cfg).train()
    context = model.roi_heads.context
    assert isinstance(context, toy.ToyContext) and context.pair_dim == 12
    assert model.roi_heads.relation_predictor.classifier.in_features == 12
    before = context.pair_mlp[0].weight.detach().clone()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.1)
    for it in range(2):
        losses = model([random_input(4, seed=it), random_input(3, seed=10 + it)])
        assert {"loss_relation", "loss_refine_obj", "loss_toy_l2"} <= set(losses)
        total = sum(losses.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert not torch.equal(context.pair_mlp[0].weight, before)
    model.eval()
    with torch.no_grad():
        (out,) = model([random_input(3, seed=5)])
    assert len(out["relations"]) == 3 * 2  # every ordered pair scored


def test_a_context_model_off_the_base_is_refused(make_cfg, scratch_registry):
    @scratch_registry.register()
    class OffTheBaseContext(nn.Module):
        def __init__(self, cfg, obj_dim, union_dim):
            super().__init__()

    with pytest.raises(TypeError, match="OffTheBaseContext must subclass .*ContextModel"):
        build_context_model(make_cfg("OffTheBaseContext"), 8, 8)
