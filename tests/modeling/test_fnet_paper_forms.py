"""Factorizable Net, issue 29 items 7-8: the paper's SMP subgraph -> object message (pooled
subgraph vectors, attention over the linked subgraphs) and the paper's concatenating SRI."""

import pytest
import torch
import torch.nn.functional as F

from sgg_d2.modeling.context.fnet_modules import (
    PooledSubgraphToObject,
    SpatialMessagePassing,
    SpatialRelationInference,
    SRIVariant,
    SubgraphToObject,
)
from sgg_d2.modeling.context.fnet_subgraph import SubgraphClusters, subgraph_incidence

H, C, P = 4, 3, 5


def hand_links():
    """Two images of 3 objects. Image 1: pair (0, 1) in subgraph 0, (0, 2) and (2, 1) in
    subgraph 1, so object 0 and 1 link to subgraphs 0 and 1, object 2 to 1. Image 2: pair
    (3, 4) in subgraph 2; object 5 is in no subgraph."""
    pairs = torch.tensor([[0, 1], [0, 2], [2, 1], [3, 4]])
    clusters = SubgraphClusters(torch.tensor([0, 1, 1, 2]), torch.zeros(3, 4), None, [2, 1])
    return subgraph_incidence(pairs, clusters, [3, 3])


def test_pooled_attention_over_linked_subgraphs_sums_to_one_by_hand():
    torch.manual_seed(0)
    links = hand_links()
    module = PooledSubgraphToObject(H, C)
    x, maps = torch.randn(6, H), torch.randn(3, C, P, P)
    update, weight = module(x, maps, links)
    assert update.shape == (6, H) and weight.shape == (len(links.obj_index),)
    per_object = torch.zeros(6).index_add(0, links.obj_index, weight)
    assert torch.allclose(per_object[:5], torch.ones(5))  # each linked object's sum is 1
    assert per_object[5] == 0 and torch.equal(update[5], torch.zeros(H))  # no subgraph
    # object 0 (subgraphs 0 and 1) by hand: softmax_k(o . FC_a(ReLU s_k)), o' - o by hand
    s = maps.mean(dim=(2, 3))
    logits = torch.stack([x[0] @ module.attend(torch.relu(s[k])) for k in (0, 1)])
    a = logits.softmax(0)
    rows = links.obj_index == 0
    assert links.sub_index[rows].tolist() == [0, 1]
    torch.testing.assert_close(weight[rows], a)
    summary = a[0] * s[0] + a[1] * s[1]
    torch.testing.assert_close(update[0], module.update(torch.relu(summary)))


def test_paper_round_adds_the_update_without_a_relu_and_spatial_round_is_the_earlier():
    torch.manual_seed(0)
    links = hand_links()
    x, maps = torch.randn(6, H), torch.randn(3, C, P, P)
    paper = SpatialMessagePassing(H, C, C)
    assert isinstance(paper.to_object, PooledSubgraphToObject)
    torch.nn.init.zeros_(paper.to_object.update.weight)
    torch.nn.init.zeros_(paper.to_object.update.bias)
    new_x, _ = paper(x, maps, links)
    assert torch.equal(new_x, x) and bool((new_x < 0).any())  # o' = o + 0: no ReLU
    spatial = SpatialMessagePassing(H, C, C, object_update="spatial")
    assert isinstance(spatial.to_object, SubgraphToObject)
    assert bool((spatial(x, maps, links)[0] >= 0).all())  # relu(x + W m)
    with pytest.raises(ValueError, match="SMP_OBJECT_UPDATE"):
        SpatialMessagePassing(H, C, C, object_update="mean")


@pytest.mark.parametrize("k", [1, 3])
def test_sri_concatenates_subject_subgraph_and_object_maps(k):
    torch.manual_seed(0)
    b, out_dim = 2, 7
    sri = SpatialRelationInference(H, C, 3, b, out_dim, SRIVariant(kernel_size=k))
    assert sri.fc.in_features == 3 * b * 9  # one read-out weight per part
    x, maps = torch.randn(4, H), torch.randn(2, C, 3, 3)
    pairs, groups = torch.tensor([[0, 1], [2, 3]]), torch.tensor([0, 1])
    out = sri(x, maps, pairs, groups)
    assert out.shape == (2, out_dim)
    g = sri.bottleneck_map(maps[1:2])
    w_s, w_o = sri.subj_kernel(x[2]), sri.obj_kernel(x[3])
    s_i = F.conv2d(g, w_s.reshape(b, 1, k, k), padding=k // 2, groups=b)
    s_j = F.conv2d(g, w_o.reshape(b, 1, k, k), padding=k // 2, groups=b)
    h = torch.relu(torch.cat([s_i, g, s_j], dim=1))  # [S(i); S_k; S(j)]
    torch.testing.assert_close(out[1], sri.fc(h.flatten()), atol=1e-5, rtol=1e-5)
    summed = SpatialRelationInference(H, C, 3, b, out_dim, SRIVariant(kernel_size=k, combine="sum"))
    assert summed.fc.in_features == b * 9
    with pytest.raises(ValueError, match="SRI_COMBINE"):
        SRIVariant(combine="max")


def test_kernel_first_sri_concatenates_the_bottlenecked_parts():
    torch.manual_seed(0)
    sri = SpatialRelationInference(H, C, 3, 2, 5, SRIVariant(reduce_first=False))
    x, maps = torch.randn(2, H), torch.randn(1, C, 3, 3)
    out = sri(x, maps, torch.tensor([[0, 1]]), torch.tensor([0]))
    f = maps[0:1]
    s_i = sri.bottleneck_subj(f * sri.subj_kernel(x[0])[None, :, None, None])
    s_j = sri.bottleneck_obj(f * sri.obj_kernel(x[1])[None, :, None, None])
    h = torch.relu(torch.cat([s_i, sri.bottleneck_map(f), s_j], dim=1))
    torch.testing.assert_close(out[0], sri.fc(h.flatten()), atol=1e-5, rtol=1e-5)


def test_config_builds_the_paper_forms_by_default_and_the_earlier_ones_by_flag(make_cfg):
    from sgg_d2.modeling.context import build_context_model

    cfg = make_cfg("FactorizableNetContext", "sgcls")
    f = cfg.MODEL.SGG.FNET
    f.SUBGRAPH_DIM, f.BOTTLENECK_DIM = 8, 4
    model = build_context_model(cfg, 16, cfg.MODEL.SGG.UNION_DIM)
    assert all(isinstance(m.to_object, PooledSubgraphToObject) for m in model.mps)
    assert model.sri.combine == "concat"
    f.SMP_OBJECT_UPDATE, f.SRI_COMBINE = "spatial", "sum"
    model = build_context_model(cfg, 16, cfg.MODEL.SGG.UNION_DIM)
    assert all(isinstance(m.to_object, SubgraphToObject) for m in model.mps)
    assert model.sri.combine == "sum"
