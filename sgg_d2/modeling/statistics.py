"""Hand the data layer's statistics of the training split(s) to a model's constructor."""

import os

import numpy as np

__all__ = ["training_statistics"]


def training_statistics(cfg) -> dict:
    """Statistics of ``cfg.DATASETS.TRAIN`` (summed over the listed datasets).

    Computed (and cached) by :func:`sgg_d2.data.statistics.get_dataset_statistics`; the
    model only receives the arrays.

    Returns:
        dict with ``"freq_tensor"``: (C, C, P + 1) int64 counts, background at index 0.

    Raises:
        ValueError: no training dataset, or its classes/predicates disagree with
            ``MODEL.ROI_HEADS.NUM_CLASSES`` / ``MODEL.SGG.NUM_PREDICATES``.
    """
    from ..data.statistics import get_dataset_statistics

    if not cfg.DATASETS.TRAIN:
        raise ValueError(
            "MODEL.SGG.USE_FREQUENCY_BIAS needs DATASETS.TRAIN (its predicate statistics)"
        )
    cache = cfg.DATASETS.SGG.STATISTICS_CACHE_DIR or os.path.join(cfg.OUTPUT_DIR, "sgg_statistics")
    freq = sum(
        np.asarray(get_dataset_statistics(name, cache_dir=cache)["freq_tensor"])
        for name in cfg.DATASETS.TRAIN
    )
    expected = (cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    if freq.shape[:2] != expected or freq.shape[2] != cfg.MODEL.SGG.NUM_PREDICATES + 1:
        raise ValueError(
            f"DATASETS.TRAIN {cfg.DATASETS.TRAIN} has {freq.shape[0]} classes and "
            f"{freq.shape[2] - 1} predicates, but MODEL.ROI_HEADS.NUM_CLASSES is "
            f"{expected[0]} and MODEL.SGG.NUM_PREDICATES is {cfg.MODEL.SGG.NUM_PREDICATES}"
        )
    return {"freq_tensor": freq}
