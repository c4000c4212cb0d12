"""RelDN's sampling: the L0 sample and, independently, every pair of the contrastive anchors;
``ContextInputs.all_pairs`` in training."""

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from sgg_d2 import add_sgg_config
from sgg_d2.modeling.context import ContextInputs, TrainingTargets
from sgg_d2.modeling.relation.contrastive_losses import (
    GraphicalContrastiveLoss,
    graphical_contrastive_terms,
)
from sgg_d2.modeling.relation.sampling import (
    batch_pair_predicates,
    pair_predicates,
    pair_targets,
    sample_contrastive_anchors,
    training_pairs,
)
from sgg_d2.structures import all_ordered_pairs

# Hand-made image: 0 man, 1 guitar, 2 guitar, 3 chair, 4 drum; "man plays guitar 1" (predicate
# 0) and "chair near drum" (predicate 1): subject anchors {0, 3}, object anchors {1, 4}.
RELATIONS = torch.tensor([[0, 1, 0], [3, 4, 1]])
N = 5


def _image():
    pairs = all_ordered_pairs(N)
    labels = pair_targets(pairs, torch.arange(N), RELATIONS, N)
    return pairs, labels


def test_anchors_are_the_related_entities_per_side():
    pairs, labels = _image()
    anchors = sample_contrastive_anchors(pairs, labels, torch.arange(N), per_side=128)
    assert anchors[:, 0].tolist() == [True, False, False, True, False]
    assert anchors[:, 1].tolist() == [False, True, False, False, True]
    # at most per_side anchors a side; an unmatched detection (-1) is never one
    one = sample_contrastive_anchors(pairs, labels, torch.arange(N), per_side=1)
    assert one.sum(0).tolist() == [1, 1]
    unmatched = sample_contrastive_anchors(pairs, labels, torch.tensor([0, 1, -1, -1, -1]), 128)
    assert unmatched[:, 0].tolist() == [True, False, False, False, False]
    assert not sample_contrastive_anchors(pairs, labels, torch.arange(N), per_side=0).any()


def test_every_pair_of_an_anchor_is_run_beside_a_small_l0_sample():
    pairs, labels = _image()
    torch.manual_seed(0)
    # L0: 2 pairs (1 positive); the anchors' pairs are added, independently of it.
    keep, ce_mask, anchors = training_pairs(labels, pairs, torch.arange(N), 2, 0.5, 128)
    run = {tuple(p) for p in pairs[keep].tolist()}
    of_anchors = {(s, o) for s, o in pairs.tolist() if s in (0, 3) or o in (1, 4)}
    assert of_anchors <= run
    assert int(ce_mask.sum()) == 2 and len(run) == len(keep)
    assert (labels[keep][ce_mask] > 0).sum() == 1
    # without anchors: exactly the L0 sample, every row in the cross-entropy
    keep0, ce0, _ = training_pairs(labels, pairs, torch.arange(N), 2, 0.5, 0)
    assert len(keep0) == 2 and bool(ce0.all())


def test_hardest_negative_outside_the_l0_sample_drives_the_loss():
    """Every negative pair of an anchor is considered: the loss uses the max over all of
    them, even when the L0 sample holds only the positive."""
    pairs, labels = _image()
    affinity = torch.full((len(pairs),), 0.1)
    affinity[labels > 0] = 0.9
    row = {tuple(p): i for i, p in enumerate(pairs.tolist())}
    affinity[row[(0, 2)]] = 0.95  # man - the other guitar: the hard negative of anchor 0
    anchors = sample_contrastive_anchors(pairs, labels, torch.arange(N), 128)
    predicted = torch.ones(len(pairs), dtype=torch.long)
    classes = torch.tensor([0, 1, 1, 2, 3])
    stats = {}
    l1, l2, _ = graphical_contrastive_terms(
        affinity, labels, pairs, torch.arange(N), classes, predicted, (0.2,) * 3, anchors, stats
    )
    # subjects: man 0.2 - 0.9 + 0.95 = 0.25, chair 0.2 - 0.9 + 0.1 -> 0; objects: guitar 1
    # and drum 4 have negatives at 0.1 only -> 0.  L1 = mean(0.25, 0) + mean(0, 0).
    assert l1.item() == pytest.approx(0.125)
    # L2 (man, guitars) = 0.25 on the subject side; chair's (drum-class) group has no negative
    assert l2.item() == pytest.approx(0.25)
    assert stats["anchors"] == 4 and stats["anchors_with_negative"] == 4
    assert stats["anchors_with_hard_negative"] == 1 and stats["l1_active"] == 0.25
    # The same rows restricted to a 2-pair L0 sample without (0, 2) miss it entirely.
    only = torch.tensor([row[(0, 1)], row[(0, 3)]])
    l1_sample, _, _ = graphical_contrastive_terms(
        affinity[only],
        labels[only],
        pairs[only],
        torch.arange(N),
        classes,
        predicted[only],
        (0.2,) * 3,
    )
    assert l1_sample.item() == 0


def _capture_inputs(model):
    seen = {}

    def hook(_module, args):
        seen["inputs"] = args[0]

    model.roi_heads.context.register_forward_pre_hook(hook)
    return seen


@pytest.mark.parametrize("anchors", [128, 0])
def test_context_inputs_carry_all_pairs_in_training(make_cfg, make_input, anchors):
    cfg = make_cfg("RelDNContext", "sgcls")
    cfg.MODEL.SGG.EXTRA_RELATION_LOSSES = ["GraphicalContrastiveLoss"]
    cfg.MODEL.SGG.CONTRASTIVE.ANCHORS_PER_IMAGE = anchors
    cfg.MODEL.SGG.BATCH_SIZE_PER_IMAGE = 4
    torch.manual_seed(0)
    model = build_model(cfg).train()
    seen = _capture_inputs(model)
    rels = [[0, 1, 0], [2, 3, 1], [0, 3, 2]]
    losses = model([make_input(5, relations=rels, seed=1), make_input(3, seed=2)])
    inputs = seen["inputs"]
    targets = inputs.training
    assert targets.num_all_pairs == [20, 6] and targets.all_pairs.shape == (26, 2)
    # image 2's pairs are offset by image 1's 5 objects
    assert int(targets.all_pairs[20:].min()) == 5
    assert torch.equal(targets.all_pairs[targets.pair_index], inputs.pairs)
    assert inputs.images is not None and inputs.images.shape[:2] == (2, 3)
    assert int(targets.ce_mask.sum()) <= 8
    if anchors:
        a = targets.contrastive_anchors
        run = {tuple(p) for p in inputs.pairs.tolist()}
        for s, o in targets.all_pairs.tolist():
            if a[s, 0] or a[o, 1]:
                assert (s, o) in run
        assert len(inputs.pairs) > int(targets.ce_mask.sum())
        (loss,) = model.roi_heads.extra_losses
        assert isinstance(loss, GraphicalContrastiveLoss)
        # subjects {0, 2} and objects {1, 3} in image 1, chain 0->1->2: {0, 1}, {1, 2} in 2
        assert loss.last_diagnostics["anchors"] == 8
    else:
        assert targets.contrastive_anchors is None and bool(targets.ce_mask.all())
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_per_loss_switches_and_diagnostics_in_the_event_storage():
    cfg = get_cfg()
    add_sgg_config(cfg)
    cfg.MODEL.SGG.CONTRASTIVE.USE_L2 = False
    cfg.MODEL.SGG.CONTRASTIVE.ANCHORS_PER_IMAGE = 7
    loss = GraphicalContrastiveLoss(cfg)
    assert loss.anchors_per_image == 7 and loss.use == (True, False, True)
    pairs, labels = _image()
    anchors = sample_contrastive_anchors(pairs, labels, torch.arange(N), 7)
    logits = torch.zeros(len(pairs), 3)
    logits[labels > 0, 1] = 2.0  # related pairs more affine: margins satisfied for some
    inputs = ContextInputs(
        obj_features=torch.zeros(N, 1),
        obj_logits=torch.zeros(N, 4),
        box_layout=torch.zeros(N, 9),
        boxes=torch.zeros(N, 4),
        num_objs=[N],
        pairs=pairs,
        num_pairs=[len(pairs)],
        training=TrainingTargets(
            obj_gt_classes=torch.tensor([0, 1, 1, 2, 3]),
            obj_gt_index=torch.arange(N),
            contrastive_anchors=anchors,
            all_pairs=pairs,
            pair_index=torch.arange(len(pairs)),
            all_pair_predicates=torch.stack([(labels > 0).nonzero()[:, 0], labels[labels > 0]], 1),
        ),
    )
    with EventStorage() as storage:
        out = loss(logits, labels, inputs)
        logged = {k: v[0] for k, v in storage.latest().items() if k.startswith("contrastive/")}
    assert set(out) == {"loss_contrastive_l1", "loss_contrastive_l3"}
    assert logged["contrastive/anchors"] == 4 and logged["contrastive/l1_groups"] == 4
    assert 0.0 <= logged["contrastive/l1_active"] <= 1.0
    assert logged == {f"contrastive/{k}": v for k, v in loss.last_diagnostics.items()}
    with pytest.raises(ValueError, match="ANCHORS_PER_IMAGE"):
        GraphicalContrastiveLoss(anchors_per_image=-1)


def test_pair_predicates_lists_every_gt_predicate_of_a_pair():
    # GT 0 -> 1 holds predicates 0 and 2 (and 0 twice), GT 2 -> 0 predicate 1. Objects: two
    # detections of GT 0 (objects 0 and 3), GT 1 (1), GT 2 (2), an unmatched one (4).
    relations = torch.tensor([[0, 1, 0], [0, 1, 2], [2, 0, 1], [0, 1, 0]])
    obj_to_gt = torch.tensor([0, 1, 2, 0, -1])
    pairs = torch.tensor([[0, 1], [3, 1], [1, 0], [2, 0], [2, 3], [4, 1], [0, 2]])
    got = pair_predicates(pairs, obj_to_gt, relations, 3)
    assert got.tolist() == [[0, 1], [0, 3], [1, 1], [1, 3], [3, 2], [4, 2]]
    # pair_targets picks one of them for each related pair, and nothing for the others
    labels = pair_targets(pairs, obj_to_gt, relations, 3)
    assert {(r, int(labels[r])) for r in range(len(pairs)) if labels[r] > 0} <= {
        tuple(row) for row in got.tolist()
    }
    assert (labels > 0).nonzero().flatten().tolist() == [0, 1, 3, 4]
    assert pair_predicates(pairs, obj_to_gt, relations[:0], 3).shape == (0, 2)
    # A batch: the second image's rows come after the first image's 7 pairs.
    batch = batch_pair_predicates(
        [pairs, pairs[:1]], [obj_to_gt, torch.tensor([0, 1])], [relations, relations[2:3]],
        [range(3), range(2)],
    )  # fmt: skip
    assert batch.tolist() == got.tolist()  # image 2: GT 0 -> 1 has no relation there
    batch = batch_pair_predicates([pairs, pairs[:1]], [obj_to_gt] * 2, [relations] * 2,
                                  [range(3)] * 2)  # fmt: skip
    assert batch[-2:].tolist() == [[7, 1], [7, 3]]


def test_training_targets_carry_every_gt_predicate(make_cfg, make_input):
    cfg = make_cfg("RelDNContext", "sgcls")
    cfg.MODEL.SGG.EXTRA_RELATION_LOSSES = ["GraphicalContrastiveLoss"]
    torch.manual_seed(0)
    model = build_model(cfg).train()
    seen = _capture_inputs(model)
    rels = [[0, 1, 0], [0, 1, 2], [2, 3, 1]]  # pair 0 -> 1 holds predicates 0 and 2
    model([make_input(4, relations=rels, seed=1), make_input(3, seed=2)])
    targets = seen["inputs"].training
    found = {}
    for row, label in targets.all_pair_predicates.tolist():
        found.setdefault(tuple(targets.all_pairs[row].tolist()), set()).add(label - 1)
    assert found[(0, 1)] == {0, 2} and found[(2, 3)] == {1}
    assert all(s >= 4 for s, _ in found if (s, _) not in {(0, 1), (2, 3)})  # image 2
