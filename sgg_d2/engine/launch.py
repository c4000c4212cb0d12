"""``setup`` and ``main`` behind ``train_net.py`` (kept here so the script stays thin)."""

from detectron2.config import CfgNode
from detectron2.engine import default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import load_config  # re-exported: sgg_d2.engine.launch.load_config
from ..data.config_datasets import require_registered
from ..data.consistency import check_class_counts
from ..utils.d2_compat import guard_version_queries
from .trainer import SceneGraphTrainer
from .weights import StrictCheckpointer

__all__ = ["load_config", "setup", "main"]


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
        check_class_counts(cfg, cfg.DATASETS.TEST, "DATASETS.TEST")
        model = trainer_cls.build_model(cfg)
        StrictCheckpointer(model, save_dir=cfg.OUTPUT_DIR, require_complete=True).resume_or_load(
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
