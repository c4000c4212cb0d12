"""Scene-graph datasets for Detectron2: loaders, registration, mapper and statistics.

Every ``register_*`` function registers a split lazily in Detectron2's ``DatasetCatalog``
and sets its ``MetadataCatalog`` entry (``thing_classes``, ``predicate_classes``,
``evaluator_type``, ``train_split``, ``thing_dataset_id_to_contiguous_id``). The standard
names under ``$SGG_DATASETS`` are registered by :mod:`sgg_d2.data.builtin` (imported by
``sgg_d2``). Formats and layouts: ``datasets/README.md``. :func:`check_class_counts` and
:func:`validate_training_data` check a config and its training data before training
(``SceneGraphTrainer`` calls them).
"""

from ._checks import DatasetFormatError
from .consistency import check_class_counts
from .dataset_mapper import (
    AugmentedShapeMapper,
    SceneGraphDatasetMapper,
    build_augmentations,
    filter_duplicate_relations,
)
from .openimages import load_openimages, register_openimages
from .scene_graph_json import load_scene_graph_json, register_scene_graph_json
from .statistics import (
    compute_statistics,
    compute_zero_shot_triplets,
    dataset_fingerprint,
    get_dataset_statistics,
    get_zero_shot_triplets,
)
from .validate import TrainingDataError, validate_training_data
from .visual_genome import load_visual_genome, register_visual_genome
from .vrd import load_vrd, register_vrd

__all__ = [
    "AugmentedShapeMapper",
    "DatasetFormatError",
    "SceneGraphDatasetMapper",
    "TrainingDataError",
    "build_augmentations",
    "check_class_counts",
    "compute_statistics",
    "compute_zero_shot_triplets",
    "dataset_fingerprint",
    "filter_duplicate_relations",
    "get_dataset_statistics",
    "get_zero_shot_triplets",
    "load_openimages",
    "load_scene_graph_json",
    "load_visual_genome",
    "load_vrd",
    "register_openimages",
    "register_scene_graph_json",
    "register_visual_genome",
    "register_vrd",
    "validate_training_data",
]
