"""The project's trainer: Detectron2's ``DefaultTrainer`` extended through its public
``build_*`` class methods and hooks only."""

import logging
import os

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import (
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import COCOEvaluator
from detectron2.utils.file_io import PathManager

from ..data import SceneGraphDatasetMapper
from ..evaluation import build_sgg_evaluator
from ..utils.d2_compat import has_compiled_ops

__all__ = ["SceneGraphTrainer", "is_scene_graph_model", "load_detector_weights"]

logger = logging.getLogger(__name__)


def is_scene_graph_model(cfg) -> bool:
    """True for relation-stage configs, False for plain detector configs."""
    return cfg.MODEL.META_ARCHITECTURE == "SceneGraphRCNN"


def load_detector_weights(model, path: str) -> None:
    """Stage handoff: load a trained detector's weights into a relation model.

    Only model weights are read (no optimizer, scheduler or iteration), so relation
    training starts at iteration 0. Relation-stage parameters absent from the detector
    checkpoint keep their initialisation (Detectron2 logs them as missing keys).
    """
    if not PathManager.isfile(path):
        raise FileNotFoundError(
            f"MODEL.SGG.DETECTOR_WEIGHTS: no such file {path}; train the detector first "
            "(its config is the *_detector.yaml next to this one) or point the key at it"
        )
    logger.info("Loading detector weights for the relation stage from %s", path)
    DetectionCheckpointer(model).load(path, checkpointables=[])


def _is_test_split(dataset_name: str) -> bool:
    meta = MetadataCatalog.get(dataset_name)
    return meta.get("split", None) == "test" or dataset_name.endswith("_test")


class SceneGraphTrainer(DefaultTrainer):
    """Trainer for both stages.

    - Detector configs (``GeneralizedRCNN``): Detectron2's default loaders; COCO box (and
      mask) AP, with the fast C++ COCOeval only when Detectron2's extension exists.
    - Relation configs (``SceneGraphRCNN``): ``SceneGraphDatasetMapper`` for training and
      test; the evaluator given by the dataset's ``evaluator_type``; the detector loaded
      from ``MODEL.SGG.DETECTOR_WEIGHTS``; with ``TEST.EVAL_PERIOD > 0`` the checkpoint
      with the best ``TEST.SGG.BEST_CHECKPOINT_METRIC`` on the validation split is kept
      as ``model_best.pth`` (a test split is refused).

    Gradient clipping (``SOLVER.CLIP_GRADIENTS``) and mixed precision (``SOLVER.AMP``)
    are Detectron2's own and honoured as configured.
    """

    @classmethod
    def build_model(cls, cfg):
        """The model; a relation model starts from ``MODEL.SGG.DETECTOR_WEIGHTS`` unless
        ``MODEL.WEIGHTS`` (a full checkpoint, loaded later) is given."""
        model = super().build_model(cfg)
        if cfg.MODEL.SGG.DETECTOR_WEIGHTS and not cfg.MODEL.WEIGHTS:
            load_detector_weights(model, cfg.MODEL.SGG.DETECTOR_WEIGHTS)
        return model

    @classmethod
    def build_train_loader(cls, cfg):
        if not is_scene_graph_model(cfg):
            return super().build_train_loader(cfg)
        return build_detection_train_loader(cfg, mapper=SceneGraphDatasetMapper(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if not is_scene_graph_model(cfg):
            return super().build_test_loader(cfg, dataset_name)
        return build_detection_test_loader(
            cfg, dataset_name, mapper=SceneGraphDatasetMapper(cfg, False)
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """Build the evaluator for one test dataset.

        Args:
            cfg (CfgNode): the full config.
            dataset_name (str): a name registered in ``DatasetCatalog``.
            output_folder (str | None): defaults to ``<OUTPUT_DIR>/inference/<name>``.
        """
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        if is_scene_graph_model(cfg):
            return build_sgg_evaluator(cfg, dataset_name, output_folder)
        return COCOEvaluator(
            dataset_name, output_dir=output_folder, use_fast_impl=has_compiled_ops()
        )

    def build_hooks(self):
        ret = super().build_hooks()
        cfg = self.cfg
        metric = cfg.TEST.SGG.BEST_CHECKPOINT_METRIC
        if cfg.TEST.EVAL_PERIOD > 0 and metric and is_scene_graph_model(cfg):
            bad = [d for d in cfg.DATASETS.TEST if _is_test_split(d)]
            if bad:
                raise ValueError(
                    f"TEST.SGG.BEST_CHECKPOINT_METRIC selects checkpoints on DATASETS.TEST = "
                    f"{tuple(cfg.DATASETS.TEST)}, which holds test split(s) {bad}: evaluate "
                    "on a validation split during training"
                )
            key = metric if len(cfg.DATASETS.TEST) == 1 else f"{cfg.DATASETS.TEST[0]}/{metric}"
            # right after the EvalHook, which puts the metric in the event storage
            after_eval = 1 + next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
            ret.insert(
                after_eval, hooks.BestCheckpointer(cfg.TEST.EVAL_PERIOD, self.checkpointer, key)
            )
        return ret
