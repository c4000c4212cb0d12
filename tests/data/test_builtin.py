"""Builtin registration: names appear only when files exist, lazily, and re-runs are safe."""

import json
import logging
import os

import h5py
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from sgg_d2.data.builtin import default_datasets_root, register_all_builtin

SG_PREFIXES = ("vg150_", "vrd_", "openimages_v6_", "synthetic_")


@pytest.fixture(autouse=True)
def isolated_catalog():
    """Hide builtin names registered at import (e.g. from ./datasets); restore after."""
    saved_d, saved_m = dict(DatasetCatalog.data), dict(MetadataCatalog.data)
    for name in list(DatasetCatalog.data):
        if name.startswith(SG_PREFIXES):
            DatasetCatalog.data.pop(name)
            MetadataCatalog.data.pop(name, None)
    yield
    DatasetCatalog.data.clear()
    DatasetCatalog.data.update(saved_d)
    MetadataCatalog.data.clear()
    MetadataCatalog.data.update(saved_m)


def write_vg_format(folder, split=(0, 0, 2)):
    """Three images of one box pair and one relation each (boxes in the 1024 frame)."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(split)
    boxes = np.tile(np.array([[100, 100, 50, 50], [120, 110, 40, 40]], dtype=np.int32), (n, 1))
    with h5py.File(folder / "VG-SGG-with-attri.h5", "w") as f:
        f["labels"] = np.ones((2 * n, 1), dtype=np.int64)
        f["boxes_1024"] = boxes
        f["boxes_512"] = boxes // 2
        f["relationships"] = np.array([[2 * i, 2 * i + 1] for i in range(n)])
        f["predicates"] = np.ones((n, 1), dtype=np.int64)
        f["img_to_first_box"] = np.arange(n) * 2
        f["img_to_last_box"] = np.arange(n) * 2 + 1
        f["img_to_first_rel"] = np.arange(n)
        f["img_to_last_rel"] = np.arange(n)
        f["split"] = np.array(split)
    dicts = {"idx_to_label": {"1": "shape"}, "idx_to_predicate": {"1": "near"}}
    (folder / "VG-SGG-dicts-with-attri.json").write_text(json.dumps(dicts))
    image_data = [{"image_id": i, "width": 128, "height": 96} for i in range(n)]
    (folder / "image_data.json").write_text(json.dumps(image_data))


def write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f)


def write_synthetic(root):
    """A miniature synthetic world in every format (SUCCESS.json last)."""
    syn = root / "synthetic"
    write_vg_format(syn)
    (syn / "images").mkdir()
    for i in range(3):
        Image.new("RGB", (128, 96)).save(syn / "images" / f"{i}.jpg")
    rel = {"predicate": 0, "subject": {"category": 0, "bbox": [1, 9, 2, 8]}}
    rel["object"] = {"category": 0, "bbox": [3, 9, 2, 8]}
    for split, ids in (("train", [0, 1]), ("test", [2])):
        write_json(syn / "vrd" / f"annotations_{split}.json", {f"{i}.jpg": [rel] for i in ids})
    write_json(syn / "vrd" / "objects.json", ["shape"])
    write_json(syn / "vrd" / "predicates.json", ["near"])
    oi = syn / "openimages" / "annotations"
    write_json(oi / "categories_dict.json", {"obj": ["shape"], "rel": ["near"]})
    sg = {
        "categories": [{"id": 1, "name": "shape"}],
        "predicate_categories": [{"id": 1, "name": "near"}],
        "relations": [],
    }
    for split, ids in (("train", [1]), ("val", [0]), ("test", [2])):
        entry = {"img_size": [128, 96], "bbox": [[1, 1, 9, 9]], "det_labels": [0], "rel": []}
        write_json(oi / f"vrd-{split}-anno.json", [dict(entry, img_fn=str(i)) for i in ids])
        images = [{"id": i, "file_name": f"{i}.jpg", "width": 128, "height": 96} for i in ids]
        write_json(
            syn / "json" / f"scene_graphs_{split}.json", dict(sg, images=images, annotations=[])
        )
    coco = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 32, "height": 32}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [1, 1, 8, 8],
                "area": 64,
                "iscrowd": 0,
                "segmentation": [[1, 1, 9, 1, 9, 9, 1, 9]],
            }
        ],
        "categories": [{"id": 1, "name": "circle"}],
    }
    for split in ("train", "val"):
        write_json(syn / "coco_masks" / "annotations" / f"instances_{split}.json", coco)
    write_json(syn / "SUCCESS.json", {"num_val": 1, "seed": 0})


def test_nothing_registered_without_files(tmp_path):
    assert register_all_builtin(str(tmp_path)) == []


def test_vg_registered_when_h5_exists(tmp_path):
    write_vg_format(tmp_path / "vg", split=(0,) * 5 + (2,) * 2)
    names = register_all_builtin(str(tmp_path))
    assert names == ["vg150_train", "vg150_val", "vg150_test"]
    meta = MetadataCatalog.get("vg150_test")
    assert meta.dataset_root == str(tmp_path / "vg") and meta.train_split == "vg150_train"
    assert MetadataCatalog.get("vg150_val").train_split == "vg150_train"
    # val_size 5000 > 5 train images: all of them form val, train is empty.
    assert len(DatasetCatalog.get("vg150_val")) == 5 and DatasetCatalog.get("vg150_train") == []
    test = DatasetCatalog.get("vg150_test")
    assert test[0]["file_name"] == os.path.join(str(tmp_path), "vg", "VG_100K", "5.jpg")
    assert register_all_builtin(str(tmp_path)) == []  # re-run: nothing new, no error


def test_partial_folders_register_what_exists(tmp_path, caplog):
    write_json(tmp_path / "vrd" / "annotations_train.json", {})
    write_json(tmp_path / "vrd" / "objects.json", ["a"])
    write_json(tmp_path / "vrd" / "predicates.json", ["p"])
    # OpenImages with its categories file missing: logged, not raised at import.
    write_json(tmp_path / "openimages_v6" / "annotations" / "vrd-train-anno.json", [])
    with caplog.at_level(logging.WARNING):
        names = register_all_builtin(str(tmp_path))
    assert names == ["vrd_train"]
    assert MetadataCatalog.get("vrd_train").evaluator_type == "vrd"
    assert "openimages_v6_train not registered: categories_file: no such file" in caplog.text


def test_existing_names_are_left_alone(tmp_path):
    write_vg_format(tmp_path / "vg")
    DatasetCatalog.register("vg150_test", lambda: ["mine"])
    assert register_all_builtin(str(tmp_path)) == ["vg150_train", "vg150_val"]
    assert DatasetCatalog.get("vg150_test") == ["mine"]


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SGG_DATASETS", str(tmp_path))
    assert default_datasets_root() == str(tmp_path)
    write_vg_format(tmp_path / "vg")
    assert "vg150_test" in register_all_builtin()
    monkeypatch.delenv("SGG_DATASETS")
    assert default_datasets_root() == "datasets"


def test_synthetic_world_every_loader(tmp_path):
    write_synthetic(tmp_path)
    success = tmp_path / "synthetic" / "SUCCESS.json"
    success.rename(tmp_path / "later.json")
    assert register_all_builtin(str(tmp_path)) == []  # incomplete world: not registered
    (tmp_path / "later.json").rename(success)
    names = register_all_builtin(str(tmp_path))
    splits3 = [
        f"{p}_{s}"
        for p in ("synthetic", "synthetic_openimages", "synthetic_json")
        for s in ("train", "val", "test")
    ]
    assert set(names) == set(
        splits3
        + [
            "synthetic_vrd_train",
            "synthetic_vrd_test",
            "synthetic_masks_train",
            "synthetic_masks_val",
        ]
    )
    # num_val = 1 from SUCCESS.json: VG-format val is the first train image.
    assert [d["image_id"] for d in DatasetCatalog.get("synthetic_val")] == [0]
    assert [d["image_id"] for d in DatasetCatalog.get("synthetic_train")] == [1]
    assert [d["image_id"] for d in DatasetCatalog.get("synthetic_vrd_train")] == ["0", "1"]
    assert DatasetCatalog.get("synthetic_openimages_test")[0]["image_id"] == "2"
    assert DatasetCatalog.get("synthetic_json_val")[0]["file_name"].endswith("images/0.jpg")
    masks = DatasetCatalog.get("synthetic_masks_train")
    assert masks[0]["annotations"][0]["segmentation"] == [[1, 1, 9, 1, 9, 9, 1, 9]]
    assert MetadataCatalog.get("synthetic_masks_val").evaluator_type == "coco"
    for name in ("synthetic_test", "synthetic_vrd_test", "synthetic_json_test"):
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == ["shape"] and meta.predicate_classes == ["near"]
        assert meta.dataset_root.startswith(str(tmp_path / "synthetic"))
    assert MetadataCatalog.get("synthetic_json_test").train_split == "synthetic_json_train"
    assert MetadataCatalog.get("synthetic_openimages_val").evaluator_type == "openimages_sg"
