"""TDE (``relation/causal.py``): fusion and effects on hand-computed cases, the moving
averages (training only, bias-corrected, saved), the counterfactual pass on the averaged
inputs, every context model with pair features, the configs and the ablate variant form,
and a synthetic TDE model that trains, resumes exactly and evaluates."""

import dataclasses
import math

import pytest
import torch
from detectron2.modeling import build_model
from engine_support import CPU, NARROW, metrics_rows, model_weights, schedule, train_net
from tiny_configs import sgg_cfg

from sgg_d2.modeling.context import ContextOutputs
from sgg_d2.modeling.context.motifs import MotifsContext
from sgg_d2.modeling.relation.causal import CausalPredictor, causal_effect, fuse
from tools import _ablate_lib as ablate

P = "roi_heads.relation_predictor."

# ---- fusion and effects, by hand ----------------------------------------------------------


def test_sum_and_gate_fusion_hand_computed():
    ctx = torch.tensor([[1.0, 2.0, -1.0], [4.0, -2.0, 0.5]])
    vis = torch.tensor([[0.0, 1.0, -1.0], [math.log(3.0), 0.0, 0.0]])
    freq = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, -math.log(3.0)]])
    gate = torch.tensor([[-1.0, -1.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(
        fuse(ctx, vis, freq), torch.tensor([[2.0, 3.0, -1.0], [5.0986, -2.0, -0.5986]]), atol=1e-4
    )
    # gate: ctx * sigmoid(vis + freq + gate); sigmoid(0) = 1/2, sigmoid(+-log 3) = 3/4, 1/4
    expected = torch.tensor([[0.5, 1.0, -0.5], [3.0, -1.0, 0.125]])
    assert torch.allclose(fuse(ctx, vis, freq, gate), expected, atol=1e-6)
    # a missing branch is 0
    assert torch.equal(fuse(ctx, 0, freq), ctx + freq)


def test_effects_hand_computed():
    factual, fixed, free = (
        torch.tensor([[3.0, 1.0]]),
        torch.tensor([[1.0, 1.0]]),
        torch.tensor([[0.0, 2.0]]),
    )
    assert causal_effect("none", factual) is factual
    assert torch.equal(causal_effect("TDE", factual, fixed, free), torch.tensor([[2.0, 0.0]]))
    assert torch.equal(causal_effect("NIE", factual, fixed, free), torch.tensor([[1.0, -1.0]]))
    assert torch.equal(causal_effect("TE", factual, fixed, free), torch.tensor([[3.0, -1.0]]))
    with pytest.raises(ValueError, match="MODEL.SGG.CAUSAL.EFFECT_TYPE is 'tde'"):
        causal_effect("tde", factual, fixed, free)


def hand_context(inputs):
    """A context whose pair feature is the subject's feature plus its label times (1, 1);
    labels: the given ones, else the arg-max of the class logits."""
    labels = inputs.gt_labels if inputs.gt_labels is not None else inputs.obj_logits.argmax(1)
    subj = inputs.pairs[:, 0]
    pair = inputs.obj_features[subj] + labels[subj, None].float()
    return ContextOutputs(obj_logits=inputs.obj_logits, pair_features=pair)


def hand_predictor(make_context_inputs):
    """2 classes, 1 predicate (P + 1 = 2), identity context branch, visual branch (1, -1),
    frequency rows (0, 1) for (0, 1) and (0, 5) for (1, 1); averages from one training batch
    with momentum 1: features (1, 2), class distribution (1/4, 3/4)."""
    freq = torch.ones(2, 2, 2)
    predictor = CausalPredictor(
        pair_dim=2, union_dim=1, obj_dim=2, num_classes=2, num_predicates=1, freq_tensor=freq,
        momentum=1.0,
    )  # fmt: skip
    with torch.no_grad():
        predictor.classifier.weight.copy_(torch.eye(2))
        predictor.classifier.bias.zero_()
        predictor.visual.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        predictor.visual.bias.zero_()
        predictor.freq_bias.table.weight.copy_(torch.tensor([[0, 0], [0, 1], [0, 0], [0, 5.0]]))
    batch = make_context_inputs([2], 2, 1, 2, pairs=torch.tensor([[0, 1]]))
    batch = dataclasses.replace(
        batch,
        obj_features=torch.tensor([[2.0, 0.0], [0.0, 4.0]]),
        obj_logits=torch.tensor([[0.0, 0.0], [-50.0, 50.0]]),  # (1/2, 1/2), (0, 1)
    )
    predictor.train().update_averages(batch)
    return predictor.eval(), batch


@pytest.mark.parametrize(
    "effect, sgcls, expected",
    [
        # factual (5, -2) = ctx (2, 0) + vis (3, -3) + freq(0, 1) (0, 1);
        # labels kept: ctx (1, 2) -> (4, 0); labels free (1, 1): ctx (2, 3), freq (0, 5) -> (5, 5)
        ("TDE", True, [1.0, -2.0]),
        ("NIE", True, [-1.0, -5.0]),
        ("TE", True, [0.0, -7.0]),
        ("none", True, [5.0, -2.0]),
        # PredCls: the labels are given, not caused by X: z_bar = z, NIE = 0, TE = TDE
        ("TDE", False, [1.0, -2.0]),
        ("NIE", False, [0.0, 0.0]),
        ("TE", False, [1.0, -2.0]),
    ],
)
def test_each_effect_on_a_hand_made_case(make_context_inputs, effect, sgcls, expected):
    predictor, batch = hand_predictor(make_context_inputs)
    labels = torch.tensor([0, 1])
    inputs = dataclasses.replace(
        batch,
        obj_logits=torch.tensor([[5.0, 0.0], [0.0, 5.0]]),
        union_features=torch.tensor([[3.0]]),
        gt_labels=None if sgcls else labels,
    )
    predictor.effect_type = effect
    out = hand_context(inputs)
    got = predictor.predict(inputs, out, labels, hand_context)
    assert torch.allclose(got, torch.tensor([expected]), atol=1e-5)
    assert int(predictor.num_updates) == 1, "no update at inference"


# ---- the counterfactual pass ---------------------------------------------------------------


class Recorder(torch.nn.Module):
    """A context model that records the inputs of each call."""

    def __init__(self, context):
        super().__init__()
        self.context, self.calls = context, []

    def forward(self, inputs):
        self.calls.append(inputs)
        return self.context(inputs)


def test_counterfactual_pass_uses_the_averaged_inputs(make_context_inputs, build_context, sgg_cfg):
    """Two images; changing image 1's context inputs changes its TDE logits by exactly its
    factual context branch: the counterfactual pass sees the averages, the same pairs and the
    factual labels, and image 0 is untouched."""
    torch.manual_seed(0)
    n = 5
    sgg_cfg.MODEL.ROI_HEADS.NUM_CLASSES = n
    for key, v in (("EMBED_DIM", 8), ("CONTEXT_HIDDEN_DIM", 8)):
        sgg_cfg.MODEL.SGG[key] = v
    context = build_context(sgg_cfg, MotifsContext, 6, 5, {}).eval()
    predictor = CausalPredictor(
        pair_dim=context.pair_dim, union_dim=5, obj_dim=6, num_classes=n, num_predicates=3,
        freq_tensor=torch.rand(n, n, 4), effect_type="TDE",
    )  # fmt: skip
    predictor.train().update_averages(make_context_inputs([4, 3], 6, 5, n, seed=1))
    predictor.eval()
    a = make_context_inputs([3, 3], 6, 5, n, gt=True, seed=2)
    rows = torch.arange(3, 6)
    b = dataclasses.replace(
        a,
        obj_features=a.obj_features.index_add(0, rows, torch.randn(3, 6)),
        box_layout=a.box_layout.index_add(0, rows, torch.rand(3, 9)),
    )
    recorder = Recorder(context)
    tde, factual, passes = [], [], []
    with torch.no_grad():
        for inputs in (a, b):
            out = context(inputs)
            factual.append(predictor.classifier(out.pair_features))
            tde.append(predictor.predict(inputs, out, inputs.gt_labels, recorder))
            passes.append(recorder.context(recorder.calls[-1]).pair_features)
    cf = recorder.calls[-1]
    obj, layout = predictor.averages()[:2]
    assert torch.allclose(cf.obj_features, obj.expand(6, -1))
    assert torch.allclose(cf.box_layout, layout.expand(6, -1))
    assert cf.pairs is b.pairs and torch.equal(cf.gt_labels, b.gt_labels)
    assert torch.equal(passes[0], passes[1]), "the counterfactual does not see the inputs"
    assert torch.allclose(tde[1] - tde[0], factual[1] - factual[0], atol=1e-5)
    assert torch.allclose(tde[0][:6], tde[1][:6], atol=1e-6), "image 0's pairs are unchanged"
    assert not torch.allclose(tde[0][6:], tde[1][6:])


# ---- the averages in a model ----------------------------------------------------------------


def tde_cfg(make_cfg, mode="predcls", context="MotifsContext", **causal):
    cfg = make_cfg(context=context, mode=mode)
    cfg.MODEL.SGG.CAUSAL.ENABLED = True
    for key, value in causal.items():
        cfg.MODEL.SGG.CAUSAL[key.upper()] = value
    return cfg


def test_averages_update_in_training_only_and_are_saved(make_cfg, make_input):
    """Momentum 1/2: after batches with object means a and b the bias-corrected average is
    (a / 2 + b) / (3 / 2); evaluation (TDE) leaves the buffers as they are."""
    torch.manual_seed(0)
    model = build_model(tde_cfg(make_cfg, momentum=0.5, effect_type="TDE")).train()
    heads = model.roi_heads
    seen = []
    heads.context.register_forward_hook(lambda m, args, out: seen.append(args[0].obj_features))
    for seed in (0, 1):
        losses = model([make_input(4, seed=seed), make_input(3, seed=seed + 5)])
    assert {"loss_tde_context", "loss_tde_visual", "loss_tde_frequency"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    means = [x.mean(0) for x in seen]
    predictor = heads.relation_predictor
    assert int(predictor.num_updates) == 2
    assert torch.allclose(predictor.averages()[0], (means[0] / 2 + means[1]) / 1.5, atol=1e-5)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(P + "avg_")}
    names = ("obj_features", "box_layout", "class_probs", "pair_geometry")
    assert set(before) == {P + "avg_" + name for name in names}
    assert P + "num_updates" in model.state_dict()
    with torch.no_grad():
        (out,) = model.eval()([make_input(4, seed=9)])
    assert len(seen) == 4, "evaluation ran the context twice (factual, counterfactual)"
    assert torch.isfinite(out["relations"].scores).all()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert int(predictor.num_updates) == 2


def test_gate_fusion_trains_the_context_branch_alone(make_cfg, make_input):
    model = build_model(tde_cfg(make_cfg, fusion="gate")).train()
    losses = model([make_input(4, seed=0)])
    assert "loss_tde_context" in losses and "loss_tde_visual" not in losses
    assert model.roi_heads.relation_predictor.gate is not None
    losses["loss_tde_context"].backward()
    assert model.roi_heads.relation_predictor.classifier.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "context, options",
    [
        ("IMPContext", {}),
        ("VCTreeContext", {}),
        ("LinkNetContext", {"LINKNET.EMBEDDING_DIM": 8}),
        ("RelDNContext", {}),
        ("FactorizableNetContext", {"FNET.SUBGRAPH_DIM": 16, "FNET.BOTTLENECK_DIM": 8}),
    ],
)
def test_every_context_with_pair_features_trains_and_evaluates_effects(
    make_cfg, make_input, context, options
):
    """SGCls: a training step, then TE (both counterfactual passes) at inference."""
    torch.manual_seed(0)
    cfg = tde_cfg(make_cfg, mode="sgcls", context=context, effect_type="TE")
    for key, value in options.items():
        cfg.merge_from_list([f"MODEL.SGG.{key}", value])
    model = build_model(cfg).train()
    losses = model([make_input(4, seed=0), make_input(3, seed=1)])
    assert "loss_tde_visual" in losses and all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        (out,) = model.eval()([make_input(4, seed=2)])
    assert len(out["relations"]) == 12 and torch.isfinite(out["relations"].scores).all()


def test_bad_settings_name_the_key(make_cfg, make_input):
    with pytest.raises(
        ValueError, match="MODEL.SGG.CAUSAL.ENABLED needs a context model with pair"
    ):
        build_model(tde_cfg(make_cfg, context="FrequencyBaseline"))
    with pytest.raises(ValueError, match="MODEL.SGG.CAUSAL.FUSION is 'product'"):
        build_model(tde_cfg(make_cfg, fusion="product"))
    cfg = make_cfg(mode="predcls")
    cfg.MODEL.SGG.CAUSAL.EFFECT_TYPE = "TDE"
    with pytest.raises(ValueError, match="CAUSAL.ENABLED is False"):
        build_model(cfg)
    untrained = build_model(tde_cfg(make_cfg, effect_type="NIE")).eval()
    with pytest.raises(ValueError, match="num_updates 0"), torch.no_grad():
        untrained([make_input(3)])


# ---- configs and the ablate variant form ----------------------------------------------------

SYNTHETIC = [(m, mode) for m in ("motifs", "vctree") for mode in ("predcls", "sgcls", "sgdet")]


@pytest.mark.parametrize("model, mode", SYNTHETIC)
def test_synthetic_tde_configs_load(model, mode):
    cfg = sgg_cfg(f"synthetic/{model}_tde_R18_FPN_{mode}.yaml")
    assert cfg.MODEL.SGG.CAUSAL.ENABLED and cfg.MODEL.SGG.CAUSAL.EFFECT_TYPE == "TDE"
    assert cfg.MODEL.SGG.CAUSAL.FUSION == "sum" and cfg.MODEL.SGG.MODE == mode
    assert cfg.MODEL.SGG.CONTEXT == {"motifs": "MotifsContext", "vctree": "VCTreeContext"}[model]
    assert ablate.leaf_config(f"{model}_tde").endswith(f"{model}_tde_R18_FPN_sgcls.yaml")


def test_ablate_variant_switches_tde_on_for_another_model():
    from sgg_d2.engine import SceneGraphTrainer

    v = ablate.parse_variant(
        "imp_tde=imp:MODEL.SGG.CAUSAL.ENABLED=True,MODEL.SGG.CAUSAL.EFFECT_TYPE=TDE"
    )
    opts = [*v.opts(), "MODEL.SGG.DETECTOR_WEIGHTS", "", "MODEL.DEVICE", "cpu"]
    cfg = ablate.build_config([ablate.leaf_config(v.base)], opts)
    cfg.DATASETS.TRAIN = ("tde_test_unregistered_train",)  # placeholder statistics
    predictor = SceneGraphTrainer.build_model(cfg).roi_heads.relation_predictor
    assert isinstance(predictor, CausalPredictor) and predictor.effect_type == "TDE"


# ---- train, save, resume exactly, evaluate ---------------------------------------------------


def test_tde_model_trains_resumes_exactly_and_evaluates(world, tmp_path):
    """6 iterations with a checkpoint at 3; a second run resumed from that checkpoint ends
    with the same weights and averages; the final evaluation is the TDE's."""
    args = [
        "--config-file", "configs/synthetic/motifs_tde_R18_FPN_predcls.yaml", *CPU, *NARROW,
        *schedule(6, 2), "SOLVER.CHECKPOINT_PERIOD", "3", "SEED", "3",
        "MODEL.SGG.DETECTOR_WEIGHTS", "", "MODEL.SGG.FEATURE_CACHE_MB", "0",
    ]  # fmt: skip
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train_net(world, *args, "OUTPUT_DIR", str(whole), one_thread=True)
    assert any("sgg/mR@50" in row for row in metrics_rows(whole)), "the TDE model evaluated"
    final = model_weights(whole / "model_final.pth")
    middle = model_weights(whole / "model_0000002.pth")
    assert int(final[P + "num_updates"]) == 6 and int(middle[P + "num_updates"]) == 3
    assert not torch.equal(final[P + "avg_obj_features"], middle[P + "avg_obj_features"])
    resumed.mkdir()
    (resumed / "model_0000002.pth").write_bytes((whole / "model_0000002.pth").read_bytes())
    (resumed / "last_checkpoint").write_text("model_0000002.pth")
    no_eval = ["DATASETS.TEST", "()"]  # the final evaluation follows the last checkpoint
    log = train_net(world, "--resume", *args, *no_eval, "OUTPUT_DIR", str(resumed), one_thread=True)
    assert f"Loading from {resumed / 'model_0000002.pth'}" in log, "a resumed run, not a new one"
    again = model_weights(resumed / "model_final.pth")
    different = [k for k in final if not torch.equal(final[k], again[k])]
    assert final.keys() == again.keys() and not different, different[:5]


def test_motifs_context_branch_is_ungated_and_spatial(make_cfg, make_input):
    """The causal MOTIFS' context branch: pair features without the union gate, gated by the
    pair-geometry embedding; the counterfactual takes the average geometry (moving average
    of the training pairs' geometry), so moving one box changes the factual logits only."""
    from sgg_d2.modeling.context.common import PairFromObjects
    from sgg_d2.modeling.relation.geometry import pair_geometry

    model = build_model(tde_cfg(make_cfg, effect_type="TDE"))
    predictor = model.roi_heads.relation_predictor
    pairs = [m for m in model.modules() if isinstance(m, PairFromObjects)]
    assert pairs and not any(m.gate_with_union for m in pairs)
    assert predictor.spatial is not None
    model.train()
    x = make_input(4, seed=1)
    model([x])
    inst = x["instances"]
    b = inst.gt_boxes.tensor
    p = torch.tensor([[i, j] for i in range(4) for j in range(4) if i != j])
    geometry = pair_geometry(b[p[:, 0]], b[p[:, 1]], inst.image_size).mean(0)
    assert torch.allclose(predictor.averages()[3], geometry, atol=1e-5)  # one update
    rep = torch.ones(2, predictor.classifier.in_features)
    untreated = predictor._untreated_rep(rep)
    assert torch.allclose(untreated[0], predictor.spatial(predictor.averages()[3]))
