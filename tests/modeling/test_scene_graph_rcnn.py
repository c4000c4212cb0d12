"""SceneGraphRCNN end to end on random images: losses, gradients, output contract."""

import pytest
import torch
from detectron2.modeling import build_model

from sgg_d2.config import SGG_MODES
from sgg_d2.modeling import CONTEXT_REGISTRY
from sgg_d2.structures import Relations

CONTEXTS = sorted(name for name, _ in CONTEXT_REGISTRY)


def build(make_cfg, context, mode):
    torch.manual_seed(0)
    return build_model(make_cfg(context, mode))


@pytest.mark.parametrize("mode", SGG_MODES)
@pytest.mark.parametrize("context", CONTEXTS)
def test_train_step_losses_and_gradients(make_cfg, make_input, context, mode):
    model = build(make_cfg, context, mode)
    model.train()
    losses = model([make_input(4, seed=1), make_input(3, seed=2), make_input(1, seed=3)])
    assert "loss_relation" in losses
    assert all(torch.isfinite(v) for v in losses.values())
    if mode == "predcls":
        assert "loss_refine_obj" not in losses  # labels are given
    sum(losses.values()).backward()
    heads = model.roi_heads
    grads = [p.grad for p in heads.context.parameters()] + [
        p.grad for p in heads.relation_predictor.parameters()
    ]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    for module in model.detector_modules():
        assert all(p.grad is None for p in module.parameters()), "the detector must stay frozen"
        assert not module.training


def check_contract(output, num_predicates):
    inst, rels = output["instances"], output["relations"]
    assert isinstance(rels, Relations)
    n = len(inst)
    assert len(rels) == n * (n - 1)
    if len(rels) == 0:
        return
    assert rels.predicate_scores.shape == (len(rels), num_predicates)
    assert (rels.scores[:-1] >= rels.scores[1:]).all(), "sorted best first"
    assert ((rels.pair_indices >= 0) & (rels.pair_indices < n)).all()
    assert (rels.pair_indices[:, 0] != rels.pair_indices[:, 1]).all()
    best, arg = rels.predicate_scores.max(1)
    assert torch.equal(arg, rels.predicates)
    s = inst.scores
    expected = s[rels.pair_indices[:, 0]] * s[rels.pair_indices[:, 1]] * best
    assert torch.allclose(rels.scores, expected)
    assert (rels.predicate_scores.sum(1) <= 1 + 1e-5).all()


@pytest.mark.parametrize("mode", SGG_MODES)
@pytest.mark.parametrize("context", CONTEXTS)
def test_inference_output_contract(make_cfg, make_input, context, mode):
    model = build(make_cfg, context, mode).eval()
    inputs = [make_input(4, seed=1), make_input(1, seed=2)]
    with torch.no_grad():
        outputs = model(inputs)
    for out, inp in zip(outputs, inputs):
        check_contract(out, 4)
        inst = out["instances"]
        assert inst.image_size == (inp["height"], inp["width"])
        if mode != "sgdet":  # GT boxes come back in original coordinates
            assert torch.allclose(inst.pred_boxes.tensor, inp["instances"].gt_boxes.tensor * 2)
        if mode == "predcls":
            assert torch.equal(inst.pred_classes, inp["instances"].gt_classes)
            assert (inst.scores == 1).all()
    if mode != "sgdet":
        assert len(outputs[1]["relations"]) == 0  # one object: no pair


def test_sgdet_without_detections(make_cfg, make_input):
    cfg = make_cfg("MotifsContext", "sgdet")
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 1.01  # nothing passes
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model([make_input(3)])[0]
    assert len(out["instances"]) == 0 and len(out["relations"]) == 0


def test_unknown_mode_is_refused(make_cfg):
    cfg = make_cfg("MotifsContext", "sgcls")
    cfg.MODEL.SGG.MODE = "detection"
    with pytest.raises(ValueError, match="valid values are predcls, sgcls, sgdet"):
        build_model(cfg)


class _RecordingLoss(torch.nn.Module):
    """An extra relation loss that records what it was given."""

    seen = {}

    def __init__(self, cfg):
        super().__init__()

    def forward(self, rel_logits, pair_labels, inputs):
        _RecordingLoss.seen = {
            "rows": rel_logits.shape[0],
            "labels": pair_labels.clone(),
            "gt_index": inputs.training.obj_gt_index.clone(),
            "gt_classes": inputs.training.obj_gt_classes.clone(),
        }
        return {"loss_recorded": rel_logits.mean() * 0.0 + 1.0}


def test_extra_relation_losses_are_applied(make_cfg, make_input):
    from sgg_d2.modeling.relation.loss_registry import RELATION_LOSS_REGISTRY

    if "_RecordingLoss" not in RELATION_LOSS_REGISTRY:
        RELATION_LOSS_REGISTRY.register(_RecordingLoss)
    cfg = make_cfg("MotifsContext", "sgcls")
    cfg.MODEL.SGG.EXTRA_RELATION_LOSSES = ["_RecordingLoss"]
    model = build_model(cfg).train()
    batch = [make_input(3, seed=1), make_input(2, seed=2)]
    losses = model(batch)
    assert float(losses["loss_recorded"]) == 1.0
    seen = _RecordingLoss.seen
    assert seen["rows"] == len(seen["labels"]) == 3 * 2 + 2 * 1  # all pairs fit the batch
    assert seen["gt_index"].tolist() == [0, 1, 2, 3, 4]  # unique across the batch
    expected = torch.cat([b["instances"].gt_classes for b in batch])
    assert torch.equal(seen["gt_classes"], expected)
