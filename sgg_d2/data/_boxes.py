"""Box sanity rules shared by the loaders: clipping to the image and degenerate boxes.

Rule, applied to absolute ``XYXY`` boxes in image pixels:

1. A box with non-finite coordinates or ``x2 < x1`` / ``y2 < y1`` is malformed: error.
2. Corners outside the image are clipped to ``[0, width] x [0, height]`` (counted).
3. A box with zero area after clipping (``x2 - x1 <= 0`` or ``y2 - y1 <= 0``) is
   *degenerate* and handled by the ``degenerate_boxes`` option:

   - ``"enlarge"`` (default): grow it to 1 pixel in each empty direction, inside the
     image (``x1 <- min(x1, width - 1)``, ``x2 <- x1 + 1``; same for y);
   - ``"drop"``: remove the object and every relation that uses it, re-indexing the
     remaining relations;
   - ``"error"``: raise, naming the image and the box.

   Every loader counts what it did and logs one summary line per split.
"""

import logging
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple, Union

import numpy as np
from detectron2.structures import BoxMode

from ._checks import DEGENERATE_RULES, DatasetFormatError, check_degenerate_rule

__all__ = [
    "DEGENERATE_RULES",
    "BoxStats",
    "CLIPPED_EXAMPLES",
    "check_degenerate_rule",
    "clip_to_image",
    "degenerate_mask",
    "enlarge_boxes",
    "image_label",
    "reindex_relations",
    "sanitize_image_boxes",
    "make_record",
    "SplitRecords",
]

logger = logging.getLogger(__name__)

ArrayOrScalar = Union[np.ndarray, float]


# Images named in the clipping log line (the rest are counted).
CLIPPED_EXAMPLES = 3


def image_label(file_name: str, image_id: Any) -> str:
    """How log lines name an image: ``"<file name> (image_id <id>)"``."""
    return f"{file_name} (image_id {image_id})"


@dataclass
class BoxStats:
    """Counts of box fixes made while loading one split.

    ``clipped_examples`` names the first :data:`CLIPPED_EXAMPLES` images with a clipped
    box (:func:`image_label`); ``clipped_images`` counts them all.
    """

    clipped: int = 0
    degenerate: int = 0
    dropped_relations: int = 0
    clipped_images: int = 0
    clipped_examples: List[str] = field(default_factory=list)

    def note_clipped(self, count: int, file_name: str, image_id: Any) -> None:
        """Count ``count`` clipped boxes of one image (nothing when 0)."""
        if not count:
            return
        self.clipped += count
        self.clipped_images += 1
        if len(self.clipped_examples) < CLIPPED_EXAMPLES:
            self.clipped_examples.append(image_label(file_name, image_id))

    def log(self, label: str, rule: str) -> None:
        """Log one summary line (only when something was changed)."""
        if self.clipped:
            more = self.clipped_images - len(self.clipped_examples)
            logger.info(
                "%s: clipped %d boxes to the image in %d images: %s%s",
                label,
                self.clipped,
                self.clipped_images,
                ", ".join(self.clipped_examples),
                f" and {more} more" if more > 0 else "",
            )
        if self.degenerate:
            extra = f", {self.dropped_relations} relations dropped" if rule == "drop" else ""
            logger.warning(
                "%s: %d zero-area boxes handled by degenerate_boxes=%r%s",
                label,
                self.degenerate,
                rule,
                extra,
            )


def clip_to_image(
    boxes: np.ndarray, widths: ArrayOrScalar, heights: ArrayOrScalar
) -> Tuple[np.ndarray, np.ndarray]:
    """Clip boxes (N, 4) XYXY to their image; ``widths``/``heights`` are (N,) or scalars.

    Returns:
        the clipped boxes (N, 4) float64 and a (N,) bool mask of boxes that changed.
    """
    limits = np.stack(np.broadcast_arrays(widths, heights, widths, heights), axis=-1)
    clipped = np.clip(boxes, 0.0, limits)
    changed = np.any(clipped != boxes, axis=1)
    return clipped, changed


def degenerate_mask(boxes: np.ndarray) -> np.ndarray:
    """(N,) bool: boxes (N, 4) XYXY with zero area."""
    return (boxes[:, 2] - boxes[:, 0] <= 0) | (boxes[:, 3] - boxes[:, 1] <= 0)


def enlarge_boxes(
    boxes: np.ndarray, widths: ArrayOrScalar, heights: ArrayOrScalar, mask: np.ndarray
) -> np.ndarray:
    """Grow the zero-area boxes selected by ``mask`` to at least 1 pixel, inside the image.

    Args:
        boxes: (N, 4) XYXY, already clipped to the image.
        widths, heights: (N,) image sizes of each box, or scalars.
        mask: (N,) bool, boxes to enlarge.
    """
    out = boxes.copy()
    sizes = np.broadcast_arrays(widths, heights)
    for axis, size in enumerate(sizes):
        lo, hi = out[:, axis], out[:, axis + 2]
        empty = mask & (hi - lo <= 0)
        new_lo = np.maximum(np.minimum(lo, size - 1.0), 0.0)
        new_hi = np.minimum(new_lo + 1.0, size)
        out[:, axis] = np.where(empty, new_lo, lo)
        out[:, axis + 2] = np.where(empty, new_hi, hi)
    return out


def reindex_relations(keep: np.ndarray, relations: np.ndarray) -> Tuple[np.ndarray, int]:
    """Drop relations that use a removed object; re-index the rest.

    Args:
        keep: (N,) bool, objects that stay.
        relations: (R, 3) int64 ``[subject, object, predicate]`` indexing the N objects.

    Returns:
        relations (R', 3) indexing the kept objects, and the number of dropped relations.
    """
    new_index = np.cumsum(keep) - 1
    ok = keep[relations[:, 0]] & keep[relations[:, 1]]
    out = relations[ok].copy()
    out[:, :2] = new_index[out[:, :2]]
    return out, int((~ok).sum())


def sanitize_image_boxes(
    boxes: np.ndarray,
    relations: np.ndarray,
    width: float,
    height: float,
    rule: str,
    where: str,
    stats: BoxStats,
    image: Tuple[str, Any],
) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray]:
    """Apply the module's box rule to the objects of one image.

    Args:
        boxes: (N, 4) float XYXY absolute.
        relations: (R, 3) int64 indexing ``boxes``.
        width, height: image size.
        rule: one of :data:`DEGENERATE_RULES`.
        where: image description used in error messages (file and image key).
        stats: counters updated in place.
        image: ``(file name, image id)``, named in the clipping log line.

    Returns:
        boxes (N', 4), the (N,) bool mask of kept objects (``None`` when all are kept) and
        the relations (R', 3) indexing the kept objects.
    """
    bad = ~np.all(np.isfinite(boxes), axis=1)
    bad |= (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise DatasetFormatError(
            f"{where}: box {i} = {boxes[i].tolist()} is malformed "
            "(expected finite x1 <= x2 and y1 <= y2)"
        )
    boxes, clipped = clip_to_image(boxes, width, height)
    stats.note_clipped(int(clipped.sum()), *image)
    degenerate = degenerate_mask(boxes)
    if not degenerate.any():
        return boxes, None, relations
    stats.degenerate += int(degenerate.sum())
    if rule == "error":
        i = int(np.nonzero(degenerate)[0][0])
        raise DatasetFormatError(
            f"{where}: box {i} = {boxes[i].tolist()} has zero area inside the "
            f"{width}x{height} image (degenerate_boxes='error')"
        )
    if rule == "enlarge":
        return enlarge_boxes(boxes, width, height, degenerate), None, relations
    keep = ~degenerate
    relations, dropped = reindex_relations(keep, relations)
    stats.dropped_relations += dropped
    return boxes[keep], keep, relations


def make_record(
    file_name: str,
    image_id,
    width: int,
    height: int,
    boxes: np.ndarray,
    classes: np.ndarray,
    relations: np.ndarray,
    *,
    rule: str,
    where: str,
    stats: BoxStats,
    extras: Optional[list] = None,
) -> dict:
    """One dataset dict (data contract) after the box rule of this module.

    Args:
        boxes: (N, 4) float XYXY absolute; classes: (N,) 0-based; relations: (R, 3).
        extras: optional list of N dicts of extra per-annotation fields (e.g.
            ``segmentation``), merged into the annotations.
    """
    boxes, keep, relations = sanitize_image_boxes(
        boxes, relations, width, height, rule, where, stats, (file_name, image_id)
    )
    classes = np.asarray(classes, dtype=np.int64)
    if keep is not None:
        classes = classes[keep]
        extras = None if extras is None else [e for e, k in zip(extras, keep) if k]
    mode = BoxMode.XYXY_ABS
    annotations = [
        {"bbox": box, "bbox_mode": mode, "category_id": c}
        for box, c in zip(boxes.tolist(), classes.tolist())
    ]
    for annotation, extra in zip(annotations, extras or ()):
        annotation.update(extra)
    return {
        "file_name": file_name,
        "image_id": image_id,
        "height": int(height),
        "width": int(width),
        "annotations": annotations,
        "relations": np.asarray(relations, dtype=np.int64).reshape(-1, 3),
    }


class SplitRecords:
    """The dataset dicts of one split, built under the box rule, and their log lines.

    Shared by the loaders that read one annotation file per split: each image goes
    through :meth:`skip` (optional filter of images without relations) and :meth:`add`
    (:func:`make_record`); :meth:`finish` logs the split's summary and returns the dicts.

    Args:
        label: the split's name in log lines, e.g. ``"VRD (annotations_test.json)"``.
        rule: the ``degenerate_boxes`` rule (checked).
        filter_empty_relations: :meth:`skip` drops images without relations (counted).
    """

    def __init__(self, label: str, rule: str, filter_empty_relations: bool = False):
        self.label = label
        self.rule = check_degenerate_rule(rule)
        self.filter_empty_relations = filter_empty_relations
        self.stats = BoxStats()
        self.records: List[dict] = []
        self.empty = 0

    def skip(self, relations: np.ndarray) -> bool:
        """True (and counted) when ``relations`` (R, 3) is empty and such images are dropped."""
        if len(relations) == 0 and self.filter_empty_relations:
            self.empty += 1
            return True
        return False

    def add(self, *record: Any, where: str, extras: Optional[list] = None) -> None:
        """Append :func:`make_record` of ``record`` (``file_name, image_id, width, height,
        boxes (N, 4), classes (N,), relations (R, 3)``) under this split's rule."""
        self.records.append(
            make_record(*record, rule=self.rule, where=where, stats=self.stats, extras=extras)
        )

    def finish(self) -> List[dict]:
        """Log the box fixes, the dropped and the loaded images; return the dicts."""
        self.stats.log(self.label, self.rule)
        if self.filter_empty_relations:
            logger.info("%s: %d images without relations dropped", self.label, self.empty)
        logger.info("%s: %d images loaded", self.label, len(self.records))
        return self.records
