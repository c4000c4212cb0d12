"""The joint (target + auxiliary) loader: batch composition, source tags, catalog dicts."""

import itertools

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog

from sgg_d2 import add_sgg_config
from sgg_d2.data.joint_loader import (
    AUX,
    TARGET,
    JointLoader,
    SourceTaggedMapper,
    aux_counts,
    build_joint_train_loader,
    input_source,
    is_aux_dataset,
    split_by_source,
    tagged_dataset_dicts,
)


def _stream(prefix):
    """An infinite loader yielding one-element lists, like a Detectron2 loader per worker."""
    for i in itertools.count():
        yield [{"id": f"{prefix}{i}"}]


@pytest.mark.parametrize("batch,fraction", [(4, 0.25), (4, 0.1), (2, 0.5), (3, 0.4), (1, 0.3)])
def test_aux_counts_follow_the_fraction(batch, fraction):
    counts = list(itertools.islice(aux_counts(batch, fraction), 1000))
    assert all(0 <= c <= batch for c in counts)
    total = 0
    for b, c in enumerate(counts, start=1):
        total += c
        assert abs(total - fraction * batch * b) <= 0.5 + 1e-9
    assert total == round(fraction * batch * 1000)


def test_aux_counts_examples():
    assert list(itertools.islice(aux_counts(4, 0.25), 4)) == [1, 1, 1, 1]
    assert list(itertools.islice(aux_counts(4, 0.1), 5)) == [0, 1, 0, 1, 0]  # 0.4 per batch
    assert list(itertools.islice(aux_counts(2, 0.0), 3)) == [0, 0, 0]
    with pytest.raises(ValueError, match="AUX_FRACTION must be in"):
        next(aux_counts(4, 1.5))


def test_joint_loader_composes_batches_in_order():
    loader = JointLoader(_stream("t"), _stream("a"), batch_size=4, aux_fraction=0.25)
    batches = list(itertools.islice(iter(loader), 3))
    assert [[x["id"] for x in b] for b in batches] == [
        ["t0", "t1", "t2", "a0"],
        ["t3", "t4", "t5", "a1"],
        ["t6", "t7", "t8", "a2"],
    ]
    with pytest.raises(ValueError, match="AUX_FRACTION"):
        JointLoader(_stream("t"), _stream("a"), 4, -0.1)


def test_joint_loader_stops_when_a_finite_source_ends():
    loader = JointLoader([[{"id": 0}], [{"id": 1}], [{"id": 2}]], _stream("a"), 2, 0.5)
    assert len(list(loader)) == 3  # 3 target images, one per batch


def test_source_tags_and_split():
    mapper = SourceTaggedMapper(lambda d: {"image": d["x"]}, AUX)
    out = mapper({"x": 1, "dataset_name": "coco"})
    assert out == {"image": 1, "source": "aux", "dataset_name": "coco"}
    batch = [{"source": "target"}, {}, {"source": "aux"}, {"source": "target"}]
    assert split_by_source(batch) == {TARGET: [0, 1, 3], AUX: [2]}
    assert input_source({}) == TARGET  # plain inputs are target inputs
    with pytest.raises(ValueError, match="'coco'.*expected one of"):
        input_source({"source": "coco", "file_name": "x.jpg"})
    with pytest.raises(ValueError, match="source 'mask'"):
        SourceTaggedMapper(lambda d: d, "mask")


def _register(name, n, prefix, with_predicates):
    if name in DatasetCatalog.list():
        return
    anno = {"bbox": [0, 0, 4, 4], "bbox_mode": 0, "category_id": 0}
    DatasetCatalog.register(
        name,
        lambda: [
            {
                "file_name": f"{prefix}{i}.jpg",
                "image_id": i,
                "height": 8,
                "width": 8,
                "annotations": [dict(anno)],
            }
            for i in range(n)
        ],
    )
    meta = {"thing_classes": ["x"]}
    if with_predicates:
        meta["predicate_classes"] = ["p"]
    MetadataCatalog.get(name).set(**meta)


def test_tagged_dataset_dicts_leave_the_catalog_untouched():
    _register("tests_joint_target", 3, "t", True)
    dicts = tagged_dataset_dicts(["tests_joint_target"])
    assert [d["dataset_name"] for d in dicts] == ["tests_joint_target"] * 3
    assert all("dataset_name" not in d for d in DatasetCatalog.get("tests_joint_target"))


def test_is_aux_dataset_by_metadata():
    _register("tests_joint_target", 3, "t", True)
    _register("tests_joint_aux", 2, "a", False)
    assert not is_aux_dataset("tests_joint_target")
    assert is_aux_dataset("tests_joint_aux")


def test_build_joint_train_loader_mixes_both_datasets():
    _register("tests_joint_target", 3, "t", True)
    _register("tests_joint_aux", 2, "a", False)
    cfg = add_sgg_config(get_cfg())
    cfg.DATASETS.TRAIN = ("tests_joint_target",)
    cfg.DATASETS.AUX_TRAIN = ("tests_joint_aux",)
    cfg.DATASETS.AUX_FRACTION = 0.5
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.DATALOADER.NUM_WORKERS = 0
    loader = build_joint_train_loader(cfg, lambda d: dict(d), lambda d: dict(d))
    for batch in itertools.islice(iter(loader), 5):
        assert [x["source"] for x in batch] == ["target", "target", "aux", "aux"]
        assert [x["dataset_name"] for x in batch] == ["tests_joint_target"] * 2 + [
            "tests_joint_aux"
        ] * 2
        assert all(x["file_name"].startswith("t") for x in batch[:2])
        assert all(x["file_name"].startswith("a") for x in batch[2:])
    cfg.DATALOADER.SAMPLER_TRAIN = "RepeatFactorTrainingSampler"
    with pytest.raises(ValueError, match="TrainingSampler only"):
        build_joint_train_loader(cfg, dict, dict)
