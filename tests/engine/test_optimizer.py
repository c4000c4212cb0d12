"""SOLVER.OPTIMIZER: Detectron2's SGD by default, AdamW with the same parameter groups."""

import pytest
import torch
from detectron2.config import get_cfg

from sgg_d2.config import add_sgg_config
from sgg_d2.engine import SceneGraphTrainer


def _cfg(**solver):
    cfg = add_sgg_config(get_cfg())
    for key, value in solver.items():
        setattr(cfg.SOLVER, key, value)
    return cfg


def _model():
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GroupNorm(2, 4))


def test_default_is_detectron2_sgd():
    opt = SceneGraphTrainer.build_optimizer(_cfg(BASE_LR=0.05, MOMENTUM=0.8), _model())
    assert isinstance(opt, torch.optim.SGD)
    assert {g["lr"] for g in opt.param_groups} == {0.05}
    assert {g["momentum"] for g in opt.param_groups} == {0.8}


def test_adamw_keeps_detectron2_parameter_groups():
    cfg = _cfg(OPTIMIZER="adamw", BASE_LR=0.002, BETAS=(0.8, 0.99), WEIGHT_DECAY=0.05)
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    model = _model()
    opt = SceneGraphTrainer.build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW)
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay[id(model[0].weight)] == 0.05
    assert decay[id(model[1].weight)] == 0.0  # GroupNorm: WEIGHT_DECAY_NORM
    assert {g["betas"] for g in opt.param_groups} == {(0.8, 0.99)}
    assert {g["lr"] for g in opt.param_groups} == {0.002}


def test_adamw_honours_gradient_clipping():
    cfg = _cfg(OPTIMIZER="ADAMW", BASE_LR=0.1, WEIGHT_DECAY=0.0)
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1e-3
    param = torch.nn.Parameter(torch.zeros(2))
    model = torch.nn.Module()
    model.p = param
    opt = SceneGraphTrainer.build_optimizer(cfg, model)
    param.grad = torch.tensor([1000.0, -1000.0])
    opt.step()
    assert torch.equal(param.grad, torch.tensor([1e-3, -1e-3]))  # clipped before the step


def test_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match=r"SOLVER.OPTIMIZER must be one of .*'LAMB'"):
        SceneGraphTrainer.build_optimizer(_cfg(OPTIMIZER="LAMB"), _model())
