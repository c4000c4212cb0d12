"""Check the training data before training starts, so that a bad image fails in one
message naming it instead of inside a data-loader worker after the model is built.

:func:`validate_training_data` loads each ``DATASETS.TRAIN`` dataset's dicts and checks:

- every image file (or an evenly spread sample, ``DATASETS.SGG.VALIDATE_IMAGES``) exists
  and its size, read from the file's header only, equals the dict's ``width`` x
  ``height`` (EXIF rotation applied, as Detectron2's ``read_image`` does);
- scene-graph models only: images without relations are counted (one warning per
  dataset), and a dataset without any relation is an error.
"""

import logging
from typing import Dict, List, Sequence

import numpy as np
from detectron2.data import DatasetCatalog

from ._checks import image_size

__all__ = ["TrainingDataError", "validate_training_data", "image_problems"]

logger = logging.getLogger(__name__)

# Problems named in the error message (the rest are counted).
_SHOWN = 5


class TrainingDataError(ValueError):
    """The training data cannot be used as it is (message names the files)."""


def _sample(dicts: Sequence[Dict], how_many: int) -> Sequence[Dict]:
    """All dicts (``how_many`` < 0 or at least their number) or ``how_many`` evenly
    spread ones (first and last included)."""
    if how_many < 0 or how_many >= len(dicts):
        return dicts
    index = np.unique(np.linspace(0, len(dicts) - 1, how_many).round().astype(int))
    return [dicts[i] for i in index]


def image_problems(dataset_name: str, dicts: Sequence[Dict]) -> List[str]:
    """One line per unusable image of ``dicts``: missing, unreadable, or of another size
    than the dict's ``width`` x ``height`` (checked when both are given)."""
    problems = []
    for d in dicts:
        where = f"{dataset_name}: {d['file_name']} (image_id {d.get('image_id')})"
        try:
            width, height = image_size(d["file_name"])
        except FileNotFoundError:
            problems.append(f"{where}: image file not found")
            continue
        except OSError as e:  # PIL's UnidentifiedImageError is an OSError
            problems.append(f"{where}: not a readable image ({e})")
            continue
        expected = (d.get("width"), d.get("height"))
        if None not in expected and expected != (width, height):
            problems.append(
                f"{where}: the annotations say {expected[0]}x{expected[1]} (width x height) "
                f"but the file is {width}x{height}"
            )
    return problems


def _check_relations(dataset_name: str, dicts: Sequence[Dict]) -> None:
    """Warn about images without relations; raise when the whole dataset has none."""
    empty = sum(1 for d in dicts if len(d.get("relations", ())) == 0)
    if dicts and empty == len(dicts):
        raise TrainingDataError(
            f"DATASETS.TRAIN dataset {dataset_name!r} has no relation in any of its "
            f"{len(dicts)} images: a scene-graph model cannot be trained on it (check the "
            "annotation file's relations, or train a detector config instead)"
        )
    if empty:
        logger.warning(
            "DATASETS.TRAIN dataset %r: %d of %d images have no relations (they train the "
            "object classifier only)",
            dataset_name,
            empty,
            len(dicts),
        )


def validate_training_data(cfg) -> None:
    """Check every ``cfg.DATASETS.TRAIN`` dataset (see the module docstring).

    ``DATASETS.AUX_TRAIN`` datasets are not checked. Scene-graph checks apply when
    ``cfg.MODEL.META_ARCHITECTURE == "SceneGraphRCNN"``; detector configs get the image
    checks only.

    Args:
        cfg: the run's config; ``DATASETS.SGG.VALIDATE_IMAGES``: -1 checks every image,
            0 none, N > 0 an evenly spread sample of N images per dataset.

    Raises:
        TrainingDataError: (a ``ValueError``) listing how many checked images are
            unusable and naming the first few (file, image id, expected and actual
            size); or naming a scene-graph dataset without any relation.
        ValueError: ``DATASETS.SGG.VALIDATE_IMAGES`` below -1.
    """
    how_many = cfg.DATASETS.SGG.VALIDATE_IMAGES
    if how_many < -1:
        raise ValueError(
            f"DATASETS.SGG.VALIDATE_IMAGES is {how_many}; expected -1 (all images), 0 (none) "
            "or a sample size N > 0"
        )
    scene_graph = cfg.MODEL.META_ARCHITECTURE == "SceneGraphRCNN"
    problems, checked = [], 0
    for name in cfg.DATASETS.TRAIN:
        dicts = DatasetCatalog.get(name)
        if scene_graph:
            _check_relations(name, dicts)
        sample = _sample(dicts, how_many) if how_many else ()
        checked += len(sample)
        problems += image_problems(name, sample)
    if problems:
        more = len(problems) - _SHOWN
        raise TrainingDataError(
            f"DATASETS.TRAIN: {len(problems)} of {checked} checked images cannot be used: "
            + "; ".join(problems[:_SHOWN])
            + (f"; and {more} more" if more > 0 else "")
            + ". Fix the image files or the annotations' width/height "
            "(DATASETS.SGG.VALIDATE_IMAGES sets how many images are checked)"
        )
    if checked:
        logger.info("DATASETS.TRAIN: %d image files checked", checked)
