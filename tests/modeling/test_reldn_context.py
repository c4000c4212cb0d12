"""RelDN context: shapes, hand-checked spatial features, logits as a sum of modules."""

import math

import pytest
import torch

from sgg_d2.modeling.context import ContextInputs, build_context_model
from sgg_d2.modeling.context.reldn import SPATIAL_FEATURE_DIM, RelDNContext, spatial_features
from sgg_d2.modeling.relation.geometry import box_layout
from sgg_d2.modeling.relation.predictor import RelationPredictor
from sgg_d2.structures import all_ordered_pairs

OBJ_DIM, UNION_DIM, HIDDEN, SPATIAL, C, P = 6, 5, 4, 3, 3, 4


def make_inputs(num_objs, gt=False, seed=0, image_size=(60, 80)):
    """Random inputs with every ordered pair of each image (global indices)."""
    g = torch.Generator().manual_seed(seed)
    n = sum(num_objs)
    offsets = torch.tensor([0] + list(num_objs[:-1])).cumsum(0)
    pairs = torch.cat([all_ordered_pairs(k) + o for k, o in zip(num_objs, offsets)])
    xy = torch.rand(n, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 30], 1)
    return ContextInputs(
        obj_features=torch.randn(n, OBJ_DIM, generator=g),
        obj_logits=torch.randn(n, C, generator=g),
        box_layout=box_layout(boxes, image_size),
        boxes=boxes,
        num_objs=list(num_objs),
        pairs=pairs,
        num_pairs=[k * (k - 1) for k in num_objs],
        union_features=torch.randn(len(pairs), UNION_DIM, generator=g),
        gt_labels=torch.randint(0, C, (n,), generator=g) if gt else None,
    )


def make_model(skip_connections=True):
    torch.manual_seed(0)
    return RelDNContext(
        obj_dim=OBJ_DIM,
        union_dim=UNION_DIM,
        num_classes=3,  # RelDN passes the detector's classes through: unused
        hidden_dim=HIDDEN,
        spatial_dim=SPATIAL,
        skip_connections=skip_connections,
    )


@pytest.mark.parametrize("gt", [False, True])
def test_shapes_and_pass_through_objects(gt):
    inputs = make_inputs([4, 1, 0, 3], gt=gt)
    model = make_model()
    out = model(inputs)
    assert model.pair_dim == HIDDEN + 2 * OBJ_DIM + SPATIAL
    assert out.pair_features.shape == (12 + 6, model.pair_dim)
    assert torch.isfinite(out.pair_features).all()
    # RelDN does not refine classes: the detector's logits come back untouched.
    assert out.obj_logits is inputs.obj_logits
    assert out.obj_repr is inputs.obj_features


def test_no_pairs():
    out = make_model()(make_inputs([1, 0]))
    assert out.pair_features.shape == (0, HIDDEN + 2 * OBJ_DIM + SPATIAL)


def test_gradients_reach_visual_and_spatial_modules():
    model = make_model()
    model(make_inputs([3, 2])).pair_features.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_spatial_features_by_hand():
    boxes = torch.tensor([[0.0, 0, 10, 10], [5.0, 0, 25, 5]])  # s: c (5, 5), 10 x 10
    layout = box_layout(boxes, (50, 100))  # image 50 high, 100 wide
    got = spatial_features(boxes, layout, torch.tensor([[0, 1], [1, 0]]))
    assert got.shape == (2, SPATIAL_FEATURE_DIM)
    # o: centre (15, 2.5), 20 x 5; union [0, 0, 25, 10]: centre (12.5, 5), 25 x 10.
    expected = [
        *(1.0, -0.25, math.log(2), math.log(0.5)),  # Δ(s, o)
        *(0.75, 0.0, math.log(2.5), 0.0),  # Δ(s, u)
        *(0.1, -0.25, math.log(20 / 25), math.log(0.5)),  # Δ(u, o)
        *(0.0, 0.0, 0.1, 0.2, 100 / 5000),  # c(s)
        *(0.05, 0.0, 0.25, 0.1, 100 / 5000),  # c(o)
    ]
    assert torch.allclose(got[0], torch.tensor(expected), atol=1e-6)
    # Reversed pair: subject and object swap roles.
    assert torch.allclose(got[1, :4], torch.tensor([-0.5, 0.5, math.log(0.5), math.log(2)]))
    assert torch.allclose(got[1, 12:], torch.tensor(expected[17:] + expected[12:17]))


def test_degenerate_box_keeps_spatial_features_finite():
    boxes = torch.tensor([[10.0, 10, 10, 30], [0.0, 0, 20, 20]])  # first box has zero width
    got = spatial_features(boxes, box_layout(boxes, (40, 40)), torch.tensor([[0, 1]]))
    assert torch.isfinite(got).all()


def test_logits_are_the_sum_of_the_modules_and_the_frequency_bias():
    inputs = make_inputs([3, 2])
    model = make_model()
    freq = torch.randint(0, 5, (C, C, P + 1))
    predictor = RelationPredictor(model.pair_dim, P, freq)
    out = model(inputs)
    labels = inputs.obj_logits.argmax(1)
    subj, obj = labels[inputs.pairs[:, 0]], labels[inputs.pairs[:, 1]]
    logits = predictor(out.pair_features, subj, obj)
    parts = model.module_logits(predictor.classifier, out.pair_features)
    assert list(parts) == ["visual_joint", "visual_subject", "visual_object", "spatial", "bias"]
    total = sum(parts.values()) + predictor.freq_bias(subj, obj)
    assert torch.allclose(logits, total, atol=1e-5)
    # The subject-only branch depends on the subject alone: pairs (0, 1) and (0, 2) agree,
    # and so do the object-only logits of pairs (1, 0) and (2, 0).
    pairs = inputs.pairs.tolist()
    a, b = pairs.index([0, 1]), pairs.index([0, 2])
    assert torch.allclose(parts["visual_subject"][a], parts["visual_subject"][b])
    assert not torch.allclose(parts["visual_object"][a], parts["visual_object"][b])
    c, d = pairs.index([1, 0]), pairs.index([2, 0])
    assert torch.allclose(parts["visual_object"][c], parts["visual_object"][d])


@pytest.mark.parametrize("block", ["visual_subject", "visual_object", "spatial"])
def test_ablating_a_branch_changes_the_logits(block):
    inputs = make_inputs([4])
    model = make_model()
    predictor = RelationPredictor(model.pair_dim, P)
    with torch.no_grad():
        features = model(inputs).pair_features
        full = predictor(features, None, None)
        predictor.classifier.weight[:, model.blocks[block]] = 0
        ablated = predictor(features, None, None)
    assert (full - ablated).abs().max() > 1e-3


def test_without_skip_connections_only_joint_and_spatial_remain():
    inputs = make_inputs([3])
    with_skip, without = make_model(True), make_model(False)
    assert list(without.blocks) == ["visual_joint", "spatial"]
    assert without.pair_dim == HIDDEN + SPATIAL
    with torch.no_grad():
        a, b = with_skip(inputs).pair_features, without(inputs).pair_features
    # Same seed, same parameters: the remaining blocks are identical.
    expected = torch.cat(
        [a[:, with_skip.blocks["visual_joint"]], a[:, with_skip.blocks["spatial"]]], 1
    )
    assert torch.allclose(b, expected)


def test_built_from_config(sgg_cfg, build_context):
    cfg = sgg_cfg
    options = {"MODEL.SGG.CONTEXT_HIDDEN_DIM": 7, "MODEL.SGG.RELDN.SPATIAL_DIM": 9}
    model = build_context(cfg, RelDNContext, OBJ_DIM, UNION_DIM, options)
    assert model.needs_union_features
    assert model.pair_dim == 7 + 2 * OBJ_DIM + 9
    assert model.spatial[0].out_features == 9
    cfg.MODEL.SGG.RELDN.SKIP_CONNECTIONS = False
    ablated = build_context_model(cfg, OBJ_DIM, UNION_DIM)
    assert list(ablated.blocks) == ["visual_joint", "spatial"]
    assert ablated.pair_dim == 7 + 9


def test_bad_inputs(union_feature_errors):
    model = make_model()
    union_feature_errors(model, make_inputs([3]))
    with pytest.raises(ValueError, match="classifier takes 3 features"):
        model.module_logits(torch.nn.Linear(3, P + 1), torch.zeros(1, model.pair_dim))
