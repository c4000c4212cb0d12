"""The project's trainer: Detectron2's ``DefaultTrainer`` extended through its public
``build_*`` class methods and hooks only."""

import logging
import os

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import (
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import COCOEvaluator
from detectron2.utils.file_io import PathManager

from ..data import SceneGraphDatasetMapper
from ..data.joint_loader import (
    TARGET,
    SourceTaggedMapper,
    build_aux_mapper,
    build_joint_train_loader,
    is_aux_dataset,
)
from ..evaluation import build_sgg_evaluator
from ..modeling.relation.union_features import copy_detector_backbone
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
    if copy_detector_backbone(model):  # MODEL.SGG.RELATION_BACKBONE starts as the detector's
        logger.info("Relation backbone initialised from the detector backbone of %s", path)


def uses_aux_images(cfg) -> bool:
    """Whether training mixes in ``DATASETS.AUX_TRAIN``: the joint detector always, a
    relation model when its grounding refines masks (their only use in that stage)."""
    if not cfg.DATASETS.AUX_TRAIN:
        return False
    if not is_scene_graph_model(cfg):
        return True
    g = cfg.MODEL.SGG.GROUNDING
    if g.ENABLED and g.REFINE:
        return True
    logger.info(
        "DATASETS.AUX_TRAIN %s only names the auxiliary classes: without "
        "MODEL.SGG.GROUNDING.REFINE no auxiliary image is used in training",
        cfg.DATASETS.AUX_TRAIN,
    )
    return False


def _is_test_split(dataset_name: str) -> bool:
    meta = MetadataCatalog.get(dataset_name)
    return meta.get("split", None) == "test" or dataset_name.endswith("_test")


class SceneGraphTrainer(DefaultTrainer):
    """Trainer for both stages.

    - Detector configs (``GeneralizedRCNN``): Detectron2's default loaders; COCO box (and
      mask) AP, with the fast C++ COCOeval only when Detectron2's extension exists.
    - Relation configs (``SceneGraphRCNN``): ``SceneGraphDatasetMapper`` for training and
      test; the evaluator given by the dataset's ``evaluator_type`` (a dataset without
      ``predicate_classes``, e.g. the auxiliary mask dataset: COCO mask AP); the detector loaded
      from ``MODEL.SGG.DETECTOR_WEIGHTS``; with ``TEST.EVAL_PERIOD > 0`` the checkpoint
      with the best ``TEST.SGG.BEST_CHECKPOINT_METRIC`` on the validation split is kept
      as ``model_best.pth`` (a test split is refused).

    - Segmentation grounding: with ``DATASETS.AUX_TRAIN`` (joint detector, or grounding
      with refinement) training batches mix both datasets (``build_joint_train_loader``,
      ``DATASETS.AUX_FRACTION``); inputs say their ``"source"``.

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
        sgg = is_scene_graph_model(cfg)
        target_mapper = SceneGraphDatasetMapper(cfg, True) if sgg else DatasetMapper(cfg, True)
        if uses_aux_images(cfg):
            return build_joint_train_loader(cfg, target_mapper, build_aux_mapper(cfg, True))
        if not sgg:
            return super().build_train_loader(cfg)
        return build_detection_train_loader(cfg, mapper=target_mapper)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        sgg, joint = is_scene_graph_model(cfg), bool(cfg.DATASETS.AUX_TRAIN)
        if not (sgg or joint):
            return super().build_test_loader(cfg, dataset_name)
        if is_aux_dataset(dataset_name):
            mapper = build_aux_mapper(cfg, False)  # keeps the GT boxes; tagged "aux"
        else:
            mapper = SceneGraphDatasetMapper(cfg, False) if sgg else DatasetMapper(cfg, False)
            if joint:  # two datasets in play: say which one
                mapper = SourceTaggedMapper(mapper, TARGET)
        return build_detection_test_loader(cfg, dataset_name, mapper=mapper)

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
        aux = is_aux_dataset(dataset_name)
        if is_scene_graph_model(cfg) and not aux:
            return build_sgg_evaluator(cfg, dataset_name, output_folder)
        if is_scene_graph_model(cfg):  # masks of a grounded model on auxiliary images
            tasks = ("bbox", "segm") if cfg.MODEL.SGG.MODE == "sgdet" else ("segm",)
        else:  # mask AP only where the dataset has masks (not on the target data)
            tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON and aux else ("bbox",)
        return COCOEvaluator(
            dataset_name, tasks=tasks, output_dir=output_folder, use_fast_impl=has_compiled_ops()
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
