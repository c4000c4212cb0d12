"""After running the generator, every synthetic_* builtin name registers and loads."""

from detectron2.data import DatasetCatalog, MetadataCatalog

from sgg_d2.data.builtin import register_all_builtin
from sgg_d2.data.synthetic import THING_CLASSES, WorldConfig, generate_world

NAMES = [f"synthetic_{s}" for s in ("train", "val", "test")] + [
    f"synthetic_{fmt}_{s}"
    for fmt, splits in (
        ("vrd", ("train", "test")),
        ("openimages", ("train", "val", "test")),
        ("json", ("train", "val", "test")),
        ("masks", ("train", "val")),
    )
    for s in splits
]


def test_generated_world_loads_through_builtin_names(tmp_path):
    config = WorldConfig(num_train=8, num_val=3, num_test=4, num_mask_train=2, num_mask_val=2)
    generate_world(str(tmp_path / "synthetic"), config, progress=False, log=lambda _: None)
    for name in NAMES:  # names from other tests/worlds must not shadow this one
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    registered = register_all_builtin(str(tmp_path))
    assert sorted(registered) == sorted(NAMES)
    sizes = {name: len(DatasetCatalog.get(name)) for name in NAMES}
    assert sizes["synthetic_train"] == 5 and sizes["synthetic_val"] == 3
    assert sizes["synthetic_test"] == 4 and sizes["synthetic_json_val"] == 3
    assert sizes["synthetic_masks_train"] == 2 and sizes["synthetic_masks_val"] == 2
    assert all(sizes[n] > 0 for n in NAMES)
    meta = MetadataCatalog.get("synthetic_test")
    assert list(meta.thing_classes) == list(THING_CLASSES)
    assert meta.train_split == "synthetic_train" and meta.evaluator_type == "scene_graph"
    first = DatasetCatalog.get("synthetic_train")[0]
    assert first["relations"].shape[1] == 3 and first["annotations"]
    for name in NAMES:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
