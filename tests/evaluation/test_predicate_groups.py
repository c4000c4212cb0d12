"""F@K and the head / body / tail mean recall, computed by hand.

The evaluated dataset: predicates p0..p4, K in (1, 2), GT boxes (PredCls), one class.

image 1: GT (0,1,p0) (1,2,p1) (0,2,p3); graph-constrained ranking (0,1,p0) .9,
         (1,2,p1) .8, (0,2,p2) .7 -> p0 at rank 0, p1 at rank 1, p3 missed.
image 2: GT (0,1,p2) (1,0,p0); ranking (1,0,p0) .6, (0,1,p4) .5 -> p0 at rank 0, p2 missed.
image 3: GT (0,1,p3) (1,0,p4); ranking (0,1,p3) .9, (1,0,p4) .4 -> ranks 0 and 1.

R@1 = (1/3 + 1/2 + 1/2) / 3 = 4/9; R@2 = (2/3 + 1/2 + 1) / 3 = 13/18.
Per-class recall (mean over the images holding the class) @1: p0 1, p1 0, p2 0,
p3 (0 + 1)/2 = .5, p4 0 -> mR@1 = 1.5/5 = 30 %; @2: p0 1, p1 1, p2 0, p3 .5, p4 1 -> 70 %.

The training split has 10001 / 10000 / 500 / 499 / 0 relations of p0..p4: with PySGG's
boundaries (head > 10000, tail < 500) head = {p0}, body = {p1, p2} (10000 and 500 sit on
the boundaries, both body), tail = {p3, p4}.
"""

import json
import logging
import uuid

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from sgg_d2.config import add_sgg_config
from sgg_d2.data.statistics import compute_statistics
from sgg_d2.evaluation import SceneGraphEvaluator, load_compact_predictions
from sgg_d2.evaluation.__main__ import main as evaluation_cli
from sgg_d2.evaluation.functional.recall import f_scores, group_mean_recall
from sgg_d2.evaluation.predicate_groups import (
    PYSGG_RULE,
    PredicateGroupRule,
    assign_predicate_groups,
    rule_from_config,
    training_predicate_counts,
)
from sgg_d2.structures import Relations

PREDICATES = ["p0", "p1", "p2", "p3", "p4"]
KS = (1, 2)
TRAIN_COUNTS = [10001, 10000, 500, 499, 0]
GT = {1: [[0, 1, 0], [1, 2, 1], [0, 2, 3]], 2: [[0, 1, 2], [1, 0, 0]], 3: [[0, 1, 3], [1, 0, 4]]}
# image -> {(subject, object): (predicate, score)}: one predicate per pair.
SCORES = {
    1: {(0, 1): (0, 0.9), (1, 2): (1, 0.8), (0, 2): (2, 0.7)},
    2: {(1, 0): (0, 0.6), (0, 1): (4, 0.5)},
    3: {(0, 1): (3, 0.9), (1, 0): (4, 0.4)},
}
NUM_OBJECTS = {1: 3, 2: 2, 3: 2}


def _image(image_id, num_objects, relations):
    return {
        "file_name": f"{image_id}.jpg",
        "image_id": image_id,
        "height": 20,
        "width": 100,
        "annotations": [
            {"bbox": [20 * i, 0, 20 * i + 10, 10], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}
            for i in range(num_objects)
        ],
        "relations": np.asarray(relations, dtype=np.int64).reshape(-1, 3),
    }


def eval_dicts():
    return [_image(i, NUM_OBJECTS[i], GT[i]) for i in GT]


def train_dicts():
    predicates = np.repeat(np.arange(len(PREDICATES)), TRAIN_COUNTS)
    rows = np.stack([np.zeros_like(predicates), np.ones_like(predicates), predicates], 1)
    return [_image(100, 2, rows)]


@pytest.fixture
def register():
    """register(loader, **metadata) -> a fresh dataset name (removed after the test)."""
    names = []

    def _register(loader, **meta):
        name = f"sgg_d2_test_groups_{uuid.uuid4().hex[:8]}"
        DatasetCatalog.register(name, loader)
        meta = {"predicate_classes": PREDICATES} | meta
        MetadataCatalog.get(name).set(thing_classes=["thing"], evaluator_type="scene_graph", **meta)
        names.append(name)
        return name

    yield _register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture
def dataset(register):
    """The evaluated dataset, its train_split registered with TRAIN_COUNTS."""
    return register(eval_dicts, train_split=register(train_dicts))


def model_output(record):
    num = len(record["annotations"])
    instances = Instances((20, 100))
    instances.pred_boxes = Boxes(torch.tensor([a["bbox"] for a in record["annotations"]]).float())
    instances.pred_classes = torch.zeros(num, dtype=torch.int64)
    instances.scores = torch.ones(num)
    table = SCORES[record["image_id"]]
    scores = torch.zeros(len(table), len(PREDICATES))
    for row, (predicate, score) in enumerate(table.values()):
        scores[row, predicate] = score
    relations = Relations.from_pair_scores(
        (20, 100), torch.tensor(list(table)), scores, instances.scores
    )
    return {"instances": instances, "relations": relations}


def evaluate(name, output_dir=None, **kwargs):
    evaluator = SceneGraphEvaluator(
        name, mode="predcls", output_dir=output_dir, ks=KS, zero_shot_triplets=[], **kwargs
    )
    evaluator.reset()
    for record in eval_dicts():
        evaluator.process([{"image_id": record["image_id"]}], [model_output(record)])
    return evaluator.evaluate()["sgg"]


def test_f_score_by_hand():
    metrics = {"R@50": 40.0, "mR@50": 20.0, "R@20": 0.0, "mR@20": 0.0, "ng-R@50": 30.0}
    metrics |= {"ng-mR@50": 30.0, "R@100": float("nan"), "mR@100": 0.0}
    found = f_scores(metrics, (20, 50, 100))
    assert found["F@50"] == pytest.approx(2 * 40 * 20 / 60)  # 26.667
    assert found["F@20"] == 0.0  # both 0
    assert found["ng-F@50"] == pytest.approx(30.0)
    assert np.isnan(found["F@100"])  # no image with a GT relation
    assert "ng-F@20" not in found  # ng-R@20 / ng-mR@20 missing


@pytest.mark.parametrize(
    "rule, counts, expected",
    [
        # PySGG's counts: exactly 10000 and exactly 500 are body.
        (PYSGG_RULE, TRAIN_COUNTS, ([0], [1, 2], [3, 4])),
        (PredicateGroupRule("count", 10000, 500), [20000, 10001, 9999, 501], ([0, 1], [2, 3], [])),
        # Shares of 8 instances: .5, .25, .125, .125, 0; .5 is not above .5, .125 not below.
        (PredicateGroupRule("share", 0.5, 0.125), [4, 2, 1, 1, 0], ([], [0, 1, 2, 3], [4])),
        (PredicateGroupRule("share", 0.25, 0.2), [4, 2, 1, 1, 0], ([0], [1], [2, 3, 4])),
    ],
)
def test_group_assignment_at_the_boundaries(rule, counts, expected):
    groups = assign_predicate_groups(counts, rule)
    assert [groups[g].tolist() for g in ("head", "body", "tail")] == [list(e) for e in expected]


def test_share_mode_without_training_relations_has_no_groups():
    assert assign_predicate_groups([0, 0], PredicateGroupRule("share", 0.1, 0.03)) is None


def test_group_mean_recall_weighted_by_size_is_mean_recall():
    per_class = np.array([100.0, 0.0, 50.0, 25.0, 75.0])
    groups = {"head": np.array([0]), "body": np.array([1, 4]), "tail": np.array([2, 3])}
    found = group_mean_recall(per_class, groups)
    assert found == {"head": 100.0, "body": 37.5, "tail": 37.5}
    weighted = sum(found[g] * len(groups[g]) for g in groups) / len(per_class)
    assert weighted == pytest.approx(per_class.mean())
    assert group_mean_recall(per_class, {"head": np.array([], dtype=np.int64)}) == {}


def test_evaluator_reports_f_and_head_body_tail_by_hand(dataset, tmp_path):
    results = evaluate(dataset, output_dir=str(tmp_path))
    assert results["R@1"] == pytest.approx(400 / 9) and results["mR@1"] == pytest.approx(30)
    assert results["R@2"] == pytest.approx(1300 / 18) and results["mR@2"] == pytest.approx(70)
    # F@1 = 2 (400/9) 30 / (400/9 + 30) = 2400/67; F@2 = 2 (1300/18) 70 / (1300/18 + 70).
    assert results["F@1"] == pytest.approx(2400 / 67)
    assert results["F@2"] == pytest.approx(71.09375)
    ng_r, ng_mr = results["ng-R@2"], results["ng-mR@2"]
    assert results["ng-F@2"] == pytest.approx(2 * ng_r * ng_mr / (ng_r + ng_mr))
    # head {p0}: 1 -> 100; body {p1, p2}: @1 (0 + 0)/2, @2 (1 + 0)/2; tail {p3, p4}:
    # @1 (.5 + 0)/2, @2 (.5 + 1)/2.
    groups = {k: v for k, v in results.items() if k.endswith("]")}
    assert groups == pytest.approx(
        {"mR@1[head]": 100, "mR@2[head]": 100, "mR@1[body]": 0, "mR@2[body]": 50}
        | {"mR@1[tail]": 25, "mR@2[tail]": 75}
    )
    for k in KS:  # sizes 1, 2, 2 of 5 classes
        sizes = {"head": 1, "body": 2, "tail": 2}
        weighted = sum(results[f"mR@{k}[{g}]"] * n for g, n in sizes.items()) / 5
        assert weighted == pytest.approx(results[f"mR@{k}"])
    summary = json.loads((tmp_path / "scene_graph_metrics.json").read_text())
    assert summary["metrics"]["mR@2[tail]"] == pytest.approx(75)
    assert summary["predicate_groups"]["train_split"] == MetadataCatalog.get(dataset).train_split
    assert summary["predicate_groups"]["groups"] == {
        "head": {"p0": 10001},
        "body": {"p1": 10000, "p2": 500},
        "tail": {"p3": 499, "p4": 0},
    }


def test_empty_group_is_left_out_in_share_mode(dataset):
    # Shares of 21000: p0 .476, p1 .476, p2 .0238, p3 .0238, p4 0: no head above .5.
    results = evaluate(dataset, predicate_groups=PredicateGroupRule("share", 0.5, 0.03))
    assert not any("[head]" in key for key in results)
    # body {p0, p1}: @1 (1 + 0)/2; tail {p2, p3, p4}: @1 (0 + .5 + 0)/3, @2 (0 + .5 + 1)/3.
    assert results["mR@1[body]"] == pytest.approx(50) and results["mR@2[body]"] == 100
    assert results["mR@1[tail]"] == pytest.approx(50 / 3)
    assert results["mR@2[tail]"] == pytest.approx(50)


def test_groups_off_and_unregistered_train_split_skip_with_one_notice(dataset, register, caplog):
    off = evaluate(dataset, predicate_groups=None)
    assert "F@1" in off and not any(key.endswith("]") for key in off)
    orphan = register(eval_dicts, train_split="not_registered_train")
    evaluator = SceneGraphEvaluator(orphan, ks=KS, zero_shot_triplets=[])
    with caplog.at_level(logging.WARNING, logger="sgg_d2.evaluation"):
        for _ in range(2):  # two evaluations, one notice
            evaluator.reset()
            for record in eval_dicts():
                evaluator.process([{"image_id": record["image_id"]}], [model_output(record)])
            assert not any(key.endswith("]") for key in evaluator.evaluate()["sgg"])
    notices = [r for r in caplog.records if "head/body/tail] skipped" in r.getMessage()]
    assert len(notices) == 1 and "not_registered_train" in notices[0].getMessage()


def test_cli_reevaluation_gives_the_same_groups(dataset, tmp_path):
    results = evaluate(dataset, output_dir=str(tmp_path / "run"))
    predictions = tmp_path / "run" / "scene_graph_predictions.pth"
    saved = load_compact_predictions(str(predictions))
    assert saved["settings"]["predicate_groups"] == PYSGG_RULE.to_dict()
    np.save(tmp_path / "zs.npy", np.zeros((0, 3), dtype=np.int64))
    args = ["--dataset", dataset, "--predictions", str(predictions)]
    again = evaluation_cli(args + ["--zero-shot-triplets", str(tmp_path / "zs.npy")])
    assert again["sgg"] == pytest.approx(results)
    assert again["sgg"]["mR@2[body]"] == pytest.approx(50)


def test_training_counts_are_the_statistics_predicate_counts(dataset, register):
    train, counts = training_predicate_counts(dataset, PREDICATES)
    assert train == MetadataCatalog.get(dataset).train_split
    assert counts.tolist() == TRAIN_COUNTS
    stats = compute_statistics(eval_dicts(), 1, len(PREDICATES))
    own = register(eval_dicts)
    MetadataCatalog.get(own).set(train_split=own)  # its own training split
    assert training_predicate_counts(own, PREDICATES)[1].tolist() == (
        stats["predicate_counts"].tolist()
    )


def test_bad_rules_and_collisions_are_named(register):
    cfg = add_sgg_config(get_cfg())
    assert rule_from_config(cfg) == PYSGG_RULE
    cfg.TEST.SGG.PREDICATE_GROUPS.MODE = "share"
    assert rule_from_config(cfg) == PredicateGroupRule("share", 0.10, 0.03)
    cfg.TEST.SGG.PREDICATE_GROUPS.MODE = "off"
    assert rule_from_config(cfg) is None
    cfg.TEST.SGG.PREDICATE_GROUPS.MODE = "counts"
    with pytest.raises(ValueError, match=r"PREDICATE_GROUPS\): MODE is 'counts'"):
        rule_from_config(cfg)
    with pytest.raises(ValueError, match=r"fractions .* in \[0, 1\], got head 10000"):
        PredicateGroupRule("share", 10000, 500)
    with pytest.raises(ValueError, match="tail boundary"):
        PredicateGroupRule("count", 100, 500)
    reversed_train = register(train_dicts, predicate_classes=PREDICATES[::-1])
    mismatched = register(eval_dicts, train_split=reversed_train)
    with pytest.raises(ValueError, match="other predicate classes"):
        training_predicate_counts(mismatched, PREDICATES)
    train = register(train_dicts)
    colliding = register(eval_dicts, train_split=train, predicate_groups={"tail": ["p4"]})
    with pytest.raises(ValueError, match=r"subset\(s\) \['tail'\]"):
        evaluate(colliding)
    assert "mR@1[tail]" in evaluate(colliding, predicate_groups=None)  # the metadata group
