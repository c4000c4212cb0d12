"""OpenImages relationship loader (V6 and V4-subset class files): exact dicts, errors."""

import json
import re

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from sgg_d2.data import DatasetFormatError, load_openimages, register_openimages

CATEGORIES = {"obj": ["Man", "Guitar", "Table"], "rel": ["plays", "on"]}
ENTRIES = [
    {
        "img_fn": "0a1b",
        "img_size": [200, 100],
        "bbox": [[10, 20, 50, 90], [40, 30, 120, 80], [0, 0, 200, 100]],
        "det_labels": [0, 1, 2],
        "rel": [[0, 1, 0], [1, 2, 1], [0, 1, 1]],
    },
    {"img_fn": "ff00", "img_size": [50, 60], "bbox": [[1, 2, 3, 4]], "det_labels": [2], "rel": []},
]


def write(folder, entries=ENTRIES, categories=CATEGORIES):
    (folder / "anno.json").write_text(json.dumps(entries))
    (folder / "categories_dict.json").write_text(json.dumps(categories))
    return str(folder / "anno.json"), str(folder / "categories_dict.json")


def test_exact_dicts(tmp_path):
    ann, _ = write(tmp_path)
    dicts = load_openimages(ann, "oi_images", 3, 2)
    mode = BoxMode.XYXY_ABS
    first = dicts[0]
    assert {k: first[k] for k in ("file_name", "image_id", "width", "height")} == {
        "file_name": "oi_images/0a1b.jpg",
        "image_id": "0a1b",
        "width": 200,
        "height": 100,
    }
    assert first["annotations"] == [
        {"bbox": [10.0, 20.0, 50.0, 90.0], "bbox_mode": mode, "category_id": 0},
        {"bbox": [40.0, 30.0, 120.0, 80.0], "bbox_mode": mode, "category_id": 1},
        {"bbox": [0.0, 0.0, 200.0, 100.0], "bbox_mode": mode, "category_id": 2},
    ]
    # Relations as given (0-based predicates, duplicate pair kept).
    np.testing.assert_array_equal(first["relations"], [[0, 1, 0], [1, 2, 1], [0, 1, 1]])
    assert dicts[1]["relations"].shape == (0, 3) and dicts[1]["file_name"] == "oi_images/ff00.jpg"
    assert len(load_openimages(ann, "x", 3, 2, filter_empty_relations=True)) == 1


@pytest.mark.parametrize("num_classes, num_predicates", [(601, 30), (57, 9)])
def test_class_lists_come_from_categories_file(tmp_path, num_classes, num_predicates):
    categories = {
        "obj": [f"class {i}" for i in range(num_classes)],
        "rel": [f"pred {i}" for i in range(num_predicates)],
    }
    entry = dict(ENTRIES[1], det_labels=[num_classes - 1])
    ann, cats = write(tmp_path, [entry], categories)
    name = f"oitest_{num_classes}_val"
    try:
        register_openimages(name, ann, cats, "imgs")
        meta = MetadataCatalog.get(name)
        assert len(meta.thing_classes) == num_classes
        assert meta.predicate_classes[-1] == f"pred {num_predicates - 1}"
        assert (meta.evaluator_type, meta.train_split) == (
            "openimages_sg",
            f"oitest_{num_classes}_train",
        )
        assert DatasetCatalog.get(name)[0]["annotations"][0]["category_id"] == num_classes - 1
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"det_labels": [0, 1, 3]}, r"entry 0 \(img_fn '0a1b'\): det_labels 3 not in \[0, 3\)"),
        ({"det_labels": [0, 1]}, r"entry 0 .*: 3 boxes but 2 det_labels"),
        ({"rel": [[0, 3, 0]]}, r"entry 0 .*: rel subject/object index 3 not in \[0, 3\)"),
        ({"rel": [[0, 1, 2]]}, r"entry 0 .*: rel predicate 2 not in \[0, 2\)"),
        (
            {"bbox": [[10, 20, 5, 90], [40, 30, 120, 80], [0, 0, 1, 1]]},
            r"entry 0 .*box 0 .*malformed",
        ),
    ],
)
def test_bad_entries_name_entry(tmp_path, edit, message):
    ann, _ = write(tmp_path, [dict(ENTRIES[0], **edit)])
    with pytest.raises(DatasetFormatError, match=message):
        load_openimages(ann, "x", 3, 2)


def test_missing_keys_and_files(tmp_path):
    entry = {k: v for k, v in ENTRIES[1].items() if k not in ("rel", "img_size")}
    ann, cats = write(tmp_path, [ENTRIES[1], entry])
    with pytest.raises(
        DatasetFormatError, match=r"entry 1 \(img_fn 'ff00'\): missing key\(s\) img_size, rel"
    ):
        load_openimages(ann, "x", 3, 2)
    missing = str(tmp_path / "no.json")
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"categories_file: no such file: {missing}")
    ):
        register_openimages("oitest_missing", ann, missing, "x")
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"annotation_file: no such file: {missing}")
    ):
        register_openimages("oitest_missing", missing, cats, "x")
    (tmp_path / "bad.json").write_text(json.dumps({"obj": []}))
    with pytest.raises(DatasetFormatError, match="missing key.*rel"):
        register_openimages("oitest_missing", ann, str(tmp_path / "bad.json"), "x")


def test_register_checks_and_forwards_loader_options(tmp_path):
    """Options of ``register_openimages`` reach the loader; bad ones fail at registration."""
    ann, cats = write(tmp_path)
    with pytest.raises(ValueError, match="degenerate_boxes is 'shrink'"):
        register_openimages("oitest_opts_train", ann, cats, "x", degenerate_boxes="shrink")
    with pytest.raises(TypeError, match="filter_empty"):
        register_openimages("oitest_opts_train", ann, cats, "x", filter_empty=True)
    assert "oitest_opts_train" not in DatasetCatalog.list()
    name = "oitest_opts_test"
    try:
        register_openimages(
            name, ann, cats, "x", filter_empty_relations=True, metadata={"dataset_root": "r"}
        )
        # the second entry has no relation: dropped only because the option was forwarded
        assert [d["image_id"] for d in DatasetCatalog.get(name)] == ["0a1b"]
        meta = MetadataCatalog.get(name)
        assert (meta.train_split, meta.dataset_root) == ("oitest_opts_train", "r")
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
