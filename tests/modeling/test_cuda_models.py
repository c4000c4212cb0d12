"""Every context model, and segmentation grounding, on ``cuda`` (``pytest -m cuda``;
skipped without a GPU): a train step with finite losses and gradients that reach the
relation head only, and inference whose PredCls scores equal the CPU model's."""

import pytest
import torch
from conftest import random_input, tiny_cfg
from detectron2.modeling import build_model
from test_grounding_model import aux_input, grounded_cfg, write_vectors

from sgg_d2.config import SGG_MODES
from sgg_d2.modeling import CONTEXT_REGISTRY

CONTEXTS = sorted(name for name, _ in CONTEXT_REGISTRY)
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def on_cuda(cfg):
    cfg.MODEL.DEVICE = "cuda"
    torch.manual_seed(0)
    return build_model(cfg)


@pytest.mark.parametrize("mode", SGG_MODES)
@pytest.mark.parametrize("context", CONTEXTS)
def test_train_step_on_cuda(context, mode):
    model = on_cuda(tiny_cfg(context, mode)).train()
    assert model.device.type == "cuda"
    # CPU inputs: the model moves images and targets to its device (as Detectron2's do)
    losses = model([random_input(4, seed=1), random_input(3, seed=2)])
    assert "loss_relation" in losses
    assert all(v.is_cuda and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    heads = model.roi_heads
    grads = [p.grad for p in heads.relation_predictor.parameters()]
    assert any(g is not None and g.is_cuda and g.abs().sum() > 0 for g in grads)
    for module in model.detector_modules():
        assert all(p.grad is None for p in module.parameters()), "the detector stays frozen"


@pytest.mark.parametrize("context", CONTEXTS)
def test_predcls_inference_on_cuda_equals_cpu(context):
    cfg = tiny_cfg(context, "predcls")
    torch.manual_seed(0)
    cpu = build_model(cfg).eval()
    gpu = on_cuda(tiny_cfg(context, "predcls")).eval()
    gpu.load_state_dict(cpu.state_dict())
    inputs = [random_input(5, seed=3)]
    with torch.no_grad():
        expected, got = cpu(inputs)[0], gpu(inputs)[0]
    assert got["relations"].scores.is_cuda
    torch.testing.assert_close(
        got["relations"].predicate_scores.cpu(),
        expected["relations"].predicate_scores,
        atol=1e-4,
        rtol=1e-3,
    )


@pytest.mark.parametrize("mode", SGG_MODES)
def test_grounding_train_step_and_inference_on_cuda(tmp_path, mode):
    vectors = write_vectors(tmp_path)
    model = on_cuda(grounded_cfg(vectors, "MotifsContext", mode)).train()
    losses = model([random_input(4, seed=1), random_input(3, seed=2), aux_input(3, seed=3)])
    assert {"loss_relation", "loss_mask_refine"} <= set(losses)
    assert all(v.is_cuda and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    refiner = model.roi_heads.grounding.refiner
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in refiner.parameters())
    model.eval()
    with torch.no_grad():
        target_out, aux_out = model([random_input(4, seed=1), aux_input(2, seed=5)])
    inst = target_out["instances"]
    assert inst.pred_masks.shape == (len(inst), 192, 256)
    assert len(target_out["relations"]) == len(inst) * (len(inst) - 1)
    assert aux_out["instances"].pred_masks.shape[1:] == (192, 256)
