"""OpenImages relationship detection (V6 as in recent SGG work; V4 challenge subset).

``annotations/vrd-{train,val,test}-anno.json`` is a list of
``{"img_fn": str (no extension), "img_size": [w, h], "bbox": [[x1, y1, x2, y2], ...]
(absolute), "det_labels": [...] (0-based), "rel": [[sub_idx, obj_idx, pred], ...]}``
and ``categories_dict.json`` is ``{"obj": [...names], "rel": [...names]}``. V6 (601
classes / 30 predicates) and the V4 subset (57 / 9) differ only in that file. Images are
``<image_root>/<img_fn>.jpg``; ``image_id`` is ``img_fn``.
"""

import logging
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ._boxes import BoxStats, check_degenerate_rule, make_record
from ._checks import (
    DatasetFormatError,
    load_json_file,
    register_lazy,
    require_file,
    resolve_train_split,
)

__all__ = ["load_openimages", "register_openimages", "load_openimages_classes"]

logger = logging.getLogger(__name__)

_ENTRY_KEYS = ("img_fn", "img_size", "bbox", "det_labels", "rel")


def load_openimages_classes(categories_file: str) -> Tuple[List[str], List[str]]:
    """Object and predicate names from ``categories_dict.json`` (keys ``obj``, ``rel``)."""
    cats = load_json_file(categories_file, "categories_file")
    missing = [k for k in ("obj", "rel") if not isinstance(cats, dict) or k not in cats]
    if missing:
        raise DatasetFormatError(
            f"categories_file {categories_file}: missing key(s) {', '.join(missing)}"
        )
    return list(cats["obj"]), list(cats["rel"])


def _parse_entry(entry: Any, num_classes: int, num_predicates: int, where: str):
    """Boxes (N, 4), labels (N,), relations (R, 3) and size of one annotation entry."""
    missing = [k for k in _ENTRY_KEYS if not isinstance(entry, dict) or k not in entry]
    if missing:
        raise DatasetFormatError(f"{where}: missing key(s) {', '.join(missing)}")
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


def load_openimages(
    annotation_file: str,
    image_root: str,
    num_classes: int,
    num_predicates: int,
    *,
    degenerate_boxes: str = "enlarge",
    filter_empty_relations: bool = False,
) -> List[Dict[str, Any]]:
    """Load one OpenImages relationship annotation file as scene-graph dicts.

    Args:
        annotation_file: ``vrd-{train,val,test}-anno.json``.
        image_root: folder of ``<img_fn>.jpg``.
        num_classes, num_predicates: sizes of the class lists (for range checks).
        degenerate_boxes: zero-area box rule (see :mod:`sgg_d2.data._boxes`).
        filter_empty_relations: drop entries without relations (counted, logged).

    Returns:
        list of dicts (data contract), in file order.
    """
    check_degenerate_rule(degenerate_boxes)
    data = load_json_file(annotation_file, "annotation_file")
    if not isinstance(data, list):
        raise DatasetFormatError(f"annotation_file {annotation_file}: expected a JSON list")
    stats, dataset_dicts, empty = BoxStats(), [], 0
    for k, entry in enumerate(data):
        fn = entry.get("img_fn") if isinstance(entry, dict) else None
        where = f"annotation_file {annotation_file}, entry {k} (img_fn {fn!r})"
        boxes, labels, rels, width, height = _parse_entry(entry, num_classes, num_predicates, where)
        if len(rels) == 0 and filter_empty_relations:
            empty += 1
            continue
        dataset_dicts.append(
            make_record(
                os.path.join(image_root, f"{fn}.jpg"),
                str(fn),
                width,
                height,
                boxes,
                labels,
                rels,
                rule=degenerate_boxes,
                where=where,
                stats=stats,
            )
        )
    label = f"OpenImages ({os.path.basename(annotation_file)})"
    stats.log(label, degenerate_boxes)
    if filter_empty_relations:
        logger.info("%s: %d images without relations dropped", label, empty)
    logger.info("%s: %d images loaded", label, len(dataset_dicts))
    return dataset_dicts


def register_openimages(
    name: str,
    annotation_file: str,
    categories_file: str,
    image_root: str,
    *,
    degenerate_boxes: str = "enlarge",
    filter_empty_relations: bool = False,
    train_split: Optional[str] = None,
    metadata: Optional[Dict[str, Any]] = None,
) -> None:
    """Register an OpenImages relationship split (lazy; evaluator type ``"openimages_sg"``).

    Args:
        name: dataset name, e.g. ``"openimages_v6_train"``.
        annotation_file, image_root: as in :func:`load_openimages`.
        categories_file: ``categories_dict.json`` (V6 or V4 subset).
        train_split: matching training split; default derived from ``name``.
        metadata: extra metadata to set (e.g. ``dataset_root``).
    """
    require_file(annotation_file, "annotation_file")
    thing_classes, predicate_classes = load_openimages_classes(categories_file)
    check_degenerate_rule(degenerate_boxes)
    register_lazy(
        name,
        lambda: load_openimages(
            annotation_file,
            image_root,
            len(thing_classes),
            len(predicate_classes),
            degenerate_boxes=degenerate_boxes,
            filter_empty_relations=filter_empty_relations,
        ),
        {
            "thing_classes": thing_classes,
            "predicate_classes": predicate_classes,
            "evaluator_type": "openimages_sg",
            "train_split": resolve_train_split(name, train_split),
            "image_root": image_root,
            **(metadata or {}),
        },
    )
