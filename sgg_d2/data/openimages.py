"""OpenImages relationship detection (V6 as in recent SGG work; V4 challenge subset).

``annotations/vrd-{train,val,test}-anno.json`` is a list of
``{"img_fn": str (no extension), "img_size": [w, h], "bbox": [[x1, y1, x2, y2], ...]
(absolute), "det_labels": [...] (0-based), "rel": [[sub_idx, obj_idx, pred], ...]}``
and ``categories_dict.json`` is ``{"obj": [...names], "rel": [...names]}``. V6 (601
classes / 30 predicates) and the V4 subset (57 / 9) differ only in that file. Images are
``<image_root>/<img_fn>.jpg``; ``image_id`` is ``img_fn``.
"""

import os
from functools import partial
from typing import Any, List, Tuple

import numpy as np

from ._boxes import SplitRecords
from ._checks import DatasetFormatError, load_json_file, require_keys
from ._split_file import register_split_file, split_file_loader

__all__ = ["load_openimages", "register_openimages", "load_openimages_classes"]

_ENTRY_KEYS = ("img_fn", "img_size", "bbox", "det_labels", "rel")


def load_openimages_classes(categories_file: str) -> Tuple[List[str], List[str]]:
    """Object and predicate names from ``categories_dict.json`` (keys ``obj``, ``rel``)."""
    cats = load_json_file(categories_file, "categories_file")
    require_keys(cats, ("obj", "rel"), f"categories_file {categories_file}")
    return list(cats["obj"]), list(cats["rel"])


def _parse_entry(entry: Any, num_classes: int, num_predicates: int, where: str):
    """Boxes (N, 4), labels (N,), relations (R, 3) and size of one annotation entry."""
    require_keys(entry, _ENTRY_KEYS, where)
    try:
        boxes = np.asarray(entry["bbox"], dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(entry["det_labels"], dtype=np.int64).reshape(-1)
        rels = np.asarray(entry["rel"], dtype=np.int64).reshape(-1, 3)
        width, height = (int(v) for v in entry["img_size"])
    except (TypeError, ValueError) as e:
        raise DatasetFormatError(
            f"{where}: bbox must be N x [x1, y1, x2, y2], det_labels N ints, rel R x [sub, obj, "
            f"pred], img_size [w, h] ({e})"
        ) from e
    if len(labels) != len(boxes):
        raise DatasetFormatError(f"{where}: {len(boxes)} boxes but {len(labels)} det_labels")
    checks = (
        (labels, num_classes, "det_labels"),
        (rels[:, :2], len(boxes), "rel subject/object index"),
        (rels[:, 2], num_predicates, "rel predicate"),
    )
    for values, limit, what in checks:
        bad = (values < 0) | (values >= limit)
        if bad.any():
            raise DatasetFormatError(f"{where}: {what} {values[bad][0]} not in [0, {limit})")
    return boxes, labels, rels, width, height


def _add_entries(
    split: SplitRecords,
    data: List[Any],
    annotation_file: str,
    image_root: str,
    num_classes: int,
    num_predicates: int,
) -> None:
    """Pass every entry of a parsed annotation list through ``split`` (file order)."""
    for k, entry in enumerate(data):
        fn = entry.get("img_fn") if isinstance(entry, dict) else None
        where = f"annotation_file {annotation_file}, entry {k} (img_fn {fn!r})"
        boxes, labels, rels, width, height = _parse_entry(entry, num_classes, num_predicates, where)
        if not split.skip(rels):
            file_name = os.path.join(image_root, f"{fn}.jpg")
            split.add(file_name, str(fn), width, height, boxes, labels, rels, where=where)


load_openimages = split_file_loader(
    "load_openimages",
    "OpenImages",
    list,
    _add_entries,
    annotation_file="``vrd-{train,val,test}-anno.json``.",
    image_root="folder of ``<img_fn>.jpg``.",
    order="file order",
)


def register_openimages(
    name: str,
    annotation_file: str,
    categories_file: str,
    image_root: str,
    **options: Any,
) -> None:
    """Register an OpenImages relationship split (lazy; evaluator type ``"openimages_sg"``).

    Args:
        name: dataset name, e.g. ``"openimages_v6_train"``.
        annotation_file, image_root: as in :func:`load_openimages`.
        categories_file: ``categories_dict.json`` (V6 or V4 subset).
        options: ``train_split`` (default derived from ``name``), ``metadata`` (extra
            metadata, e.g. ``dataset_root``) and the keyword options of :func:`load_openimages`,
            all checked now (see :func:`sgg_d2.data._checks.register_split`).
    """
    load_classes = partial(load_openimages_classes, categories_file)
    register_split_file(
        name, load_openimages, annotation_file, image_root, load_classes, "openimages_sg", **options
    )
