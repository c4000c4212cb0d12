"""The project's trainer: Detectron2's ``DefaultTrainer`` with sgg_d2's evaluators."""

import os

from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator

from ..utils.d2_compat import has_compiled_ops

__all__ = ["SceneGraphTrainer"]


class SceneGraphTrainer(DefaultTrainer):
    """``DefaultTrainer`` extended only through its public ``build_*`` class methods.

    Detector configs (a plain ``GeneralizedRCNN``) are evaluated with COCO box/mask AP;
    Detectron2's fast C++ COCOeval is used only when its compiled extension exists.
    """

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """Build the evaluator for one test dataset.

        Args:
            cfg (CfgNode): the full config.
            dataset_name (str): a name registered in ``DatasetCatalog``.
            output_folder (str | None): defaults to ``<OUTPUT_DIR>/inference``.
        """
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
        return COCOEvaluator(
            dataset_name, output_dir=output_folder, use_fast_impl=has_compiled_ops()
        )
