"""Visual Genome in the VG150 format of Xu et al. (2017) as Detectron2 scene-graph dicts.

Files: ``VG-SGG-with-attri.h5`` (or ``VG-SGG.h5``), ``VG-SGG-dicts-with-attri.json`` and
``image_data.json`` (see ``datasets/README.md``). Conventions, following the published
preprocessing:

- h5 boxes are centre x, centre y, width, height in a frame whose long side is
  ``box_scale`` (1024 or 512). They become corners ``x1 = cx - w / 2``, ``x2 = x1 + w``
  (exact floats; some public code truncates x1 to an integer of the frame first, a
  difference below one frame unit), then are scaled by ``max(width, height) / box_scale``.
- The image size comes from ``image_data.json``. A few of its sizes are known to disagree
  with the image files; :class:`~sgg_d2.data.SceneGraphDatasetMapper` checks the real
  size at load time (Detectron2's ``check_image_size``) and fails naming the file.
- Labels and predicates are 1-based in the h5 and 0-based here; relation indices are
  global in the h5 and local to each image here.
- split 0 = train, 2 = test. ``val`` is the first ``val_size`` train images after the
  no-box / no-relation filters; ``train`` is the rest.
- Boxes are clipped to the image and zero-area boxes handled as described in
  :mod:`sgg_d2.data._boxes` (``degenerate_boxes`` option).
- Duplicate (subject, object) pairs are kept: the mapper removes them at train time.
"""

import logging
import os
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, List, Optional

import numpy as np
from detectron2.structures import Boxes, BoxMode
from detectron2.structures.boxes import matched_pairwise_iou

from ._boxes import (
    CLIPPED_EXAMPLES,
    BoxStats,
    check_degenerate_rule,
    clip_to_image,
    degenerate_mask,
    enlarge_boxes,
    image_label,
)
from ._checks import DatasetFormatError, register_split, require_file, resolve_train_split
from ._vg_h5 import load_image_data, load_vg_classes, read_vg_h5, validate_vg_h5

__all__ = ["load_visual_genome", "register_visual_genome"]

logger = logging.getLogger(__name__)

_SPLIT_CODES = {"train": 0, "val": 0, "test": 2}


def _convert_boxes(a, box_owner, sizes, box_scale: int, rule: str, h5_file: str):
    """Corners in image pixels for every object, plus the (N_obj,) keep mask of the rule."""
    owned = box_owner >= 0
    image = np.where(owned, box_owner, 0)
    widths = np.where(owned, sizes["width"][image], np.inf)
    heights = np.where(owned, sizes["height"][image], np.inf)
    scale = np.where(owned, np.maximum(widths, heights) / box_scale, 1.0)
    centre_size = a["boxes"].astype(np.float64)
    corners = np.empty_like(centre_size)
    corners[:, :2] = centre_size[:, :2] - centre_size[:, 2:] / 2.0
    corners[:, 2:] = corners[:, :2] + centre_size[:, 2:]
    corners *= scale[:, None]
    corners, clipped = clip_to_image(corners, widths, heights)
    per_image = np.bincount(box_owner[clipped & owned], minlength=len(sizes["image_id"]))
    hit = np.nonzero(per_image)[0]
    stats = BoxStats(
        clipped=int(per_image.sum()),
        clipped_images=len(hit),
        clipped_examples=[
            image_label(f"{sizes['image_id'][i]}.jpg", int(sizes["image_id"][i]))
            for i in hit[:CLIPPED_EXAMPLES]
        ],
    )
    degenerate = degenerate_mask(corners) & owned
    stats.degenerate = int(degenerate.sum())
    keep = np.ones(len(corners), dtype=bool)
    if stats.degenerate and rule == "error":
        g = int(np.nonzero(degenerate)[0][0])
        raise DatasetFormatError(
            f"h5_file {h5_file}: image index {box_owner[g]}: box {g} = "
            f"{a['boxes'][g].tolist()} (centre/size) has zero area (degenerate_boxes='error')"
        )
    if stats.degenerate and rule == "enlarge":
        corners = enlarge_boxes(corners, widths, heights, degenerate)
    elif stats.degenerate:
        keep = ~degenerate
    return corners, keep, stats


@dataclass
class _Prepared:
    """Whole-file arrays after conversion and the box rule (N_img images, N_obj, N_rel)."""

    boxes: np.ndarray  # (N_obj, 4) XYXY pixels
    labels: np.ndarray  # (N_obj,) 0-based
    box_keep: np.ndarray  # (N_obj,) bool, False for dropped degenerate boxes
    n_box: np.ndarray  # (N_img,) kept boxes per image
    relations: np.ndarray  # (N_rel, 3) indices local to each image's kept boxes
    rel_owner: np.ndarray  # (N_rel,) image index, -1 if no image covers it
    rel_keep: np.ndarray  # (N_rel,) bool
    n_rel: np.ndarray  # (N_img,) kept relations per image


def _prepare(a, box_owner, rel_owner, boxes, box_keep) -> _Prepared:
    n_img = len(a["split"])
    pairs = a["relationships"]
    rel_keep = (rel_owner >= 0) & box_keep[pairs[:, 0]] & box_keep[pairs[:, 1]]
    kept_before = np.cumsum(box_keep) - box_keep  # kept boxes before each global index
    first = kept_before[np.maximum(a["img_to_first_box"][np.maximum(rel_owner, 0)], 0)]
    relations = np.empty((len(rel_owner), 3), dtype=np.int64)
    relations[:, :2] = kept_before[pairs] - first[:, None]
    relations[:, 2] = a["predicates"].astype(np.int64) - 1
    return _Prepared(
        boxes=boxes,
        labels=a["labels"].astype(np.int64) - 1,
        box_keep=box_keep,
        n_box=_counts(box_owner, box_keep, n_img),
        relations=relations,
        rel_owner=rel_owner,
        rel_keep=rel_keep,
        n_rel=_counts(rel_owner, rel_keep, n_img),
    )


def _counts(owner, keep, n_img: int) -> np.ndarray:
    return np.bincount(owner[keep & (owner >= 0)], minlength=n_img)


def _filter_non_overlap(a, p: _Prepared, index: np.ndarray, label: str) -> np.ndarray:
    """Keep relations whose boxes overlap (updates ``p``); drop images left without any."""
    pairs = a["relationships"]
    iou = matched_pairwise_iou(Boxes(p.boxes[pairs[:, 0]]), Boxes(p.boxes[pairs[:, 1]]))
    p.rel_keep = p.rel_keep & (iou.numpy() > 0)
    n_overlap = _counts(p.rel_owner, p.rel_keep, len(a["split"]))
    lost = (p.n_rel[index] > 0) & (n_overlap[index] == 0)
    logger.info(
        "%s: filter_non_overlap dropped %d relations and %d images",
        label,
        int((p.n_rel[index] - n_overlap[index]).sum()),
        int(lost.sum()),
    )
    p.n_rel = n_overlap
    return index[~lost]


def _select(a, split: str, p: _Prepared, options: Dict[str, Any], label: str) -> np.ndarray:
    """Image indices of ``split`` after the filters and val carving."""
    in_split = a["split"] == _SPLIT_CODES[split]
    keep = in_split & (p.n_box > 0)
    logger.info("%s: %d images without boxes dropped", label, int((in_split & ~keep).sum()))
    if options["filter_empty_relations"]:
        no_rel = keep & (p.n_rel == 0)
        keep &= ~no_rel
        logger.info("%s: %d images without relations dropped", label, int(no_rel.sum()))
    index = np.nonzero(keep)[0]
    val_size = options["val_size"]
    if split == "val":
        index = index[:val_size]
    elif split == "train":
        index = index[val_size:]
    if split == "train" and options["filter_non_overlap"]:
        index = _filter_non_overlap(a, p, index, label)
    elif options["filter_non_overlap"]:
        logger.info("%s: filter_non_overlap applies to the train split only", label)
    if options["num_images"] >= 0:
        index = index[: options["num_images"]]
    return index


def _build_dicts(index, a, sizes, image_root: str, p: _Prepared) -> List[Dict[str, Any]]:
    first_box, last_box = a["img_to_first_box"], a["img_to_last_box"]
    first_rel, last_rel = a["img_to_first_rel"], a["img_to_last_rel"]
    mode = BoxMode.XYXY_ABS
    empty = np.zeros((0, 3), dtype=np.int64)
    dataset_dicts = []
    for i in index.tolist():
        lo, hi = int(first_box[i]), int(last_box[i]) + 1
        boxes, labels = p.boxes[lo:hi], p.labels[lo:hi]
        if p.n_box[i] != hi - lo:  # degenerate boxes dropped
            boxes, labels = boxes[p.box_keep[lo:hi]], labels[p.box_keep[lo:hi]]
        relations = empty
        if first_rel[i] >= 0:
            rlo, rhi = int(first_rel[i]), int(last_rel[i]) + 1
            relations = p.relations[rlo:rhi]
            if p.n_rel[i] != rhi - rlo:
                relations = relations[p.rel_keep[rlo:rhi]]
            else:
                relations = relations.copy()
        image_id = int(sizes["image_id"][i])
        dataset_dicts.append(
            {
                "file_name": os.path.join(image_root, f"{image_id}.jpg"),
                "image_id": image_id,
                "height": int(sizes["height"][i]),
                "width": int(sizes["width"][i]),
                "annotations": [
                    {"bbox": box, "bbox_mode": mode, "category_id": c}
                    for box, c in zip(boxes.tolist(), labels.tolist())
                ],
                "relations": relations,
            }
        )
    return dataset_dicts


def load_visual_genome(
    h5_file: str,
    dicts_file: str,
    image_data_file: str,
    image_root: str,
    split: str,
    *,
    box_scale: int = 1024,
    filter_empty_relations: bool = True,
    filter_non_overlap: bool = False,
    val_size: int = 5000,
    num_images: int = -1,
    degenerate_boxes: str = "enlarge",
    self_relations: str = "error",
) -> List[Dict[str, Any]]:
    """Load one split of a VG150-format dataset as Detectron2 scene-graph dicts.

    Args:
        h5_file, dicts_file, image_data_file: the three VG150 files.
        image_root: folder of ``<image_id>.jpg``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        box_scale: which h5 box frame to read (``boxes_<box_scale>``).
        filter_empty_relations: drop images without relations (every split).
        filter_non_overlap: train split only: keep relations whose boxes overlap
            (IoU > 0); an image whose relations all go is dropped.
        val_size: number of train images (after the filters above) that form ``val``.
        num_images: keep only the first N images of the split (-1: all).
        degenerate_boxes: ``"enlarge"``, ``"drop"`` or ``"error"`` (see ``_boxes``).
        self_relations: ``"error"`` (default) refuses a relation whose subject is its
            object (no model can predict one); ``"drop"`` drops them, counted and logged.

    Returns:
        list of dicts (data contract): ``annotations`` with ``bbox`` (XYXY_ABS pixels) and
        0-based ``category_id``; ``relations`` int64 (R, 3), 0-based predicates.
    """
    if split not in _SPLIT_CODES:
        raise ValueError(f"split is {split!r}; valid values are {tuple(_SPLIT_CODES)}")
    if val_size < 0:
        raise ValueError(f"val_size must be >= 0, got {val_size}")
    check_degenerate_rule(degenerate_boxes)
    if self_relations not in ("error", "drop"):
        raise ValueError(f"self_relations is {self_relations!r}; valid values are 'error', 'drop'")
    label = f"VG150 {split} ({os.path.basename(h5_file)})"
    thing_classes, predicate_classes = load_vg_classes(dicts_file)
    a = read_vg_h5(h5_file, box_scale)
    box_owner, rel_owner = validate_vg_h5(
        a, h5_file, len(thing_classes), len(predicate_classes), self_relations
    )
    sizes = load_image_data(image_data_file, len(a["split"]), h5_file)
    boxes, box_keep, stats = _convert_boxes(
        a, box_owner, sizes, box_scale, degenerate_boxes, h5_file
    )
    # Relations outside every image range are never used; zero them so that vectorised
    # indexing with them stays in bounds.
    a["relationships"] = np.where(rel_owner[:, None] >= 0, a["relationships"], 0)
    prepared = _prepare(a, box_owner, rel_owner, boxes, box_keep)
    self_rel = (rel_owner >= 0) & (a["relationships"][:, 0] == a["relationships"][:, 1])
    if self_rel.any():  # only reachable with self_relations="drop"
        prepared.rel_keep &= ~self_rel
        prepared.n_rel = _counts(rel_owner, prepared.rel_keep, len(a["split"]))
        logger.warning(
            "%s: dropped %d self-relation(s) (subject == object; self_relations='drop')",
            label,
            int(self_rel.sum()),
        )
    stats.dropped_relations = int(((rel_owner >= 0) & ~prepared.rel_keep).sum())
    stats.log(f"VG150 ({os.path.basename(h5_file)}, all splits)", degenerate_boxes)
    options = {
        "filter_empty_relations": filter_empty_relations,
        "filter_non_overlap": filter_non_overlap,
        "val_size": val_size,
        "num_images": num_images,
    }
    index = _select(a, split, prepared, options, label)
    dataset_dicts = _build_dicts(index, a, sizes, image_root, prepared)
    logger.info("%s: %d images loaded", label, len(dataset_dicts))
    if not dataset_dicts:
        logger.warning("%s: no image left after filtering", label)
    return dataset_dicts


def register_visual_genome(
    name: str,
    h5_file: str,
    dicts_file: str,
    image_data_file: str,
    image_root: str,
    split: str,
    *,
    train_split: Optional[str] = None,
    **options: Any,
) -> None:
    """Register a VG150-format split under ``name`` (loaded lazily).

    The class lists are read now (from ``dicts_file``) so that metadata is available
    before loading; ``thing_dataset_id_to_contiguous_id`` maps the h5's 1-based labels to
    the 0-based classes. Files and ``split`` as in :func:`load_visual_genome`; in addition:

    Args:
        train_split: registered name of the matching training split (statistics and
            zero-shot sets); default: derived from ``name`` (``*_val``/``*_test`` ->
            ``*_train``), or ``name`` itself when ``split == "train"``.
        options: ``metadata`` (extra metadata, e.g. ``dataset_root``) and the keyword
            options of :func:`load_visual_genome` (``box_scale``,
            ``filter_empty_relations``, ``filter_non_overlap``, ``val_size``,
            ``num_images``, ``degenerate_boxes``), all checked now.
    """
    for path, option in ((h5_file, "h5_file"), (image_data_file, "image_data_file")):
        require_file(path, option)
    classes = load_vg_classes(dicts_file)
    train_name = (
        (train_split or name) if split == "train" else resolve_train_split(name, train_split)
    )
    if split != "train" and train_name == name:
        logger.warning(
            "%s: %s split registered as its own train_split (pass train_split)", name, split
        )
    files = (h5_file, dicts_file, image_data_file, image_root, split)
    load = partial(load_visual_genome, *files)
    h5_labels = range(1, len(classes[0]) + 1)  # the h5's 1-based labels, as the dataset ids
    register_split(
        name,
        load,
        classes,
        "scene_graph",
        image_root,
        train_split=train_name,
        category_ids=h5_labels,
        **options,
    )
