"""The crowded synthetic world (``--preset crowded``): statistics, extra rules, tags, files,
registration, and the default world left byte for byte as it was."""

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from sgg_d2.data.builtin import register_all_builtin
from sgg_d2.data.synthetic.__main__ import main, parse_args
from sgg_d2.data.synthetic.generate import (
    PRESET_CONFIGS,
    WorldConfig,
    generate_world,
    held_out_ids,
    read_tags,
)
from sgg_d2.data.synthetic.relations import CrowdedRules, pair_statistics, relation_labels
from sgg_d2.data.synthetic.scene import image_tags, visible_masks
from sgg_d2.data.synthetic.shapes import Shape, draw_mask, mask_box, sample_shape_param
from sgg_d2.data.synthetic.world import (
    CROWDED_PREDICATES,
    CROWDED_TARGET_CLASSES,
    CROWDED_WORLD,
    DEFAULT_WORLD,
    MASK_DEPENDENT_PREDICATES,
    PREDICATES,
    THING_CLASSES,
)

SMALL = WorldConfig(
    seed=3, num_train=40, num_val=6, num_test=20, num_mask_train=2, num_mask_val=2, image_size=224
)
P = {name: i for i, name in enumerate(CROWDED_PREDICATES)}
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def quiet(_msg):
    return None


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """A small crowded world generated through the command line; (root, printed text)."""
    root = tmp_path_factory.mktemp("datasets") / "synthetic_crowded"
    out = io.StringIO()
    args = ["--root", str(root), "--preset", "crowded", "--no-progress", "--seed", "3"]
    args += ["--num-train", "40", "--num-val", "6", "--num-test", "20"]
    args += ["--num-mask-train", "2", "--num-mask-val", "2"]
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return str(root), out.getvalue()


def load(root, *parts):
    with open(os.path.join(root, *parts)) as f:
        return json.load(f)


def file_hashes(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                out[os.path.relpath(os.path.join(folder, name), root)] = hashlib.sha256(
                    f.read()
                ).hexdigest()
    return out


def test_vocabulary_extends_the_default_world():
    assert len(CROWDED_WORLD.thing_classes) >= 20 and len(CROWDED_WORLD.predicates) >= 16
    # Prefix extension: indices of the default names agree in both worlds.
    assert CROWDED_WORLD.thing_classes[: len(THING_CLASSES)] == THING_CLASSES
    assert CROWDED_WORLD.predicates[: len(PREDICATES)] == PREDICATES
    for spec in (DEFAULT_WORLD, CROWDED_WORLD):
        groups = spec.predicate_groups
        assert sorted(groups["mask_dependent"] + groups["geometric"]) == sorted(spec.predicates)
        assert set(groups["mask_dependent"]) == set(MASK_DEPENDENT_PREDICATES)
    assert "far from" in CROWDED_WORLD.predicate_groups["geometric"]


@pytest.mark.parametrize("cls", CROWDED_TARGET_CLASSES[len(THING_CLASSES) :])
def test_new_shapes_draw_within_their_radius(cls):
    # Layout keeps a shape inside the image by its radius: every new kind must fit it.
    param = sample_shape_param(np.random.default_rng(0), cls.shape, 20.0)
    shape = Shape(cls.shape, 50.0, 50.0, 20.0, 0.7, param)
    mask = draw_mask(shape, 100, 100)
    rows, cols = np.nonzero(mask)
    assert mask.sum() > 100
    assert np.hypot(cols + 0.5 - 50, rows + 0.5 - 50).max() <= 20.0 + 1.0
    if cls.name == "nut":  # hollow: a hole the "in hole of" rule can use
        assert not mask[50, 50]


def _crowded_labels(masks):
    masks = np.stack(masks)
    hollow = np.zeros(len(masks), bool)
    boxes = np.stack([mask_box(m) for m in visible_masks(masks)])
    stats = pair_statistics(masks, hollow)
    rules = CrowdedRules(beside_gap=20.0, far_gap=100.0)
    return relation_labels(masks, hollow, boxes, stats, rules)[0], relation_labels(
        masks, hollow, boxes, stats
    )[0]


def square(size, r0, r1, c0, c1):
    m = np.zeros((size, size), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def test_crowded_rules_on_hand_made_masks():
    size = 224
    # Same height, 15 px apart horizontally: beside (both ways); default: left/right of.
    a, b = square(size, 50, 70, 10, 30), square(size, 50, 70, 45, 65)
    crowded, default = _crowded_labels([a, b])
    assert crowded[0, 1] == crowded[1, 0] == P["beside"]
    assert default[0, 1] == P["left of"] and default[1, 0] == P["right of"]
    # 15 px apart vertically: not beside (|dy| > |dx|); equal sizes; straight: above.
    crowded, _ = _crowded_labels([a, square(size, 85, 105, 10, 30)])
    assert crowded[0, 1] == P["above"]
    # 150 px apart: far from.
    crowded, _ = _crowded_labels([a, square(size, 50, 70, 180, 200)])
    assert crowded[0, 1] == crowded[1, 0] == P["far from"]
    # 40x40 vs 10x10 (16x area), 40 px gap, straight line: larger / smaller than.
    big, small = square(size, 50, 90, 10, 50), square(size, 65, 75, 90, 100)
    crowded, _ = _crowded_labels([big, small])
    assert crowded[0, 1] == P["larger than"] and crowded[1, 0] == P["smaller than"]
    # Same size, 45-degree offset, 40 px gap: diagonal to; default: a direction.
    crowded, default = _crowded_labels([a, square(size, 110, 130, 70, 90)])
    assert crowded[0, 1] == crowded[1, 0] == P["diagonal to"]
    assert default[0, 1] in (P["left of"], P["above"])
    # Mask rules still come first: 5 px gap is near, not beside.
    crowded, _ = _crowded_labels([a, square(size, 50, 70, 35, 55)])
    assert crowded[0, 1] == P["near"]


def _tag_case(distractor_gap, distractor_predicate):
    # Objects: 0 = ball (subject), 1 = ring (object), 2 = ball (distractor next to 0).
    labels = np.array([0, 1, 0])
    primary = np.array([[-1, P["inside"], P["near"]], [P["around"], -1, 0], [0, 0, -1]])
    primary[2, 1] = distractor_predicate
    gap = np.full((3, 3), 50.0)
    gap[0, 2] = gap[2, 0] = distractor_gap
    relations = np.array([[0, 1, P["inside"]]])
    return image_tags(labels, primary, gap, relations, max_gap=10.0)


def test_confusion_tag_hand_made():
    assert _tag_case(4.0, P["left of"]) == ("confusion",)
    assert _tag_case(30.0, P["left of"]) == ()  # distractor too far from the subject
    assert _tag_case(4.0, P["inside"]) == ()  # distractor takes part in the relation too


def test_proximal_tag_hand_made():
    # Two "on" pairs (0 on 1), (2 on 3), objects 1 and 2 close; cross pairs differ.
    labels = np.arange(4)
    primary = np.full((4, 4), P["left of"])
    primary[0, 1] = primary[2, 3] = P["on"]
    gap = np.full((4, 4), 60.0)
    gap[1, 2] = gap[2, 1] = 5.0
    rel = np.array([[0, 1, P["on"]], [2, 3, P["on"]]])
    assert image_tags(labels, primary, gap, rel, max_gap=10.0) == ("proximal",)
    far = gap.copy()
    far[1, 2] = far[2, 1] = 40.0
    assert image_tags(labels, primary, far, rel, max_gap=10.0) == ()
    other = np.array([[0, 1, P["on"]], [2, 3, P["left of"]]])  # different predicates
    assert image_tags(labels, primary, gap, other, max_gap=10.0) == ()
    crossed = primary.copy()
    crossed[0, 3] = crossed[2, 1] = P["on"]  # the wrong pairing is "on" too
    assert image_tags(labels, crossed, gap, rel, max_gap=10.0) == ()


def test_crowded_world_statistics_are_printed_and_hold(crowded):
    root, printed = crowded
    stats = load(root, "SUCCESS.json")["statistics"]
    assert load(root, "SUCCESS.json")["preset"] == "crowded"
    for split in ("train", "test"):
        objects = stats["objects_per_image"][split]
        assert 8 <= objects["min"] and objects["max"] <= 20 and objects["mean"] >= 10
        assert stats["tag_fractions"][split]["confusion"] >= 0.4
        assert stats["tag_fractions"][split]["proximal"] >= 0.2
    assert stats["num_thing_classes"] >= 20 and stats["num_predicates"] >= 16
    assert stats["long_tail_ratio"] >= 30
    assert "objects/image 8-" in printed and "long tail" in printed
    assert "images tagged: confusion" in printed and "mask_dependent" in printed
    # Objects per image measured again from the written h5-independent JSON format.
    anns = load(root, "json", "scene_graphs_test.json")["annotations"]
    per_image = np.bincount([a["image_id"] for a in anns])
    per_image = per_image[per_image > 0]
    assert len(per_image) == SMALL.num_test and per_image.min() >= 8 and per_image.max() <= 20


def test_crowded_files_vocabulary_holdout_and_tags(crowded):
    root, _ = crowded
    assert load(root, "vrd", "predicates.json") == list(CROWDED_PREDICATES)
    assert load(root, "openimages", "annotations", "categories_dict.json")["obj"] == list(
        CROWDED_WORLD.thing_classes
    )
    glove = open(os.path.join(root, "glove", "synthetic.50d.txt")).read().split("\n")
    words = {line.split(" ")[0] for line in glove if line}
    assert {"nut", "chevron", "far", "diagonal"} <= words
    assert os.path.isfile(os.path.join(root, "VG-SGG-with-attri.h5"))
    assert os.path.isfile(os.path.join(root, "coco_masks", "annotations", "instances_val.json"))
    # Zero-shot: held-out triplets never in train, planted in test.
    held = set(held_out_ids())
    triplets = {}
    for split in ("train", "val", "test"):
        data = load(root, "json", f"scene_graphs_{split}.json")
        cat = {a["id"]: a["category_id"] - 1 for a in data["annotations"]}
        triplets[split] = {
            (cat[r["subject_id"]], r["predicate_id"] - 1, cat[r["object_id"]])
            for r in data["relations"]
        }
    assert not held & (triplets["train"] | triplets["val"])
    assert held & triplets["test"]
    tags = read_tags(root)
    n_images = SMALL.num_train + SMALL.num_test
    assert sorted(tags["image_tags"]) == list(range(1, n_images + 1))
    assert tags["predicate_groups"] == CROWDED_WORLD.predicate_groups


def test_crowded_names_register_with_groups_and_tags(crowded):
    root, _ = crowded
    prefix = "synthetic_crowded"
    for name in list(DatasetCatalog.list()):
        if name.startswith(prefix):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    registered = register_all_builtin(os.path.dirname(root))
    expected = [f"{prefix}_{s}" for s in ("train", "val", "test")]
    expected += [f"{prefix}_masks_{s}" for s in ("train", "val")]
    expected += [f"{prefix}_json_{s}" for s in ("train", "val", "test")]
    expected += [f"{prefix}_vrd_{s}" for s in ("train", "test")]
    expected += [f"{prefix}_openimages_{s}" for s in ("train", "val", "test")]
    assert sorted(registered) == sorted(expected)
    tags = read_tags(root)["image_tags"]
    for split in ("train", "val", "test"):
        dicts = DatasetCatalog.get(f"{prefix}_{split}")
        meta = MetadataCatalog.get(f"{prefix}_{split}")
        assert meta.predicate_groups == CROWDED_WORLD.predicate_groups
        assert list(meta.thing_classes) == list(CROWDED_WORLD.thing_classes)
        ids = [d["image_id"] for d in dicts]
        assert all(isinstance(i, int) and meta.image_tags[i] == tags[i] for i in ids)
        assert meta.train_split == f"{prefix}_train"
    assert len(DatasetCatalog.get(f"{prefix}_val")) == SMALL.num_val
    for name in expected:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_crowded_same_seed_byte_identical(tmp_path):
    cfg = WorldConfig(seed=5, num_train=3, num_val=1, num_test=4, num_mask_train=1,
                      num_mask_val=1, image_size=224)  # fmt: skip
    for name in ("a", "b"):
        generate_world(str(tmp_path / name), cfg, progress=False, log=quiet, preset="crowded")
    assert file_hashes(str(tmp_path / "a")) == file_hashes(str(tmp_path / "b"))
    other = WorldConfig(**{**cfg.__dict__, "seed": 6})
    generate_world(str(tmp_path / "c"), other, progress=False, log=quiet, preset="crowded")
    first, third = file_hashes(str(tmp_path / "a")), file_hashes(str(tmp_path / "c"))
    assert first["images/1.jpg"] != third["images/1.jpg"]
    assert first["VG-SGG-with-attri.h5"] != third["VG-SGG-with-attri.h5"]


def test_default_world_unchanged_by_presets(tmp_path):
    # sha256 of annotation files of this tiny default world as generated before the
    # crowded preset existed (commit faa8c30): presets must not change the default world.
    cfg = WorldConfig(seed=0, num_train=20, num_val=5, num_test=12, num_mask_train=3,
                      num_mask_val=2)  # fmt: skip
    generate_world(str(tmp_path), cfg, progress=False, log=quiet)
    hashes = file_hashes(str(tmp_path))
    assert "tags.json" not in hashes
    assert hashes["json/scene_graphs_train.json"].startswith("bdec0dc3e6918b90")
    assert hashes["openimages/annotations/vrd-test-anno.json"].startswith("60664ff58c0e8487")
    assert hashes["glove/synthetic.50d.txt"].startswith("fb03c5a539a05455")
    # The summary changed with generator version 2 (overlapping auxiliary images, their
    # statistics); the target files above did not.
    assert hashes["SUCCESS.json"].startswith("4fe374d6326318b2")


def test_preset_switch_regenerates_and_cli_defaults(tmp_path):
    args = parse_args(["--root", "x", "--preset", "crowded"])
    assert args.preset == "crowded" and args.image_size is None
    assert PRESET_CONFIGS["crowded"].image_size == 224
    assert PRESET_CONFIGS["crowded"].num_test == 100
    cfg = WorldConfig(seed=1, num_train=3, num_val=1, num_test=4, num_mask_train=1,
                      num_mask_val=1, image_size=224)  # fmt: skip
    root = str(tmp_path / "w")
    generate_world(root, cfg, progress=False, log=quiet, preset="crowded")
    assert os.path.isfile(os.path.join(root, "tags.json"))
    # Same parameters, other preset: not "complete"; regenerated without stale tags.
    summary = generate_world(root, cfg, progress=False, log=quiet)
    assert "preset" not in summary and not os.path.exists(os.path.join(root, "tags.json"))
    assert load(root, "vrd", "predicates.json") == list(PREDICATES)


def test_read_tags_names_the_bad_file(tmp_path):
    path = tmp_path / "tags.json"
    path.write_text(json.dumps({"predicate_groups": {}, "image_tags": {"1": ["crowd"]}}))
    with pytest.raises(ValueError, match=r"tags\.json.*unknown image tags"):
        read_tags(str(tmp_path))
    path.write_text(json.dumps({"predicate_groups": {}}))
    with pytest.raises(ValueError, match=r"tags\.json.*'image_tags'"):
        read_tags(str(tmp_path))
    assert read_tags(str(tmp_path / "absent")) is None


@pytest.mark.parametrize("model", ["frequency", "motifs", "reldn_nocontrastive", "fnet"])
def test_world_yaml_turns_a_synthetic_leaf_into_a_crowded_run(model):
    from detectron2.config import get_cfg

    from sgg_d2.config import add_sgg_config, validate_sgg_config

    cfg = get_cfg()
    add_sgg_config(cfg)
    cfg.merge_from_file(str(CONFIGS / "synthetic" / f"{model}_R18_FPN_sgcls.yaml"))
    context = cfg.MODEL.SGG.CONTEXT
    cfg.merge_from_file(str(CONFIGS / "synthetic_crowded" / "world.yaml"))
    validate_sgg_config(cfg)
    assert cfg.MODEL.SGG.CONTEXT == context and cfg.MODEL.SGG.MODE == "sgcls"
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == len(CROWDED_WORLD.thing_classes)
    assert cfg.MODEL.SGG.NUM_PREDICATES == len(CROWDED_WORLD.predicates)
    assert cfg.DATASETS.TRAIN == ("synthetic_crowded_train",)
    assert min(cfg.TEST.DETECTIONS_PER_IMAGE, cfg.MODEL.SGG.TRAIN_DETECTIONS_PER_IMAGE) >= 20
    assert cfg.MODEL.SGG.DETECTOR_WEIGHTS.startswith("output/synthetic_crowded/detector/")
    assert cfg.INPUT.MIN_SIZE_TEST == PRESET_CONFIGS["crowded"].image_size


def test_crowded_configs_pin_one_backbone():
    """The crowded detector, its joint detector and world.yaml (stage 2) each pin the
    64-channel R18-FPN (Detectron2 allows one _BASE_, so the pin is written three times);
    a change to one alone would make stage 2 unable to load the detector."""
    from detectron2.config import get_cfg

    from sgg_d2.config import add_sgg_config

    def backbone(*files):
        cfg = get_cfg()
        add_sgg_config(cfg)
        for f in files:
            cfg.merge_from_file(str(CONFIGS / f))
        m = cfg.MODEL
        return m.BACKBONE.NAME, m.RESNETS.RES2_OUT_CHANNELS, m.FPN.OUT_CHANNELS, m.RESNETS.NORM

    pinned = ("build_resnet_fpn_backbone", 64, 64, "GN")
    assert backbone("synthetic_crowded/faster_rcnn_R18_FPN_detector.yaml") == pinned
    assert backbone("synthetic_crowded/mask_rcnn_R18_FPN_joint_detector.yaml") == pinned
    assert backbone("synthetic/motifs_R18_FPN_sgcls.yaml", "synthetic_crowded/world.yaml") == pinned
    assert backbone("synthetic/faster_rcnn_R18_FPN_detector.yaml") != pinned  # half width
