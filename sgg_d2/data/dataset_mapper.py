"""Dataset mapper for scene-graph dicts: image, instances and the relations tensor."""

import copy
import logging
from typing import Any, Dict, List

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

__all__ = [
    "AugmentedShapeMapper",
    "SceneGraphDatasetMapper",
    "build_augmentations",
    "filter_duplicate_relations",
]

logger = logging.getLogger(__name__)


def build_augmentations(cfg, is_train: bool) -> List[T.Augmentation]:
    """Detectron2's ``build_augmentation`` (resize, ``INPUT.RANDOM_FLIP``) plus, at train
    time when ``INPUT.RANDOM_ROTATE_90`` is True, a rotation by 0, 90, 180 or 270 degrees
    chosen uniformly (``T.RandomRotation`` with ``expand=True``: boxes stay tight).

    With ``INPUT.RANDOM_FLIP "horizontal"`` the two give all eight flips and quarter turns
    of the image. Both are for detector training on worlds whose classes do not depend on
    orientation: they turn "above" into "left of", so relation configs leave them off.
    """
    augmentations = utils.build_augmentation(cfg, is_train)
    if is_train and cfg.INPUT.RANDOM_ROTATE_90:
        augmentations.append(T.RandomRotation([0, 90, 180, 270], sample_style="choice"))
    return augmentations


class AugmentedShapeMapper:
    """A train-time mapper whose output ``height``/``width`` are those of the augmented
    image, so that Detectron2's aspect-ratio grouping (which reads them) batches landscape
    with landscape after a quarter turn. Without it a turned 200 x 160 image lands in a
    batch of 160 x 200 ones and the batch is padded square (demo detector: 0.288 instead of
    0.229 s per training step on 2 CPU cores). Only for training: at test time
    ``height``/``width`` are the size predictions are rescaled to.
    """

    def __init__(self, mapper):
        """Args: mapper: a train mapper returning dicts with ``image`` (C, H, W)."""
        self.mapper = mapper

    def __call__(self, dataset_dict: Dict) -> Dict:
        out = self.mapper(dataset_dict)
        out["height"], out["width"] = (int(v) for v in out["image"].shape[-2:])
        return out


def filter_duplicate_relations(relations: np.ndarray, rng=np.random) -> np.ndarray:
    """Keep one relation per (subject, object) pair, chosen uniformly at random.

    Args:
        relations: (R, 3) int64 ``[subject, object, predicate]``.
        rng: source of randomness with a ``permutation`` method (default: numpy's global
            generator, which Detectron2 seeds per data-loader worker).

    Returns:
        (R', 3) the kept rows, in their original order.
    """
    if len(relations) < 2:
        return relations
    order = rng.permutation(len(relations))
    # np.unique keeps the first occurrence in the shuffled order: a random row per pair.
    _, first = np.unique(relations[order, :2], axis=0, return_index=True)
    return relations[np.sort(order[first])]


class SceneGraphDatasetMapper:
    """Turn a scene-graph dataset dict into the model's input (train and test).

    Output keys, besides the dict's own ``file_name``, ``image_id``, ``height``, ``width``:

    - ``image``: uint8 tensor (C, H, W) after augmentation;
    - ``instances``: :class:`Instances` with ``gt_boxes``, ``gt_classes`` and, when the
      annotations have ``segmentation``, ``gt_masks``. Every annotation is kept, in
      order, so relation indices stay valid (no empty-box filtering);
    - ``relations``: int64 tensor (R, 3) ``[subject, object, predicate]`` indexing
      ``instances``. At train time, if ``filter_duplicate_relations``, one predicate per
      (subject, object) pair is kept at random, then ``relation_dropper`` (bi-level
      resampling's instance drops, ``sgg_d2.data.resampling``) may thin them out; at test
      time the ground truth is untouched.

    Augmentations come from :func:`build_augmentations`: ``ResizeShortestEdge`` from
    ``INPUT.MIN_SIZE_*``/``MAX_SIZE_*`` and, at train time only, a flip when
    ``INPUT.RANDOM_FLIP != "none"`` and quarter turns when ``INPUT.RANDOM_ROTATE_90``
    (sgg_d2's defaults are off because flipping turns "left of" into "right of").

    Masks use ``INPUT.MASK_FORMAT``; an image whose masks are RLE is switched to
    ``"bitmask"`` (polygon masks cannot hold RLE).
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: List,
        image_format: str,
        mask_format: str = "polygon",
        filter_duplicate_relations: bool = False,
        relation_dropper=None,
    ):
        """
        Args:
            is_train: train-time behaviour (duplicate filtering allowed).
            augmentations: Detectron2 augmentations or deterministic transforms.
            image_format: e.g. ``"BGR"`` (``INPUT.FORMAT``).
            mask_format: ``"polygon"`` or ``"bitmask"``.
            filter_duplicate_relations: keep one predicate per pair (train only).
            relation_dropper: ``(dataset_dict, relations) -> kept relations``, applied
                after duplicate filtering (train only), e.g. a ``RelationDropper``; or None.
        """
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.mask_format = mask_format
        self.filter_duplicates = bool(filter_duplicate_relations and is_train)
        self.relation_dropper = relation_dropper if is_train else None
        logger.info(
            "SceneGraphDatasetMapper (%s): augmentations %s, duplicate filtering %s",
            "train" if is_train else "test",
            augmentations,
            self.filter_duplicates,
        )

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict[str, Any]:
        return {
            "is_train": is_train,
            "augmentations": build_augmentations(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "mask_format": cfg.INPUT.MASK_FORMAT,
            "filter_duplicate_relations": cfg.DATASETS.SGG.FILTER_DUPLICATE_RELATIONS,
        }

    def _read_image(self, dataset_dict: Dict) -> np.ndarray:
        file_name = dataset_dict["file_name"]
        try:
            image = utils.read_image(file_name, format=self.image_format)
        except FileNotFoundError as e:
            raise FileNotFoundError(
                f"image file not found: {file_name} (image_id {dataset_dict.get('image_id')})"
            ) from e
        except OSError as e:  # truncated or not an image: PIL's message names no file
            raise OSError(
                f"cannot read image file {file_name} (image_id {dataset_dict.get('image_id')}): "
                f"{e}"
            ) from e
        utils.check_image_size(dataset_dict, image)
        return image

    def _instances(self, annos: List[Dict], image_shape, file_name: str):
        with_segm = ["segmentation" in a for a in annos]
        if any(with_segm) and not all(with_segm):
            raise ValueError(
                f"{file_name}: {sum(with_segm)} of {len(annos)} annotations have a "
                "segmentation; either all or none must"
            )
        mask_format = self.mask_format
        if any(isinstance(a.get("segmentation"), np.ndarray) for a in annos):
            mask_format = "bitmask"  # RLE was decoded to an array by the transform
        return utils.annotations_to_instances(annos, image_shape, mask_format=mask_format)

    def _relations(self, dataset_dict: Dict, num_objects: int) -> torch.Tensor:
        if "relations" not in dataset_dict:
            raise KeyError(f"{dataset_dict['file_name']}: dataset dict has no 'relations'")
        relations = dataset_dict["relations"]
        try:
            relations = np.asarray(relations, dtype=np.int64).reshape(-1, 3)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{dataset_dict['file_name']}: 'relations' must be an int array (R, 3) of "
                f"[subject, object, predicate] rows, got {type(relations).__name__} "
                f"{str(relations)[:80]}"
            ) from e
        bad = (relations[:, :2] < 0) | (relations[:, :2] >= num_objects)
        if bad.any():
            row = int(np.nonzero(bad.any(axis=1))[0][0])
            raise ValueError(
                f"{dataset_dict['file_name']}: relation {row} = {relations[row].tolist()} "
                f"indexes outside the image's {num_objects} annotations"
            )
        if self.filter_duplicates:
            relations = filter_duplicate_relations(relations)
        if self.relation_dropper is not None:
            relations = self.relation_dropper(dataset_dict, relations)
        return torch.as_tensor(relations, dtype=torch.int64)

    def __call__(self, dataset_dict: Dict) -> Dict:
        """Map one dataset dict (not modified) to the model's input dict."""
        dataset_dict = copy.deepcopy(dataset_dict)
        image = self._read_image(dataset_dict)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        annos = [
            utils.transform_instance_annotations(a, transforms, image_shape)
            for a in dataset_dict.pop("annotations", [])
        ]
        dataset_dict["instances"] = self._instances(annos, image_shape, dataset_dict["file_name"])
        dataset_dict["relations"] = self._relations(dataset_dict, len(annos))
        return dataset_dict
