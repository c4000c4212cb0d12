"""Ground truth of a registered scene-graph dataset, as compact per-image arrays.

Read from ``DatasetCatalog.get(dataset_name)`` (the data contract of sgg_d2: Detectron2
dicts plus ``relations`` (R, 3) int64 rows ``[subject, object, predicate]``). Test ground
truth is used as loaded: duplicate triplets are kept.
"""

from typing import Dict, Hashable, List, Tuple

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .functional.matching import GroundTruthGraph

__all__ = [
    "as_triplets",
    "load_ground_truth",
    "predicate_classes_of",
    "record_to_ground_truth",
    "triplet_classes",
]


def predicate_classes_of(dataset_name: str) -> List[str]:
    """``predicate_classes`` of a registered dataset's metadata.

    Raises:
        ValueError: if the metadata has no ``predicate_classes``.
    """
    metadata = MetadataCatalog.get(dataset_name)
    classes = getattr(metadata, "predicate_classes", None)
    if not classes:
        raise ValueError(
            f"MetadataCatalog['{dataset_name}'] has no 'predicate_classes'; a scene-graph "
            "dataset must set it (list of predicate names, 0-based, no background)"
        )
    return list(classes)


def load_ground_truth(dataset_name: str) -> Dict[Hashable, Tuple[int, GroundTruthGraph]]:
    """Index a registered dataset's ground truth by ``image_id``.

    Args:
        dataset_name: a name registered in ``DatasetCatalog``.

    Returns:
        image_id -> (position of the image in the dataset list, its ground truth).

    Raises:
        ValueError: naming the dataset, image and field, for a missing ``image_id``, a
            duplicate ``image_id`` or malformed annotations/relations.
    """
    num_predicates = len(predicate_classes_of(dataset_name))
    index: Dict[Hashable, Tuple[int, GroundTruthGraph]] = {}
    for position, record in enumerate(DatasetCatalog.get(dataset_name)):
        if "image_id" not in record:
            raise ValueError(f"{dataset_name}: dataset dict #{position} has no 'image_id'")
        image_id = record["image_id"]
        if image_id in index:
            raise ValueError(
                f"{dataset_name}: image_id {image_id!r} appears twice (dicts #{index[image_id][0]}"
                f" and #{position}); evaluation looks ground truth up by image_id"
            )
        where = f"{dataset_name}, image_id {image_id!r}"
        index[image_id] = (position, record_to_ground_truth(record, num_predicates, where))
    return index


def record_to_ground_truth(record: dict, num_predicates: int, where: str) -> GroundTruthGraph:
    """Convert one dataset dict to :class:`GroundTruthGraph` (boxes as XYXY_ABS).

    Args:
        record: a dataset dict of the data contract.
        num_predicates: P; predicates must lie in ``[0, P)``.
        where: text naming the dataset and image, for error messages.
    """
    annotations = record.get("annotations", [])
    boxes = _xyxy_boxes(annotations, where)
    labels = np.array([a["category_id"] for a in annotations], dtype=np.int64)
    if "relations" not in record:
        raise ValueError(f"{where}: dataset dict has no 'relations' (expected (R, 3) int64)")
    relations = np.asarray(record["relations"])
    if relations.size == 0:
        relations = np.zeros((0, 3), dtype=np.int64)
    if relations.ndim != 2 or relations.shape[1] != 3:
        raise ValueError(f"{where}: 'relations' has shape {relations.shape}, expected (R, 3)")
    relations = relations.astype(np.int64)
    _check_relations(relations, len(annotations), num_predicates, where)
    return GroundTruthGraph(boxes, labels, relations)


def _xyxy_boxes(annotations: list, where: str) -> np.ndarray:
    if not annotations:
        return np.zeros((0, 4), dtype=np.float32)
    modes = [a.get("bbox_mode") for a in annotations]
    if any(mode is None for mode in modes):
        raise ValueError(f"{where}: annotation #{modes.index(None)} has no 'bbox_mode'")
    if all(mode == BoxMode.XYXY_ABS for mode in modes):
        return np.array([a["bbox"] for a in annotations], dtype=np.float32).reshape(-1, 4)
    converted = [
        BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations
    ]
    return np.array(converted, dtype=np.float32).reshape(-1, 4)


def _check_relations(relations: np.ndarray, num_objects: int, num_predicates: int, where: str):
    if len(relations) == 0:
        return
    bad_index = (relations[:, :2] < 0) | (relations[:, :2] >= num_objects)
    if bad_index.any():
        row = int(np.flatnonzero(bad_index.any(axis=1))[0])
        raise ValueError(
            f"{where}: relations row {row} {relations[row].tolist()} indexes an annotation "
            f"outside [0, {num_objects})"
        )
    bad_predicate = (relations[:, 2] < 0) | (relations[:, 2] >= num_predicates)
    if bad_predicate.any():
        row = int(np.flatnonzero(bad_predicate)[0])
        raise ValueError(
            f"{where}: relations row {row} has predicate {int(relations[row, 2])}, outside "
            f"[0, {num_predicates}) of predicate_classes"
        )


def as_triplets(array) -> np.ndarray:
    """(Z, 3) int64 rows (subject class, object class, predicate) of ``array``; an error
    naming the shape otherwise."""
    triplets = np.asarray(array, dtype=np.int64)
    if triplets.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if triplets.ndim != 2 or triplets.shape[1] != 3:
        raise ValueError(
            f"zero-shot triplets have shape {triplets.shape}, expected (Z, 3) rows "
            "(subject class, object class, predicate)"
        )
    return triplets


def triplet_classes(gt: GroundTruthGraph) -> np.ndarray:
    """(G, 3) rows (subject class, object class, predicate) of an image's GT."""
    rel = gt.relations
    return np.stack([gt.labels[rel[:, 0]], gt.labels[rel[:, 1]], rel[:, 2]], axis=1)
