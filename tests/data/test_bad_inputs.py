"""Bad data inputs give errors that name the file, image and field at fault (VG150 h5,
scene-graph JSON, dataset mapper)."""

import copy
import re

import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.structures import BoxMode
from PIL import Image
from test_scene_graph_json import DATA
from test_scene_graph_json import write as write_json
from test_visual_genome import H5, RELATIONSHIPS, write_vg

from sgg_d2.config import add_sgg_config
from sgg_d2.data import (
    DatasetFormatError,
    SceneGraphDatasetMapper,
    load_scene_graph_json,
    load_visual_genome,
)


def test_non_hdf5_file_names_the_path(tmp_path):
    h5_file, dicts_file, image_data_file = write_vg(tmp_path)
    with open(h5_file, "w") as f:
        f.write("not an h5 file\n")
    with pytest.raises(DatasetFormatError, match=f"h5_file {re.escape(h5_file)} is not an HDF5"):
        load_visual_genome(h5_file, dicts_file, image_data_file, "imgs", "train")


def test_unknown_split_code_names_image_index_and_value(tmp_path):
    split = list(H5["split"])
    split[3] = 1
    files = write_vg(tmp_path, h5={"split": np.array(split, dtype=np.int64)})
    with pytest.raises(DatasetFormatError) as err:
        load_visual_genome(*files, "imgs", "test")
    assert "image index 3: split = 1, expected 0 (train/val) or 2 (test)" in str(err.value)


def test_vg_self_relation_names_image_and_relation(tmp_path):
    pairs = [list(p) for p in RELATIONSHIPS]
    pairs[2] = [4, 4]  # image index 1 owns boxes 3-4 and relation 2
    files = write_vg(tmp_path, h5={"relationships": np.array(pairs, dtype=np.int64)})
    with pytest.raises(DatasetFormatError) as err:
        load_visual_genome(*files, "imgs", "train", val_size=0)
    message = str(err.value)
    assert "image index 1: relation 2 = [4, 4] relates box 4 to itself" in message
    assert files[0] in message
    assert "self_relations='drop'" in message


def test_vg_self_relations_dropped_only_on_request(tmp_path, caplog):
    pairs = [list(p) for p in RELATIONSHIPS]
    pairs[2] = [4, 4]
    files = write_vg(tmp_path, h5={"relationships": np.array(pairs, dtype=np.int64)})
    (tmp_path / "clean").mkdir()
    clean = load_visual_genome(
        *write_vg(tmp_path / "clean"), "imgs", "train", val_size=0, filter_empty_relations=False
    )
    with caplog.at_level("WARNING"):
        kept = load_visual_genome(
            *files, "imgs", "train", val_size=0, self_relations="drop", filter_empty_relations=False
        )
    assert "dropped 1 self-relation(s)" in caplog.text
    n_clean = sum(len(d["relations"]) for d in clean)
    assert sum(len(d["relations"]) for d in kept) == n_clean - 1
    for d in kept:
        assert all(r[0] != r[1] for r in d["relations"])
    with pytest.raises(ValueError, match="self_relations"):
        load_visual_genome(*files, "imgs", "train", self_relations="skip")


def test_json_self_relation_names_image_and_relation(tmp_path):
    data = copy.deepcopy(DATA)
    data["relations"][1]["object_id"] = 71  # subject 71 -> object 71
    path = write_json(tmp_path, data)
    with pytest.raises(DatasetFormatError) as err:
        load_scene_graph_json(path, "imgs")
    message = str(err.value)
    assert f"json_file {path}: relations[1]: image id 7: subject_id and object_id" in message
    assert "both 71" in message


def test_json_relations_object_instead_of_list(tmp_path):
    data = copy.deepcopy(DATA)
    data["relations"] = {"7": data["relations"]}
    path = write_json(tmp_path, data)
    with pytest.raises(DatasetFormatError) as err:
        load_scene_graph_json(path, "imgs")
    assert f"json_file {path}: 'relations' must be a list of objects, got a dict" in str(err.value)


@pytest.fixture
def mapper_and_record(tmp_path):
    cfg = add_sgg_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TEST = 40
    mapper = SceneGraphDatasetMapper(cfg, False)
    path = tmp_path / "img.jpg"
    Image.fromarray(np.full((60, 80, 3), 128, dtype=np.uint8)).save(path, quality=95)
    record = {
        "file_name": str(path),
        "image_id": 42,
        "height": 60,
        "width": 80,
        "annotations": [
            {"bbox": [2.0, 1.0, 10.0, 5.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
            {"bbox": [12.0, 2.0, 30.0, 40.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1},
        ],
        "relations": np.array([[0, 1, 0]], dtype=np.int64),
    }
    return mapper, record


def test_truncated_jpeg_names_the_file(mapper_and_record):
    mapper, record = mapper_and_record
    assert mapper(record)["relations"].shape == (1, 3)  # intact: fine
    with open(record["file_name"], "rb") as f:
        data = f.read()
    with open(record["file_name"], "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(OSError) as err:
        mapper(record)
    message = str(err.value)
    assert f"cannot read image file {record['file_name']} (image_id 42)" in message
    assert "truncated" in message


def test_relations_of_wrong_type_in_dataset_dict(mapper_and_record):
    mapper, record = mapper_and_record
    record["relations"] = {"subject": 0, "object": 1, "predicate": 0}
    with pytest.raises(ValueError, match="'relations' must be an int array \\(R, 3\\).*got dict"):
        mapper(record)
