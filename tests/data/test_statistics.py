"""Dataset statistics: hand-computed frequency tensor, zero-shot set, cache behaviour."""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

import sgg_d2.data.statistics as statistics
from sgg_d2.data import (
    compute_statistics,
    compute_zero_shot_triplets,
    get_dataset_statistics,
    get_zero_shot_triplets,
)


def image(objects, relations):
    annos = [{"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": c} for c, b in objects]
    return {"annotations": annos, "relations": np.array(relations, dtype=np.int64).reshape(-1, 3)}


# Overlaps: 0-1, 0-3; 2 overlaps nothing. Relations 0->1 (twice) and 2->0.
IMAGE_A = image(
    [(0, [0, 0, 10, 10]), (1, [5, 5, 15, 15]), (2, [100, 100, 110, 110]), (1, [8, 0, 20, 4])],
    [[0, 1, 0], [0, 1, 1], [2, 0, 1]],
)
IMAGE_B = image([(2, [0, 0, 5, 5]), (2, [0, 0, 5, 5])], [[1, 0, 0]])
IMAGE_C = image([(1, [0, 0, 5, 5])], [])
IMAGE_D = image([(0, [0, 0, 10, 10]), (0, [10, 0, 20, 10])], [])  # touching: IoU 0
# XYWH input is converted: [8, 0, 12, 4] is the box [8, 0, 20, 4].
IMAGE_A_XYWH = image([], [])
IMAGE_A_XYWH["annotations"] = [dict(a) for a in IMAGE_A["annotations"]]
IMAGE_A_XYWH["annotations"][3] = {
    "bbox": [8, 0, 12, 4],
    "bbox_mode": BoxMode.XYWH_ABS,
    "category_id": 1,
}
IMAGE_A_XYWH["relations"] = IMAGE_A["relations"]


def expected_freq():
    freq = np.zeros((3, 3, 3), dtype=np.int64)
    freq[0, 1, 1] += 1  # A: 0->1 predicate 0
    freq[0, 1, 2] += 1  # A: 0->1 predicate 1 (duplicate pair counted too)
    freq[2, 0, 2] += 1  # A: 2->0 predicate 1 (boxes disjoint: still counted)
    freq[2, 2, 1] += 1  # B: 1->0 predicate 0
    # Background: overlapping ordered pairs without a relation.
    freq[1, 0, 0] += 2  # A: (1, 0) and (3, 0)
    freq[0, 1, 0] += 1  # A: (0, 3); (0, 1) has a relation
    freq[2, 2, 0] += 1  # B: (0, 1); (1, 0) has a relation
    return freq


def test_frequency_tensor_and_counts_by_hand():
    for dicts in ([IMAGE_A, IMAGE_B, IMAGE_C, IMAGE_D], [IMAGE_A_XYWH, IMAGE_B, IMAGE_C, IMAGE_D]):
        stats = compute_statistics(dicts, num_classes=3, num_predicates=2)
        np.testing.assert_array_equal(stats["freq_tensor"], expected_freq())
        np.testing.assert_array_equal(stats["predicate_counts"], [2, 2])
        assert int(stats["num_images"]) == 4


def test_zero_shot_triplets():
    train = [IMAGE_A]  # triplets (0,1,0), (0,1,1), (2,0,1)
    test_e = image([(0, [0, 0, 1, 1]), (1, [0, 0, 1, 1])], [[0, 1, 0], [1, 0, 0], [1, 0, 0]])
    zs = compute_zero_shot_triplets(train, [IMAGE_B, test_e])
    np.testing.assert_array_equal(zs, [[1, 0, 0], [2, 2, 0]])
    assert zs.dtype == np.int64
    assert compute_zero_shot_triplets(train, [IMAGE_C]).shape == (0, 3)
    np.testing.assert_array_equal(compute_zero_shot_triplets([], [IMAGE_B]), [[2, 2, 0]])


@pytest.fixture
def registered(tmp_path):
    """Two registered splits with a dataset_root; count loads and removes them after."""
    loads = {"n": 0}
    data = {"stattest_train": [IMAGE_A, IMAGE_C], "stattest_test": [IMAGE_B, IMAGE_D]}

    def loader(name):
        loads["n"] += 1
        return data[name]

    for name in data:
        DatasetCatalog.register(name, lambda name=name: loader(name))
        MetadataCatalog.get(name).set(
            thing_classes=["a", "b", "c"],
            predicate_classes=["p", "q"],
            train_split="stattest_train",
            dataset_root=str(tmp_path / "root"),
        )
    yield data, loads
    for name in data:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_cache_written_once_under_dataset_root(registered, tmp_path, monkeypatch):
    data, _ = registered
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    stats = get_dataset_statistics("stattest_train")
    assert stats["num_images"] == 2 and stats["thing_classes"] == ["a", "b", "c"]
    cache = tmp_path / "root" / ".sgg_cache"
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].startswith("stattest_train.stats.")
    assert os.listdir(cwd) == []

    def fail(*args, **kwargs):
        raise AssertionError("statistics recomputed although cached")

    monkeypatch.setattr(statistics, "compute_statistics", fail)
    again = get_dataset_statistics("stattest_train")
    np.testing.assert_array_equal(again["freq_tensor"], stats["freq_tensor"])
    # Changed data -> new fingerprint -> recomputed into a second file.
    data["stattest_train"].append(IMAGE_B)
    with pytest.raises(AssertionError, match="recomputed"):
        get_dataset_statistics("stattest_train")
    data["stattest_train"].pop()


def test_zero_shot_through_catalog_and_explicit_cache_dir(registered, tmp_path):
    zs = get_zero_shot_triplets("stattest_test", cache_dir=str(tmp_path / "out"))
    np.testing.assert_array_equal(zs, [[2, 2, 0]])
    assert len(os.listdir(tmp_path / "out")) == 1
    np.testing.assert_array_equal(
        get_zero_shot_triplets("stattest_test", str(tmp_path / "out")), zs
    )
    assert get_zero_shot_triplets("stattest_train", str(tmp_path / "out")).shape == (0, 3)


def test_concurrent_writers_leave_one_complete_file(registered, tmp_path):
    folder = str(tmp_path / "concurrent")
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: get_dataset_statistics("stattest_test", folder), range(4))
        )
    for r in results:
        np.testing.assert_array_equal(r["freq_tensor"], results[0]["freq_tensor"])
    assert [f.endswith(".npz") for f in os.listdir(folder)] == [True]


def test_no_cache_dir_and_no_dataset_root_is_an_error():
    DatasetCatalog.register("stattest_noroot", lambda: [IMAGE_A])
    MetadataCatalog.get("stattest_noroot").set(thing_classes=["a"], predicate_classes=["p"])
    try:
        with pytest.raises(ValueError, match="'stattest_noroot' has no 'dataset_root'.*cache_dir"):
            get_dataset_statistics("stattest_noroot")
    finally:
        DatasetCatalog.remove("stattest_noroot")
        MetadataCatalog.remove("stattest_noroot")
