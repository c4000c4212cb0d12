"""Config builders shared by test folders (modeling and engine tests)."""

from pathlib import Path

from detectron2.config import get_cfg

from sgg_d2 import add_sgg_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def sgg_cfg(config_file=None):
    """Detectron2's defaults with the SGG keys; ``config_file`` (under configs/) merged."""
    cfg = get_cfg()
    add_sgg_config(cfg)
    if config_file:
        cfg.merge_from_file(str(CONFIGS / config_file))
    return cfg


def tiny_relation_cfg(
    num_classes, num_predicates, train, context="MotifsContext", mode="sgcls", use_bias=True
):
    """A SceneGraphRCNN on the synthetic base config (R-18-FPN) with tiny widths, trained
    on the datasets ``train`` (their statistics feed the frequency bias)."""
    cfg = sgg_cfg("synthetic/Base-Synthetic.yaml")
    cfg.MODEL.META_ARCHITECTURE = "SceneGraphRCNN"
    cfg.MODEL.ROI_HEADS.NAME = "SceneGraphROIHeads"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.SGG.NUM_PREDICATES = num_predicates
    cfg.MODEL.SGG.CONTEXT = context
    cfg.MODEL.SGG.MODE = mode
    cfg.MODEL.SGG.USE_FREQUENCY_BIAS = use_bias
    cfg.DATASETS.TRAIN = tuple(train)
    cfg.MODEL.SGG.UNION_DIM = 32
    cfg.MODEL.SGG.EMBED_DIM = 8
    cfg.MODEL.SGG.CONTEXT_HIDDEN_DIM = 16
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    return cfg
