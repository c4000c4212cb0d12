"""VG150 loader: exact dicts from a hand-written h5/json fixture, filters, splits, errors."""

import json
import logging
import re

import h5py
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from sgg_d2.data import DatasetFormatError, load_visual_genome, register_visual_genome

CLASSES = ["cat", "dog", "hat", "man", "tree"]
PREDICATES = ["on", "has", "near"]

# Boxes (centre x, centre y, w, h) in the 1024 frame, one row per object; the 512 frame
# holds exactly half of each value.
BOXES_1024 = [
    [100, 200, 50, 80],  # 0  image 0 (800x600)
    [300, 300, 100, 100],  # 1  image 0
    [120, 210, 40, 40],  # 2  image 0
    [200, 400, 64, 128],  # 3  image 1 (600x1200)
    [256, 512, 32, 32],  # 4  image 1
    [512, 512, 100, 100],  # 5  image 2 (500x500), no relation
    [100, 100, 20, 20],  # 6  image 4 (1024x768), test
    [110, 100, 20, 20],  # 7  image 4
    [100, 100, 20, 20],  # 8  image 5 (640x480)
    [500, 300, 40, 40],  # 9  image 5
]
LABELS = [4, 2, 3, 5, 4, 2, 3, 4, 2, 3]  # 1-based
RELATIONSHIPS = [[0, 1], [2, 0], [4, 3], [6, 7], [6, 7], [8, 9]]  # global box indices
PREDICATE_IDS = [2, 1, 3, 1, 2, 1]  # 1-based
H5 = {
    "split": [0, 0, 0, 0, 2, 0],
    "img_to_first_box": [0, 3, 5, -1, 6, 8],
    "img_to_last_box": [2, 4, 5, -1, 7, 9],
    "img_to_first_rel": [0, 2, -1, -1, 3, 5],
    "img_to_last_rel": [1, 2, -1, -1, 4, 5],
}
SIZES = [(10, 800, 600), (11, 600, 1200), (12, 500, 500), (13, 300, 200), (14, 1024, 768)]
SIZES.append((15, 640, 480))

# Hand-computed corners in pixels: (cx - w/2, cy - h/2, cx + w/2, cy + h/2) * max(W, H)/1024.
IMAGE_10 = [  # scale 800/1024 = 0.78125
    ([58.59375, 125.0, 97.65625, 187.5], 3),
    ([195.3125, 195.3125, 273.4375, 273.4375], 1),
    ([78.125, 148.4375, 109.375, 179.6875], 2),
]
IMAGE_11 = [  # scale 1200/1024 = 1.171875
    ([196.875, 393.75, 271.875, 543.75], 4),
    ([281.25, 581.25, 318.75, 618.75], 3),
]
IMAGE_12 = [([225.5859375, 225.5859375, 274.4140625, 274.4140625], 1)]  # scale 0.48828125
IMAGE_14 = [([90.0, 90.0, 110.0, 110.0], 2), ([100.0, 90.0, 120.0, 110.0], 3)]  # scale 1
IMAGE_15 = [([56.25, 56.25, 68.75, 68.75], 1), ([300.0, 175.0, 325.0, 200.0], 2)]  # 0.625


def write_vg(folder, *, h5=None, drop=(), image_data=None, boxes=None):
    """Write the three VG150 files (with optional edits); return their paths."""
    arrays = {
        "labels": np.array(LABELS, dtype=np.int64)[:, None],
        "boxes_1024": np.array(boxes or BOXES_1024, dtype=np.int32),
        "relationships": np.array(RELATIONSHIPS, dtype=np.int64),
        "predicates": np.array(PREDICATE_IDS, dtype=np.int64)[:, None],
        **{k: np.array(v, dtype=np.int64) for k, v in H5.items()},
    }
    arrays["boxes_512"] = arrays["boxes_1024"] // 2
    arrays.update(h5 or {})
    h5_file = str(folder / "VG-SGG-with-attri.h5")
    with h5py.File(h5_file, "w") as f:
        for key, value in arrays.items():
            if key not in drop:
                f[key] = value
    dicts = {
        "idx_to_label": {str(i + 1): n for i, n in enumerate(CLASSES)},
        "idx_to_predicate": {str(i + 1): n for i, n in enumerate(PREDICATES)},
        "label_to_idx": {n: i + 1 for i, n in enumerate(CLASSES)},
    }
    dicts_file, image_data_file = str(folder / "dicts.json"), str(folder / "image_data.json")
    (folder / "dicts.json").write_text(json.dumps(dicts))
    if image_data is None:
        image_data = [{"image_id": i, "width": w, "height": h} for i, w, h in SIZES]
        # A known-corrupt entry the h5 leaves out: the loader must drop it.
        image_data.insert(2, {"image_id": 1592, "width": 10, "height": 10})
    (folder / "image_data.json").write_text(json.dumps(image_data))
    return h5_file, dicts_file, image_data_file


def load(folder, split, **options):
    files = write_vg(folder)
    return load_visual_genome(*files, "imgs", split, **options)


def expected(image_id, width, height, objects, relations):
    return {
        "file_name": f"imgs/{image_id}.jpg",
        "image_id": image_id,
        "height": height,
        "width": width,
        "annotations": [
            {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": c} for box, c in objects
        ],
        "relations": relations,
    }


def assert_dicts(actual, wanted):
    assert [d["image_id"] for d in actual] == [d["image_id"] for d in wanted]
    for a, w in zip(actual, wanted):
        rel_a, rel_w = a.pop("relations"), np.array(w.pop("relations"), dtype=np.int64)
        assert rel_a.dtype == np.int64 and rel_a.shape == (len(rel_w), 3)
        np.testing.assert_array_equal(rel_a, rel_w.reshape(-1, 3))
        assert a == w


def test_train_split_exact_dicts(tmp_path):
    dicts = load(tmp_path, "train", val_size=0)
    assert_dicts(
        dicts,
        [
            expected(10, 800, 600, IMAGE_10, [[0, 1, 1], [2, 0, 0]]),
            expected(11, 600, 1200, IMAGE_11, [[1, 0, 2]]),
            expected(15, 640, 480, IMAGE_15, [[0, 1, 0]]),
        ],
    )


def test_box_scale_512_gives_the_same_pixels(tmp_path):
    dicts = load(tmp_path, "train", val_size=0, box_scale=512)
    assert [a["bbox"] for a in dicts[0]["annotations"]] == [box for box, _ in IMAGE_10]
    assert [a["bbox"] for a in dicts[1]["annotations"]] == [box for box, _ in IMAGE_11]


def test_test_split_keeps_duplicate_pairs(tmp_path):
    dicts = load(tmp_path, "test")
    assert_dicts(dicts, [expected(14, 1024, 768, IMAGE_14, [[0, 1, 0], [0, 1, 1]])])


def test_val_is_carved_from_filtered_train(tmp_path):
    val = load(tmp_path, "val", val_size=1)
    train = load(tmp_path, "train", val_size=1)
    assert [d["image_id"] for d in val] == [10]
    assert [d["image_id"] for d in train] == [11, 15]
    # Without the relation filter, image 12 (boxes, no relation) is a train image too,
    # image 13 (no boxes) never is.
    train = load(tmp_path, "train", val_size=1, filter_empty_relations=False)
    assert [d["image_id"] for d in train] == [11, 12, 15]
    assert_dicts(train[1:2], [expected(12, 500, 500, IMAGE_12, [])])


def test_filter_non_overlap_train_only(tmp_path):
    train = load(tmp_path, "train", val_size=0, filter_non_overlap=True)
    # Image 10: relation 0->1 has disjoint boxes, 2->0 overlaps. Images 11 and 15 only
    # have disjoint pairs and are dropped.
    assert_dicts(train, [expected(10, 800, 600, IMAGE_10, [[2, 0, 0]])])
    val = load(tmp_path, "val", val_size=1, filter_non_overlap=True)
    np.testing.assert_array_equal(val[0]["relations"], [[0, 1, 1], [2, 0, 0]])


def test_num_images_keeps_first(tmp_path):
    assert [d["image_id"] for d in load(tmp_path, "train", val_size=0, num_images=2)] == [10, 11]


def test_image_data_without_corrupt_entries_is_used_as_is(tmp_path):
    image_data = [{"image_id": i, "width": w, "height": h} for i, w, h in SIZES]
    files = write_vg(tmp_path, image_data=image_data)
    assert len(load_visual_genome(*files, "imgs", "train", val_size=0)) == 3


def degenerate_files(folder):
    boxes = [list(b) for b in BOXES_1024]
    boxes[1][2] = 0  # object 1 (image 10) gets zero width
    return write_vg(folder, boxes=boxes)


def test_degenerate_enlarge_is_counted_and_logged(tmp_path, caplog):
    files = degenerate_files(tmp_path)
    with caplog.at_level(logging.INFO):
        dicts = load_visual_genome(*files, "imgs", "train", val_size=0)
    # x = 300 * 0.78125 = 234.375 for both corners; enlarged to one pixel.
    assert dicts[0]["annotations"][1]["bbox"] == [234.375, 195.3125, 235.375, 273.4375]
    assert "1 zero-area boxes handled by degenerate_boxes='enlarge'" in caplog.text


def test_degenerate_drop_reindexes_relations(tmp_path, caplog):
    files = degenerate_files(tmp_path)
    with caplog.at_level(logging.INFO):
        dicts = load_visual_genome(*files, "imgs", "train", val_size=0, degenerate_boxes="drop")
    # Object 1 goes with relation 0->1; relation 2->0 becomes 1->0.
    assert_dicts(dicts[:1], [expected(10, 800, 600, [IMAGE_10[0], IMAGE_10[2]], [[1, 0, 0]])])
    assert "1 zero-area boxes handled by degenerate_boxes='drop', 1 relations dropped" in (
        caplog.text
    )


def test_degenerate_error_names_image(tmp_path):
    files = degenerate_files(tmp_path)
    with pytest.raises(DatasetFormatError, match=r"image index 0: box 1 .* zero area"):
        load_visual_genome(*files, "imgs", "train", degenerate_boxes="error")


def test_missing_files_name_path_and_option(tmp_path):
    h5_file, dicts_file, image_data_file = write_vg(tmp_path)
    missing = str(tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError, match=re.escape(f"h5_file: no such file: {missing}")):
        load_visual_genome(missing, dicts_file, image_data_file, "imgs", "train")
    missing = str(tmp_path / "nope.json")
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"image_data_file: no such file: {missing}")
    ):
        register_visual_genome("vg_missing", h5_file, dicts_file, missing, "imgs", "train")
    with pytest.raises(FileNotFoundError, match=re.escape(f"dicts_file: no such file: {missing}")):
        load_visual_genome(h5_file, missing, image_data_file, "imgs", "train")


def test_h5_missing_datasets_are_listed(tmp_path):
    files = write_vg(tmp_path, drop=("predicates", "img_to_last_rel"))
    with pytest.raises(DatasetFormatError, match="missing required dataset.*img_to_last_rel"):
        load_visual_genome(*files, "imgs", "train")
    with pytest.raises(DatasetFormatError, match="predicates, img_to_last_rel"):
        load_visual_genome(*files, "imgs", "train")
    files = write_vg(tmp_path, drop=("boxes_512",))
    with pytest.raises(DatasetFormatError, match="missing required dataset.*boxes_512"):
        load_visual_genome(*files, "imgs", "train", box_scale=512)


@pytest.mark.parametrize(
    "key, values, message",
    [
        ("img_to_last_box", [2, 2, 5, -1, 7, 9], r"image index 1: .* first > last"),
        ("img_to_last_box", [2, 4, 5, -1, 7, 10], r"image index 5: .* out of bounds \[0, 10\)"),
        ("img_to_last_rel", [1, 2, -1, 0, 4, 5], r"image index 3: .* only one end is -1"),
        ("img_to_first_box", [0, 2, 5, -1, 6, 8], r"image index 1: .* overlaps .* index 0"),
        ("relationships", [[0, 1], [2, 0], [4, 5], [6, 7], [6, 7], [8, 9]], "image index 1: rel"),
        (
            "labels",
            [[4], [2], [3], [5], [4], [2], [3], [9], [2], [3]],
            r"image index 4: labels\[7\]",
        ),
        ("predicates", [[2], [1], [3], [1], [0], [1]], r"image index 4: predicates\[4\] = 0"),
    ],
)
def test_inconsistent_h5_names_image_index(tmp_path, key, values, message):
    files = write_vg(tmp_path, h5={key: np.array(values, dtype=np.int64)})
    with pytest.raises(DatasetFormatError, match=message):
        load_visual_genome(*files, "imgs", "test")


def test_relation_outside_image_message(tmp_path):
    rels = [[0, 1], [2, 0], [4, 5], [6, 7], [6, 7], [8, 9]]
    files = write_vg(tmp_path, h5={"relationships": np.array(rels)})
    with pytest.raises(DatasetFormatError) as e:
        load_visual_genome(*files, "imgs", "train")
    assert "relation 2 = [4, 5] points outside the image's boxes [3, 4]" in str(e.value)
    assert files[0] in str(e.value)


def test_image_data_not_aligned_gives_both_counts(tmp_path):
    image_data = [{"image_id": i, "width": w, "height": h} for i, w, h in SIZES[:4]]
    files = write_vg(tmp_path, image_data=image_data)
    with pytest.raises(DatasetFormatError, match=r"has 4 entries .* has 6 images"):
        load_visual_genome(*files, "imgs", "train")


def test_register_is_lazy_and_sets_metadata(tmp_path):
    files = write_vg(tmp_path)
    names = ("vgtest_reg_train", "vgtest_reg_test")
    try:
        register_visual_genome(names[0], *files, "imgs", "train", val_size=0)
        register_visual_genome(names[1], *files, "imgs", "test")
        meta = MetadataCatalog.get(names[1])
        assert meta.thing_classes == CLASSES and meta.predicate_classes == PREDICATES
        assert meta.evaluator_type == "scene_graph"
        assert meta.train_split == names[0]
        assert MetadataCatalog.get(names[0]).train_split == names[0]
        # Lazy: a file changed after registration is what gets loaded.
        image_data = [{"image_id": i, "width": w, "height": h} for i, w, h in SIZES[:5]]
        (tmp_path / "image_data.json").write_text(json.dumps(image_data))
        with pytest.raises(DatasetFormatError, match="has 5 entries"):
            DatasetCatalog.get(names[1])
        with pytest.raises(ValueError, match="already registered"):
            register_visual_genome(names[1], *files, "imgs", "test")
    finally:
        for name in names:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
