"""MODEL.SGG.RELATION_BACKBONE: RelDN's separate, trained backbone for union features."""

import pytest
import torch
from detectron2.modeling import build_model

from sgg_d2.engine.trainer import SceneGraphTrainer
from sgg_d2.modeling.relation.union_features import copy_detector_backbone


def _detector_checkpoint(make_cfg, tmp_path):
    """A detector checkpoint (the detector stage's model) with weights unlike a fresh init."""
    cfg = make_cfg("RelDNContext", "sgcls")
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    torch.manual_seed(123)
    detector = build_model(cfg)
    with torch.no_grad():
        for p in detector.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "detector.pth"
    torch.save({"model": detector.state_dict()}, path)
    return path, detector.state_dict()


def _relation_model(make_cfg, enabled=True):
    cfg = make_cfg("RelDNContext", "sgcls")
    cfg.MODEL.SGG.RELATION_BACKBONE.ENABLED = enabled
    cfg.MODEL.SGG.EXTRA_RELATION_LOSSES = ["GraphicalContrastiveLoss"]
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def test_initialised_from_the_detector_then_trained_while_the_detector_stays(
    make_cfg, make_input, tmp_path
):
    path, detector_state = _detector_checkpoint(make_cfg, tmp_path)
    cfg, _ = _relation_model(make_cfg)
    cfg.MODEL.SGG.DETECTOR_WEIGHTS = str(path)
    torch.manual_seed(1)
    model = SceneGraphTrainer.build_model(cfg)  # the stage handoff of train_net.py
    rel_backbone = model.roi_heads.union_features.backbone
    assert rel_backbone is not None and rel_backbone is not model.backbone
    rel_state = rel_backbone.state_dict()
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, detector_state[f"backbone.{name}"])
        assert torch.equal(rel_state[name], value), name  # iteration 0: the same weights
    det_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.roi_heads.box_head.state_dict().items()}
    rel_before = {k: v.clone() for k, v in rel_state.items()}

    model.train()
    optimizer = SceneGraphTrainer.build_optimizer(cfg, model)
    rels = [[0, 1, 0], [2, 3, 1], [0, 3, 2]]
    losses = model([make_input(5, relations=rels, seed=1), make_input(4, seed=2)])
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    optimizer.step()

    changed = [k for k, v in rel_backbone.state_dict().items() if not torch.equal(v, rel_before[k])]
    assert len(changed) > len(rel_before) // 2  # the relation backbone is fine-tuned
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, det_before[k]), k  # the detector's is frozen
    for k, v in model.roi_heads.box_head.state_dict().items():
        assert torch.equal(v, head_before[k]), k


def test_union_features_come_from_the_relation_backbone(make_cfg, make_input):
    _, model = _relation_model(make_cfg)
    model.eval()
    union = model.roi_heads.union_features
    with torch.no_grad():
        images = model.preprocess_image([make_input(3, seed=4)])
        features = model.backbone(images.tensor)
        boxes = [torch.tensor([[4.0, 4.0, 40.0, 40.0], [30.0, 20.0, 90.0, 70.0]])]
        pairs = [torch.tensor([[0, 1], [1, 0]])]
        args = (features, boxes, pairs, list(images.image_sizes))
        with_rel = union(*args, images=images.tensor)
        # the detector's maps are ignored: perturbing them changes nothing
        noisy = {k: v + 1.0 for k, v in features.items()}
        assert torch.equal(union(noisy, *args[1:], images=images.tensor), with_rel)
        # the relation backbone's weights matter
        for p in union.backbone.parameters():
            p.mul_(0.5)
        assert not torch.allclose(union(*args, images=images.tensor), with_rel)
        with pytest.raises(ValueError, match="RELATION_BACKBONE.*images"):
            union(*args)


def test_off_by_default_and_for_other_configs(make_cfg):
    _, model = _relation_model(make_cfg, enabled=False)
    assert model.roi_heads.union_features.backbone is None
    assert copy_detector_backbone(model) == 0
