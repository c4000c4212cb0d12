"""add_sgg_config / validate_sgg_config, and the layout of configs/: every YAML loads,
at most three ``_BASE_`` levels under the shared root, leaves named after their mode and
writing to their own folder. Building each config's model: test_config_models.py."""

import inspect
from pathlib import Path

import pytest
import yaml
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser

from sgg_d2 import add_sgg_config
from sgg_d2.config import SGG_MODES, defaults, validate_sgg_config
from sgg_d2.engine import setup
from sgg_d2.modeling import CONTEXT_REGISTRY

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
ALL_CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))
# Detectron2's Faster/Mask R-CNN FPN layout, which every other config inherits.
ROOT = CONFIG_DIR / "Base-RCNN-FPN.yaml"
# Partial configs merged after a leaf (no _BASE_; see their headers).
PARTIALS = [CONFIG_DIR / "synthetic_crowded" / n for n in ("world.yaml", "world_grounded.yaml")]
LEAVES = [p for p in ALL_CONFIGS if not p.name.startswith("Base-") and p not in PARTIALS]


def sgg_cfg():
    cfg = get_cfg()
    add_sgg_config(cfg)
    return cfg


def test_defaults():
    cfg = sgg_cfg()
    assert cfg.MODEL.SGG.MODE == "sgdet"
    assert cfg.INPUT.RANDOM_FLIP == "none"
    assert tuple(cfg.TEST.SGG.RECALL_KS) == (20, 50, 100)
    validate_sgg_config(cfg)


@pytest.mark.parametrize("mode", SGG_MODES)
def test_valid_modes_pass(mode):
    cfg = sgg_cfg()
    cfg.MODEL.SGG.MODE = mode
    validate_sgg_config(cfg)


def test_bad_mode_lists_valid_values():
    cfg = sgg_cfg()
    cfg.MODEL.SGG.MODE = "sgclss"
    with pytest.raises(ValueError) as err:
        validate_sgg_config(cfg)
    message = str(err.value)
    assert "MODEL.SGG.MODE" in message and "'sgclss'" in message
    assert all(mode in message for mode in SGG_MODES)


def test_setup_validates_after_merge(tmp_path):
    args = default_argument_parser().parse_args(
        [
            "--config-file",
            str(CONFIG_DIR / "Base-RCNN-FPN.yaml"),
            "MODEL.SGG.MODE",
            "PredCls",
            "OUTPUT_DIR",
            str(tmp_path),
        ]
    )
    with pytest.raises(ValueError, match="valid values are predcls, sgcls, sgdet"):
        setup(args)


def test_config_tree_is_not_empty():
    assert len(ALL_CONFIGS) >= 4


def rel(path: Path) -> str:
    return str(path.relative_to(CONFIG_DIR))


@pytest.mark.parametrize("path", sorted(set(ALL_CONFIGS) - set(LEAVES)), ids=rel)
def test_every_base_and_partial_yaml_loads(path):
    """Leaves are merged, validated and built in test_config_models.py."""
    cfg = sgg_cfg()
    cfg.merge_from_file(str(path))
    validate_sgg_config(cfg)


def base_chain(path: Path):
    """``path`` and the files its ``_BASE_`` chain inherits, nearest first."""
    chain = [path]
    while base := yaml.safe_load(chain[-1].read_text()).get("_BASE_"):
        chain.append((chain[-1].parent / base).resolve())
    return chain


@pytest.mark.parametrize("path", sorted(set(ALL_CONFIGS) - set(PARTIALS) - {ROOT}), ids=rel)
def test_at_most_three_base_levels_under_the_root(path):
    chain = base_chain(path)
    assert chain[-1] == ROOT, f"{rel(path)} does not inherit {rel(ROOT)}"
    assert len(chain) - 2 <= 3, " -> ".join(rel(p) for p in chain)


def test_partials_have_no_base():
    """world*.yaml are merged after a leaf; a _BASE_ would overwrite the leaf's keys."""
    assert all(len(base_chain(p)) == 1 for p in PARTIALS)


def test_relation_leaves_are_named_after_their_mode():
    """A leaf sets little more than its mode, so a copied leaf with a stale mode would
    train another protocol under this name."""
    for path in LEAVES:
        cfg = sgg_cfg()
        cfg.merge_from_file(str(path))
        if cfg.MODEL.META_ARCHITECTURE == "SceneGraphRCNN":
            assert path.stem.endswith("_" + cfg.MODEL.SGG.MODE), rel(path)


def test_every_leaf_writes_to_its_own_output_dir():
    owners = {}
    for path in LEAVES:
        cfg = sgg_cfg()
        cfg.merge_from_file(str(path))
        owners.setdefault(cfg.OUTPUT_DIR, []).append(rel(path))
    shared = {d: paths for d, paths in owners.items() if len(paths) > 1}
    assert not shared, shared


def test_defaults_name_every_context_model():
    """The comment on MODEL.SGG.CONTEXT lists every registered context model."""
    source = inspect.getsource(defaults._add_relation_head_config)
    missing = [name for name, _ in CONTEXT_REGISTRY if name not in source]
    assert not missing, missing
