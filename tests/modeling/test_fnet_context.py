"""Factorizable Net: subgraph clustering, SMP, SRI, and the context model on hand-made inputs."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sgg_d2.modeling.context import CONTEXT_REGISTRY, TrainingTargets
from sgg_d2.modeling.context.fnet import (
    FactorizableNetContext,
    all_candidate_pairs,
    backbone_feature_shapes,
    locate_pairs,
)
from sgg_d2.modeling.context.fnet_modules import (
    ObjectToSubgraph,
    SpatialRelationInference,
    SRIVariant,
    SubgraphToObject,
)
from sgg_d2.modeling.context.fnet_subgraph import (
    SubgraphClusters,
    cluster_subgraphs,
    object_scores,
    subgraph_incidence,
)
from sgg_d2.structures import all_ordered_pairs

OBJ_DIM, HIDDEN, C, CH, REL = 6, 8, 3, 4, 5
DIMS = {"obj_dim": OBJ_DIM, "union_dim": None, "num_classes": C}  # F-Net needs no union


def strip_pairs(intervals, scores):
    """Objects in twins with the same box [x1, 0, x2, 10]: pair (2k, 2k+1) has that box as
    union box and score ``scores[k]`` (the twin's score is 1)."""
    boxes = torch.tensor([[a, 0.0, b, 10.0] for a, b in intervals for _ in range(2)])
    obj_scores = torch.tensor([v for s in scores for v in (s, 1.0)])
    pairs = torch.tensor([[2 * k, 2 * k + 1] for k in range(len(intervals))])
    return boxes, pairs, obj_scores


def test_nearly_identical_pairs_form_one_subgraph_far_pairs_stay_apart():
    intervals = [(0, 10), (0.2, 10), (0, 10.3), (100, 110), (200, 210)]
    boxes, pairs, scores = strip_pairs(intervals, [0.5, 0.9, 0.4, 0.3, 0.2])
    c = cluster_subgraphs(boxes, pairs, [5], scores, 0.5)
    assert c.num_subgraphs == [3]
    # the best-scoring of the three near-identical pairs represents them
    assert c.representative.tolist() == [1, 3, 4]
    assert c.pair_to_subgraph.tolist() == [0, 0, 0, 1, 2]
    assert torch.equal(c.boxes, boxes[[2, 6, 8]])


def test_pair_goes_to_highest_iou_kept_box_not_its_suppressor():
    # A=[0,10] (0.9) and B=[5,15] (0.3) are kept (IoU 1/3); C=[3,13] (0.4) is suppressed
    # by A (IoU 7/13 > 0.5) but overlaps B more (IoU 8/12): C joins B.
    boxes, pairs, scores = strip_pairs([(0, 10), (5, 15), (3, 13)], [0.9, 0.3, 0.4])
    c = cluster_subgraphs(boxes, pairs, [3], scores, 0.5)
    assert c.representative.tolist() == [0, 1]
    assert c.pair_to_subgraph.tolist() == [0, 1, 1]


def test_equal_iou_tie_goes_to_higher_score():
    # C=[3,13] has IoU 7/13 with both A=[0,10] and B=[6,16]; B scores higher.
    boxes, pairs, scores = strip_pairs([(0, 10), (6, 16), (3, 13)], [0.5, 0.9, 0.3])
    c = cluster_subgraphs(boxes, pairs, [3], scores, 0.5)
    assert c.representative.tolist() == [1, 0]  # score order
    assert c.pair_to_subgraph.tolist() == [1, 0, 0]


def test_kept_pairs_map_to_themselves_and_every_pair_has_one_subgraph():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(12, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + 10 + torch.rand(12, 2, generator=g) * 30], 1)
    pairs = all_ordered_pairs(12)
    scores = torch.rand(12, generator=g)
    c = cluster_subgraphs(boxes, pairs, [len(pairs)], scores, 0.5)
    s = sum(c.num_subgraphs)
    assert 1 <= s < len(pairs)  # overlapping union boxes are merged
    assert c.pair_to_subgraph.shape == (len(pairs),)
    assert ((c.pair_to_subgraph >= 0) & (c.pair_to_subgraph < s)).all()
    assert torch.equal(c.pair_to_subgraph[c.representative], torch.arange(s))
    assert torch.equal(torch.unique(c.pair_to_subgraph), torch.arange(s))  # none empty
    # threshold 1: nothing is merged, every pair is its own subgraph
    c1 = cluster_subgraphs(boxes, pairs, [len(pairs)], scores, 1.0)
    assert sum(c1.num_subgraphs) == len(pairs)
    assert torch.equal(c1.representative[c1.pair_to_subgraph], torch.arange(len(pairs)))


def test_no_merging_across_images_and_empty_images():
    boxes, pairs, scores = strip_pairs([(0, 10), (0, 10)], [0.9, 0.8])
    # image 0: objects 0-1 (pair 0); image 1: none; image 2: objects 2-3 (pair 1)
    c = cluster_subgraphs(boxes, pairs, [1, 0, 1], scores, 0.5)
    assert c.num_subgraphs == [1, 0, 1]
    assert c.pair_to_subgraph.tolist() == [0, 1]
    empty = cluster_subgraphs(boxes, pairs[:0], [0, 0], scores, 0.5)
    assert empty.num_subgraphs == [0, 0] and empty.boxes.shape == (0, 4)
    with pytest.raises(ValueError, match="num_pairs sums to 3 but pairs has 2"):
        cluster_subgraphs(boxes, pairs, [3], scores, 0.5)


def test_enlarged_boxes_cover_member_pairs():
    boxes, pairs, scores = strip_pairs([(0, 10), (-1, 10.5)], [0.9, 0.5])
    c = cluster_subgraphs(boxes, pairs, [2], scores, 0.5, enlarge=True)
    assert c.pair_to_subgraph.tolist() == [0, 0]
    assert c.boxes.tolist() == [[-1.0, 0.0, 10.5, 10.0]]


def test_object_scores():
    logits = torch.log(torch.tensor([[0.2, 0.8], [0.6, 0.4]]))
    assert torch.allclose(object_scores(logits, None), torch.tensor([0.8, 0.6]))
    assert torch.equal(object_scores(logits, torch.tensor([0, 0])), torch.ones(2))


def test_incidence_lists_each_object_subgraph_link_once():
    pairs = torch.tensor([[0, 1], [1, 0], [1, 2], [3, 4]])
    clusters = SubgraphClusters(torch.tensor([0, 0, 1, 2]), torch.zeros(3, 4), None, [2, 1])
    links = subgraph_incidence(pairs, clusters, [3, 2])
    got = list(zip(links.obj_index.tolist(), links.sub_index.tolist()))
    assert got == [(0, 0), (1, 0), (1, 1), (2, 1), (3, 2), (4, 2)]
    assert links.per_image() == [slice(0, 4), slice(4, 6)]


def links_for(pairs, pair_to_subgraph, num_objs, num_subgraphs):
    c = SubgraphClusters(pair_to_subgraph, torch.zeros(sum(num_subgraphs), 4), None, num_subgraphs)
    return subgraph_incidence(pairs, c, num_objs)


def test_subgraph_to_object_attends_over_all_locations_of_its_subgraphs():
    torch.manual_seed(0)
    # image 0: objects 0..3, object 3 isolated; image 1: objects 4, 5
    pairs = torch.tensor([[0, 1], [1, 2], [2, 0], [4, 5]])
    links = links_for(pairs, torch.tensor([0, 1, 2, 3]), [4, 2], [3, 1])
    x, maps = torch.randn(6, HIDDEN), torch.randn(4, CH, 3, 3)
    module = SubgraphToObject(HIDDEN, CH, 5)
    msg, w = module(x, maps, links)
    assert w.shape == (len(links.obj_index), 3, 3)
    per_obj = torch.zeros(6).index_add(0, links.obj_index, w.sum((1, 2)))
    assert torch.allclose(per_obj, torch.tensor([1.0, 1, 1, 0, 1, 1]))
    assert torch.equal(msg[3], torch.zeros(HIDDEN))  # isolated object: no message
    # object 0 is in subgraphs 0 and 2: one softmax over their 2 x 9 locations
    feats = maps[[0, 2]].flatten(2).transpose(1, 2).reshape(18, CH)  # (k, u) rows
    q, k = module.query(x[0]), module.key(feats)
    expected = (k @ q / 5**0.5).softmax(0)
    assert torch.allclose(w[links.obj_index == 0].reshape(18), expected, atol=1e-6)
    assert torch.allclose(msg[0], expected @ module.value(feats), atol=1e-5)


@pytest.mark.parametrize("norm", ["softmax", "sigmoid"])
def test_object_to_subgraph_matches_direct_formula(norm):
    torch.manual_seed(0)
    pairs = torch.tensor([[0, 1], [1, 2], [3, 4]])
    links = links_for(pairs, torch.tensor([0, 0, 1]), [3, 2], [1, 1])
    x, maps = torch.randn(5, HIDDEN), torch.randn(2, CH, 3, 3)
    module = ObjectToSubgraph(HIDDEN, CH, norm)
    msg, att = module(x, maps, links)
    assert msg.shape == (2, CH, 3, 3) and att.shape == (5, 3, 3)
    # subgraph 0 is linked to objects 0, 1, 2
    q, v = module.query(x), module.value(x)
    flat = maps[0].flatten(1)  # (CH, 9)
    logits = q[:3] @ flat / CH**0.5  # (3 objects, 9 locations)
    if norm == "softmax":  # across the objects, separately at each location
        a = logits.softmax(0)
        expected = torch.einsum("nu,nc->cu", a, v[:3]).reshape(CH, 3, 3)
    else:
        a = logits.sigmoid()
        expected = (a.unsqueeze(1) * v[:3].unsqueeze(2)).mean(0).reshape(CH, 3, 3)
    assert torch.allclose(msg[0], expected, atol=1e-6)
    assert torch.allclose(att[:3].flatten(1), a, atol=1e-6)


def test_object_to_subgraph_attention_sums_to_one_over_objects_at_each_location():
    """The paper normalises across the objects of a subgraph at every location (no
    constraint along the spatial dimensions); normalising over the 5 x 5 locations of each
    link instead (the old bug) fails both checks."""
    torch.manual_seed(1)
    pairs = torch.tensor([[0, 1], [1, 2], [2, 0], [3, 4]])
    links = links_for(pairs, torch.tensor([0, 0, 1, 2]), [5], [3])
    x, maps = torch.randn(5, HIDDEN), torch.randn(3, CH, 5, 5)
    _, att = ObjectToSubgraph(HIDDEN, CH, "softmax")(x, maps, links)
    per_location = torch.zeros(3, 5, 5).index_add(0, links.sub_index, att)
    assert torch.allclose(per_location, torch.ones(3, 5, 5), atol=1e-6)
    # a link's map does not sum to 1 over the locations
    assert not torch.allclose(att.sum((1, 2)), torch.ones(len(att)), atol=1e-2)


@pytest.mark.parametrize("k", [1, 3])
def test_sri_summed_form_reduces_first_and_reads_out_linearly(k):
    """The earlier ``SRI_COMBINE: "sum"`` (the paper's concat: test_fnet_paper_forms.py)."""
    torch.manual_seed(0)
    variant = SRIVariant(kernel_size=k, combine="sum")
    sri = SpatialRelationInference(HIDDEN, CH, 3, 2, 7, variant, chunk_size=2)
    x, maps = torch.randn(4, HIDDEN), torch.randn(2, CH, 3, 3)
    pairs = torch.tensor([[0, 1], [1, 0], [2, 3]])
    out = sri(x, maps, pairs, torch.tensor([0, 0, 1]))
    assert out.shape == (3, 7) and sri.out_dim == 7
    # depth-wise: each channel convolved with its own kernel
    w_s, w_o = sri.subj_kernel(x[2]), sri.obj_kernel(x[3])
    g = sri.bottleneck_map(maps[1:2])  # bottleneck once per subgraph: (1, 2, 3, 3)
    ref = F.conv2d(g, w_s.reshape(2, 1, k, k), padding=k // 2, groups=2)
    assert torch.allclose(sri.depthwise(g, w_s[None]), ref, atol=1e-6)
    ref_o = F.conv2d(g, w_o.reshape(2, 1, k, k), padding=k // 2, groups=2)
    h = torch.relu(ref + ref_o + g)
    assert torch.allclose(out[2], sri.fc(h.flatten()), atol=1e-5)  # no ReLU: linear read-out
    out.sum().backward()
    for layer in (sri.subj_kernel, sri.obj_kernel, sri.bottleneck_map):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SRIVariant(kernel_size=2)


def test_sri_pre_paper_variant_kernel_first_extra_fc_and_shortcut():
    torch.manual_seed(0)
    pre_paper = SRIVariant(reduce_first=False, extra_fc=True, object_shortcut=True, combine="sum")
    sri = SpatialRelationInference(HIDDEN, CH, 3, 2, 7, pre_paper)
    x, maps = torch.randn(4, HIDDEN), torch.randn(2, CH, 3, 3)
    pairs = torch.tensor([[0, 1], [2, 3]])
    out = sri(x, maps, pairs, torch.tensor([0, 1]))
    assert out.shape == (2, 7 + 2 * HIDDEN) and sri.out_dim == 7 + 2 * HIDDEN
    assert torch.equal(out[:, 7 : 7 + HIDDEN], x[pairs[:, 0]])
    # pair 1 by hand: bottleneck over [F * w_s, F * w_o, F], ReLU, FC, ReLU
    f, w, w_o = maps[1], sri.subj_kernel(x[2]), sri.obj_kernel(x[3])
    h = sum(
        torch.einsum("bc,cij->bij", conv.weight[:, :, 0, 0], z)
        for conv, z in [
            (sri.bottleneck_subj, f * w[:, None, None]),
            (sri.bottleneck_obj, f * w_o[:, None, None]),
            (sri.bottleneck_map, f),
        ]
    )
    h = torch.relu(h + sri.bottleneck_map.bias[:, None, None])
    assert torch.allclose(out[1, :7], torch.relu(sri.fc(h.flatten())), atol=1e-5)


def make_model(**kw):
    torch.manual_seed(0)
    args = dict(
        obj_dim=OBJ_DIM, num_classes=C, in_features=["p2"], in_channels=CH, feature_strides=[4]
    )
    args.update(union_dim=0)  # F-Net reads no union-box features
    args.update(hidden_dim=HIDDEN, subgraph_dim=4, bottleneck_dim=2, rel_dim=REL, pool_size=3)
    args.update(num_mps=2)
    args.update(kw)
    return FactorizableNetContext(**args)


@pytest.fixture
def make_inputs(make_context_inputs):
    """Random inputs (every ordered pair of each image), no union features, and a (CH, 16,
    16) "p2" map (stride 4) per 64 x 64 image."""

    def make(num_objs, gt=False, seed=0):
        g = torch.Generator().manual_seed(1000 + seed)  # not the objects' random stream
        features = {"p2": torch.randn(len(num_objs), CH, 16, 16, generator=g)}
        sizes = [(64, 64)] * len(num_objs)
        return make_context_inputs(
            num_objs, **DIMS, gt=gt, seed=seed, box_size=15, features=features, image_sizes=sizes
        )

    return make


@pytest.mark.parametrize("gt", [False, True])
def test_context_shapes_backward_with_single_and_empty_images(make_inputs, gt):
    model = make_model()
    assert model.needs_union_features is False and model.pair_dim == REL
    inputs = make_inputs([4, 1, 0, 3], gt=gt)
    out = model(inputs)
    assert out.obj_logits.shape == (8, C) and out.obj_repr.shape == (8, HIDDEN)
    assert out.pair_features.shape == (18, REL)
    assert len(out.extras["num_subgraphs"]) == 4 and out.extras["num_subgraphs"][1:3] == [0, 0]
    (out.pair_features.sum() + out.obj_logits.sum()).backward()
    convs = model.subgraph_features.convs[0].weight.grad
    assert convs is not None and convs.abs().sum() > 0
    assert model.mps[0].to_subgraph.query.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("num_objs", [[1], [0, 1], [0]])
def test_context_without_pairs(make_inputs, num_objs):
    out = make_model()(make_inputs(num_objs))
    assert out.obj_logits.shape == (sum(num_objs), C)
    assert out.pair_features.shape == (0, REL)


def test_images_do_not_leak_into_each_other(make_inputs):
    model = make_model().eval()
    a, b = make_inputs([3, 4], seed=0), make_inputs([3, 4], seed=1)
    for field in ("obj_features", "obj_logits", "boxes"):
        getattr(b, field)[:3] = getattr(a, field)[:3]  # same first image
    b.features["p2"][0] = a.features["p2"][0]
    with torch.no_grad():
        out_a, out_b = model(a), model(b)
    assert torch.allclose(out_a.pair_features[:6], out_b.pair_features[:6], atol=1e-6)
    assert torch.allclose(out_a.obj_logits[:3], out_b.obj_logits[:3], atol=1e-6)
    assert not torch.allclose(out_a.pair_features[6:], out_b.pair_features[6:])


def test_config_build_reads_backbone_shapes(make_cfg):
    cfg = make_cfg("FactorizableNetContext", "sgcls")
    cfg.MODEL.SGG.FNET.NUM_MPS = 2
    assert backbone_feature_shapes(cfg, ["p2", "p5"]) == {"p2": (32, 4), "p5": (32, 32)}
    model = CONTEXT_REGISTRY.get("FactorizableNetContext")(cfg, 64, 32)
    assert len(model.mps) == 2 and model.pair_dim == cfg.MODEL.SGG.NUM_PREDICATES + 1
    assert model.sri.bottleneck_map.out_channels == cfg.MODEL.SGG.FNET.BOTTLENECK_DIM
    assert model.mps[0].to_subgraph.spatial_norm == "softmax"
    cfg.MODEL.SGG.FNET.SRI_EXTRA_FC = True
    cfg.MODEL.SGG.FNET.SRI_OBJECT_SHORTCUT = True
    cfg.MODEL.SGG.FNET.SRI_REDUCE_FIRST = False
    old = CONTEXT_REGISTRY.get("FactorizableNetContext")(cfg, 64, 32)
    assert old.pair_dim == 3 * cfg.MODEL.SGG.CONTEXT_HIDDEN_DIM and not old.sri.reduce_first
    with pytest.raises(KeyError, match=r"\['res9'\] are not backbone outputs"):
        backbone_feature_shapes(cfg, ["res9"])


def test_training_and_test_subgraphs_identical_for_the_same_boxes(make_inputs):
    """Training scores a sample of the pairs, test all of them: the subgraphs (and so each
    pair's subgraph, its map and its feature) must not depend on which pairs are scored."""
    model = make_model().eval()
    test = make_inputs([5, 4], seed=3)
    sample = torch.tensor([7, 0, 30, 12, 19])  # a few pairs of both images (20 + 12 pairs)
    train = replace(make_inputs([5, 4], seed=3), pairs=test.pairs[sample], num_pairs=[3, 2])
    with torch.no_grad():
        c_test, links_test, sub_test = model.cluster(test)
        c_train, links_train, sub_train = model.cluster(train)
        out_test, out_train = model(test), model(train)
    assert c_train.num_subgraphs == c_test.num_subgraphs
    assert torch.equal(c_train.boxes, c_test.boxes)
    assert torch.equal(links_train.obj_index, links_test.obj_index)
    assert torch.equal(links_train.sub_index, links_test.sub_index)
    assert torch.equal(sub_train, sub_test[sample])
    assert torch.allclose(out_train.pair_features, out_test.pair_features[sample], atol=1e-5)
    assert torch.allclose(out_train.obj_logits, out_test.obj_logits, atol=1e-5)
    # the ROI heads' all_pairs / pair_index (training) give the same subgraphs
    targets = TrainingTargets(all_pairs=test.pairs, num_all_pairs=test.num_pairs, pair_index=sample)
    train = replace(train, training=targets)
    assert torch.equal(model.cluster(train)[2], sub_test[sample])


def test_locate_pairs_and_candidates():
    cands, counts = all_candidate_pairs([3, 0, 2], "cpu")
    assert counts == [6, 0, 2] and cands.tolist()[-2:] == [[3, 4], [4, 3]]
    rows = locate_pairs(torch.tensor([[4, 3], [0, 2], [2, 1]]), cands, 5)
    assert torch.equal(cands[rows], torch.tensor([[4, 3], [0, 2], [2, 1]]))
    with pytest.raises(ValueError, match="not an ordered pair of distinct objects"):
        locate_pairs(torch.tensor([[1, 1]]), cands, 5)


@pytest.mark.parametrize("root", ["vg150", "synthetic"])
def test_fnet_configs_carry_the_paper_recipe(root):
    from sgg_d2.engine import load_config

    configs = Path(__file__).resolve().parents[2] / "configs" / root
    for mode in ("predcls", "sgcls", "sgdet"):
        (path,) = configs.glob(f"fnet_*_{mode}.yaml")
        cfg = load_config(str(path), [])
        f = cfg.MODEL.SGG.FNET
        assert f.NUM_MPS == 2 and f.SPATIAL_NORM == "softmax" and f.SRI_REDUCE_FIRST
        assert not f.SRI_EXTRA_FC and not f.SRI_OBJECT_SHORTCUT
        assert cfg.MODEL.SGG.USE_FREQUENCY_BIAS is False
        assert cfg.TEST.SGG.TRIPLET_NMS_THRESH == 0.4  # used in SGDet only
        if root == "vg150":
            assert (f.SUBGRAPH_DIM, f.BOTTLENECK_DIM, f.SUBGRAPH_POOL_SIZE) == (512, 256, 5)


@pytest.mark.parametrize("combine", ["sum", "concat"])
def test_sri_factorised_readout_equals_explicit_pair_maps(combine):
    """relu(g k) = relu(g) relu(k) + relu(-g) relu(-k): the per-subgraph read-out used for
    1 x 1 kernels gives exactly the read-out of the explicit per-pair maps."""
    torch.manual_seed(2)
    variant = SRIVariant(combine=combine)
    sri = SpatialRelationInference(HIDDEN, CH, 3, 4, 6, variant, chunk_size=3)
    x, maps = torch.randn(6, HIDDEN), torch.randn(4, CH, 3, 3)
    pairs = all_ordered_pairs(6)
    groups = torch.randint(0, 4, (len(pairs),))
    groups[:4] = torch.arange(4)
    readout = sri.factorised_readout if combine == "sum" else sri.factorised_concat_readout
    with torch.no_grad():
        g, w_s, w_o = sri.bottleneck_map(maps), sri.subj_kernel(x), sri.obj_kernel(x)
        fast = readout(g, w_s, w_o, pairs, groups)
        slow = sri.fc(sri.pair_maps(maps, g, w_s, w_o, pairs, groups).flatten(1))
    assert ((1 + w_s[pairs[:, 0]] + w_o[pairs[:, 1]]) < 0).any()  # both signs exercised
    assert torch.allclose(fast, slow, atol=1e-5)
