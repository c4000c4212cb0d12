"""Scene-graph evaluation: Detectron2 ``DatasetEvaluator`` classes over a pure core.

- :class:`SceneGraphEvaluator`: Visual Genome protocol (R@K, ng-R@K, mR@K, ng-mR@K,
  zsR@K, A@K) for SGDet / SGCls / PredCls.
- :class:`VRDEvaluator`: VRD relationship / phrase detection recall.
- :class:`OpenImagesSGEvaluator`: OpenImages R@50, (w)mAP, score_wtd.
- :func:`build_sgg_evaluator`: the right one for a dataset's ``evaluator_type``.
- :mod:`.functional`: the metrics on plain arrays; ``python -m sgg_d2.evaluation``
  re-evaluates saved compact predictions. Protocols: ``docs/EVALUATION.md``.
"""

from .build import EVALUATOR_TYPES, build_sgg_evaluator
from .openimages_evaluator import OpenImagesSGEvaluator
from .prediction_io import load_compact_predictions, save_compact_predictions
from .sg_evaluator import SceneGraphEvaluator
from .vrd_evaluator import VRDEvaluator

__all__ = [
    "EVALUATOR_TYPES",
    "OpenImagesSGEvaluator",
    "SceneGraphEvaluator",
    "VRDEvaluator",
    "build_sgg_evaluator",
    "load_compact_predictions",
    "save_compact_predictions",
]
