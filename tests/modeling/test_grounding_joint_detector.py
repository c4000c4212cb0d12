"""JointRCNN: per-dataset losses (mask loss only from auxiliary images), inference, and the
weight handoff to the grounded relation model."""

import pytest
import torch
from conftest import NUM_CLASSES, random_input, tiny_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks
from detectron2.utils.events import EventStorage
from test_grounding_model import AUX_CLASSES, aux_input, grounded_cfg, write_vectors

TARGET_KEYS = {"loss_cls", "loss_box_reg"}
AUX_KEYS = {"loss_cls_aux", "loss_box_reg_aux", "loss_mask"}


def joint_cfg():
    cfg = tiny_cfg()
    cfg.MODEL.META_ARCHITECTURE = "JointRCNN"
    cfg.MODEL.ROI_HEADS.NAME = "JointROIHeads"
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 8
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 1
    cfg.MODEL.SGG.GROUNDING.AUX_NUM_CLASSES = len(AUX_CLASSES)
    return cfg


def target_input(n, seed):
    """A target input that (unusually) has masks: they must still give no mask loss."""
    x = random_input(n, seed=seed)
    del x["relations"]
    inst = x["instances"]
    inst.gt_masks = BitMasks(torch.ones((n, *inst.image_size), dtype=torch.bool))
    x["source"] = "target"
    return x


def _grad_sum(module):
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def _train_step(model, batch):
    model.zero_grad()
    with EventStorage():  # Detectron2's heads log statistics, as in its trainer
        losses = model(batch)
    sum(losses.values()).backward()
    return losses


def test_each_head_learns_only_from_its_dataset():
    torch.manual_seed(0)
    model = build_model(joint_cfg()).train()
    heads = model.roi_heads
    assert heads.mask_head.predictor.out_channels == len(AUX_CLASSES)
    assert heads.box_predictor.cls_score.out_features == NUM_CLASSES + 1
    assert heads.aux_box_predictor.cls_score.out_features == len(AUX_CLASSES) + 1

    losses = _train_step(model, [target_input(3, 1), target_input(2, 2)])
    assert set(losses) == TARGET_KEYS | AUX_KEYS | {"loss_rpn_cls", "loss_rpn_loc"}
    assert all(float(losses[k]) == 0.0 for k in AUX_KEYS)
    assert _grad_sum(heads.mask_head) == 0 and _grad_sum(heads.aux_box_predictor) == 0
    assert _grad_sum(heads.box_predictor) > 0

    losses = _train_step(model, [aux_input(3, seed=3)])
    assert all(float(losses[k]) == 0.0 for k in TARGET_KEYS)
    assert float(losses["loss_mask"]) > 0 and float(losses["loss_cls_aux"]) > 0
    assert _grad_sum(heads.box_predictor) == 0
    assert _grad_sum(heads.mask_head) > 0 and _grad_sum(heads.aux_box_predictor) > 0

    losses = _train_step(model, [target_input(3, 1), aux_input(2, seed=4)])
    assert all(float(losses[k]) > 0 for k in ("loss_cls", "loss_cls_aux", "loss_mask"))
    assert _grad_sum(model.backbone) > 0 and _grad_sum(model.proposal_generator) > 0


def test_inference_gives_each_dataset_its_classes_and_masks():
    cfg = joint_cfg()
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        target_out, aux_out = model([target_input(3, 1), aux_input(2, seed=2)])
    t, a = target_out["instances"], aux_out["instances"]
    assert len(t) and len(a)
    assert not t.has("pred_masks") and (t.pred_classes < NUM_CLASSES).all()
    assert (a.pred_classes < len(AUX_CLASSES)).all()
    assert a.pred_masks.shape == (len(a), 192, 256)  # pasted at the original size


def test_joint_weights_load_into_the_grounded_relation_model(tmp_path):
    joint = build_model(joint_cfg()).state_dict()
    relation = build_model(grounded_cfg(write_vectors(tmp_path))).state_dict()
    handed = [k for k in joint if k.startswith(("backbone.", "proposal_generator.", "roi_heads."))]
    assert any(k.startswith("roi_heads.mask_head.") for k in handed)
    assert any(k.startswith("roi_heads.aux_box_predictor.") for k in handed)
    for k in handed:
        assert k in relation and relation[k].shape == joint[k].shape, k


def test_separate_auxiliary_box_head_learns_only_from_auxiliary_images():
    cfg = joint_cfg()
    cfg.MODEL.SGG.GROUNDING.AUX_BOX_HEAD = "separate"
    torch.manual_seed(0)
    model = build_model(cfg).train()
    heads = model.roi_heads
    assert heads.aux_box_head is not heads.box_head
    _train_step(model, [target_input(3, 1)])
    assert _grad_sum(heads.box_head) > 0 and _grad_sum(heads.aux_box_head) == 0
    _train_step(model, [aux_input(3, seed=3)])
    assert _grad_sum(heads.box_head) == 0 and _grad_sum(heads.aux_box_head) > 0
    assert _grad_sum(heads.aux_box_predictor) > 0 and _grad_sum(model.backbone) > 0


def test_shared_box_head_learns_from_both_datasets():
    torch.manual_seed(0)
    model = build_model(joint_cfg()).train()
    assert model.roi_heads.aux_box_head is None
    _train_step(model, [aux_input(3, seed=3)])
    assert _grad_sum(model.roi_heads.box_head) > 0


def test_auxiliary_loss_weight_scales_only_the_auxiliary_losses():
    batch = [target_input(3, 1), aux_input(2, seed=4)]
    losses = {}
    for weight in (1.0, 0.25):
        cfg = joint_cfg()
        cfg.MODEL.SGG.GROUNDING.AUX_LOSS_WEIGHT = weight
        torch.manual_seed(0)
        model = build_model(cfg).train()
        torch.manual_seed(1)  # the same proposal sampling in both runs
        with EventStorage():
            losses[weight] = {k: float(v) for k, v in model(batch).items()}
    for key in AUX_KEYS:
        assert losses[1.0][key] > 0
        assert abs(losses[0.25][key] - 0.25 * losses[1.0][key]) < 1e-6 * losses[1.0][key] + 1e-9
    for key in TARGET_KEYS | {"loss_rpn_cls", "loss_rpn_loc"}:
        assert losses[0.25][key] == losses[1.0][key]


def test_bad_auxiliary_box_head_value_names_the_key():
    cfg = joint_cfg()
    cfg.MODEL.SGG.GROUNDING.AUX_BOX_HEAD = "own"
    with pytest.raises(ValueError, match="MODEL.SGG.GROUNDING.AUX_BOX_HEAD is 'own'"):
        build_model(cfg)


def test_separate_auxiliary_box_head_is_handed_over_and_classifies_auxiliary_objects(tmp_path):
    joint = joint_cfg()
    joint.MODEL.SGG.GROUNDING.AUX_BOX_HEAD = "separate"
    grounded = grounded_cfg(write_vectors(tmp_path))  # SGCls: aux classes from aux_box_head
    grounded.MODEL.SGG.GROUNDING.AUX_BOX_HEAD = "separate"
    state = build_model(joint).state_dict()
    relation = build_model(grounded).eval()
    assert relation.roi_heads.aux_box_head in relation.detector_modules()
    target = relation.state_dict()
    head_keys = [k for k in state if k.startswith("roi_heads.aux_box_head.")]
    assert head_keys and all(target[k].shape == state[k].shape for k in head_keys)

    def aux_scores():
        with torch.no_grad():
            return relation([aux_input(3, seed=5)])[0]["instances"].scores.clone()

    before = aux_scores()
    with torch.no_grad():
        for p in relation.roi_heads.aux_box_head.parameters():
            p.add_(torch.randn_like(p))
    assert not torch.equal(before, aux_scores())
