"""Writers of the synthetic world in every real format (see ``../shared/PROTOCOLS.md``).

All writers take :class:`ImageRecord` lists and write deterministic bytes: JSON in a fixed
key order, HDF5 without timestamps. Those that name classes and predicates take the world's
:class:`~.world.WorldSpec` (``spec``; the default world by default).
"""

import json
import os
from dataclasses import dataclass
from typing import Dict, List, Sequence

import h5py
import numpy as np

from .world import AUX_CLASSES, COLOURS, DEFAULT_WORLD, WorldSpec

__all__ = [
    "ImageRecord",
    "write_json",
    "write_visual_genome",
    "write_vrd",
    "write_openimages",
    "write_scene_graph_json",
    "write_coco_instances",
]


@dataclass
class ImageRecord:
    """Annotations of one written image.

    Attributes:
        image_id: positive int, the file is ``<image_id>.jpg``.
        height, width: image size in pixels.
        labels: int64 (N,) 0-based classes.
        boxes: int64 (N, 4) XYXY absolute tight boxes (x2 = last column + 1).
        colours: int64 (N,) 0-based colour indices (VG attributes).
        segmentations: N COCO RLE dicts (``counts`` str) of the visible masks.
        areas: int64 (N,) visible mask areas.
        relations: int64 (R, 3) ``[subject, object, predicate]``, 0-based.
    """

    image_id: int
    height: int
    width: int
    labels: np.ndarray
    boxes: np.ndarray
    colours: np.ndarray
    segmentations: List[dict]
    areas: np.ndarray
    relations: np.ndarray

    @property
    def file_name(self) -> str:
        """Image file name relative to the image root."""
        return f"{self.image_id}.jpg"


def write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON (fixed key order as built, no trailing spaces)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"))


def _centre_size(boxes: np.ndarray, scale: float) -> np.ndarray:
    # VG stores centre x, centre y, width, height in the long-side-1024 (or 512) frame.
    b = boxes.astype(np.float64) * scale
    centre = (b[:, :2] + b[:, 2:]) / 2
    return np.round(np.concatenate([centre, b[:, 2:] - b[:, :2]], axis=1)).astype(np.int32)


def _ranges(counts: np.ndarray) -> tuple:
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
    last = (first + counts - 1).astype(np.int32)
    empty = counts == 0
    first[empty], last[empty] = -1, -1
    return first, last


def _vg_arrays(records: Sequence[ImageRecord], split_codes: Sequence[int]) -> Dict[str, np.ndarray]:
    n_obj = np.array([len(r.labels) for r in records], dtype=np.int64)
    n_rel = np.array([len(r.relations) for r in records], dtype=np.int64)
    first_box, last_box = _ranges(n_obj)
    first_rel, last_rel = _ranges(n_rel)
    rels = [r.relations[:, :2] + max(f, 0) for r, f in zip(records, first_box)]
    attributes = np.zeros((int(n_obj.sum()), 10), dtype=np.int64)
    attributes[:, 0] = np.concatenate([r.colours for r in records]) + 1
    arrays = {
        "active_object_mask": np.ones((int(n_obj.sum()), 1), dtype=bool),
        "attributes": attributes,
        "img_to_first_box": first_box,
        "img_to_first_rel": first_rel,
        "img_to_last_box": last_box,
        "img_to_last_rel": last_rel,
        "labels": (np.concatenate([r.labels for r in records]) + 1)[:, None].astype(np.int64),
        "predicates": (np.concatenate([r.relations[:, 2] for r in records]) + 1)[:, None],
        "relationships": np.concatenate(rels).astype(np.int32),
        "split": np.asarray(split_codes, dtype=np.int32),
    }
    for side in (1024, 512):
        arrays[f"boxes_{side}"] = np.concatenate(
            [_centre_size(r.boxes, side / max(r.height, r.width)) for r in records]
        )
    return arrays


def _index_maps(names: Sequence[str], key: str) -> dict:
    return {
        f"{key}_to_idx": {n: i + 1 for i, n in enumerate(names)},
        f"idx_to_{key}": {str(i + 1): n for i, n in enumerate(names)},
    }


def _vg_dicts(records: Sequence[ImageRecord], spec: WorldSpec) -> dict:
    labels = np.concatenate([r.labels for r in records])
    preds = np.concatenate([r.relations[:, 2] for r in records])
    colours = np.concatenate([r.colours for r in records])
    colour_names = [name for name, _ in COLOURS]
    out = {
        "object_count": _counts(spec.thing_classes, labels),
        "predicate_count": _counts(spec.predicates, preds),
        "attribute_count": _counts(colour_names, colours),
    }
    out.update(_index_maps(spec.thing_classes, "label"))
    out.update(_index_maps(spec.predicates, "predicate"))
    out.update(_index_maps(colour_names, "attribute"))
    return out


def _counts(names: Sequence[str], values: np.ndarray) -> dict:
    counts = np.bincount(values, minlength=len(names))
    return {n: int(c) for n, c in zip(names, counts)}


def write_visual_genome(
    root: str,
    records: Sequence[ImageRecord],
    split_codes: Sequence[int],
    spec: WorldSpec = DEFAULT_WORLD,
) -> None:
    """Write ``VG-SGG-with-attri.h5``, ``VG-SGG-dicts-with-attri.json``, ``image_data.json``.

    Args:
        root: output folder.
        records: images in h5 order.
        split_codes: (N_img,) 0 = train (val is carved from its start), 2 = test.
        spec: the world whose class and predicate names are written.
    """
    with h5py.File(os.path.join(root, "VG-SGG-with-attri.h5"), "w", track_order=False) as f:
        for key, value in _vg_arrays(records, split_codes).items():
            f.create_dataset(key, data=value, track_times=False)
    write_json(os.path.join(root, "VG-SGG-dicts-with-attri.json"), _vg_dicts(records, spec))
    image_data = [
        {
            "width": r.width,
            "url": f"synthetic://images/{r.file_name}",
            "height": r.height,
            "image_id": r.image_id,
            "coco_id": None,
            "flickr_id": None,
        }
        for r in records
    ]
    write_json(os.path.join(root, "image_data.json"), image_data)


def _vrd_object(record: ImageRecord, index: int) -> dict:
    x1, y1, x2, y2 = (int(v) for v in record.boxes[index])
    return {"category": int(record.labels[index]), "bbox": [y1, y2, x1, x2]}


def write_vrd(
    folder: str,
    train: Sequence[ImageRecord],
    test: Sequence[ImageRecord],
    spec: WorldSpec = DEFAULT_WORLD,
) -> None:
    """Write VRD ``annotations_{train,test}.json`` (+ ``objects.json``, ``predicates.json``).

    Boxes are ``[ymin, ymax, xmin, xmax]`` (same integers as the other formats' XYXY).
    """
    for split, records in (("train", train), ("test", test)):
        annotations = {
            r.file_name: [
                {
                    "predicate": int(p),
                    "subject": _vrd_object(r, int(s)),
                    "object": _vrd_object(r, int(o)),
                }
                for s, o, p in r.relations
            ]
            for r in records
        }
        write_json(os.path.join(folder, f"annotations_{split}.json"), annotations)
    write_json(os.path.join(folder, "objects.json"), list(spec.thing_classes))
    write_json(os.path.join(folder, "predicates.json"), list(spec.predicates))


def write_openimages(
    folder: str,
    splits: Dict[str, Sequence[ImageRecord]],
    spec: WorldSpec = DEFAULT_WORLD,
) -> None:
    """Write ``vrd-{split}-anno.json`` for each split and ``categories_dict.json``."""
    for split, records in splits.items():
        entries = [
            {
                "img_fn": str(r.image_id),
                "img_size": [r.width, r.height],
                "bbox": r.boxes.astype(int).tolist(),
                "det_labels": r.labels.astype(int).tolist(),
                "rel": r.relations.astype(int).tolist(),
            }
            for r in records
        ]
        write_json(os.path.join(folder, f"vrd-{split}-anno.json"), entries)
    categories = {"obj": list(spec.thing_classes), "rel": list(spec.predicates)}
    write_json(os.path.join(folder, "categories_dict.json"), categories)


def _coco_bbox(box: np.ndarray) -> list:
    x1, y1, x2, y2 = (int(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def _categories(names: Sequence[str], **extra) -> List[dict]:
    # COCO-style category list: 1-based ids in vocabulary order.
    return [{"id": i + 1, "name": n, **extra} for i, n in enumerate(names)]


def _images_json(records: Sequence[ImageRecord]) -> list:
    return [
        {"id": r.image_id, "file_name": r.file_name, "width": r.width, "height": r.height}
        for r in records
    ]


def write_scene_graph_json(
    path: str,
    records: Sequence[ImageRecord],
    first_annotation_id: int,
    spec: WorldSpec = DEFAULT_WORLD,
) -> int:
    """Write one split in the sgg_d2 custom JSON format (``datasets/README.md``).

    Category and predicate ids are 1-based in vocabulary order; annotation ids run from
    ``first_annotation_id``; segmentations are RLE of the visible masks.

    Returns:
        The next free annotation id (so ids are unique across the split files).
    """
    annotations, relations, next_id = [], [], first_annotation_id
    for r in records:
        ids = list(range(next_id, next_id + len(r.labels)))
        next_id += len(r.labels)
        for k, ann_id in enumerate(ids):
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": r.image_id,
                    "category_id": int(r.labels[k]) + 1,
                    "bbox": _coco_bbox(r.boxes[k]),
                    "segmentation": r.segmentations[k],
                }
            )
        relations += [
            {"image_id": r.image_id, "subject_id": ids[s], "object_id": ids[o],
             "predicate_id": int(p) + 1}
            for s, o, p in r.relations
        ]  # fmt: skip
    write_json(
        path,
        {
            "categories": _categories(spec.thing_classes),
            "predicate_categories": _categories(spec.predicates),
            "images": _images_json(records),
            "annotations": annotations,
            "relations": relations,
        },
    )
    return next_id


def write_coco_instances(path: str, records: Sequence[ImageRecord], description: str) -> None:
    """Write a COCO instances file (RLE segmentations, 1-based auxiliary category ids)."""
    annotations, next_id = [], 1
    for r in records:
        for k in range(len(r.labels)):
            annotations.append(
                {
                    "id": next_id,
                    "image_id": r.image_id,
                    "category_id": int(r.labels[k]) + 1,
                    "segmentation": r.segmentations[k],
                    "area": int(r.areas[k]),
                    "bbox": _coco_bbox(r.boxes[k]),
                    "iscrowd": 0,
                }
            )
            next_id += 1
    write_json(
        path,
        {
            "info": {"description": description, "version": "1.0"},
            "licenses": [],
            "images": _images_json(records),
            "annotations": annotations,
            "categories": _categories(AUX_CLASSES, supercategory="shape"),
        },
    )
