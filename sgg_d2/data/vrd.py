"""VRD (Lu et al., 2016) as Detectron2 scene-graph dicts.

``annotations_{train,test}.json`` maps an image file name to a list of relations
``{"predicate": p, "subject": {"category": c, "bbox": [ymin, ymax, xmin, xmax]},
"object": {...}}`` with 0-based indices into ``objects.json`` / ``predicates.json``.

VRD repeats an object in every relation it takes part in; identical ``(category, box)``
pairs of one image become one annotation (in order of first appearance). Boxes are used
as given (``[xmin, ymin, xmax, ymax]``, no "+1"). The files carry no image sizes, so the
loader reads each image's header (a missing image is an error naming the file). The
``image_id`` is the file name without its extension (images may be .jpg, .png or .gif).
"""

import os
from functools import partial
from typing import Any, Dict, List, Tuple

import numpy as np

from ._boxes import SplitRecords
from ._checks import DatasetFormatError, image_size, load_json_file
from ._split_file import register_split_file, split_file_loader

__all__ = ["load_vrd", "register_vrd", "load_vrd_classes"]


def load_vrd_classes(objects_file: str, predicates_file: str) -> Tuple[List[str], List[str]]:
    """Object and predicate names from ``objects.json`` and ``predicates.json`` (lists)."""
    lists = []
    for path, option in ((objects_file, "objects_file"), (predicates_file, "predicates_file")):
        names = load_json_file(path, option)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetFormatError(f"{option} {path}: expected a JSON list of class names")
        lists.append(names)
    return lists[0], lists[1]


def _parse_object(
    entry: Any, num_classes: int, where: str
) -> Tuple[int, float, float, float, float]:
    """``(category, xmin, ymin, xmax, ymax)`` of a VRD subject/object entry."""
    try:
        category = entry["category"]
        ymin, ymax, xmin, xmax = (float(v) for v in entry["bbox"])
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetFormatError(
            f"{where}: expected {{'category': int, 'bbox': [ymin, ymax, xmin, xmax]}}, "
            f"got {entry!r}"
        ) from e
    if not isinstance(category, int) or not 0 <= category < num_classes:
        raise DatasetFormatError(f"{where}: category {category!r} is not in [0, {num_classes})")
    return category, xmin, ymin, xmax, ymax


def _parse_image(relations: Any, num_classes: int, num_predicates: int, where: str):
    """De-duplicated objects (N, 5) ``[category, x1, y1, x2, y2]`` and relations (R, 3)."""
    if not isinstance(relations, list):
        raise DatasetFormatError(f"{where}: expected a list of relations, got {relations!r}")
    objects: Dict[Tuple, int] = {}
    triples = []
    for j, rel in enumerate(relations):
        at = f"{where}, relation {j}"
        if not isinstance(rel, dict) or not {"predicate", "subject", "object"} <= set(rel):
            raise DatasetFormatError(f"{at}: expected keys predicate, subject, object")
        predicate = rel["predicate"]
        if not isinstance(predicate, int) or not 0 <= predicate < num_predicates:
            raise DatasetFormatError(f"{at}: predicate {predicate!r} not in [0, {num_predicates})")
        ends = []
        for role in ("subject", "object"):
            key = _parse_object(rel[role], num_classes, f"{at} {role}")
            ends.append(objects.setdefault(key, len(objects)))
        triples.append((ends[0], ends[1], predicate))
    table = np.array(list(objects), dtype=np.float64).reshape(-1, 5)
    return table, np.array(triples, dtype=np.int64).reshape(-1, 3)


def _add_images(
    split: SplitRecords,
    data: Dict[str, Any],
    annotation_file: str,
    image_root: str,
    num_classes: int,
    num_predicates: int,
) -> None:
    """Pass every image of a parsed annotation object through ``split`` (key order)."""
    seen: Dict[str, str] = {}
    for key, relations in data.items():
        where = f"annotation_file {annotation_file}, image {key!r}"
        objects, triples = _parse_image(relations, num_classes, num_predicates, where)
        if split.skip(triples):
            continue
        image_id = os.path.splitext(key)[0]
        if image_id in seen:
            raise DatasetFormatError(
                f"{where}: image id {image_id!r} (file name without extension) is also "
                f"used by {seen[image_id]!r}"
            )
        seen[image_id] = key
        file_name = os.path.join(image_root, key)
        width, height = image_size(file_name)
        split.add(
            file_name, image_id, width, height, objects[:, 1:], objects[:, 0], triples, where=where
        )


load_vrd = split_file_loader(
    "load_vrd",
    "VRD",
    dict,
    _add_images,
    annotation_file="``annotations_{train,test}.json``.",
    image_root="folder holding the image files named by the annotation keys.",
    order="the order of the file's keys",
)


def register_vrd(
    name: str,
    annotation_file: str,
    image_root: str,
    objects_file: str,
    predicates_file: str,
    **options: Any,
) -> None:
    """Register a VRD split under ``name`` (loaded lazily; evaluator type ``"vrd"``).

    Args:
        name: dataset name, e.g. ``"vrd_train"``.
        annotation_file, image_root: as in :func:`load_vrd`.
        objects_file, predicates_file: the VRD class lists (JSON lists of names).
        options: ``train_split`` (default derived from ``name``), ``metadata`` (extra
            metadata, e.g. ``dataset_root``) and the keyword options of :func:`load_vrd`,
            all checked now (see :func:`sgg_d2.data._checks.register_split`).
    """
    load_classes = partial(load_vrd_classes, objects_file, predicates_file)
    register_split_file(name, load_vrd, annotation_file, image_root, load_classes, "vrd", **options)
