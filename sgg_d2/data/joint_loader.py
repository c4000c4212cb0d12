"""Mixed batches of a target dataset and an auxiliary mask dataset (segmentation grounding).

Every model input made here says where it came from: ``"source"`` is ``"target"`` (the
scene-graph / box dataset) or ``"aux"`` (the auxiliary mask dataset, e.g. COCO), and
``"dataset_name"`` is the registered name of its dataset. Inputs without ``"source"`` are
target inputs (so every other loader keeps working unchanged). The tags and
``input_source`` / ``split_by_source`` live in :mod:`sgg_d2.structures.sources`, shared with
the models (re-exported here).

:class:`JointLoader` composes two Detectron2 training loaders that each yield one image
per step: batch b holds ``n_b`` auxiliary images and ``B - n_b`` target images, where
``n_b`` follows the configured fraction by error diffusion (``sum n_b`` stays within 1/2 of
``fraction * B * b``), deterministically, so every worker of a distributed run gets the
same composition at the same iteration.
"""

import itertools
import logging
from typing import Callable, Dict, Iterable, Iterator, List, Sequence

from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from detectron2.utils import comm

from ..structures.sources import (
    AUX,
    DATASET_KEY,
    SOURCE_KEY,
    SOURCES,
    TARGET,
    input_source,
    split_by_source,
)

__all__ = [
    "SOURCE_KEY",
    "DATASET_KEY",
    "TARGET",
    "AUX",
    "input_source",
    "split_by_source",
    "SourceTaggedMapper",
    "tagged_dataset_dicts",
    "aux_counts",
    "JointLoader",
    "build_joint_train_loader",
    "is_aux_dataset",
    "build_aux_mapper",
]

logger = logging.getLogger(__name__)


class SourceTaggedMapper:
    """Wrap a mapper so that its outputs carry ``"source"`` (and keep ``dataset_name``)."""

    def __init__(self, mapper: Callable[[Dict], Dict], source: str):
        if source not in SOURCES:
            raise ValueError(f"source {source!r}; expected one of {SOURCES}")
        self.mapper, self.source = mapper, source

    def __call__(self, dataset_dict: Dict) -> Dict:
        out = self.mapper(dataset_dict)
        out[SOURCE_KEY] = self.source
        if DATASET_KEY in dataset_dict:
            out[DATASET_KEY] = dataset_dict[DATASET_KEY]
        return out

    def __repr__(self) -> str:
        return f"SourceTaggedMapper({self.mapper!r}, source={self.source!r})"


def tagged_dataset_dicts(names: Sequence[str], filter_empty: bool = True) -> List[Dict]:
    """Dataset dicts of ``names`` (Detectron2's loading and filtering), each a shallow copy
    with ``"dataset_name"`` set to the dataset it came from."""
    out = []
    for name in names:
        dicts = get_detection_dataset_dicts([name], filter_empty=filter_empty)
        out.extend(dict(d, **{DATASET_KEY: name}) for d in dicts)
    return out


def aux_counts(batch_size: int, fraction: float) -> Iterator[int]:
    """Infinite sequence of the number of auxiliary images in each batch.

    Error diffusion: after b batches the total is ``round(fraction * batch_size * b)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"DATASETS.AUX_FRACTION must be in [0, 1], got {fraction}")
    total = 0
    for b in itertools.count(1):
        n = int(round(fraction * batch_size * b)) - total
        total += n
        yield n


class JointLoader:
    """Batches of ``batch_size`` inputs: target images then auxiliary images.

    Args:
        target, aux: iterables (usually infinite Detectron2 loaders) yielding lists of
            model inputs; their elements are consumed one by one.
        batch_size: images per batch (per worker).
        aux_fraction: long-run fraction of auxiliary images (see :func:`aux_counts`).
    """

    def __init__(self, target: Iterable, aux: Iterable, batch_size: int, aux_fraction: float):
        self.target, self.aux = target, aux
        self.batch_size, self.aux_fraction = batch_size, aux_fraction
        next(aux_counts(batch_size, aux_fraction))  # validate now, not at the first batch

    @staticmethod
    def _elements(loader: Iterable) -> Iterator[Dict]:
        for batch in loader:
            yield from batch

    def __iter__(self) -> Iterator[List[Dict]]:
        target, aux = self._elements(self.target), self._elements(self.aux)
        for n_aux in aux_counts(self.batch_size, self.aux_fraction):
            batch = list(itertools.islice(target, self.batch_size - n_aux))
            batch += list(itertools.islice(aux, n_aux))
            if len(batch) < self.batch_size:
                return  # a finite source ran out
            yield batch


def build_joint_train_loader(cfg, target_mapper, aux_mapper) -> JointLoader:
    """``DATASETS.TRAIN`` mixed with ``DATASETS.AUX_TRAIN`` (``DATASETS.AUX_FRACTION``).

    Args:
        target_mapper, aux_mapper: mappers of the two datasets (wrapped to tag the source).

    Returns:
        an infinite :class:`JointLoader` yielding lists of ``SOLVER.IMS_PER_BATCH /
        world size`` inputs.
    """
    world = comm.get_world_size()
    if cfg.SOLVER.IMS_PER_BATCH % world:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({cfg.SOLVER.IMS_PER_BATCH}) must be divisible by the "
            f"number of workers ({world})"
        )
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN!r}: the joint loader "
            "(DATASETS.AUX_TRAIN) supports TrainingSampler only"
        )
    filter_empty = cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    loaders = [
        build_detection_train_loader(
            tagged_dataset_dicts(names, filter_empty),
            mapper=SourceTaggedMapper(mapper, source),
            total_batch_size=world,  # one image per worker and step
            aspect_ratio_grouping=False,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )
        for names, mapper, source in (
            (cfg.DATASETS.TRAIN, target_mapper, TARGET),
            (cfg.DATASETS.AUX_TRAIN, aux_mapper, AUX),
        )
    ]
    batch = cfg.SOLVER.IMS_PER_BATCH // world
    logger.info(
        "Joint loader: %s + auxiliary %s, %.0f %% auxiliary images, %d per batch",
        cfg.DATASETS.TRAIN,
        cfg.DATASETS.AUX_TRAIN,
        100 * cfg.DATASETS.AUX_FRACTION,
        batch,
    )
    return JointLoader(loaders[0], loaders[1], batch, cfg.DATASETS.AUX_FRACTION)


def is_aux_dataset(dataset_name: str) -> bool:
    """True for a dataset without ``predicate_classes`` (e.g. COCO instances): an
    auxiliary mask dataset rather than a scene-graph dataset."""
    from detectron2.data import MetadataCatalog

    return MetadataCatalog.get(dataset_name).get("predicate_classes") is None


def build_aux_mapper(cfg, is_train: bool) -> SourceTaggedMapper:
    """Mapper of auxiliary images, tagged ``"aux"``: Detectron2's ``DatasetMapper`` with
    instance masks (``INPUT.MASK_FORMAT``). At test time the annotations are kept (PredCls
    and SGCls need the GT boxes) and the test-time resize is used."""
    from detectron2.data import DatasetMapper

    from .dataset_mapper import build_augmentations

    mapper = DatasetMapper(
        is_train=True,  # keeps the annotations; the augmentations below decide the rest
        augmentations=build_augmentations(cfg, is_train),
        image_format=cfg.INPUT.FORMAT,
        use_instance_mask=True,
        instance_mask_format=cfg.INPUT.MASK_FORMAT,
    )
    return SourceTaggedMapper(mapper, AUX)
