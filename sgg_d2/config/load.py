"""The one way to build a run's config, shared by every entry point (``train_net.py``,
``demo/demo.py``, ``python -m sgg_d2.evaluation``, tools)."""

from typing import Sequence

from detectron2.config import CfgNode, get_cfg

from ..data.config_datasets import register_config_datasets
from .defaults import add_sgg_config, validate_sgg_config

__all__ = ["build_config", "load_config"]


def build_config(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """The frozen, validated config, without registering any dataset.

    Detectron2 defaults -> sgg_d2 keys (:func:`add_sgg_config`) -> ``config_file`` ->
    ``KEY VALUE`` overrides -> validation (:func:`validate_sgg_config`: a bad value fails
    here, naming the key) -> freeze.

    Args:
        config_file: a YAML config file ("" for the defaults alone).
        opts: flat ``[KEY, VALUE, ...]`` overrides, as on the command line.

    Raises:
        ValueError: a bad sgg_d2 key, naming it.
    """
    cfg = get_cfg()
    add_sgg_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    validate_sgg_config(cfg)
    cfg.freeze()
    return cfg


def load_config(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """The frozen config of a run (:func:`build_config`), with the custom datasets of
    ``DATASETS.SGG.JSON`` registered.

    Raises:
        ValueError: a bad sgg_d2 key or ``DATASETS.SGG.JSON`` entry, naming the key.
    """
    cfg = build_config(config_file, opts)
    register_config_datasets(cfg)
    return cfg
