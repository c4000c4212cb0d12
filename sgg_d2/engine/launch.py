"""``setup`` and ``main`` behind ``train_net.py`` (kept here so the script stays thin)."""

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import add_sgg_config, validate_sgg_config
from ..data.config_datasets import register_config_datasets, require_registered
from ..utils.d2_compat import guard_version_queries
from .trainer import SceneGraphTrainer

__all__ = ["load_config", "setup", "main"]


def load_config(config_file: str, opts=()) -> CfgNode:
    """The frozen config: Detectron2 defaults -> sgg_d2 keys -> ``config_file`` ->
    ``KEY VALUE`` overrides -> validation (a bad value fails here, naming the key); then the
    custom datasets of ``DATASETS.SGG.JSON`` are registered."""
    cfg = get_cfg()
    add_sgg_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    validate_sgg_config(cfg)
    cfg.freeze()
    register_config_datasets(cfg)
    return cfg


def setup(args) -> CfgNode:
    """:func:`load_config` from ``args`` (Detectron2's ``default_argument_parser``), then
    Detectron2's ``default_setup`` (logging, seeds, config dump in ``OUTPUT_DIR``)."""
    cfg = load_config(args.config_file, args.opts)
    if not args.eval_only:
        require_registered(cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
    require_registered(cfg.DATASETS.TEST, "DATASETS.TEST")
    guard_version_queries()  # collect_env in default_setup must not crash the run
    default_setup(cfg, args)
    # default_setup configures the "detectron2" and "fvcore" loggers; ours too.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="sgg_d2")
    return cfg


def main(args, trainer_cls=SceneGraphTrainer):
    """Train, or with ``--eval-only`` evaluate ``MODEL.WEIGHTS``; returns the results."""
    cfg = setup(args)
    if args.eval_only:
        model = trainer_cls.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = trainer_cls.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results

    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=args.resume)
    # (no TTA hook: TEST.AUG.ENABLED is refused by validate_sgg_config)
    return trainer.train()
