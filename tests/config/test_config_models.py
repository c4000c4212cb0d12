"""Every config in configs/ is valid and builds its model, whose class and predicate
outputs are the counts of the dataset the config trains on; every context model has a
config per dataset family and mode.

The VG150 models (ResNeXt-101 backbones, ~3.5 s each on a CPU) are built on the ``meta``
device: shapes without memory or initialisation. The synthetic ones are built on the
CPU, and so are the grounded VG150 ones (their build runs the context once, which needs
real tensors), with a narrower ResNeXt and union-box width (no count changes).
No dataset is read: ``DATASETS.TRAIN`` is replaced by an unregistered name after its
expected counts are looked up, so the model gets placeholder statistics of the config's
sizes, and the grounded models get a zero similarity matrix of the dataset's sizes
(instead of word vectors).
"""

from functools import cache
from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog

from sgg_d2.config import SGG_MODES, add_sgg_config, validate_sgg_config
from sgg_d2.data.synthetic import AUX_CLASSES, CROWDED_WORLD, PREDICATES, THING_CLASSES
from sgg_d2.engine import SceneGraphTrainer
from sgg_d2.modeling import CONTEXT_REGISTRY
from sgg_d2.modeling.grounding import mask_transfer

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
# Partial configs, merged after a default-world leaf (see their headers), never alone.
CROWDED_WORLD_YAML = CONFIG_DIR / "synthetic_crowded" / "world.yaml"
CROWDED_GROUNDED_YAML = CONFIG_DIR / "synthetic_crowded" / "world_grounded.yaml"
PARTIALS = {CROWDED_WORLD_YAML, CROWDED_GROUNDED_YAML}
LEAVES = sorted(
    p for p in CONFIG_DIR.rglob("*.yaml") if not p.name.startswith("Base-") and p not in PARTIALS
)
FAMILIES = ("synthetic", "vg150")

# VG150 (Xu et al. 2017) is by definition Visual Genome's 150 most frequent object classes
# and 50 most frequent predicates. The package holds no VG150 name list (the loader reads
# the names from the dataset's own files), so the split's definition is the reference.
VG150_NUM_CLASSES = 150
VG150_NUM_PREDICATES = 50

# (object classes, predicates) of each training dataset a config may name.
TARGET_COUNTS = {
    "synthetic_train": (len(THING_CLASSES), len(PREDICATES)),
    "synthetic_crowded_train": (len(CROWDED_WORLD.thing_classes), len(CROWDED_WORLD.predicates)),
    "vg150_train": (VG150_NUM_CLASSES, VG150_NUM_PREDICATES),
}
# Classes of each auxiliary mask dataset; COCO's from Detectron2's builtin metadata (80).
AUX_COUNTS = {
    "synthetic_masks_train": len(AUX_CLASSES),
    "synthetic_crowded_masks_train": len(AUX_CLASSES),
    "coco_2017_train": len(MetadataCatalog.get("coco_2017_train").thing_classes),
}
UNREGISTERED = "config_test_unregistered_train"


def rel(path: Path) -> str:
    return str(path.relative_to(CONFIG_DIR))


@cache
def merged(*paths: Path):
    """The config of ``paths`` merged in order (cached and frozen: clone to change it)."""
    cfg = get_cfg()
    add_sgg_config(cfg)
    for path in paths:
        cfg.merge_from_file(str(path))
    cfg.freeze()
    return cfg


def expected_counts(cfg):
    """(classes, predicates, auxiliary classes or None) of the config's datasets."""
    train = cfg.DATASETS.TRAIN[0]
    assert train in TARGET_COUNTS, f"DATASETS.TRAIN[0] {train!r}: add its counts to the test"
    aux = None
    if cfg.MODEL.MASK_ON:
        name = cfg.DATASETS.AUX_TRAIN[0]
        assert name in AUX_COUNTS, f"DATASETS.AUX_TRAIN[0] {name!r}: add its count to the test"
        aux = AUX_COUNTS[name]
    return (*TARGET_COUNTS[train], aux)


def build(cfg, monkeypatch, num_classes, aux_classes):
    """The config's model, without weights or datasets (see the module docstring)."""
    cfg = cfg.clone()
    cfg.defrost()
    # Grounded models run their context once while being built (to size the refinement),
    # which the meta device cannot do (LSTM lengths must be on the CPU): on the CPU, with
    # widths that do not change any class or predicate count made small.
    big = cfg.MODEL.RESNETS.DEPTH >= 101
    device = "meta" if big and not cfg.MODEL.SGG.GROUNDING.ENABLED else "cpu"
    if big and device == "cpu":
        cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 1
        cfg.MODEL.SGG.UNION_DIM = 256
    cfg.MODEL.DEVICE = device
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.SGG.DETECTOR_WEIGHTS = ""
    cfg.DATASETS.TRAIN = (UNREGISTERED,)
    if aux_classes is not None:
        zeros = torch.zeros(num_classes, aux_classes)
        monkeypatch.setattr(mask_transfer, "similarity_from_config", lambda _cfg: zeros)
    with torch.device(device):
        return SceneGraphTrainer.build_model(cfg)


def predicate_widths(predictor):
    """Output widths of the relation predictor's classifier and frequency bias."""
    widths = []
    if predictor.classifier is not None:
        widths.append(predictor.classifier.out_features)
    if predictor.freq_bias is not None:
        widths.append(predictor.freq_bias.table.embedding_dim)
    return widths


def check_model(cfg, monkeypatch):
    """Validate ``cfg`` and build its model; assert its outputs against the dataset's
    counts."""
    validate_sgg_config(cfg)
    num_classes, num_predicates, aux_classes = expected_counts(cfg)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == num_classes
    model = build(cfg, monkeypatch, num_classes, aux_classes)
    heads = model.roi_heads
    assert heads.box_predictor.cls_score.out_features == num_classes + 1
    assert heads.box_predictor.bbox_pred.out_features == 4 * num_classes
    if aux_classes is not None:
        assert cfg.MODEL.SGG.GROUNDING.AUX_NUM_CLASSES == aux_classes
        assert heads.aux_box_predictor.cls_score.out_features == aux_classes + 1
        assert heads.mask_head.predictor.out_channels == aux_classes
    if cfg.MODEL.META_ARCHITECTURE != "SceneGraphRCNN":
        return model
    assert cfg.MODEL.SGG.NUM_PREDICATES == num_predicates
    widths = predicate_widths(heads.relation_predictor)
    assert widths and all(w == num_predicates + 1 for w in widths), widths
    freq_shape = (num_classes, num_classes, num_predicates + 1)
    assert tuple(model.sgg_freq_counts.shape) == freq_shape
    assert type(heads.context).__name__ == cfg.MODEL.SGG.CONTEXT
    assert heads.mode == cfg.MODEL.SGG.MODE
    return model


@pytest.mark.parametrize("path", LEAVES, ids=rel)
def test_config_builds_with_its_datasets_counts(path, monkeypatch):
    check_model(merged(path), monkeypatch)


CROWDED_CASES = [
    (p, CROWDED_WORLD_YAML)
    for p in LEAVES
    if p.parent.name == "synthetic" and p.name.endswith("_sgcls.yaml") and "grounded" not in p.name
] + [
    (p, CROWDED_WORLD_YAML, CROWDED_GROUNDED_YAML)
    for p in LEAVES
    if p.parent.name == "synthetic" and p.name.endswith("_sgcls.yaml") and "grounded" in p.name
]


@pytest.mark.parametrize("paths", CROWDED_CASES, ids=lambda ps: rel(ps[0]))
def test_crowded_world_overlay_builds_with_the_crowded_counts(paths, monkeypatch):
    """world.yaml (and world_grounded.yaml) turn a default-world leaf (one mode per model:
    the mode does not change the counts) into a crowded-world model."""
    cfg = merged(*paths)
    assert cfg.DATASETS.TRAIN[0] == "synthetic_crowded_train"
    check_model(cfg, monkeypatch)


def test_a_count_mismatch_fails_the_check(monkeypatch):
    """The check is not vacuous: a VG150 relation config told 51 predicates fails it."""
    cfg = merged(CONFIG_DIR / "vg150" / "motifs_X101_FPN_sgcls.yaml").clone()
    cfg.defrost()
    cfg.MODEL.SGG.NUM_PREDICATES = VG150_NUM_PREDICATES + 1
    with pytest.raises(AssertionError):
        check_model(cfg, monkeypatch)


def relation_configs(family):
    """(context name, mode) of every relation leaf in ``configs/<family>/``."""
    cfgs = [merged(p) for p in LEAVES if p.parent.name == family]
    return {
        (c.MODEL.SGG.CONTEXT, c.MODEL.SGG.MODE)
        for c in cfgs
        if c.MODEL.META_ARCHITECTURE == "SceneGraphRCNN"
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_every_context_model_has_a_config_per_mode(family):
    have = relation_configs(family)
    missing = [
        f"{name} {mode}"
        for name, _ in CONTEXT_REGISTRY
        for mode in SGG_MODES
        if (name, mode) not in have
    ]
    assert not missing, f"configs/{family}/ has no config for: {', '.join(missing)}"
    assert {name for name, _ in have} <= {name for name, _ in CONTEXT_REGISTRY}
