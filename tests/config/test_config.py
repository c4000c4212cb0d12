"""add_sgg_config / validate_sgg_config, and every YAML in configs/ loads."""

from pathlib import Path

import pytest
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser

from sgg_d2 import add_sgg_config
from sgg_d2.config import SGG_MODES, validate_sgg_config
from sgg_d2.engine import setup

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
ALL_CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))


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


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_every_yaml_loads(path):
    cfg = sgg_cfg()
    cfg.merge_from_file(str(path))
    validate_sgg_config(cfg)
