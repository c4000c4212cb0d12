"""LinkNet context: shapes, per-image attention, equivariance, global-context loss, config."""

import math
from dataclasses import replace

import pytest
import torch
from detectron2.structures import Instances

from sgg_d2.modeling.context import ContextInputs, TrainingTargets, build_context_model
from sgg_d2.modeling.context.linknet import LinkNetContext, layout_encoding
from sgg_d2.modeling.context.linknet_modules import (
    masked_row_softmax,
    multilabel_targets,
    pad_by_image,
)
from sgg_d2.structures import all_ordered_pairs

OBJ_DIM, UNION_DIM, EMBED, HIDDEN, GC_DIM, CHANNELS, C = 6, 5, 3, 8, 7, 4, 3
STRIDE = 32  # the 3 x 4 maps of make_inputs cover 96 x 128 inputs


def make_inputs(num_objs, gt=False, seed=0, with_targets=False):
    """Random inputs, every ordered pair of each image (global indices)."""
    g = torch.Generator().manual_seed(seed)
    n = sum(num_objs)
    offsets = torch.tensor([0] + list(num_objs[:-1])).cumsum(0)
    pairs = torch.cat([all_ordered_pairs(k) + o for k, o in zip(num_objs, offsets)])
    xy = torch.rand(n, 2, generator=g) * 50
    labels = torch.randint(0, C, (n,), generator=g)
    inputs = ContextInputs(
        obj_features=torch.randn(n, OBJ_DIM, generator=g),
        obj_logits=torch.randn(n, C, generator=g),
        box_layout=torch.rand(n, 9, generator=g),
        boxes=torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 20], 1),
        num_objs=list(num_objs),
        pairs=pairs,
        num_pairs=[k * (k - 1) for k in num_objs],
        union_features=torch.rand(len(pairs), UNION_DIM, generator=g),
        gt_labels=labels if gt else None,
        features={"p5": torch.randn(len(num_objs), CHANNELS, 3, 4, generator=g)},
        image_sizes=[(96, 128)] * len(num_objs),
    )
    if with_targets:
        gt_instances = []
        for lab in labels.split(list(num_objs)):
            inst = Instances((64, 64))
            inst.gt_classes = lab
            gt_instances.append(inst)
        inputs = replace(inputs, training=TrainingTargets(gt_instances=gt_instances))
    return inputs


def make_model(num_modules=2, reduction=2, loss_weight=1.0, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("layout_dim", EMBED)  # K2 as wide as the class embeddings here
    return LinkNetContext(
        obj_dim=OBJ_DIM,
        union_dim=UNION_DIM,
        num_classes=C,
        feature_channels=CHANNELS,
        feature_stride=STRIDE,
        global_feature="p5",
        embed_dim=EMBED,
        embedding_dim=HIDDEN,
        global_context_dim=GC_DIM,
        num_modules=num_modules,
        reduction=reduction,
        global_context_loss_weight=loss_weight,
        **kwargs,
    ).eval()


@pytest.mark.parametrize("gt", [False, True])
def test_shapes_with_single_and_empty_images(gt):
    out = make_model()(make_inputs([4, 1, 0, 3], gt=gt))
    assert out.obj_logits.shape == (8, C)
    assert out.pair_features.shape == (12 + 6, UNION_DIM + EMBED)
    assert out.obj_repr.shape == (8, HIDDEN)
    assert out.extras["global_logits"].shape == (4, C)
    assert torch.isfinite(out.obj_logits).all() and torch.isfinite(out.pair_features).all()


@pytest.mark.parametrize("num_objs", [[0], [1, 0], [0, 0], [1]])
def test_no_pairs_and_no_objects(num_objs):
    inputs = make_inputs(num_objs, with_targets=True)
    model = make_model()
    out = model(inputs)
    assert out.obj_logits.shape == (sum(num_objs), C)
    assert out.pair_features.shape == (0, UNION_DIM + EMBED)
    loss = model.losses(inputs, out, torch.zeros(0, dtype=torch.long), None)["loss_global_context"]
    assert torch.isfinite(loss)


def test_gradients_reach_every_parameter():
    model = make_model().train()
    inputs = make_inputs([3, 2], with_targets=True)
    out = model(inputs)
    loss = model.losses(inputs, out, torch.zeros(8, dtype=torch.long), None)["loss_global_context"]
    (loss + out.obj_logits.square().sum() + out.pair_features.square().sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def _image(out, inputs, i):
    """Outputs of image i: object logits and pair features."""
    o = sum(inputs.num_objs[:i])
    r = sum(inputs.num_pairs[:i])
    n, p = inputs.num_objs[i], inputs.num_pairs[i]
    return out.obj_logits[o : o + n], out.pair_features[r : r + p]


@pytest.mark.parametrize("gt", [False, True])
def test_attention_stays_inside_each_image(gt):
    """Image 0's outputs do not depend on the objects (or map) of the other images."""
    model = make_model()
    base = make_inputs([3, 2], gt=gt, seed=1)
    other = make_inputs([3, 5], gt=gt, seed=2)  # more objects: a wider padding too
    for field in ("obj_features", "obj_logits", "boxes"):
        getattr(other, field)[:3] = getattr(base, field)[:3]
    if gt:
        other.gt_labels[:3] = base.gt_labels[:3]
    other.union_features[:6] = base.union_features[:6]
    other.features["p5"][0] = base.features["p5"][0]
    alone = replace(
        make_inputs([3], gt=gt, seed=1),
        **{f: getattr(base, f)[:3] for f in ("obj_features", "obj_logits", "boxes")},
        union_features=base.union_features[:6],
        gt_labels=base.gt_labels[:3] if gt else None,
        features={"p5": base.features["p5"][:1]},
        image_sizes=base.image_sizes[:1],
    )
    with torch.no_grad():
        ref = _image(model(base), base, 0)
        for inputs in (other, alone):
            got = _image(model(inputs), inputs, 0)
            assert torch.allclose(got[0], ref[0], atol=1e-6)
            assert torch.allclose(got[1], ref[1], atol=1e-6)
    # the objects of image 1 do matter to image 1
    assert not torch.allclose(_image(model(base), base, 1)[0], model(other).obj_logits[3:5])


@pytest.mark.parametrize("gt", [False, True])
def test_permutation_equivariance_within_an_image(gt):
    model = make_model()
    inputs = make_inputs([4, 2], gt=gt, seed=3)
    perm = torch.tensor([2, 0, 3, 1, 4, 5])  # new object k is old object perm[k]
    inv = torch.argsort(perm)
    permuted = replace(
        make_inputs([4, 2], gt=gt, seed=3),
        **{f: getattr(inputs, f)[perm] for f in ("obj_features", "obj_logits", "boxes")},
        box_layout=inputs.box_layout[perm],
        gt_labels=inputs.gt_labels[perm] if gt else None,
        pairs=inv[inputs.pairs],  # same pairs, same order, new object indices
    )
    with torch.no_grad():
        out, out_p = model(inputs), model(permuted)
    assert torch.allclose(out_p.obj_logits, out.obj_logits[perm], atol=1e-5)
    assert torch.allclose(out_p.obj_repr, out.obj_repr[perm], atol=1e-5)
    assert torch.allclose(out_p.pair_features, out.pair_features, atol=1e-5)


def test_global_context_loss_by_hand():
    model = make_model(loss_weight=0.5)
    with torch.no_grad():  # scores independent of the image: sigmoid = (1/2, 3/4, 1/4)
        model.global_context.classifier.weight.zero_()
        model.global_context.classifier.bias.copy_(torch.tensor([0.0, math.log(3), -math.log(3)]))
    inputs = make_inputs([2, 2], with_targets=True)
    inputs.training.gt_instances[0].gt_classes = torch.tensor([0, 2])
    inputs.training.gt_instances[1].gt_classes = torch.tensor([1, 1])
    out = model(inputs)
    loss = model.losses(inputs, out, torch.zeros(4, dtype=torch.long), None)["loss_global_context"]
    # image 0, targets (1, 0, 1): ln 2 + ln 4 + ln 4; image 1, targets (0, 1, 0):
    # ln 2 + ln(4/3) + ln(4/3); summed over the 3 classes (the paper), mean over the 2
    # images, times lambda_2 = 0.5.
    expected = 0.5 * (6 * math.log(2) + 2 * math.log(4 / 3)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # "mean" (the old behaviour) also divides by the C classes: lambda_2 / C in effect.
    model.global_context_loss_reduction = "mean"
    mean = model.losses(inputs, out, torch.zeros(4, dtype=torch.long), None)["loss_global_context"]
    assert mean.item() == pytest.approx(expected / C, rel=1e-6)
    with pytest.raises(ValueError, match="GLOBAL_CONTEXT_LOSS_REDUCTION 'max'"):
        make_model(global_context_loss_reduction="max")


def test_global_context_pools_each_image_over_its_own_area():
    """c of an image does not depend on its batch mates or the padding of the batch."""
    model = make_model()
    # Image 0 is 40 x 60 (2 x 2 cells of stride 32), padded to the batch's 96 x 128.
    inputs = replace(make_inputs([2, 3], seed=4), image_sizes=[(40, 60), (96, 128)])
    fmap = inputs.features["p5"]
    fmap[0, :, 2:, :] = 0.0
    fmap[0, :, :, 2:] = 0.0
    noisy_map = fmap.clone()
    noisy_map[0, :, 2:, :] = 100.0  # padding garbage
    noisy_map[1] = -fmap[1]  # another batch mate
    noisy = replace(
        make_inputs([2, 3], seed=4), image_sizes=inputs.image_sizes, features={"p5": noisy_map}
    )
    first = ("obj_features", "obj_logits", "boxes", "box_layout", "union_features")
    alone = replace(
        make_inputs([2], seed=4),
        **{field: getattr(inputs, field)[:2] for field in first},
        image_sizes=[(40, 60)],
        features={"p5": fmap[:1, :, :2, :2].clone()},  # its own 2 x 2 map, no padding
    )
    with torch.no_grad():
        ref = model(inputs).extras["global_logits"][0]
        assert torch.allclose(model(noisy).extras["global_logits"][0], ref, atol=1e-6)
        assert torch.allclose(model(alone).extras["global_logits"][0], ref, atol=1e-6)
        # by hand: c = ReLU(fc(mean of the 4 valid cells))
        c = torch.relu(model.global_context.fc(fmap[0, :, :2, :2].mean(dim=(1, 2))))
        assert torch.allclose(model.global_context.classifier(c), ref, atol=1e-6)
        # the mean over the whole padded map (the old behaviour) differs
        c_old = torch.relu(model.global_context.fc(fmap[0].mean(dim=(1, 2))))
        assert not torch.allclose(model.global_context.classifier(c_old), ref, atol=1e-3)
    with pytest.raises(ValueError, match="image_sizes"):
        model(replace(inputs, image_sizes=None))


def test_ablations_global_context_and_layout():
    inputs = make_inputs([3, 2], with_targets=True)
    full = make_model()
    no_gc = make_model(global_context=False)
    assert no_gc.global_context is None
    assert no_gc.object_embedding.blocks[0].query.in_features == OBJ_DIM + EMBED
    out = no_gc(inputs)
    assert "global_logits" not in out.extras
    assert no_gc.losses(inputs, out, torch.zeros(8, dtype=torch.long), None) == {}
    # without c, an image's outputs ignore the backbone map entirely
    other = replace(
        make_inputs([3, 2], with_targets=True), features={"p5": torch.randn(2, CHANNELS, 3, 4)}
    )
    with torch.no_grad():
        assert torch.equal(no_gc(other).obj_logits, out.obj_logits)
        assert not torch.allclose(full(other).obj_logits, full(inputs).obj_logits)
    no_layout = make_model(geometric_layout=False)
    assert no_layout.pair_dim == UNION_DIM and no_layout.layout_embed is None
    with torch.no_grad():
        g1, g0 = full(inputs).pair_features, no_layout(inputs).pair_features
    assert g0.shape == (8, UNION_DIM)
    assert torch.allclose(g0, g1[:, :UNION_DIM])  # G1 = [G0; K2 b], same weights (seed)


def test_pair_norm_puts_g0_and_layout_on_one_scale():
    inputs = make_inputs([3, 2], with_targets=True)
    plain, normed = make_model(), make_model(pair_norm=True)
    assert plain.pair_dim == normed.pair_dim == UNION_DIM + EMBED
    with torch.no_grad():
        g_plain, g_norm = plain(inputs).pair_features, normed(inputs).pair_features
        # same seed, same weights: the normalised parts are LayerNorm of the plain ones
        g0, layout = g_plain[:, :UNION_DIM], g_plain[:, UNION_DIM:]
        ln = torch.nn.functional.layer_norm
        assert torch.allclose(g_norm[:, :UNION_DIM], ln(g0, (UNION_DIM,)), atol=1e-5)
        assert torch.allclose(g_norm[:, UNION_DIM:], ln(layout, (EMBED,)), atol=1e-5)
    # each part has zero mean and (up to LayerNorm's eps) unit variance per pair
    for part in (g_norm[:, :UNION_DIM], g_norm[:, UNION_DIM:]):
        assert torch.allclose(part.mean(dim=1), torch.zeros(len(part)), atol=1e-4)
        assert torch.allclose(part.var(dim=1, unbiased=False), torch.ones(len(part)), atol=0.05)
    no_layout = make_model(pair_norm=True, geometric_layout=False)
    assert isinstance(no_layout.layout_norm, torch.nn.Identity)
    assert no_layout(inputs).pair_features.shape == (8, UNION_DIM)


def test_global_context_loss_trains_the_global_head_only():
    model = make_model().train()
    inputs = make_inputs([3, 1], with_targets=True)
    loss = model.losses(inputs, model(inputs), torch.zeros(6, dtype=torch.long), None)
    loss["loss_global_context"].backward()
    for p in model.global_context.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.object_embedding.parameters())


def test_multilabel_targets_and_errors():
    targets = multilabel_targets([torch.tensor([2, 0, 2]), torch.tensor([], dtype=torch.long)], 3)
    assert torch.equal(targets, torch.tensor([[1.0, 0, 1], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"gt_instances\[1\].gt_classes has class 3"):
        multilabel_targets([torch.tensor([0]), torch.tensor([1, 3])], 3)
    model = make_model()
    inputs = make_inputs([2])
    with pytest.raises(ValueError, match="gt_instances"):
        model.losses(inputs, model(inputs), torch.zeros(2, dtype=torch.long), None)
    inputs = replace(inputs, features={"p4": inputs.features["p5"]})
    with pytest.raises(ValueError, match="'p5' in inputs.features"):
        model(inputs)


def test_layout_encoding_by_hand():
    subj = torch.tensor([[0.0, 0, 10, 20]])  # centre (5, 10), 10 x 20
    obj = torch.tensor([[10.0, 0, 30, 10]])  # centre (20, 5), 20 x 10
    expected = torch.tensor([[15 / 10, -5 / 20, math.log(2), math.log(0.5)]])
    assert torch.allclose(layout_encoding(subj, obj), expected)


def test_pair_feature_is_gated_by_union_feature():
    """G0 = E1^s * E1^o * F: a zero union feature zeroes G0 but not the layout part."""
    model = make_model()
    inputs = make_inputs([3])
    inputs.union_features[1] = 0
    with torch.no_grad():
        out = model(inputs)
        layout = model.layout_embed(
            layout_encoding(inputs.boxes[inputs.pairs[:, 0]], inputs.boxes[inputs.pairs[:, 1]])
        )
    assert (out.pair_features[1, :UNION_DIM] == 0).all()
    assert (out.pair_features[0, :UNION_DIM] != 0).any()
    assert torch.allclose(out.pair_features[:, UNION_DIM:], layout)


def test_masked_softmax_and_padding():
    x = torch.arange(10.0).reshape(5, 2)
    padded, mask, index = pad_by_image(x, [2, 0, 3])
    assert padded.shape == (3, 3, 2)
    assert mask.tolist() == [[True, True, False], [False] * 3, [True] * 3]
    assert torch.equal(padded[index], x)
    weights = masked_row_softmax(torch.randn(3, 3, 3), mask)
    assert torch.isfinite(weights).all()
    assert torch.allclose(weights.sum(-1), torch.ones(3, 3))
    assert (weights[0, :, 2] == 0).all()
    with pytest.raises(ValueError, match="num_objs sums to 4 but there are 5 objects"):
        pad_by_image(x, [2, 2])


@pytest.mark.parametrize("reduction", [1, 2, 4])
def test_reduction_ratio_sets_projection_widths(reduction):
    model = make_model(reduction=reduction)
    for stack in (model.object_embedding, model.edge_embedding):
        for block in stack.blocks:
            d = block.query.in_features
            for proj in (block.query, block.key, block.value):
                assert proj.out_features == d // reduction
            assert block.fc_residual.out_features == d
    assert model.object_embedding.blocks[0].query.in_features == OBJ_DIM + EMBED + GC_DIM
    with pytest.raises(ValueError, match="reduction ratio r=0"):
        make_model(reduction=0)


@pytest.mark.parametrize("num_modules", [1, 2, 3])
def test_number_of_modules(num_modules):
    model = make_model(num_modules=num_modules)
    assert len(model.object_embedding.blocks) == num_modules
    assert len(model.edge_embedding.blocks) == num_modules
    assert model.object_embedding.blocks[-1].fc_out.out_features == C
    assert model.edge_embedding.blocks[-1].fc_out.out_features == 2 * UNION_DIM
    out = model(make_inputs([3, 2]))
    embed = OBJ_DIM + EMBED + GC_DIM if num_modules == 1 else HIDDEN
    assert out.obj_repr.shape == (5, embed)
    assert out.pair_features.shape == (8, UNION_DIM + EMBED)


def test_built_from_config(make_cfg):
    cfg = make_cfg("LinkNetContext", "sgcls")
    cfg.MODEL.SGG.LINKNET.NUM_MODULES = 3
    cfg.MODEL.SGG.LINKNET.REDUCTION = 4
    cfg.MODEL.SGG.LINKNET.GLOBAL_CONTEXT_LOSS_WEIGHT = 0.25
    model = build_context_model(cfg, 64, cfg.MODEL.SGG.UNION_DIM)
    assert isinstance(model, LinkNetContext)
    assert len(model.object_embedding.blocks) == 3
    first = model.object_embedding.blocks[0]
    assert first.query.out_features == first.query.in_features // 4
    assert model.global_feature == "p5"  # largest stride of p2..p5
    assert model.global_context.fc.in_features == cfg.MODEL.FPN.OUT_CHANNELS
    assert model.global_context_loss_weight == 0.25
    assert model.pair_dim == cfg.MODEL.SGG.UNION_DIM + 128  # the paper's K2 width
    cfg.MODEL.SGG.LINKNET.LAYOUT_DIM, cfg.MODEL.SGG.LINKNET.LAYOUT_ACTIVATION = 0, "relu"
    earlier = build_context_model(cfg, 64, cfg.MODEL.SGG.UNION_DIM)
    assert earlier.pair_dim == cfg.MODEL.SGG.UNION_DIM + cfg.MODEL.SGG.EMBED_DIM
    # O2/O3 and c have their own widths (the paper: 256 and 512), not CONTEXT_HIDDEN_DIM.
    m = cfg.MODEL.SGG.LINKNET
    assert (m.EMBEDDING_DIM, m.GLOBAL_CONTEXT_DIM) == (256, 512)
    m.EMBEDDING_DIM, m.GLOBAL_CONTEXT_DIM = 12, 10
    model = build_context_model(cfg, 64, cfg.MODEL.SGG.UNION_DIM)
    assert model.global_context.fc.out_features == 10
    assert model.object_embedding.blocks[0].fc_out.out_features == 12
    assert model.global_context.stride == 32  # p5
    assert model.global_context_loss_reduction == "sum"
    m.GLOBAL_CONTEXT, m.GEOMETRIC_LAYOUT = False, False
    model = build_context_model(cfg, 64, cfg.MODEL.SGG.UNION_DIM)
    assert model.global_context is None and model.pair_dim == cfg.MODEL.SGG.UNION_DIM


def test_layout_embedding_paper_width_linear_and_earlier_form():
    """K2 (Eq. 13): the paper's 128-wide linear map by default; the earlier form
    (``LAYOUT_DIM: 0``, ``"relu"``) is EMBED_DIM wide with a ReLU."""
    inputs = make_inputs([3, 2])
    paper = make_model(layout_dim=128)
    assert paper.pair_dim == UNION_DIM + 128
    assert [type(m) for m in paper.layout_embed] == [torch.nn.Linear]
    with torch.no_grad():
        layout = paper(inputs).pair_features[:, UNION_DIM:]
    assert layout.shape == (8, 128) and bool((layout < 0).any())  # linear: signs kept
    earlier = make_model(layout_dim=0, layout_activation="relu")
    assert earlier.pair_dim == UNION_DIM + EMBED
    with torch.no_grad():
        assert bool((earlier(inputs).pair_features[:, UNION_DIM:] >= 0).all())
    with pytest.raises(ValueError, match="LAYOUT_ACTIVATION"):
        make_model(layout_activation="tanh")
