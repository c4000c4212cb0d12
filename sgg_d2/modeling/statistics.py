"""Hand the data layer's statistics of the training split(s) to a model's constructor.

A trained model carries these (``SceneGraphRCNN`` stores the class and predicate names and
the frequency counts in its state dict), so inference needs no dataset: when
``DATASETS.TRAIN`` is not registered, the model is built with placeholders (zeros, no
names) that ``MODEL.WEIGHTS`` then overwrites.
"""

import logging
import os

import numpy as np

__all__ = ["training_statistics"]

logger = logging.getLogger(__name__)


def _registered(names) -> bool:
    from detectron2.data import DatasetCatalog

    known = set(DatasetCatalog.list())
    return all(n in known for n in names)


def training_statistics(cfg) -> dict:
    """Statistics of ``cfg.DATASETS.TRAIN`` (summed over the listed datasets).

    Computed (and cached) by :func:`sgg_d2.data.statistics.get_dataset_statistics`; the
    model only receives the arrays.

    Returns:
        dict with ``"freq_tensor"``: (C, C, P + 1) int64 counts, background at index 0;
        ``"thing_classes"`` / ``"predicate_classes"``: the names (of the first dataset);
        ``"complete"``: False when a dataset is not registered (inference from weights
        that carry the statistics): then counts are zeros and the name lists empty.

    Raises:
        ValueError: no training dataset, or its classes/predicates disagree with
            ``MODEL.ROI_HEADS.NUM_CLASSES`` / ``MODEL.SGG.NUM_PREDICATES``.
    """
    from ..data.statistics import get_dataset_statistics

    if not cfg.DATASETS.TRAIN:
        raise ValueError(
            "MODEL.SGG.USE_FREQUENCY_BIAS needs DATASETS.TRAIN (its predicate statistics)"
        )
    num_classes, num_predicates = cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.MODEL.SGG.NUM_PREDICATES
    if not _registered(cfg.DATASETS.TRAIN):
        logger.info(
            "DATASETS.TRAIN %s is not registered: the model is built without statistics and "
            "class names; they come from MODEL.WEIGHTS (a trained model carries them)",
            list(cfg.DATASETS.TRAIN),
        )
        return {
            "freq_tensor": np.zeros((num_classes, num_classes, num_predicates + 1), np.int64),
            "thing_classes": [],
            "predicate_classes": [],
            "complete": False,
        }
    cache = cfg.DATASETS.SGG.STATISTICS_CACHE_DIR or os.path.join(cfg.OUTPUT_DIR, "sgg_statistics")
    stats = [get_dataset_statistics(name, cache_dir=cache) for name in cfg.DATASETS.TRAIN]
    freq = sum(np.asarray(s["freq_tensor"]) for s in stats)
    expected = (num_classes, num_classes)
    if freq.shape[:2] != expected or freq.shape[2] != num_predicates + 1:
        raise ValueError(
            f"DATASETS.TRAIN {cfg.DATASETS.TRAIN} has {freq.shape[0]} classes and "
            f"{freq.shape[2] - 1} predicates, but MODEL.ROI_HEADS.NUM_CLASSES is "
            f"{expected[0]} and MODEL.SGG.NUM_PREDICATES is {num_predicates}"
        )
    return {
        "freq_tensor": freq,
        "thing_classes": list(stats[0]["thing_classes"]),
        "predicate_classes": list(stats[0]["predicate_classes"]),
        "complete": True,
    }
