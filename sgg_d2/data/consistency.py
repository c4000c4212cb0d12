"""Config against data: the class counts of the model must be those of its datasets.

As in Detectron2, ``MODEL.ROI_HEADS.NUM_CLASSES`` (and sgg_d2's ``MODEL.SGG.NUM_PREDICATES``
and ``MODEL.SGG.GROUNDING.AUX_NUM_CLASSES``) are never derived from the data: a config
that disagrees with a dataset's metadata is an error naming the key, both counts and the
override that fixes it, raised before the model is built (otherwise a 3-class dataset
silently trains an 11-way classifier).
"""

import json
import logging
from typing import Iterable, List, Optional, Tuple

from detectron2.data import MetadataCatalog

__all__ = ["check_class_counts"]

logger = logging.getLogger(__name__)


def _aux_in_play(cfg) -> bool:
    """Whether ``MODEL.SGG.GROUNDING.AUX_NUM_CLASSES`` sizes a part of the model: the
    joint detector (a detector config with ``DATASETS.AUX_TRAIN``) or grounding."""
    if not cfg.DATASETS.AUX_TRAIN:
        return False
    return cfg.MODEL.META_ARCHITECTURE != "SceneGraphRCNN" or cfg.MODEL.SGG.GROUNDING.ENABLED


def _thing_count(name: str) -> Optional[int]:
    """Number of ``thing_classes`` of a registered dataset, without loading it.

    A COCO-format dataset registered by ``register_coco_instances`` only learns its
    classes when loaded: its ``json_file`` categories are counted instead. ``None`` when
    neither is known (e.g. an unregistered name: that error belongs to the loader).
    """
    meta = MetadataCatalog.get(name)
    classes = meta.get("thing_classes", None)
    if classes is not None:
        return len(classes)
    json_file = meta.get("json_file", None)
    if not json_file:
        return None
    try:
        with open(json_file) as f:
            return len(json.load(f)["categories"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: the loader names the file when it reads it


def _mismatch(key: str, value: int, dataset_key: str, name: str, count: int, what: str) -> str:
    return (
        f"{key} is {value} but {dataset_key} dataset {name!r} has {count} {what}; set "
        f"{key} {count} (Detectron2 never derives it from the data)"
    )


_CLASSES, _PREDICATES = "classes (thing_classes)", "predicates (predicate_classes)"


def _expected_counts(cfg, name: str, aux: bool) -> List[Tuple[str, int, str, Optional[int]]]:
    """``(config key, config value, what, dataset count)`` to compare for one dataset."""
    if aux:  # an auxiliary mask dataset: the auxiliary classes
        aux_classes = cfg.MODEL.SGG.GROUNDING.AUX_NUM_CLASSES
        return [("MODEL.SGG.GROUNDING.AUX_NUM_CLASSES", aux_classes, _CLASSES, _thing_count(name))]
    classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    out = [("MODEL.ROI_HEADS.NUM_CLASSES", classes, _CLASSES, _thing_count(name))]
    predicates = MetadataCatalog.get(name).get("predicate_classes", None)
    if cfg.MODEL.META_ARCHITECTURE == "SceneGraphRCNN" and predicates is not None:
        num = cfg.MODEL.SGG.NUM_PREDICATES
        out.append(("MODEL.SGG.NUM_PREDICATES", num, _PREDICATES, len(predicates)))
    return out


def check_class_counts(cfg, dataset_names: Iterable[str], key: str = "DATASETS.TRAIN") -> None:
    """Check the config's class counts against each named dataset's metadata.

    Compared, without loading any dataset:

    - ``MODEL.ROI_HEADS.NUM_CLASSES`` with ``len(thing_classes)``;
    - for scene-graph models (``MODEL.META_ARCHITECTURE == "SceneGraphRCNN"``),
      ``MODEL.SGG.NUM_PREDICATES`` with ``len(predicate_classes)`` of the datasets that
      have predicates;
    - when ``DATASETS.AUX_TRAIN`` is used (joint detector, or grounding enabled),
      ``MODEL.SGG.GROUNDING.AUX_NUM_CLASSES`` with the classes of every
      ``DATASETS.AUX_TRAIN`` dataset and of each named dataset without
      ``predicate_classes`` (an auxiliary mask dataset, e.g. COCO instances).

    A dataset whose class count is unknown without loading it (no ``thing_classes`` and
    no readable COCO ``json_file``) is skipped.

    Args:
        cfg: the run's config.
        dataset_names: registered dataset names, e.g. ``cfg.DATASETS.TRAIN``.
        key: the config key they come from, named in the error.

    Raises:
        ValueError: e.g. ``"MODEL.ROI_HEADS.NUM_CLASSES is 11 but DATASETS.TRAIN dataset
            'my_train' has 3 classes (thing_classes); set MODEL.ROI_HEADS.NUM_CLASSES 3
            (...)"``.
    """
    aux_in_play = _aux_in_play(cfg)
    named = [(key, name) for name in dataset_names]
    if aux_in_play:
        named += [("DATASETS.AUX_TRAIN", name) for name in cfg.DATASETS.AUX_TRAIN]
    for dataset_key, name in named:
        aux = aux_in_play and (
            dataset_key == "DATASETS.AUX_TRAIN"
            or MetadataCatalog.get(name).get("predicate_classes", None) is None
        )
        for config_key, value, what, count in _expected_counts(cfg, name, aux):
            if count is None:
                logger.debug("%s %s: class count unknown before loading", dataset_key, name)
            elif count != value:
                raise ValueError(_mismatch(config_key, value, dataset_key, name, count, what))
