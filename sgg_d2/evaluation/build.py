"""Pick the evaluator of a dataset from its metadata ``evaluator_type``."""

from typing import Dict, Optional, Type

from detectron2.data import MetadataCatalog

from .base import RelationEvaluatorBase
from .openimages_evaluator import OpenImagesSGEvaluator
from .sg_evaluator import SceneGraphEvaluator
from .vrd_evaluator import VRDEvaluator

__all__ = ["EVALUATOR_TYPES", "build_sgg_evaluator"]

# Metadata ``evaluator_type`` (data contract) -> evaluator class. Also the ``evaluator``
# field of saved compact predictions, which is each class's ``kind``.
EVALUATOR_TYPES: Dict[str, Type[RelationEvaluatorBase]] = {
    cls.kind: cls for cls in (SceneGraphEvaluator, VRDEvaluator, OpenImagesSGEvaluator)
}


def build_sgg_evaluator(cfg, dataset_name: str, output_dir: Optional[str] = None):
    """Build the evaluator named by ``MetadataCatalog.get(dataset_name).evaluator_type``.

    Settings come from the config (``MODEL.SGG.MODE``, ``TEST.SGG.RECALL_KS``,
    ``TEST.SGG.IOU_THRESHOLD``, ``TEST.SGG.SGDET_OVERLAP_ONLY``,
    ``DATASETS.SGG.STATISTICS_CACHE_DIR``), through each class's ``from_config``.

    Raises:
        ValueError: if the metadata has no or an unknown ``evaluator_type``.
    """
    evaluator_type = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", None)
    if evaluator_type not in EVALUATOR_TYPES:
        raise ValueError(
            f"MetadataCatalog['{dataset_name}'].evaluator_type is {evaluator_type!r}; "
            f"scene-graph evaluators exist for {sorted(EVALUATOR_TYPES)}"
        )
    return EVALUATOR_TYPES[evaluator_type](cfg, dataset_name, output_dir=output_dir)
