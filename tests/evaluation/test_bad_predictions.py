"""NaN/inf in any tensor the relation evaluators read is an error naming image and field
(a NaN relation score used to leave the image with no candidate: R@K 0 without a word)."""

import uuid

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from test_sg_evaluator import CLASSES, PREDICATES, ZERO_SHOT, dataset_dicts, model_output

from sgg_d2.evaluation import SceneGraphEvaluator
from sgg_d2.evaluation.functional.candidates import select_pair_predicates, stable_top_indices


@pytest.fixture
def evaluator():
    name = f"sgg_d2_test_bad_preds_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, dataset_dicts)
    MetadataCatalog.get(name).set(
        thing_classes=CLASSES,
        predicate_classes=PREDICATES,
        evaluator_type="scene_graph",
        train_split=name,
    )
    yield SceneGraphEvaluator(name, mode="sgdet", ks=(1, 3), zero_shot_triplets=ZERO_SHOT)
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def poison_relation_score(out):
    out["relations"].scores[1] = float("nan")


def poison_predicate_score(out):
    out["relations"].predicate_scores[2, 1] = float("nan")


def poison_instance_score(out):
    out["instances"].scores[0] = float("inf")


def poison_box(out):
    out["instances"].pred_boxes.tensor[2, 3] = float("nan")


@pytest.mark.parametrize(
    "poison, field, row",
    [
        (poison_relation_score, "relations.scores", 1),
        (poison_predicate_score, "relations.predicate_scores", 2),
        (poison_instance_score, "instances.scores", 0),
        (poison_box, "instances.pred_boxes", 2),
    ],
    ids=["relation-scores", "predicate-scores", "instance-scores", "boxes"],
)
def test_nan_or_inf_names_image_and_field(evaluator, poison, field, row):
    record = dataset_dicts()[0]
    evaluator.reset()
    evaluator.process([{"image_id": 1}], [model_output(record)])  # clean: accepted
    out = model_output(record)
    poison(out)
    with pytest.raises(ValueError) as err:
        evaluator.process([{"image_id": 1}], [out])
    message = str(err.value)
    assert message.startswith(f"image_id 1: {field} has NaN/inf in 1 row(s), first row {row}")


def test_candidate_selection_refuses_nan_scores():
    scores = torch.tensor([0.5, float("nan"), 0.2, 0.9])
    with pytest.raises(ValueError, match="scores hold NaN \\(1 of 4\\)"):
        stable_top_indices(scores, 2)
    pairs = torch.tensor([[0, 1], [1, 0]])
    predicate_scores = torch.tensor([[0.1, float("nan")], [0.3, 0.2]])
    with pytest.raises(ValueError, match="scores hold NaN"):
        select_pair_predicates(pairs, predicate_scores, torch.ones(2), k=1)
