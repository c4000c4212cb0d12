"""VCTree: hand-checked trees, level-batched TreeLSTMs vs recursion, shapes, losses."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from sgg_d2.modeling.context import ContextInputs, build_context_model
from sgg_d2.modeling.context.tree_utils import (
    build_forest,
    lcrs_binary_tree,
    maximum_spanning_tree,
    sample_spanning_tree,
    tree_depths,
    tree_log_prob,
)
from sgg_d2.modeling.context.vctree import (
    BinaryTreeLSTM,
    TopDownTreeLSTM,
    VCTreeContext,
    recall_reward,
    same_image_pairs,
    symmetric_scores,
)
from sgg_d2.modeling.relation.predictor import RelationPredictor
from sgg_d2.structures import all_ordered_pairs

OBJ_DIM, UNION_DIM, HIDDEN, EMBED, C = 6, 5, 4, 3, 3

# Hand-made scores of 5 objects. Kruskal (largest first): 0-1 (.9), 0-3 (.8), 1-2 (.7),
# 1-4 (.6). Row sums: 2.0, 2.5, 1.1, 1.55, 1.25 -> root 1. Rooted tree: 1 -> {0, 2, 4},
# 0 -> {3}. Left-child right-sibling: left(1) = 0, right(0) = 2, right(2) = 4, left(0) = 3.
UPPER = {(0, 1): 0.9, (0, 2): 0.2, (0, 3): 0.8, (0, 4): 0.1, (1, 2): 0.7}
UPPER.update({(1, 3): 0.3, (1, 4): 0.6, (2, 3): 0.05, (2, 4): 0.15, (3, 4): 0.4})
SCORES = np.zeros((5, 5))
for (i, j), v in UPPER.items():
    SCORES[i, j] = SCORES[j, i] = v


def test_maximum_spanning_tree_by_hand():
    root, parent = maximum_spanning_tree(SCORES)
    assert root == 1
    assert parent.tolist() == [1, -1, 1, 0, 1]


def test_lcrs_binary_tree_by_hand():
    left, right, bparent = lcrs_binary_tree(np.array([1, -1, 1, 0, 1]), 1)
    assert left.tolist() == [3, 0, -1, -1, -1]
    assert right.tolist() == [2, -1, 4, -1, -1]
    assert bparent.tolist() == [1, -1, 0, 0, 2]
    assert tree_depths(bparent).tolist() == [1, 0, 2, 2, 3]


def test_tree_errors_name_the_problem():
    with pytest.raises(ValueError, match="symmetric"):
        maximum_spanning_tree(np.triu(SCORES))
    with pytest.raises(ValueError, match="one tree rooted at 1"):
        lcrs_binary_tree(np.array([1, -1, -1]), 1)
    with pytest.raises(ValueError, match="cycle"):
        tree_depths(np.array([-1, 2, 1]))


def forest_of_four_images():
    """Images of 5 (SCORES), 1, 0 and 2 objects -> N = 8, sentinel 8."""
    return build_forest([SCORES, np.zeros((1, 1)), np.zeros((0, 0)), np.full((2, 2), 0.3)], "cpu")


def test_forest_over_batch():
    f = forest_of_four_images()
    assert f.left.tolist() == [3, 0, 8, 8, 8, 8, 7, 8]
    assert f.right.tolist() == [2, 8, 4, 8, 8, 8, 8, 8]
    assert f.parent.tolist() == [1, 8, 0, 0, 2, 8, 8, 6]
    assert f.roots.tolist() == [1, 5, 6]  # the 2-object tie goes to the lower index
    assert [lv.tolist() for lv in f.levels] == [[1, 5, 6], [0, 7], [2, 3], [4]]
    every = torch.cat(f.levels).sort().values
    assert every.tolist() == list(range(8))  # each node exactly once


def test_empty_forest():
    f = build_forest([np.zeros((0, 0))], "cpu")
    assert f.num_nodes == 0 and f.levels == []
    assert BinaryTreeLSTM(2, 3)(torch.zeros(0, 2), f).shape == (0, 3)


def naive_bottom_up(lstm, x, left, right, node):
    if node < 0:
        return torch.zeros(1, lstm.hidden_dim), torch.zeros(1, lstm.hidden_dim)
    h_l, c_l = naive_bottom_up(lstm, x, left, right, left[node])
    h_r, c_r = naive_bottom_up(lstm, x, left, right, right[node])
    h, c = lstm.cell(x[node : node + 1], h_l, c_l, h_r, c_r)
    naive_bottom_up.out[node] = h[0]
    return h, c


def naive_top_down(lstm, x, children, node, state):
    h, c = lstm.cell(x[node : node + 1], state)
    naive_top_down.out[node] = h[0]
    for child in children[node]:
        naive_top_down(lstm, x, children, child, (h, c))


def test_level_batching_equals_recursion():
    torch.manual_seed(0)
    f = forest_of_four_images()
    n = f.num_nodes
    left = [v if v < n else -1 for v in f.left.tolist()]
    right = [v if v < n else -1 for v in f.right.tolist()]
    children = [[k for k in range(n) if f.parent[k] == p] for p in range(n)]
    x = torch.randn(n, 3, requires_grad=True)
    up, down = BinaryTreeLSTM(3, 4), TopDownTreeLSTM(3, 4)

    naive_bottom_up.out, naive_top_down.out = [None] * n, [None] * n
    for r in f.roots.tolist():
        naive_bottom_up(up, x, left, right, r)
        naive_top_down(down, x, children, r, (torch.zeros(1, 4), torch.zeros(1, 4)))
    ref = torch.cat([torch.stack(naive_bottom_up.out), torch.stack(naive_top_down.out)], 1)
    got = torch.cat([up(x, f), down(x, f)], 1)
    assert torch.allclose(got, ref, atol=1e-6)
    # The in-place level writes must also give the recursion's gradients.
    weights = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * weights).sum(), [x, *up.parameters()])
    g_got = torch.autograd.grad((got * weights).sum(), [x, *up.parameters()])
    for a, b in zip(g_got, g_ref):
        assert torch.allclose(a, b, atol=1e-6)
    # The root's bottom-up state depends on every node of its tree, the leaf's does not.
    assert not torch.allclose(ref[1, :4], up.cell(x[1:2], *[torch.zeros(1, 4)] * 4)[0][0])


def test_pair_helpers():
    assert same_image_pairs([2, 0, 3]).tolist() == [
        [0, 1], [1, 0], [2, 3], [2, 4], [3, 2], [3, 4], [4, 2], [4, 3]
    ]  # fmt: skip
    mats = symmetric_scores(np.array([0.2, 0.4, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]), [2, 0, 3])
    assert np.allclose(mats[0], [[0, 0.3], [0.3, 0]])
    assert mats[1].shape == (0, 0)
    assert np.allclose(mats[2], [[0, 0.3, 0.6], [0.3, 0, 0.85], [0.6, 0.85, 0]])


def make_inputs(num_objs, gt=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(num_objs)
    offsets = torch.tensor([0] + list(num_objs[:-1])).cumsum(0)
    pairs = torch.cat([all_ordered_pairs(k) + o for k, o in zip(num_objs, offsets)])
    xy = torch.rand(n, 2, generator=g) * 0.5
    wh = torch.rand(n, 2, generator=g) * 0.4 + 0.05
    norm = torch.cat([xy, xy + wh], 1)
    layout = torch.cat([norm, xy + wh / 2, wh, wh.prod(1, keepdim=True)], 1)
    return ContextInputs(
        obj_features=torch.randn(n, OBJ_DIM, generator=g),
        obj_logits=torch.randn(n, C, generator=g),
        box_layout=layout,
        boxes=norm * 100,
        num_objs=list(num_objs),
        pairs=pairs,
        num_pairs=[k * (k - 1) for k in num_objs],
        union_features=torch.randn(len(pairs), UNION_DIM, generator=g),
        gt_labels=torch.randint(0, C, (n,), generator=g) if gt else None,
    )


def make_model(weight=1.0, tree_learning="supervised", **kwargs):
    torch.manual_seed(0)
    return VCTreeContext(
        obj_dim=OBJ_DIM,
        union_dim=UNION_DIM,
        num_classes=C,
        embed_dim=EMBED,
        hidden_dim=HIDDEN,
        score_loss_weight=weight,
        tree_learning=tree_learning,
        **kwargs,
    )


@pytest.mark.parametrize("num_objs", [[4, 1, 0, 3], [0], [1], [0, 0]])
@pytest.mark.parametrize("gt", [False, True])
def test_shapes(num_objs, gt):
    out = make_model()(make_inputs(num_objs, gt=gt))
    n, r = sum(num_objs), sum(k * (k - 1) for k in num_objs)
    assert out.obj_logits.shape == (n, C)
    assert out.pair_features.shape == (r, UNION_DIM)
    assert out.extras["pair_score_logits"].shape == (r,)
    forest = out.extras["forest"]
    assert sorted(torch.cat(forest.levels).tolist() if n else []) == list(range(n))
    assert len(forest.roots) == sum(k > 0 for k in num_objs)


def test_tree_is_the_maximum_tree_of_the_scores():
    model, inputs = make_model(), make_inputs([4, 3])
    out = model(inputs)
    logits = out.extras["pair_score_logits"].detach()  # inputs.pairs = every pair here
    mats = symmetric_scores(torch.sigmoid(logits).numpy(), inputs.num_objs)
    root, parent = maximum_spanning_tree(mats[0])
    assert out.extras["forest"].roots[0] == root
    assert root == int(np.argmax(mats[0].sum(1)))
    assert out.extras["forest"].parent[:4].tolist() == [
        7 if p < 0 else p for p in lcrs_binary_tree(parent, root)[2].tolist()
    ]


def test_gradients():
    model, inputs = make_model(), make_inputs([4, 1, 3])
    out = model(inputs)
    (out.obj_logits.square().sum() + out.pair_features.square().sum()).backward()
    for name, p in model.named_parameters():
        if name.startswith("scorer."):  # the tree is discrete: no relation gradient
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    model.zero_grad(set_to_none=True)
    labels = torch.zeros(len(inputs.pairs), dtype=torch.long)
    labels[[0, 5, 13]] = torch.tensor([1, 3, 2])
    model.losses(inputs, model(inputs), labels, None)["loss_vctree_score"].backward()
    for name, p in model.scorer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.obj_ctx.up.input_proj.weight.grad is None


def test_score_loss_by_hand():
    inputs = make_inputs([3])
    labels = torch.tensor([0, 2, 0, 0, 1, 0])  # labels 1 and 2 are positives
    out = make_model(weight=2.0)(inputs)
    p = torch.sigmoid(out.extras["pair_score_logits"])
    y = torch.tensor([0.0, 1, 0, 0, 1, 0])
    expected = -2.0 * (y * p.log() + (1 - y) * (1 - p).log()).mean()
    loss = make_model(weight=2.0).losses(inputs, out, labels, None)["loss_vctree_score"]
    assert torch.allclose(loss, expected, atol=1e-6)
    empty = make_inputs([1])
    zero = make_model().losses(empty, make_model()(empty), torch.zeros(0, dtype=torch.long), None)
    assert zero["loss_vctree_score"].item() == 0.0
    with pytest.raises(ValueError, match="expected one label per pair"):
        make_model().losses(inputs, out, labels[:4], None)


def test_predcls_ignores_detector_logits():
    model, a = make_model(), make_inputs([4, 2], gt=True)
    b = replace(
        make_inputs([4, 2], gt=True),
        obj_logits=torch.randn_like(a.obj_logits),
        **{f: getattr(a, f) for f in ("obj_features", "box_layout", "union_features", "gt_labels")},
    )
    with torch.no_grad():
        out_a, out_b = model(a), model(b)
    assert torch.equal(out_a.obj_logits, out_b.obj_logits)
    assert torch.equal(out_a.pair_features, out_b.pair_features)


def test_built_from_config(sgg_cfg, build_context):
    cfg = sgg_cfg
    options = {"MODEL.SGG.VCTREE.SCORE_LOSS_WEIGHT": 0.5, "MODEL.SGG.CONTEXT_HIDDEN_DIM": 7}
    options["MODEL.ROI_HEADS.NUM_CLASSES"] = C
    model = build_context(cfg, VCTreeContext, OBJ_DIM, UNION_DIM, options)
    assert model.needs_union_features
    assert model.score_loss_weight == 0.5 and model.pair_dim == UNION_DIM
    assert model.obj_ctx.out_dim == 14 and model.decoder.out_features == C
    assert model.tree_learning == "hybrid"  # the paper's default
    cfg.MODEL.SGG.VCTREE.TREE_LEARNING = "greedy"
    with pytest.raises(ValueError, match="TREE_LEARNING 'greedy'"):
        build_context_model(cfg, OBJ_DIM, UNION_DIM)


# ----------------------------------------------------------------- hybrid learning
def test_sampled_tree_log_prob_by_hand():
    s = torch.tensor([[0.0, 0.6, 0.2], [0.6, 0.0, 0.4], [0.2, 0.4, 0.0]], requires_grad=True)
    # Root 0; step 1: edges 0-1 (.6), 0-2 (.2) -> pick 1 with .6/.8; step 2: edges 0-2 (.2),
    # 1-2 (.4) -> pick 2 from 1 with .4/.6.
    parent, order = np.array([-1, 0, 1]), np.array([0, 1, 2])
    logp = tree_log_prob(s, parent, order)
    assert torch.isclose(logp, torch.log(torch.tensor(0.6 / 0.8 * 0.4 / 0.6)))
    logp.backward()
    assert s.grad.abs().sum() > 0
    # Sampling frequencies follow the policy: P(parent(2) = 1) = .6/.8 * .4/.6 = .5 (if 2
    # joins first, its parent is 0).
    torch.manual_seed(0)
    hits = sum(sample_spanning_tree(s.detach().numpy(), 0)[0][2] == 1 for _ in range(2000))
    assert abs(hits / 2000 - 0.5) < 0.04


def test_recall_reward_by_hand():
    # Image 0: 3 pairs, positives 0 (label 1) and 2 (label 2); image 1: no positive.
    logits = torch.log(
        torch.tensor([[0.1, 0.8, 0.1], [0.05, 0.05, 0.9], [0.5, 0.3, 0.2], [0.2, 0.4, 0.4]])
    )
    labels = torch.tensor([1, 0, 2, 0])
    # top-2 of image 0 by best predicate prob: pair 1 (.9), pair 0 (.8); pair 0 predicts
    # predicate 0 = label 1 - 1 -> 1 hit of 2 positives.
    assert torch.allclose(recall_reward(logits, labels, [3, 1], 2), torch.tensor([0.5, 0.0]))
    # top-3: pair 2 predicts predicate 0 but its label is 2 -> still 1 hit.
    assert torch.allclose(recall_reward(logits, labels, [3, 1], 3), torch.tensor([0.5, 0.0]))


def hybrid_setup(num_objs=(6, 5)):
    inputs = make_inputs(list(num_objs))
    model = make_model(tree_learning="hybrid", rl_loss_weight=1.0, reward_topk=30)
    torch.manual_seed(3)
    predictor = RelationPredictor(model.pair_dim, 4)
    with torch.no_grad():  # sharp predictions: the tree's effect on the features shows
        predictor.classifier.weight.mul_(300.0)
    g = torch.Generator().manual_seed(5)
    labels = torch.randint(1, 5, (len(inputs.pairs),), generator=g)
    labels[torch.rand(len(labels), generator=g) < 0.6] = 0
    return model, inputs, labels, predictor


def test_reinforce_term_trains_the_score_network():
    model, inputs, _, predictor = hybrid_setup()
    model.score_loss_weight = 0.0  # only the REINFORCE term can reach the scorer
    torch.manual_seed(0)
    out = model(inputs)
    # Labels = the greedy tree's own predictions: its recall is 1, a sampled tree that
    # changes any prediction scores less (negative advantage).
    with torch.no_grad():
        lab = out.obj_logits.argmax(1)
        rel = predictor(out.pair_features, lab[inputs.pairs[:, 0]], lab[inputs.pairs[:, 1]])
    labels = rel[:, 1:].argmax(1) + 1
    losses = model.losses(inputs, out, labels, predictor)
    assert set(losses) == {"loss_vctree_score", "loss_vctree_rl"}
    assert out.extras["tree_log_prob"].shape == (2,)
    advantage = out.extras["advantage"]
    assert (advantage <= 0).all() and advantage.abs().sum() > 0
    losses["loss_vctree_rl"].backward()
    for name, p in model.scorer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.obj_ctx.up.input_proj.weight.grad is None  # only the tree policy
    expected = -(advantage * out.extras["tree_log_prob"].detach()).mean()
    assert torch.isclose(losses["loss_vctree_rl"].detach(), expected)


def test_supervised_option_is_the_score_loss_only_and_same_outputs():
    model, inputs, labels, predictor = hybrid_setup()
    sup = make_model(tree_learning="supervised")
    sup.load_state_dict(model.state_dict())
    rng = torch.get_rng_state()
    out_sup = sup(inputs)
    assert torch.equal(torch.get_rng_state(), rng)  # no sampling
    assert set(sup.losses(inputs, out_sup, labels, None)) == {"loss_vctree_score"}
    out_hyb = model(inputs)
    assert torch.allclose(out_sup.obj_logits, out_hyb.obj_logits, atol=1e-6)
    assert torch.allclose(out_sup.pair_features, out_hyb.pair_features, atol=1e-6)
    # At test time hybrid samples nothing either.
    model.eval()
    assert "tree_log_prob" not in model(inputs).extras
    with pytest.raises(ValueError, match="relation_predictor"):
        model.train()
        model.losses(inputs, model(inputs), labels, None)
