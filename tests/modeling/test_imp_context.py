"""IMP context: shapes, gradients, hand-checked messages, isolation and equivariance."""

from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch

from sgg_d2.modeling.context import build_context_model
from sgg_d2.modeling.context.imp import IMPContext, edge_messages, node_messages
from sgg_d2.structures import all_ordered_pairs

OBJ_DIM, UNION_DIM, HIDDEN, C = 6, 5, 4, 3
DIMS = {"obj_dim": OBJ_DIM, "union_dim": UNION_DIM, "num_classes": C}  # inputs and model


@pytest.fixture
def make_inputs(make_context_inputs):
    """Random inputs; by default every ordered pair of each image (global indices)."""
    return partial(make_context_inputs, **DIMS)


def make_model(num_iterations=2, reduce="sum"):
    torch.manual_seed(0)
    return IMPContext(**DIMS, hidden_dim=HIDDEN, num_iterations=num_iterations, reduce=reduce)


@pytest.mark.parametrize("gt", [False, True])
def test_shapes_with_single_and_empty_images(make_inputs, gt):
    inputs = make_inputs([4, 1, 0, 3], gt=gt)
    out = make_model()(inputs)
    assert out.obj_logits.shape == (8, C)
    assert out.pair_features.shape == (12 + 6, HIDDEN)
    assert torch.isfinite(out.obj_logits).all() and torch.isfinite(out.pair_features).all()


@pytest.mark.parametrize("num_objs", [[0], [1, 0], [0, 0]])
def test_no_pairs_and_no_objects(make_inputs, num_objs):
    out = make_model()(make_inputs(num_objs))
    assert out.obj_logits.shape == (sum(num_objs), C)
    assert out.pair_features.shape == (0, HIDDEN)


def test_gradients_reach_grus_and_gates(make_inputs):
    model = make_model()
    out = model(make_inputs([3, 2]))
    (out.obj_logits.square().sum() + out.pair_features.square().sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_messages_by_hand():
    h_node = torch.tensor([[1.0, 0], [0, 2], [3, 3], [5, 5]])  # node 3 has no edge
    h_edge = torch.tensor([[1.0, 1], [2, 0], [0, 4]])
    pairs = torch.tensor([[0, 1], [1, 0], [0, 2]])

    def half(z):  # sigmoid(0) = 0.5: every edge weighted by one half
        return torch.zeros(len(z), 1)

    # node 0: subject of e0, e2, object of e1; node 1: subject of e1, object of e0; node 2:
    # object of e2.
    expected = torch.tensor([[1.5, 2.5], [1.5, 0.5], [0, 2], [0, 0]])
    assert torch.equal(node_messages(h_node, h_edge, pairs, half, half), expected)
    mean = node_messages(h_node, h_edge, pairs, half, half, reduce="mean")
    assert torch.allclose(mean, expected / torch.tensor([[3.0], [2], [1], [1]]))
    # edge message = (h_subject + h_object) / 2
    expected_edge = torch.tensor([[0.5, 1], [0.5, 1], [2, 1.5]])
    assert torch.equal(edge_messages(h_node, h_edge, pairs, half, half), expected_edge)


def test_messages_match_loop_with_learned_gates():
    torch.manual_seed(1)
    h_node, h_edge = torch.randn(4, 3), torch.randn(5, 3)
    pairs = torch.tensor([[0, 1], [1, 0], [2, 1], [0, 2], [2, 0]])
    gs, go = torch.nn.Linear(6, 1), torch.nn.Linear(6, 1)
    expected = torch.zeros(4, 3)
    for e, (s, o) in enumerate(pairs.tolist()):
        expected[s] += torch.sigmoid(gs(torch.cat([h_node[s], h_edge[e]]))) * h_edge[e]
        expected[o] += torch.sigmoid(go(torch.cat([h_node[o], h_edge[e]]))) * h_edge[e]
    assert torch.allclose(node_messages(h_node, h_edge, pairs, gs, go), expected, atol=1e-6)
    for e, (s, o) in enumerate(pairs.tolist()):
        ref = torch.sigmoid(gs(torch.cat([h_node[s], h_edge[e]]))) * h_node[s]
        ref = ref + torch.sigmoid(go(torch.cat([h_node[o], h_edge[e]]))) * h_node[o]
        got = edge_messages(h_node, h_edge, pairs, gs, go)[e]
        assert torch.allclose(got, ref, atol=1e-6)


def test_isolated_object_ignores_other_objects(make_inputs):
    # Image of 4 objects where object 0 is in no pair: one round gives it a zero message.
    pairs = torch.tensor([[1, 2], [2, 3], [3, 1]])
    a = make_inputs([4], pairs=pairs, seed=0)
    b = make_inputs([4], pairs=pairs, seed=1)
    b.obj_features[0] = a.obj_features[0]
    model = make_model(num_iterations=1)
    with torch.no_grad():
        out_a, out_b = model(a), model(b)
        h0 = model.node_gru(model.obj_proj(a.obj_features[:1]))
        expected = model.classifier(model.node_gru(torch.zeros_like(h0), h0))
    assert torch.allclose(out_a.obj_logits[0], expected[0], atol=1e-6)
    assert torch.allclose(out_a.obj_logits[0], out_b.obj_logits[0], atol=1e-6)
    assert not torch.allclose(out_a.obj_logits[1], out_b.obj_logits[1], atol=1e-3)
    # Zero rounds: the state is the GRU's first one; one round moves it (zero input).
    with torch.no_grad():
        zero_rounds = make_model(num_iterations=0)(a).obj_logits[0]
    assert torch.allclose(zero_rounds, model.classifier(h0)[0], atol=1e-6)
    assert not torch.allclose(zero_rounds, out_a.obj_logits[0], atol=1e-4)


def test_permutation_equivariance(make_inputs):
    inputs = make_inputs([5])
    perm = torch.tensor([3, 0, 4, 1, 2])  # new object k is old object perm[k]
    inv = torch.argsort(perm)
    pair_perm = torch.randperm(len(inputs.pairs), generator=torch.Generator().manual_seed(0))
    permuted = replace(
        make_inputs([5]),
        obj_features=inputs.obj_features[perm],
        pairs=inv[inputs.pairs[pair_perm]],
        union_features=inputs.union_features[pair_perm],
    )
    model = make_model(num_iterations=2)
    with torch.no_grad():
        out, out_p = model(inputs), model(permuted)
    assert torch.allclose(out_p.obj_logits, out.obj_logits[perm], atol=1e-5)
    assert torch.allclose(out_p.pair_features, out.pair_features[pair_perm], atol=1e-5)


def test_built_from_config(sgg_cfg, build_context):
    options = {"MODEL.SGG.IMP.NUM_ITERATIONS": 3, "MODEL.SGG.CONTEXT_HIDDEN_DIM": 7}
    options["MODEL.ROI_HEADS.NUM_CLASSES"] = C
    model = build_context(sgg_cfg, IMPContext, OBJ_DIM, UNION_DIM, options)
    assert model.needs_union_features
    assert model.num_iterations == 3 and model.pair_dim == 7
    assert model.classifier.out_features == C


def test_bad_arguments_and_inputs(make_inputs, union_feature_errors):
    with pytest.raises(ValueError, match="reduce"):
        make_model(reduce="max")
    with pytest.raises(ValueError, match="num_iterations"):
        make_model(num_iterations=-1)
    union_feature_errors(make_model(), make_inputs([3]))


def test_mean_messages_keep_the_training_scale_on_all_test_pairs():
    """~64 sampled training pairs vs all N(N-1) test pairs of the same 30 objects: with the
    default "mean" the node messages have the same scale; the paper's sum grows with the
    degree (here ~13x), so the GRUs would see inputs at test they never saw in training."""
    torch.manual_seed(0)
    n, h = 30, 8
    h_node = torch.randn(n, h)
    test_pairs = all_ordered_pairs(n)  # 870 pairs: 58 edges per node
    h_edge = torch.randn(len(test_pairs), h) + 1.0  # edge states with a non-zero mean
    keep = torch.randperm(len(test_pairs))[:64]  # the training sample: ~4 edges per node
    gates = torch.nn.Linear(2 * h, 1), torch.nn.Linear(2 * h, 1)

    def scale(reduce, rows):
        msg = node_messages(h_node, h_edge[rows], test_pairs[rows], *gates, reduce=reduce)
        has_edge = torch.bincount(test_pairs[rows].reshape(-1), minlength=n) > 0
        return msg[has_edge].norm(dim=1).mean()

    everything = torch.arange(len(test_pairs))
    with torch.no_grad():
        ratio_mean = scale("mean", everything) / scale("mean", keep)
        ratio_sum = scale("sum", everything) / scale("sum", keep)
    assert 0.7 < ratio_mean < 1.4
    assert ratio_sum > 5


def test_default_reduce_and_vg150_iterations(sgg_cfg):
    cfg = sgg_cfg
    assert cfg.MODEL.SGG.IMP.MESSAGE_REDUCE == "mean"
    cfg.merge_from_file(str(Path(__file__).parents[2] / "configs/vg150/imp_X101_FPN_sgcls.yaml"))
    assert cfg.MODEL.SGG.IMP.NUM_ITERATIONS == 2  # Xu et al. 2017
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = C
    model = build_context_model(cfg, OBJ_DIM, UNION_DIM)
    assert model.reduce == "mean" and model.num_iterations == 2
    assert IMPContext.paper_frequency_bias is False
