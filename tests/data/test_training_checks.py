"""Checks before training on a user's own dataset: class counts against the config
(``check_class_counts``) and the image files and relations (``validate_training_data``)."""

import json

import pytest
import test_own_dataset
import tiny_configs
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from own_data_support import logged
from PIL import Image

from sgg_d2.data.consistency import check_class_counts
from sgg_d2.data.validate import TrainingDataError, validate_training_data

own = test_own_dataset.own  # the fixture: the own dataset registered as own_train/own_test

DETECTOR = "synthetic/faster_rcnn_R18_FPN_detector.yaml"  # 11 classes
RELATION = "synthetic/motifs_R18_FPN_sgcls.yaml"  # 11 classes, 11 predicates


def config(file, *opts):
    cfg = tiny_configs.sgg_cfg(file)
    cfg.merge_from_list(["DATASETS.TRAIN", ("own_train",), *opts])
    return cfg


# ---- class counts ---------------------------------------------------------------------


def test_detector_count_error_names_key_both_numbers_and_fix(own):
    own["paths"]["train"].write_text("{}")  # counts come from the registration: not re-read
    with pytest.raises(ValueError) as err:
        check_class_counts(config(DETECTOR), ["own_train"])
    message = str(err.value)
    assert "MODEL.ROI_HEADS.NUM_CLASSES is 11" in message
    assert "DATASETS.TRAIN dataset 'own_train' has 3 classes" in message
    assert "set MODEL.ROI_HEADS.NUM_CLASSES 3" in message


def test_detector_ignores_predicates_and_passes_with_the_right_count(own):
    cfg = config(DETECTOR, "MODEL.ROI_HEADS.NUM_CLASSES", 3, "MODEL.SGG.NUM_PREDICATES", 50)
    check_class_counts(cfg, ["own_train"])


def test_relation_predicate_count_error(own):
    cfg = config(RELATION, "MODEL.ROI_HEADS.NUM_CLASSES", 3)
    with pytest.raises(ValueError) as err:
        check_class_counts(cfg, ["own_test"], "DATASETS.TEST")
    message = str(err.value)
    assert "MODEL.SGG.NUM_PREDICATES is 11" in message
    assert "DATASETS.TEST dataset 'own_test' has 4 predicates" in message
    assert "set MODEL.SGG.NUM_PREDICATES 4" in message
    check_class_counts(config(RELATION, *_counts(3, 4)), ["own_test"], "DATASETS.TEST")


def _counts(classes, predicates):
    return ["MODEL.ROI_HEADS.NUM_CLASSES", classes, "MODEL.SGG.NUM_PREDICATES", predicates]


def test_counts_come_from_metadata_without_loading(own):
    def never():
        raise AssertionError("the dataset was loaded")

    DatasetCatalog.register("own_unloaded", never)
    MetadataCatalog.get("own_unloaded").set(thing_classes=["a", "b"])
    try:
        with pytest.raises(ValueError, match="'own_unloaded' has 2 classes"):
            check_class_counts(config(DETECTOR), ["own_unloaded"])
    finally:
        DatasetCatalog.remove("own_unloaded")
        MetadataCatalog.remove("own_unloaded")


def test_auxiliary_count_of_a_joint_detector(own, tmp_path):
    """A COCO-format auxiliary dataset knows its classes only once loaded: its file's
    categories are counted."""
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "circle"}]}
    coco["categories"].append({"id": 7, "name": "stripe"})
    (tmp_path / "aux.json").write_text(json.dumps(coco))
    register_coco_instances("own_aux_train", {}, str(tmp_path / "aux.json"), str(tmp_path))
    try:
        cfg = config(
            DETECTOR, "MODEL.ROI_HEADS.NUM_CLASSES", 3, "DATASETS.AUX_TRAIN", ("own_aux_train",)
        )
        with pytest.raises(ValueError) as err:
            check_class_counts(cfg, ["own_train"])
        message = str(err.value)
        assert "MODEL.SGG.GROUNDING.AUX_NUM_CLASSES is 80" in message
        assert "DATASETS.AUX_TRAIN dataset 'own_aux_train' has 2 classes" in message
        cfg.MODEL.SGG.GROUNDING.AUX_NUM_CLASSES = 2
        check_class_counts(cfg, ["own_train"])
    finally:
        DatasetCatalog.remove("own_aux_train")
        MetadataCatalog.remove("own_aux_train")


# ---- image files and relations ---------------------------------------------------------


def test_missing_and_wrong_size_images_in_one_error(own):
    images = own["paths"]["images"]
    (images / "102.png").unlink()
    Image.new("RGB", (50, 40)).save(images / "103.png")
    with pytest.raises(TrainingDataError) as err:
        validate_training_data(config(DETECTOR))
    message = str(err.value)
    assert message.startswith("DATASETS.TRAIN: 2 of 8 checked images cannot be used")
    assert f"{images / '102.png'} (image_id 102): image file not found" in message
    assert f"{images / '103.png'} (image_id 103): the annotations say 96x80" in message
    assert "but the file is 50x40" in message


def test_only_the_first_problems_are_named(own):
    for path in own["paths"]["images"].iterdir():
        path.unlink()
    with pytest.raises(TrainingDataError) as err:
        validate_training_data(config(DETECTOR))
    message = str(err.value)
    assert "8 of 8 checked images" in message and "; and 3 more." in message
    assert message.count("image file not found") == 5


def test_sample_checks_evenly_spread_images(own):
    (own["paths"]["images"] / "105.png").unlink()  # index 4: sampled by 3 (0, 4, 7), not 2
    validate_training_data(config(DETECTOR, "DATASETS.SGG.VALIDATE_IMAGES", 2))
    validate_training_data(config(DETECTOR, "DATASETS.SGG.VALIDATE_IMAGES", 0))
    with pytest.raises(TrainingDataError, match="1 of 3 checked images"):
        validate_training_data(config(DETECTOR, "DATASETS.SGG.VALIDATE_IMAGES", 3))
    with pytest.raises(ValueError, match="DATASETS.SGG.VALIDATE_IMAGES is -2"):
        validate_training_data(config(DETECTOR, "DATASETS.SGG.VALIDATE_IMAGES", -2))


def _drop_relations(paths, image_ids):
    doc = json.loads(paths["train"].read_text())
    doc["relations"] = [r for r in doc["relations"] if r["image_id"] not in image_ids]
    paths["train"].write_text(json.dumps(doc))


def test_images_without_relations_give_one_warning(own):
    _drop_relations(own["paths"], {101, 105})
    with logged("sgg_d2.data.validate") as messages:
        validate_training_data(config(RELATION, *_counts(3, 4)))
    warnings = [m for m in messages if "no relations" in m]
    assert warnings == [
        "DATASETS.TRAIN dataset 'own_train': 2 of 8 images have no relations (they train "
        "the object classifier only)"
    ]
    with logged("sgg_d2.data.validate") as messages:
        validate_training_data(config(DETECTOR, "MODEL.ROI_HEADS.NUM_CLASSES", 3))
    assert not [m for m in messages if "no relations" in m]  # detectors: images only


def test_no_relation_at_all_is_an_error_for_scene_graph_models(own):
    _drop_relations(own["paths"], set(range(101, 109)))
    with pytest.raises(TrainingDataError) as err:
        validate_training_data(config(RELATION, *_counts(3, 4)))
    assert "dataset 'own_train' has no relation in any of its 8 images" in str(err.value)
    validate_training_data(config(DETECTOR, "MODEL.ROI_HEADS.NUM_CLASSES", 3))
