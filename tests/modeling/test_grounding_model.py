"""SceneGraphRCNN with segmentation grounding: train steps, inference in every mode,
auxiliary inputs, and "grounding off" = the plain relation stage (tiny widths, CPU)."""

import numpy as np
import pytest
import torch
from conftest import NUM_CLASSES, random_input, tiny_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import BitMasks

from sgg_d2.config import SGG_MODES
from sgg_d2.modeling import CONTEXT_REGISTRY

AUX_DATASET = "tests_grounding_tiny_aux"
AUX_CLASSES = ["disc", "band", "blob"]
# Every mode with MOTIFS; every other context with an obj_repr in one mode (test time).
OTHERS = sorted(n for n, _ in CONTEXT_REGISTRY if n not in ("MotifsContext", "FrequencyBaseline"))
CASES = [("MotifsContext", m) for m in SGG_MODES] + [
    (name, SGG_MODES[i % len(SGG_MODES)]) for i, name in enumerate(OTHERS)
]


def register_tiny_aux():
    """An (empty) auxiliary dataset: only its metadata (class names) is read."""
    if AUX_DATASET not in DatasetCatalog.list():
        DatasetCatalog.register(AUX_DATASET, lambda: [])
        MetadataCatalog.get(AUX_DATASET).set(thing_classes=AUX_CLASSES, evaluator_type="coco")


def write_vectors(folder):
    """A GloVe-format file with 8-d vectors for the tiny target and auxiliary names."""
    rng = np.random.default_rng(0)
    path = folder / "tiny.8d.txt"
    words = [f"c{i}" for i in range(NUM_CLASSES)] + AUX_CLASSES
    path.write_text(
        "".join(w + " " + " ".join(f"{x:.4f}" for x in rng.normal(size=8)) + "\n" for w in words)
    )
    return str(path)


def grounded_cfg(vectors, context="MotifsContext", mode="sgcls", output_dir=None):
    """``tiny_cfg`` + grounding with tiny widths."""
    register_tiny_aux()
    cfg = tiny_cfg(context, mode, output_dir=output_dir)
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskTransferHead"
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 8
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 1
    cfg.INPUT.MASK_FORMAT = "bitmask"
    cfg.DATASETS.AUX_TRAIN = (AUX_DATASET,)
    g = cfg.MODEL.SGG.GROUNDING
    g.ENABLED = True
    g.AUX_NUM_CLASSES = len(AUX_CLASSES)
    g.WORD_VECTORS = vectors
    g.SIMILARITY = "softmax"
    g.MASK_FEATURE_DIM = 8
    g.UNION_MASK_SIZE = 12
    g.KERNEL_SIZE = 3
    g.REFINE_RESOLUTION = 7
    cfg.MODEL.SGG.TRAIN_DETECTIONS_PER_IMAGE = 8
    cfg.TEST.DETECTIONS_PER_IMAGE = 8
    return cfg


def aux_input(num_objects, seed=0):
    """An auxiliary-dataset input: GT boxes, auxiliary classes, box-filling bit masks."""
    x = random_input(num_objects, seed=seed)
    del x["relations"]
    inst = x["instances"]
    masks = torch.zeros((num_objects, *inst.image_size), dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(inst.gt_boxes.tensor.round().long().tolist()):
        masks[i, y1:y2, x1:x2] = True
    inst.gt_masks = BitMasks(masks)
    inst.gt_classes = inst.gt_classes % len(AUX_CLASSES)
    x["source"] = "aux"
    return x


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    return write_vectors(tmp_path_factory.mktemp("vectors"))


def _grads(module):
    return [p.grad for p in module.parameters()]


def _has_grad(module):
    return any(g is not None and g.abs().sum() > 0 for g in _grads(module))


def _past_initialisation(model):
    """Give the zero-initialised residual fusions of f_N / f_E non-zero weights, so that the
    masks (and what produces them) reach the relation logits, as after some training."""
    g = torch.Generator().manual_seed(7)
    for part in (model.roi_heads.grounding.node, model.roi_heads.grounding.edge):
        if part is not None:
            with torch.no_grad():
                w = part.fuse.proj.weight
                w.copy_(torch.randn(w.shape, generator=g))
    return model


@pytest.mark.parametrize("context,mode", CASES)
def test_grounded_train_step_and_inference(vectors, context, mode):
    torch.manual_seed(0)
    model = _past_initialisation(build_model(grounded_cfg(vectors, context, mode)).train())
    batch = [random_input(4, seed=1), random_input(3, seed=2), aux_input(3, seed=3)]
    losses = model(batch)
    assert {"loss_relation", "loss_mask_refine"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    g = model.roi_heads.grounding
    assert _has_grad(g.node) and _has_grad(g.refiner)
    # edges exist for contexts that use union-box features (F-Net does not)
    assert (g.edge is None) != model.roi_heads.context.needs_union_features
    assert g.edge is None or _has_grad(g.edge.kernel_net)
    for module in model.detector_modules():  # incl. mask head and auxiliary box predictor
        assert all(p.grad is None for p in module.parameters())

    model.eval()
    inputs = [random_input(4, seed=1), aux_input(2, seed=5)]
    with torch.no_grad():
        target_out, aux_out = model(inputs)
    inst = target_out["instances"]
    assert inst.pred_masks.shape == (len(inst), 192, 256) and inst.pred_masks.dtype == torch.bool
    assert len(target_out["relations"]) == len(inst) * (len(inst) - 1)
    assert set(aux_out) == {"instances"}
    aux = aux_out["instances"]
    assert aux.pred_masks.shape == (len(aux), 192, 256)
    assert ((aux.pred_classes >= 0) & (aux.pred_classes < len(AUX_CLASSES))).all()
    if mode == "predcls":
        assert torch.equal(aux.pred_classes, inputs[1]["instances"].gt_classes)
        assert (aux.scores == 1).all()
    if mode != "sgdet":
        gt = inputs[1]["instances"].gt_boxes.tensor * 2
        torch.testing.assert_close(aux.pred_boxes.tensor, gt)


def test_grounding_off_is_the_plain_relation_stage(vectors):
    plain_cfg = tiny_cfg("MotifsContext", "sgcls")
    off_cfg = grounded_cfg(vectors, "MotifsContext", "sgcls")
    off_cfg.MODEL.SGG.GROUNDING.ENABLED = False
    off_cfg.MODEL.MASK_ON = False
    models = []
    for cfg in (plain_cfg, off_cfg):
        torch.manual_seed(0)
        models.append(build_model(cfg).eval())
    sd0, sd1 = models[0].state_dict(), models[1].state_dict()
    assert sd0.keys() == sd1.keys()
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    with torch.no_grad():
        outs = [m([random_input(4, seed=7)])[0] for m in models]
    assert not outs[1]["instances"].has("pred_masks")
    torch.testing.assert_close(outs[0]["relations"].scores, outs[1]["relations"].scores)


def test_refined_masks_equal_transferred_masks_at_initialisation(vectors):
    cfg = grounded_cfg(vectors, "MotifsContext", "predcls")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    inputs = [random_input(3, seed=4), aux_input(3, seed=6)]
    with torch.no_grad():
        refined = model(inputs)
        model.roi_heads.grounding.refine_at_test = False
        plain = model(inputs)
    for a, b in zip(refined, plain):
        assert torch.equal(a["instances"].pred_masks, b["instances"].pred_masks)


def test_auxiliary_batch_trains_only_through_the_refinement(vectors):
    torch.manual_seed(0)
    model = build_model(grounded_cfg(vectors, "MotifsContext", "sgcls")).train()
    losses = model([aux_input(3, seed=1), aux_input(2, seed=2)])
    assert set(losses) == {"loss_mask_refine"}
    losses["loss_mask_refine"].backward()
    heads = model.roi_heads
    assert _has_grad(heads.grounding.refiner)
    # the zero-initialised refiner passes no gradient back to the context in its first step
    assert not _has_grad(heads.context) and not _has_grad(heads.relation_predictor)


def test_target_only_batch_keeps_the_refinement_loss_key(vectors):
    model = build_model(grounded_cfg(vectors, "MotifsContext", "predcls")).train()
    losses = model([random_input(3, seed=1)])
    assert float(losses["loss_mask_refine"]) == 0.0 and losses["loss_mask_refine"].requires_grad


def test_auxiliary_inputs_need_grounding_and_grounding_needs_the_mask_head(vectors):
    model = build_model(tiny_cfg("MotifsContext", "predcls")).eval()
    with pytest.raises(ValueError, match="GROUNDING.ENABLED"):
        model([aux_input(2)])
    cfg = grounded_cfg(vectors)
    cfg.MODEL.MASK_ON = False
    with pytest.raises(ValueError, match="MASK_ON: True and MODEL.ROI_MASK_HEAD.NAME"):
        build_model(cfg)
    cfg = grounded_cfg(vectors)
    cfg.MODEL.SGG.GROUNDING.AUX_NUM_CLASSES = 80
    with pytest.raises(ValueError, match="has 3 classes but MODEL.SGG.GROUNDING.AUX_NUM_CLASSES"):
        build_model(cfg)


def test_refinement_needs_a_context_with_an_object_representation(vectors):
    cfg = grounded_cfg(vectors, "FrequencyBaseline", "predcls")
    with pytest.raises(ValueError, match="FrequencyBaseline gives no obj_repr"):
        build_model(cfg)
    cfg.MODEL.SGG.GROUNDING.REFINE = False  # nodes only (no union features): builds and runs
    model = build_model(cfg).eval()
    assert model.roi_heads.grounding.edge is None
    with torch.no_grad():
        out = model([random_input(3, seed=2)])[0]
    assert out["instances"].pred_masks.shape[0] == 3


def test_sgdet_without_detections_gives_empty_masks(vectors):
    cfg = grounded_cfg(vectors, "MotifsContext", "sgdet")
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 1.01  # nothing passes
    model = build_model(cfg).eval()
    with torch.no_grad():
        target_out, aux_out = model([random_input(3), aux_input(2, seed=1)])
    for out in (target_out, aux_out):
        assert len(out["instances"]) == 0
        assert out["instances"].pred_masks.shape == (0, 192, 256)


def _relation_logits(model, inputs):
    """The relation predictor's output (R, P + 1) in one inference forward."""
    seen = []
    handle = model.roi_heads.relation_predictor.register_forward_hook(
        lambda m, i, o: seen.append(o)
    )
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        handle.remove()
    return seen[-1]


@pytest.mark.parametrize("use_refined", [True, False])
def test_refinement_output_reaches_the_relation_logits_only_with_refined_grounding(
    vectors, use_refined
):
    cfg = grounded_cfg(vectors, "MotifsContext", "predcls")
    cfg.MODEL.SGG.GROUNDING.USE_REFINED_MASKS = use_refined
    torch.manual_seed(0)
    model = _past_initialisation(build_model(cfg).eval())
    inputs = [random_input(4, seed=3)]
    before = _relation_logits(model, inputs)
    with torch.no_grad():
        masks_before = model(inputs)[0]["instances"].pred_masks
        # a different refinement head: residual +6 on every logit (masks grow to the box)
        model.roi_heads.grounding.refiner.residual.bias.fill_(6.0)
        masks_after = model(inputs)[0]["instances"].pred_masks
    after = _relation_logits(model, inputs)
    assert not torch.equal(masks_before, masks_after)  # output masks are refined either way
    assert (not torch.allclose(before, after)) == use_refined
    # REFINE_AT_TEST off: one pass on the transferred masks (the refiner, still +6, is unused)
    model.roi_heads.grounding.refine_at_test = False
    torch.testing.assert_close(_relation_logits(model, inputs), before)


@pytest.mark.parametrize("use_refined", [True, False])
def test_relation_loss_trains_the_refinement_head_only_with_refined_grounding(vectors, use_refined):
    cfg = grounded_cfg(vectors, "MotifsContext", "predcls")
    cfg.MODEL.SGG.GROUNDING.USE_REFINED_MASKS = use_refined
    torch.manual_seed(0)
    model = _past_initialisation(build_model(cfg).train())
    losses = model([random_input(4, seed=1), random_input(3, seed=2)])  # no auxiliary image
    losses["loss_relation"].backward()
    heads = model.roi_heads
    assert _has_grad(heads.grounding.refiner) == use_refined
    assert _has_grad(heads.context) and _has_grad(heads.grounding.node)
    for module in model.detector_modules():  # the frozen mask head gets nothing
        assert all(p.grad is None for p in module.parameters())


def test_refined_grounding_runs_the_context_twice_with_refined_masks(vectors):
    cfg = grounded_cfg(vectors, "MotifsContext", "sgcls")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    heads = model.roi_heads
    with torch.no_grad():
        heads.grounding.refiner.residual.bias.fill_(-3.0)
    node_masks = []
    handle = heads.grounding.node.register_forward_hook(lambda m, i, o: node_masks.append(i[1]))
    try:
        with torch.no_grad():
            model([random_input(3, seed=5)])
    finally:
        handle.remove()
    assert len(node_masks) == 2  # pass 1: transferred masks, pass 2: refined masks
    assert (node_masks[1] < node_masks[0]).all()  # residual -3 lowers every probability
