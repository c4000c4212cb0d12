"""``setup`` and ``main`` behind ``train_net.py`` (kept here so the script stays thin)."""

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import default_setup, hooks
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from ..config import add_sgg_config, validate_sgg_config
from .trainer import SceneGraphTrainer

__all__ = ["setup", "main"]


def setup(args) -> CfgNode:
    """Build the frozen config from ``args`` (Detectron2's ``default_argument_parser``).

    Order: Detectron2 defaults -> sgg_d2 keys -> ``--config-file`` -> trailing
    ``KEY VALUE`` overrides -> validation (a bad value fails here, naming the key).
    """
    cfg = get_cfg()
    add_sgg_config(cfg)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    validate_sgg_config(cfg)
    cfg.freeze()
    default_setup(cfg, args)
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
    if cfg.TEST.AUG.ENABLED:
        trainer.register_hooks(
            [hooks.EvalHook(0, lambda: trainer.test_with_TTA(cfg, trainer.model))]
        )
    return trainer.train()
