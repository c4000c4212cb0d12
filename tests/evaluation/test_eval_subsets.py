"""SceneGraphEvaluator subsets (images by tag, predicates by group), computed by hand.

The dataset: predicates on / has / near, K in (1, 3), GT boxes and labels (PredCls-like).

image 1: GT (0,1,on) (0,2,near); graph-constrained ranking (0,1,on) .9, (1,2,on) .8,
         (0,2,near) .7 -> on hit at rank 0, near at rank 2.
image 2: GT (0,1,near) (1,0,has); ranking (0,1,on) .6, (1,0,has) .5 -> near missed,
         has hit at rank 1.
image 3: GT (0,1,on) (2,1,on); ranking (2,1,on) .9, (0,1,on) .3 -> ranks 1 and 0.
image 4: no relations (tagged "proximal": it must not count).

Per-image recall @1 / @3: image 1: 1/2, 1; image 2: 0, 1/2; image 3: 1/2, 1.
Per-class recall @1 (mean over images holding the class): on (1 + 1/2)/2 = .75,
has 0, near 0; @3: on 1, has 1, near (1 + 0)/2 = .5.
"""

import json
import uuid

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from sgg_d2.evaluation import SceneGraphEvaluator
from sgg_d2.evaluation.subsets import subset_recall
from sgg_d2.structures import Relations

PREDICATES = ["on", "has", "near"]
KS = (1, 3)
GROUPS = {"mask_dependent": ["on", "has"], "geometric": ["near"]}
TAGS = {1: ["confusion"], 3: ["confusion", "proximal"], 4: ["proximal"]}
SCORES = {
    1: {(0, 1): [0.9, 0.05, 0.05], (1, 2): [0.8, 0.1, 0.1], (0, 2): [0.1, 0.2, 0.7]},
    2: {(0, 1): [0.6, 0.1, 0.3], (1, 0): [0.1, 0.5, 0.4]},
    3: {(2, 1): [0.9, 0.0, 0.0], (0, 1): [0.3, 0.1, 0.1], (1, 0): [0.01, 0.0, 0.0]},
    4: {(0, 1): [0.5, 0.2, 0.3]},
}
GT = {1: [[0, 1, 0], [0, 2, 2]], 2: [[0, 1, 2], [1, 0, 1]], 3: [[0, 1, 0], [2, 1, 0]], 4: []}
NUM_OBJECTS = {1: 3, 2: 2, 3: 3, 4: 2}


def dataset_dicts():
    records = []
    for image_id, num in NUM_OBJECTS.items():
        boxes = [[20 * i, 0, 20 * i + 10, 10] for i in range(num)]
        records.append(
            {
                "file_name": f"{image_id}.jpg",
                "image_id": image_id,
                "height": 50,
                "width": 100,
                "annotations": [
                    {"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0} for b in boxes
                ],
                "relations": np.array(GT[image_id], dtype=np.int64).reshape(-1, 3),
            }
        )
    return records


def model_output(record):
    instances = Instances((50, 100))
    instances.pred_boxes = Boxes(torch.tensor([a["bbox"] for a in record["annotations"]]).float())
    instances.pred_classes = torch.zeros(len(record["annotations"]), dtype=torch.int64)
    instances.scores = torch.ones(len(record["annotations"]))
    table = SCORES[record["image_id"]]
    relations = Relations.from_pair_scores(
        (50, 100), torch.tensor(list(table)), torch.tensor(list(table.values())), instances.scores
    )
    return {"instances": instances, "relations": relations}


@pytest.fixture
def dataset():
    name = f"sgg_d2_test_subsets_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, dataset_dicts)
    MetadataCatalog.get(name).set(
        thing_classes=["thing"],
        predicate_classes=PREDICATES,
        evaluator_type="scene_graph",
        predicate_groups=GROUPS,
        image_tags=TAGS,
    )
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def evaluate(name, output_dir=None):
    evaluator = SceneGraphEvaluator(
        name, mode=None, output_dir=output_dir, ks=KS, zero_shot_triplets=np.zeros((0, 3))
    )
    evaluator.reset()
    for record in dataset_dicts():
        evaluator.process([{"image_id": record["image_id"]}], [model_output(record)])
    return evaluator, evaluator.evaluate()["sgg"]


EXPECTED_SUBSETS = {
    # confusion = images 1, 3; classes present: on (.75 @1), near (0 @1).
    "R@1[confusion]": 50.0,
    "R@3[confusion]": 100.0,
    "mR@1[confusion]": 37.5,
    "mR@3[confusion]": 100.0,
    # proximal = images 3, 4; image 4 has no GT triplet, only "on" is present.
    "R@1[proximal]": 50.0,
    "R@3[proximal]": 100.0,
    "mR@1[proximal]": 50.0,
    "mR@3[proximal]": 100.0,
    # on/has triplets: image 1 (on: 1 @1), image 2 (has: 0 @1, 1 @3), image 3 (1/2 @1).
    "R@1[mask_dependent]": 50.0,
    "R@3[mask_dependent]": 100.0,
    "mR@1[mask_dependent]": 37.5,  # (on .75 + has 0) / 2
    "mR@3[mask_dependent]": 100.0,
    # near triplets: image 1 (rank 2), image 2 (missed).
    "R@1[geometric]": 0.0,
    "R@3[geometric]": 50.0,
    "mR@1[geometric]": 0.0,
    "mR@3[geometric]": 50.0,
}


def test_metadata_subsets_by_hand(dataset, tmp_path):
    evaluator, results = evaluate(dataset, str(tmp_path))
    assert results["R@1"] == pytest.approx(100 / 3) and results["R@3"] == pytest.approx(250 / 3)
    assert results["mR@1"] == pytest.approx(25.0) and results["mR@3"] == pytest.approx(250 / 3)
    subsets = {k: v for k, v in results.items() if "[" in k}
    assert subsets == pytest.approx(EXPECTED_SUBSETS)
    summary = json.loads((tmp_path / "scene_graph_metrics.json").read_text())
    assert summary["metrics"]["mR@1[confusion]"] == pytest.approx(37.5)
    assert summary["subsets"]["proximal"] == {
        "num_images": 2,
        "num_gt_triplets": 2,
        "predicates": None,
    }
    assert summary["subsets"]["geometric"] == {
        "num_images": 4,
        "num_gt_triplets": 2,
        "predicates": ["near"],
    }


def test_evaluate_subset_api(dataset):
    evaluator, results = evaluate(dataset)
    everything = evaluator.evaluate_subset()
    # Every class occurs, so the subset definition agrees with the full metrics.
    for key in ("R@1", "R@3", "mR@1", "mR@3", "ng-R@3", "ng-mR@3"):
        assert everything[key] == pytest.approx(results[key]), key
    only_has = evaluator.evaluate_subset(image_ids=[2], predicates=["has"])
    assert only_has["R@1"] == 0.0 and only_has["R@3"] == 100.0 and only_has["mR@3"] == 100.0
    # Image 2, no graph constraint: (0,1,on) .6, (1,0,has) .5, (1,0,near) .4, (0,1,near) .3
    image_2 = evaluator.evaluate_subset(image_ids=[2])
    assert image_2["ng-R@1"] == 0.0 and image_2["ng-R@3"] == 50.0
    by_index = evaluator.evaluate_subset(image_ids=[1, 2], predicates=[2])
    assert by_index["R@3"] == by_index["mR@3"] == 50.0
    assert evaluator.evaluate_subset(image_ids=[3], predicates=["has"]) == {}
    with pytest.raises(ValueError, match="predicate 'under' is not a predicate of .*on, has"):
        evaluator.evaluate_subset(predicates=["under"])


def test_evaluate_subset_before_evaluate_is_an_error(dataset):
    evaluator = SceneGraphEvaluator(dataset, ks=KS, zero_shot_triplets=np.zeros((0, 3)))
    with pytest.raises(RuntimeError, match="needs a finished evaluate"):
        evaluator.evaluate_subset()


def _plain_dataset(**metadata):
    name = f"sgg_d2_test_subsets_plain_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, dataset_dicts)
    MetadataCatalog.get(name).set(thing_classes=["thing"], predicate_classes=PREDICATES, **metadata)
    return name


def _remove(name):
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_bad_metadata_names_dataset_and_group():
    name = _plain_dataset(predicate_groups={"geometric": ["near", "under"]})
    try:
        with pytest.raises(ValueError, match=r"predicate_groups\['geometric'\]: .*'under'"):
            evaluate(name)
    finally:
        _remove(name)
    name = _plain_dataset(image_tags={1: "confusion"})
    try:
        with pytest.raises(ValueError, match=r"image_tags\[1\]: expected a list of tags"):
            evaluate(name)
    finally:
        _remove(name)


def test_no_metadata_means_no_subset_keys():
    name = _plain_dataset()
    try:
        _, results = evaluate(name)
        assert not any("[" in key for key in results)
    finally:
        _remove(name)


def test_subset_recall_on_plain_arrays():
    # Two images; ranks per GT triplet (large = unmatched).
    gt = [np.array([0, 1]), np.array([1, 1, 2])]
    ranks = [{"gc": np.array([0, 5])}, {"gc": np.array([0, 9, 1])}]
    out = subset_recall(gt, ranks, [2], 3, predicates=[1])
    # class 1: image 1 recall 0, image 2 recall 1/2 -> R@2 = mean(0, .5), mR@2 = .25
    assert out == pytest.approx({"R@2": 25.0, "mR@2": 25.0})
    out = subset_recall(gt, ranks, [2], 3, images=np.array([False, True]))
    # image 2: 2 of 3 hit; class 1: 1/2, class 2: 1 (class 0 absent: left out)
    assert out == pytest.approx({"R@2": 200 / 3, "mR@2": 75.0})
    with pytest.raises(ValueError, match=r"predicate indices \[3\] outside \[0, 3\)"):
        subset_recall(gt, ranks, [2], 3, predicates=[3])
    with pytest.raises(ValueError, match=r"images mask has shape \(1,\), expected \(2,\)"):
        subset_recall(gt, ranks, [2], 3, images=np.array([True]))
