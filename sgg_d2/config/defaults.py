"""Config keys of sgg_d2, added to a Detectron2 config by :func:`add_sgg_config`."""

from detectron2.config import CfgNode as CN

__all__ = ["add_sgg_config", "validate_sgg_config", "SGG_MODES"]

# PredCls: GT boxes and labels given; SGCls: GT boxes given; SGDet: nothing given.
SGG_MODES = ("predcls", "sgcls", "sgdet")


def add_sgg_config(cfg: CN) -> CN:
    """Add every sgg_d2 key, with its default, to a Detectron2 config (in place).

    Call it right after ``get_cfg()`` and before merging files. Validate with
    :func:`validate_sgg_config` after all merges.

    Returns:
        ``cfg``, for chaining.
    """
    cfg.MODEL.SGG = CN()
    # Evaluation/training protocol: "predcls" (GT boxes + labels), "sgcls" (GT boxes),
    # "sgdet" (detected boxes). Resolved once, in the ROI heads.
    cfg.MODEL.SGG.MODE = "sgdet"

    # Flipping turns "left of" into "right of": off unless a config turns it on.
    cfg.INPUT.RANDOM_FLIP = "none"

    cfg.DATASETS.SGG = CN()
    # Train-time: keep one predicate (chosen at random) per (subject, object) pair.
    cfg.DATASETS.SGG.FILTER_DUPLICATE_RELATIONS = True
    # Where dataset statistics (frequency tensor, zero-shot set) are cached; "" means
    # "<OUTPUT_DIR>/sgg_statistics".
    cfg.DATASETS.SGG.STATISTICS_CACHE_DIR = ""

    cfg.TEST.SGG = CN()
    # K of R@K, mR@K, ng-R@K, zsR@K, A@K (number of kept triplets per image).
    cfg.TEST.SGG.RECALL_KS = (20, 50, 100)
    # IoU of subject and object boxes with the GT needed for a match (protocol: 0.5).
    cfg.TEST.SGG.IOU_THRESHOLD = 0.5
    # SGDet only: candidate pairs restricted to overlapping boxes (protocol flag).
    cfg.TEST.SGG.SGDET_OVERLAP_ONLY = False
    return cfg


def validate_sgg_config(cfg: CN) -> None:
    """Check sgg_d2 keys after all merges; raise ``ValueError`` naming the bad key.

    Raises:
        ValueError: e.g. ``MODEL.SGG.MODE`` not one of :data:`SGG_MODES`.
    """
    mode = cfg.MODEL.SGG.MODE
    if mode not in SGG_MODES:
        raise ValueError(f"MODEL.SGG.MODE is {mode!r}; valid values are {', '.join(SGG_MODES)}")
