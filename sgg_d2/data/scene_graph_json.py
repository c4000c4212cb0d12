"""sgg_d2's own scene-graph JSON format: COCO-style images/annotations plus ``relations``.

One file per split (full description and an example in ``datasets/README.md``)::

    {"categories": [{"id": 1, "name": "ball"}, ...],
     "predicate_categories": [{"id": 1, "name": "left of"}, ...],
     "images": [{"id": 7, "file_name": "7.jpg", "width": 160, "height": 120}],
     "annotations": [{"id": 70, "image_id": 7, "category_id": 1, "bbox": [x, y, w, h],
                      "segmentation": <optional COCO polygons or RLE>}],
     "relations": [{"image_id": 7, "subject_id": 70, "object_id": 71, "predicate_id": 1}]}

Category and predicate ids are arbitrary ints, mapped to 0-based indices in list order
(metadata ``thing_dataset_id_to_contiguous_id`` records the category mapping, so that
Detectron2's ``COCOEvaluator`` reports results under the file's own ids).
Annotations keep their order of appearance within each image; relations reference
annotation ids of the same image. Uncompressed RLE (``counts`` as a list) is converted to
compressed RLE, as Detectron2's COCO loader does.
"""

import os
from functools import partial
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from pycocotools import mask as mask_util

from ._boxes import SplitRecords
from ._checks import DatasetFormatError, load_json_file, register_split, require_keys

__all__ = ["load_scene_graph_json", "register_scene_graph_json", "read_scene_graph_json_classes"]

_TOP_KEYS = ("categories", "predicate_categories", "images", "annotations", "relations")


def _read(json_file: str) -> Dict[str, Any]:
    data = load_json_file(json_file, "json_file")
    require_keys(data, _TOP_KEYS, f"json_file {json_file}")
    for key in _TOP_KEYS:
        if not isinstance(data[key], list):
            raise DatasetFormatError(
                f"json_file {json_file}: '{key}' must be a list of objects, got a "
                f"{type(data[key]).__name__} (see the format in datasets/README.md)"
            )
    return data


def _id_map(entries: List[Dict], key: str, json_file: str) -> Tuple[Dict[Any, int], List[str]]:
    """``{id: 0-based index}`` and the names, in list order."""
    index: Dict[Any, int] = {}
    for k, entry in enumerate(entries):
        require_keys(entry, ("id", "name"), f"json_file {json_file}: {key}[{k}]")
        if entry["id"] in index:
            raise DatasetFormatError(f"json_file {json_file}: {key} id {entry['id']} repeated")
        index[entry["id"]] = k
    return index, [str(e["name"]) for e in entries]


def read_scene_graph_json_classes(json_file: str) -> Tuple[List[str], List[str]]:
    """``thing_classes`` and ``predicate_classes`` of a scene-graph JSON file."""
    return _read_vocabulary(json_file)[:2]


def _read_vocabulary(json_file: str) -> Tuple[List[str], List[str], Optional[List[int]]]:
    """Class names, predicate names and the category ids in list order (``None`` when
    some id is not an int: COCO, and so Detectron2's ``COCOEvaluator``, needs int ids,
    and the 0-based indices are used instead)."""
    data = _read(json_file)
    _, thing_classes = _id_map(data["categories"], "categories", json_file)
    _, predicate_classes = _id_map(data["predicate_categories"], "predicate_categories", json_file)
    ids = [entry["id"] for entry in data["categories"]]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        ids = None
    return thing_classes, predicate_classes, ids


def _collect_annotations(data, images, categories, json_file):
    """Per image: boxes, classes, extra fields; and ``{annotation id: (image id, index)}``."""
    per_image = {image_id: ([], [], []) for image_id in images}
    location: Dict[Any, Tuple[Any, int]] = {}
    for k, ann in enumerate(data["annotations"]):
        where = (
            f"json_file {json_file}: annotation id {ann.get('id') if isinstance(ann, dict) else k}"
        )
        require_keys(ann, ("id", "image_id", "category_id", "bbox"), where)
        if ann["id"] in location:
            raise DatasetFormatError(f"{where}: annotation id repeated")
        if ann["image_id"] not in per_image:
            raise DatasetFormatError(f"{where}: unknown image id {ann['image_id']}")
        if ann["category_id"] not in categories:
            raise DatasetFormatError(f"{where}: unknown category id {ann['category_id']}")
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (TypeError, ValueError) as e:
            raise DatasetFormatError(f"{where}: bbox must be [x, y, width, height]") from e
        boxes, classes, extras = per_image[ann["image_id"]]
        location[ann["id"]] = (ann["image_id"], len(boxes))
        boxes.append((x, y, x + w, y + h))
        classes.append(categories[ann["category_id"]])
        extras.append(_extra_fields(ann))
    return per_image, location


def _extra_fields(ann: Dict[str, Any]) -> Dict[str, Any]:
    if "segmentation" not in ann:
        return {}
    segm = ann["segmentation"]
    if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        segm = mask_util.frPyObjects(segm, *segm["size"])
    return {"segmentation": segm}


def _collect_relations(data, location, predicates, images, json_file) -> Dict[Any, List]:
    per_image: Dict[Any, List] = {image_id: [] for image_id in images}
    for k, rel in enumerate(data["relations"]):
        where = f"json_file {json_file}: relations[{k}]"
        require_keys(rel, ("image_id", "subject_id", "object_id", "predicate_id"), where)
        image_id = rel["image_id"]
        if image_id not in per_image:
            raise DatasetFormatError(f"{where}: unknown image id {image_id}")
        if rel["predicate_id"] not in predicates:
            raise DatasetFormatError(f"{where}: unknown predicate id {rel['predicate_id']}")
        ends = []
        for role in ("subject_id", "object_id"):
            ann_id = rel[role]
            if ann_id not in location:
                raise DatasetFormatError(f"{where}: unknown {role} {ann_id}")
            if location[ann_id][0] != image_id:
                raise DatasetFormatError(
                    f"{where}: {role} {ann_id} belongs to image {location[ann_id][0]}, "
                    f"not to image {image_id}"
                )
            ends.append(location[ann_id][1])
        if rel["subject_id"] == rel["object_id"]:
            raise DatasetFormatError(
                f"{where}: image id {image_id}: subject_id and object_id are both "
                f"{rel['subject_id']}; a relation must join two different annotations"
            )
        per_image[image_id].append((ends[0], ends[1], predicates[rel["predicate_id"]]))
    return per_image


def load_scene_graph_json(
    json_file: str, image_root: str, *, degenerate_boxes: str = "enlarge"
) -> List[Dict[str, Any]]:
    """Load a scene-graph JSON file as Detectron2 scene-graph dicts (images in file order).

    Args:
        json_file: the split's JSON file.
        image_root: folder that ``file_name`` is relative to.
        degenerate_boxes: zero-area box rule (see :mod:`sgg_d2.data._boxes`).
    """
    split = SplitRecords(f"scene-graph JSON ({os.path.basename(json_file)})", degenerate_boxes)
    data = _read(json_file)
    categories, _ = _id_map(data["categories"], "categories", json_file)
    predicates, _ = _id_map(data["predicate_categories"], "predicate_categories", json_file)
    images: Dict[Any, Dict] = {}
    for k, image in enumerate(data["images"]):
        require_keys(
            image, ("id", "file_name", "width", "height"), f"json_file {json_file}: images[{k}]"
        )
        if image["id"] in images:
            raise DatasetFormatError(f"json_file {json_file}: image id {image['id']} repeated")
        images[image["id"]] = image
    annotations, location = _collect_annotations(data, images, categories, json_file)
    relations = _collect_relations(data, location, predicates, images, json_file)
    for image_id, image in images.items():
        boxes, classes, extras = annotations[image_id]
        split.add(
            os.path.join(image_root, image["file_name"]),
            image_id,
            image["width"],
            image["height"],
            np.array(boxes, dtype=np.float64).reshape(-1, 4),
            np.array(classes, dtype=np.int64),
            np.array(relations[image_id], dtype=np.int64).reshape(-1, 3),
            where=f"json_file {json_file}: image id {image_id}",
            extras=extras,
        )
    return split.finish()


def register_scene_graph_json(
    name: str,
    json_file: str,
    image_root: str,
    **options: Any,
) -> None:
    """Register a scene-graph JSON split under ``name`` in one call (loaded lazily).

    The file is parsed once now for its class lists (metadata ``thing_classes`` and
    ``predicate_classes``, in list order) and category ids (metadata
    ``thing_dataset_id_to_contiguous_id``, ``{file id: 0-based index}``); evaluator type
    ``"scene_graph"``; metadata ``annotation_file`` is ``json_file`` (``json_file`` is
    left unset: Detectron2's ``COCOEvaluator`` would read it as a COCO file).

    Args:
        name: dataset name, e.g. ``"my_data_train"``.
        json_file, image_root: as in :func:`load_scene_graph_json`.
        options: ``train_split`` (the matching training split; default derived from
            ``name``: ``*_test``/``*_val`` -> ``*_train``, else ``name``), ``metadata``
            (extra metadata, e.g. ``dataset_root``) and the keyword options of
            :func:`load_scene_graph_json` (``degenerate_boxes``), all checked now.
    """
    *classes, ids = _read_vocabulary(json_file)
    load = partial(load_scene_graph_json, json_file, image_root)
    options["metadata"] = {"annotation_file": json_file, **(options.get("metadata") or {})}
    register_split(name, load, classes, "scene_graph", image_root, category_ids=ids, **options)
