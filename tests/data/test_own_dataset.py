"""A user's own scene-graph JSON dataset (ids 5/9/12, registered by DATASETS.SGG.JSON) is
scored right by Detectron2's COCOEvaluator, keeps ``json_file`` free for it, logs clipped
boxes by image, and the not-registered error lists the user's names, not Detectron2's."""

import json

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from own_data import CLASSES, write_own_dataset
from own_data_support import logged, perfect_predictions
from test_visual_genome import BOXES_1024, write_vg

from sgg_d2.data import load_visual_genome, register_visual_genome
from sgg_d2.data.config_datasets import (
    DatasetNotRegisteredError,
    register_json_datasets,
    require_registered,
)


@pytest.fixture
def own(tmp_path):
    """The own dataset written under ``tmp_path`` and registered as ``own_train`` /
    ``own_test`` through ``register_json_datasets``; unregistered afterwards."""
    paths = write_own_dataset(tmp_path / "my")
    entries = [[f"own_{s}", str(paths[s]), str(paths["images"])] for s in ("train", "test")]
    names = register_json_datasets(entries)
    yield {"paths": paths, "entries": entries, "names": names}
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def coco_bbox_ap(name, output_dir, predict=perfect_predictions):
    """Box AP of ``predict(dicts)`` on dataset ``name`` by Detectron2's COCOEvaluator."""
    evaluator = COCOEvaluator(
        name, tasks=("bbox",), output_dir=str(output_dir), use_fast_impl=False
    )
    evaluator.reset()
    evaluator.process(*predict(DatasetCatalog.get(name)))
    return evaluator.evaluate()["bbox"]


def test_metadata_maps_the_files_category_ids(own):
    meta = MetadataCatalog.get("own_test")
    assert meta.thing_classes == list(CLASSES.values())
    assert meta.thing_dataset_id_to_contiguous_id == {5: 0, 9: 1, 12: 2}
    assert meta.predicate_classes == ["on", "under", "near", "holds"]
    # json_file is Detectron2's COCO-file key: left for COCOEvaluator's own conversion
    assert meta.get("json_file", None) is None
    assert meta.annotation_file == own["entries"][1][1]


def test_perfect_predictions_score_ap_100_under_non_contiguous_ids(own, tmp_path):
    result = coco_bbox_ap("own_test", tmp_path / "eval")
    assert result["AP"] == pytest.approx(100.0)
    assert [result[f"AP-{n}"] for n in CLASSES.values()] == pytest.approx([100.0] * 3)
    # the COCO file the evaluator wrote uses the dataset's own ids
    written = json.loads((tmp_path / "eval" / "own_test_coco_format.json").read_text())
    assert sorted(c["id"] for c in written["categories"]) == [5, 9, 12]


def test_wrong_classes_score_zero(own, tmp_path):
    """The AP above is not a constant: predicting the next class scores 0."""

    def shifted(dicts):
        inputs, outputs = perfect_predictions(dicts)
        for out in outputs:
            out["instances"].pred_classes = (out["instances"].pred_classes + 1) % len(CLASSES)
        return inputs, outputs

    assert coco_bbox_ap("own_test", tmp_path / "eval", shifted)["AP"] == pytest.approx(0.0)


def test_same_entry_twice_is_harmless_and_another_file_is_refused(own, tmp_path):
    # after an evaluation has set json_file to its cache, the same entry is still known
    coco_bbox_ap("own_test", tmp_path / "eval")
    assert register_json_datasets(own["entries"]) == []
    other = [["own_test", own["entries"][0][1], own["entries"][0][2]]]
    with pytest.raises(ValueError, match="'own_test' is already registered from .*test.json"):
        register_json_datasets(other)


def test_visual_genome_metadata_maps_the_h5_labels(tmp_path):
    files = write_vg(tmp_path)
    register_visual_genome("own_vg_test", *files, str(tmp_path), "test")
    try:
        mapping = MetadataCatalog.get("own_vg_test").thing_dataset_id_to_contiguous_id
        assert mapping == {1: 0, 2: 1, 3: 2, 4: 3, 5: 4}  # 1-based h5 labels
    finally:
        DatasetCatalog.remove("own_vg_test")
        MetadataCatalog.remove("own_vg_test")


def test_clipping_log_names_the_image_json(own):
    doc = json.loads(own["paths"]["train"].read_text())
    doc["annotations"][4]["bbox"][0] = 90  # 2nd object of image 102 runs past x = 96
    own["paths"]["train"].write_text(json.dumps(doc))
    with logged("sgg_d2.data._boxes") as messages:
        DatasetCatalog.get("own_train")
    lines = [m for m in messages if "clipped" in m]
    assert len(lines) == 1
    assert "clipped 1 boxes to the image in 1 images: " in lines[0]
    assert "102.png (image_id 102)" in lines[0]


def test_clipping_log_names_the_image_vg(tmp_path):
    boxes = [list(b) for b in BOXES_1024]
    boxes[1] = [1000, 300, 100, 100]  # image 10 (800x600): x2 = 1050 * 800/1024 > 800
    files = write_vg(tmp_path, boxes=boxes)
    with logged("sgg_d2.data._boxes") as messages:
        load_visual_genome(*files, "imgs", "train", val_size=0)
    lines = [m for m in messages if "clipped" in m]
    assert len(lines) == 1 and "10.jpg (image_id 10)" in lines[0], lines


def test_not_registered_lists_the_users_names_not_detectron2s(own):
    assert "coco_2017_train" in DatasetCatalog.list()  # Detectron2's built-ins are there
    with pytest.raises(DatasetNotRegisteredError) as err:
        require_registered(["own_trian"], "DATASETS.TRAIN")
    message = str(err.value)
    assert "DATASETS.TRAIN: dataset 'own_trian' is not registered" in message
    assert "own_train" in message and "own_test" in message
    assert "coco_2017_train" not in message and "lvis" not in message
    assert "voc_2007" not in message and "cityscapes" not in message
    assert "Detectron2 built-in names not listed" in message
