"""VRD loader: box order, de-duplication, image sizes from files, errors."""

import json
import re

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.structures import BoxMode
from PIL import Image

from sgg_d2.data import DatasetFormatError, load_vrd, register_vrd
from sgg_d2.data._checks import image_size

OBJECTS = ["person", "dog", "ball"]
PREDICATES = ["on", "near", "has", "holds"]


def obj(category, bbox):
    return {"category": category, "bbox": bbox}


def rel(predicate, subject, object_):
    return {"predicate": predicate, "subject": subject, "object": object_}


MAN = obj(1, [10, 50, 20, 60])  # [ymin, ymax, xmin, xmax]
BALL = obj(2, [30, 70, 5, 25])
SMALL = obj(0, [0, 10, 0, 10])
PERSON_SAME_BOX = obj(0, [10, 50, 20, 60])  # same box as MAN, other class: another object
ANNOTATIONS = {
    "a.jpg": [
        rel(0, MAN, BALL),
        rel(3, MAN, SMALL),
        rel(1, BALL, MAN),
        rel(2, PERSON_SAME_BOX, BALL),
    ],
    "b.png": [rel(1, SMALL, BALL)],
    "c.gif": [],
}
SIZES = {"a.jpg": (100, 80), "b.png": (64, 48), "c.gif": (32, 32)}


def write_vrd(folder, annotations=ANNOTATIONS):
    images = folder / "images"
    images.mkdir(exist_ok=True)
    for name, size in SIZES.items():
        Image.new("RGB", size, (40, 80, 120)).save(images / name)
    (folder / "ann.json").write_text(json.dumps(annotations))
    (folder / "objects.json").write_text(json.dumps(OBJECTS))
    (folder / "predicates.json").write_text(json.dumps(PREDICATES))
    return str(folder / "ann.json"), str(images)


def annos(*objects):
    return [{"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": c} for b, c in objects]


def test_vrd_exact_dicts(tmp_path):
    ann, images = write_vrd(tmp_path)
    dicts = load_vrd(ann, images, len(OBJECTS), len(PREDICATES))
    assert [d["image_id"] for d in dicts] == ["a", "b", "c"]
    a, b, c = dicts
    assert (a["file_name"], a["width"], a["height"]) == (f"{images}/a.jpg", 100, 80)
    # Objects de-duplicated by (category, box) in order of first appearance; the box
    # [ymin, ymax, xmin, xmax] becomes [xmin, ymin, xmax, ymax].
    assert a["annotations"] == annos(
        ([20.0, 10.0, 60.0, 50.0], 1),
        ([5.0, 30.0, 25.0, 70.0], 2),
        ([0.0, 0.0, 10.0, 10.0], 0),
        ([20.0, 10.0, 60.0, 50.0], 0),
    )
    np.testing.assert_array_equal(a["relations"], [[0, 1, 0], [0, 2, 3], [1, 0, 1], [3, 1, 2]])
    assert a["relations"].dtype == np.int64
    assert (b["width"], b["height"]) == (64, 48)
    assert b["annotations"] == annos(([0.0, 0.0, 10.0, 10.0], 0), ([5.0, 30.0, 25.0, 48.0], 2))
    np.testing.assert_array_equal(b["relations"], [[0, 1, 1]])
    # c.gif is kept, empty; the ball box in b.png was clipped to the 48-pixel height.
    assert c["annotations"] == [] and c["relations"].shape == (0, 3)
    assert c["file_name"].endswith("c.gif")


def test_filter_empty_relations_option(tmp_path):
    ann, images = write_vrd(tmp_path)
    dicts = load_vrd(ann, images, 3, 4, filter_empty_relations=True)
    assert [d["image_id"] for d in dicts] == ["a", "b"]


def test_missing_image_is_named(tmp_path):
    ann, images = write_vrd(tmp_path)
    (tmp_path / "images" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{images}/b.png")):
        load_vrd(ann, images, 3, 4)


def test_bad_category_and_predicate_name_image_and_relation(tmp_path):
    bad = {"a.jpg": [rel(0, MAN, BALL), rel(1, obj(7, [0, 1, 0, 1]), BALL)]}
    ann, images = write_vrd(tmp_path, bad)
    with pytest.raises(DatasetFormatError, match=r"image 'a.jpg', relation 1 subject: category 7"):
        load_vrd(ann, images, 3, 4)
    ann, images = write_vrd(tmp_path, {"b.png": [rel(9, MAN, BALL)]})
    with pytest.raises(DatasetFormatError, match=r"image 'b.png', relation 0: predicate 9"):
        load_vrd(ann, images, 3, 4)
    ann, images = write_vrd(tmp_path, {"b.png": [rel(0, {"category": 1}, BALL)]})
    with pytest.raises(DatasetFormatError, match=r"relation 0 subject: expected .*bbox"):
        load_vrd(ann, images, 3, 4)


def test_inverted_box_is_an_error(tmp_path):
    ann, images = write_vrd(tmp_path, {"a.jpg": [rel(0, obj(1, [50, 10, 20, 60]), BALL)]})
    with pytest.raises(DatasetFormatError, match=r"image 'a.jpg'.*box 0 .* malformed"):
        load_vrd(ann, images, 3, 4)


def test_register_vrd_metadata_and_missing_files(tmp_path):
    ann, images = write_vrd(tmp_path)
    objects, predicates = str(tmp_path / "objects.json"), str(tmp_path / "predicates.json")
    try:
        register_vrd("vrdtest_test", ann, images, objects, predicates)
        meta = MetadataCatalog.get("vrdtest_test")
        assert meta.thing_classes == OBJECTS and meta.predicate_classes == PREDICATES
        assert (meta.evaluator_type, meta.train_split) == ("vrd", "vrdtest_train")
        assert len(DatasetCatalog.get("vrdtest_test")) == 3
    finally:
        DatasetCatalog.remove("vrdtest_test")
        MetadataCatalog.remove("vrdtest_test")
    missing = str(tmp_path / "none.json")
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"objects_file: no such file: {missing}")
    ):
        register_vrd("vrdtest_x", ann, images, missing, predicates)
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"annotation_file: no such file: {missing}")
    ):
        register_vrd("vrdtest_x", missing, images, objects, predicates)
    assert "vrdtest_x" not in DatasetCatalog.list()


def test_image_size_follows_exif_rotation(tmp_path):
    path = str(tmp_path / "rotated.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: read_image returns a 30 x 20 (w x h) image
    Image.new("RGB", (20, 30)).save(path, exif=exif)
    assert image_size(path) == (30, 20)
    assert read_image(path).shape[:2] == (20, 30)
