"""sgg_d2 scene-graph JSON loader: the documented example, id mapping, masks, errors."""

import copy
import json

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from pycocotools import mask as mask_util

from sgg_d2.data import DatasetFormatError, load_scene_graph_json, register_scene_graph_json

# The example of datasets/README.md, plus a second image and out-of-order ids.
DATA = {
    "categories": [{"id": 1, "name": "ball"}, {"id": 2, "name": "box"}, {"id": 9, "name": "cup"}],
    "predicate_categories": [{"id": 1, "name": "left of"}, {"id": 2, "name": "on"}],
    "images": [
        {"id": 7, "file_name": "7.jpg", "width": 160, "height": 120},
        {"id": 3, "file_name": "sub/3.png", "width": 20, "height": 10},
    ],
    "annotations": [
        {
            "id": 70,
            "image_id": 7,
            "category_id": 1,
            "bbox": [10, 20, 30, 40],
            "segmentation": [[10, 20, 40, 20, 40, 60, 10, 60]],
        },
        {"id": 5, "image_id": 3, "category_id": 9, "bbox": [0, 0, 4, 4]},
        {
            "id": 71,
            "image_id": 7,
            "category_id": 2,
            "bbox": [50, 20, 30, 40],
            "segmentation": [[50, 20, 80, 20, 80, 60]],
        },
    ],
    "relations": [
        {"image_id": 7, "subject_id": 70, "object_id": 71, "predicate_id": 1},
        {"image_id": 7, "subject_id": 71, "object_id": 70, "predicate_id": 2},
    ],
}


def write(folder, data=DATA):
    path = folder / "sg.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_example_exact_dicts(tmp_path):
    dicts = load_scene_graph_json(write(tmp_path), "root")
    mode = BoxMode.XYXY_ABS
    seven, three = dicts
    relations = seven.pop("relations")
    assert seven == {
        "file_name": "root/7.jpg",
        "image_id": 7,
        "height": 120,
        "width": 160,
        "annotations": [
            {
                "bbox": [10.0, 20.0, 40.0, 60.0],
                "bbox_mode": mode,
                "category_id": 0,
                "segmentation": [[10, 20, 40, 20, 40, 60, 10, 60]],
            },
            {
                "bbox": [50.0, 20.0, 80.0, 60.0],
                "bbox_mode": mode,
                "category_id": 1,
                "segmentation": [[50, 20, 80, 20, 80, 60]],
            },
        ],
    }
    np.testing.assert_array_equal(relations, [[0, 1, 0], [1, 0, 1]])
    assert three["file_name"] == "root/sub/3.png"
    assert three["annotations"] == [
        {"bbox": [0.0, 0.0, 4.0, 4.0], "bbox_mode": mode, "category_id": 2}
    ]
    assert three["relations"].shape == (0, 3) and three["relations"].dtype == np.int64


def test_uncompressed_rle_is_compressed(tmp_path):
    data = copy.deepcopy(DATA)
    data["annotations"][1]["segmentation"] = {"size": [10, 20], "counts": [0, 3, 197]}
    dicts = load_scene_graph_json(write(tmp_path, data), "root")
    segm = dicts[1]["annotations"][0]["segmentation"]
    mask = mask_util.decode(segm)
    assert mask.shape == (10, 20) and mask.sum() == 3 and mask[:3, 0].all()


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("annotations", 1, "category_id"), 4, "annotation id 5: unknown category id 4"),
        (("annotations", 2, "image_id"), 8, "annotation id 71: unknown image id 8"),
        (("relations", 1, "predicate_id"), 3, r"relations\[1\]: unknown predicate id 3"),
        (("relations", 0, "object_id"), 72, r"relations\[0\]: unknown object_id 72"),
        (
            ("relations", 1, "subject_id"),
            5,
            r"relations\[1\]: subject_id 5 belongs to image 3, not to image 7",
        ),
        (("relations", 0, "image_id"), 4, r"relations\[0\]: unknown image id 4"),
        (("annotations", 2, "id"), 70, "annotation id 70: annotation id repeated"),
    ],
)
def test_bad_ids_name_file_and_id(tmp_path, path, value, message):
    data = copy.deepcopy(DATA)
    data[path[0]][path[1]][path[2]] = value
    json_file = write(tmp_path, data)
    with pytest.raises(DatasetFormatError, match=message) as e:
        load_scene_graph_json(json_file, "root")
    assert json_file in str(e.value)


def test_missing_top_level_keys_listed(tmp_path):
    data = {k: v for k, v in DATA.items() if k not in ("relations", "predicate_categories")}
    with pytest.raises(DatasetFormatError, match="missing key.*predicate_categories, relations"):
        load_scene_graph_json(write(tmp_path, data), "root")
    with pytest.raises(FileNotFoundError, match="json_file: no such file"):
        register_scene_graph_json("sgjson_none", str(tmp_path / "none.json"), "root")


def test_register_one_call(tmp_path):
    json_file = write(tmp_path)
    try:
        register_scene_graph_json("sgjson_val", json_file, "root", train_split="mine_train")
        meta = MetadataCatalog.get("sgjson_val")
        assert meta.thing_classes == ["ball", "box", "cup"]
        assert meta.predicate_classes == ["left of", "on"]
        assert (meta.evaluator_type, meta.train_split) == ("scene_graph", "mine_train")
        assert [d["image_id"] for d in DatasetCatalog.get("sgjson_val")] == [7, 3]
    finally:
        DatasetCatalog.remove("sgjson_val")
        MetadataCatalog.remove("sgjson_val")
