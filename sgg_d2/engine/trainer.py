"""The project's trainer: Detectron2's ``DefaultTrainer`` extended through its public
``build_*`` class methods and hooks only."""

import logging
import os
import weakref

import numpy as np
from detectron2.data import (
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, hooks
from detectron2.evaluation import COCOEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..data import AugmentedShapeMapper, SceneGraphDatasetMapper, build_augmentations
from ..data.consistency import check_class_counts
from ..data.joint_loader import (
    TARGET,
    SourceTaggedMapper,
    build_aux_mapper,
    build_joint_train_loader,
    is_aux_dataset,
)
from ..data.resampling import build_resampling
from ..data.validate import validate_training_data
from ..evaluation import build_sgg_evaluator
from ..modeling.relation.union_features import copy_detector_backbone
from ..utils.d2_compat import has_compiled_ops
from .checkpoint import DetectorWeightsCheckpointer, select_resume_checkpoint
from .distributed import create_ddp_model
from .optimizer import build_optimizer
from .resume_state import (
    ResumableTrainLoader,
    SeededMapper,
    capture_rng_state,
    isolated_rng,
    restore_rng_state,
)
from .weights import StrictCheckpointer

__all__ = ["SceneGraphTrainer", "is_scene_graph_model", "load_detector_weights"]

logger = logging.getLogger(__name__)


def is_scene_graph_model(cfg) -> bool:
    """True for relation-stage configs, False for plain detector configs."""
    return cfg.MODEL.META_ARCHITECTURE == "SceneGraphRCNN"


def load_detector_weights(model, path: str, min_match: float = 0.9) -> None:
    """Stage handoff: load a trained detector's weights into a relation model.

    Only model weights are read (no optimizer, scheduler or iteration), so relation
    training starts at iteration 0. Relation-stage parameters absent from the detector
    checkpoint keep their initialisation (Detectron2 logs them as missing keys).

    Args:
        model: the relation model.
        path: a file, ``file://`` URL or a URL Detectron2's ``PathManager`` handles
            (``detectron2://``, ``https://``), as for ``MODEL.WEIGHTS``.
        min_match: fraction of the detector's parameters the checkpoint must provide
            (``MODEL.SGG.DETECTOR_WEIGHTS_MIN_MATCH``).

    Raises:
        FileNotFoundError, DetectorWeightsError: naming ``MODEL.SGG.DETECTOR_WEIGHTS`` and
            the file (see :class:`~sgg_d2.engine.checkpoint.DetectorWeightsCheckpointer`).
    """
    logger.info("Loading detector weights for the relation stage from %s", path)
    DetectorWeightsCheckpointer(model, min_match=min_match).load_weights(path)
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

    def __init__(self, cfg):
        """Detectron2's ``DefaultTrainer.__init__`` step by step (same public pieces), but
        the model is wrapped by :func:`~sgg_d2.engine.distributed.create_ddp_model`: DDP
        also on CPU processes (gloo) and with ``find_unused_parameters`` where a frozen
        detector or an idle head leaves trainable parameters without gradients."""
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        check_class_counts(cfg, cfg.DATASETS.TRAIN)  # config vs data, before the model
        validate_training_data(cfg)  # image files and relations, one error naming them
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, cfg)
        trainer_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = StrictCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_model(cls, cfg):
        """The model; a relation model starts from ``MODEL.SGG.DETECTOR_WEIGHTS`` unless
        ``MODEL.WEIGHTS`` (a full checkpoint, loaded later) is given."""
        model = super().build_model(cfg)
        if cfg.MODEL.SGG.DETECTOR_WEIGHTS and not cfg.MODEL.WEIGHTS:
            load_detector_weights(
                model, cfg.MODEL.SGG.DETECTOR_WEIGHTS, cfg.MODEL.SGG.DETECTOR_WEIGHTS_MIN_MATCH
            )
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        """``SOLVER.OPTIMIZER``: Detectron2's SGD (default) or AdamW
        (:func:`~sgg_d2.engine.optimizer.build_optimizer`)."""
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        """The training loader, wrapped in a :class:`ResumableTrainLoader` (data position
        for exact resume) seeded by ``cfg.SEED`` (a random seed when ``SEED < 0``); its
        mappers are :class:`SeededMapper` s, so that a sample is mapped the same whenever
        it is mapped (also with ``DATALOADER.NUM_WORKERS 0``)."""
        seed = cfg.SEED if cfg.SEED >= 0 else int(np.random.randint(2**31))
        batches, mappers = cls._build_batches(cfg)
        return ResumableTrainLoader(batches, seed, mappers)

    @classmethod
    def _build_batches(cls, cfg):
        """The training batches and the :class:`SeededMapper` s they are mapped with
        (target images: stream 0, auxiliary images: stream 1); with
        ``DATALOADER.SGG_RESAMPLING.ENABLED`` the bi-level resampling's sampler and instance
        drops (:func:`~sgg_d2.data.resampling.build_resampling`)."""
        aux_images = uses_aux_images(cfg)
        dicts = sampler = dropper = None
        if cfg.DATALOADER.SGG_RESAMPLING.ENABLED:
            if aux_images or not is_scene_graph_model(cfg):
                raise ValueError(
                    "DATALOADER.SGG_RESAMPLING.ENABLED resamples a relation model's training "
                    "images: not for detector configs nor with auxiliary mask images"
                )
            dicts = get_detection_dataset_dicts(
                cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
            )
            sampler, dropper = build_resampling(cfg, dicts)
        if is_scene_graph_model(cfg):
            target_mapper = SceneGraphDatasetMapper(cfg, True, relation_dropper=dropper)
        else:  # Detectron2's mapper with sgg_d2's augmentations (INPUT.RANDOM_ROTATE_90)
            target_mapper = DatasetMapper(cfg, True, augmentations=build_augmentations(cfg, True))
        if cfg.INPUT.RANDOM_ROTATE_90:  # batch turned images with their new orientation
            target_mapper = AugmentedShapeMapper(target_mapper)
        target = SeededMapper(target_mapper, stream=0)
        if aux_images:
            aux = SeededMapper(build_aux_mapper(cfg, True), stream=1)
            return build_joint_train_loader(cfg, target, aux), (target, aux)
        loader = build_detection_train_loader(cfg, mapper=target, dataset=dicts, sampler=sampler)
        return loader, (target,)

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

    # ---- exact resume -------------------------------------------------------------------

    def resume_or_load(self, resume=True):
        """As Detectron2's, and: a damaged ``last_checkpoint`` target is an error naming the
        file and the intact earlier checkpoint, or with ``SOLVER.RESUME_FROM_LAST_GOOD``
        (``--resume-from-last-good``) the training resumes from that one (logged)."""
        checkpointer = self.checkpointer
        if not (resume and checkpointer.has_checkpoint()):
            return super().resume_or_load(resume=resume)
        path = select_resume_checkpoint(
            checkpointer.save_dir,
            checkpointer.get_checkpoint_file(),
            fall_back=self.cfg.SOLVER.RESUME_FROM_LAST_GOOD,
        )
        checkpointer.load(path)
        # The checkpoint holds the iteration that just finished (as in Detectron2).
        self.start_iter = self.iter + 1

    def state_dict(self):
        """Detectron2's trainer state (iteration, hook states such as the LR scheduler, and
        on Detectron2 > 0.6 the optimizer) plus what exact resume needs: the optimizer where
        Detectron2 leaves it out, the random states and the data position."""
        ret = super().state_dict()
        if "optimizer" not in ret.get("_trainer", {}):  # Detectron2 <= 0.6
            ret["sgg_optimizer"] = self.optimizer.state_dict()
        resume = {"rng": capture_rng_state(), "world_size": comm.get_world_size()}
        if isinstance(self.data_loader, ResumableTrainLoader):
            resume["batches_consumed"] = self.data_loader.batches_consumed
            resume["data_seed"] = self.data_loader.seed
        ret["sgg_resume"] = resume
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "sgg_optimizer" in state_dict:
            self.optimizer.load_state_dict(state_dict["sgg_optimizer"])
        resume = state_dict.get("sgg_resume")
        if resume is None:
            logger.warning(
                "The checkpoint has no random states or data position (written by another "
                "trainer or an older sgg_d2): the resumed run will not repeat an uninterrupted one"
            )
            return
        if isinstance(self.data_loader, ResumableTrainLoader) and "batches_consumed" in resume:
            self.data_loader.seed = resume["data_seed"]
            self.data_loader.skip(resume["batches_consumed"])
        if comm.get_rank() == 0:
            restore_rng_state(resume["rng"])
        if resume["world_size"] > 1 or comm.get_world_size() > 1:
            logger.warning(
                "Random states are saved by the main process only: other processes keep "
                "their seeds, so a multi-process resume is not bit-identical"
            )
        if self.cfg.SEED < 0:
            logger.warning(
                "SEED < 0: the data sampler draws a new order on every start, so the resumed "
                "run does not repeat an uninterrupted one (set SEED >= 0)"
            )

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Detectron2's evaluation, run without changing the training's random states (so a
        run with evaluations during training resumes exactly from its checkpoints)."""
        with isolated_rng():
            return super().test(cfg, model, evaluators)
