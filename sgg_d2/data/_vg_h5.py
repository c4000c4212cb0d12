"""Reading and validating the VG150 files (h5, dicts json, image_data json), vectorised.

Each h5 dataset is read once into memory; all checks are numpy operations over the whole
file, and every error names the file and the h5 row ("image index") at fault.
"""

import logging
from typing import Dict, List, Tuple

import h5py
import numpy as np

from ._checks import DatasetFormatError, load_json_file, require_file

__all__ = [
    "H5_REQUIRED_KEYS",
    "CORRUPT_IMAGE_IDS",
    "read_vg_h5",
    "gather_ranges",
    "validate_vg_h5",
    "load_vg_classes",
    "load_image_data",
]

logger = logging.getLogger(__name__)

H5_REQUIRED_KEYS = (
    "labels",
    "img_to_first_box",
    "img_to_last_box",
    "relationships",
    "predicates",
    "img_to_first_rel",
    "img_to_last_rel",
    "split",
)
# image_data.json entries whose images are corrupt; the h5 files leave them out.
CORRUPT_IMAGE_IDS = frozenset({1592, 1722, 4616, 4617})
# Split codes of the h5 "split" dataset: 0 = train (val is carved from it), 2 = test.
SPLIT_CODES = (0, 2)
_PER_IMAGE = ("img_to_first_box", "img_to_last_box", "img_to_first_rel", "img_to_last_rel")


def read_vg_h5(h5_file: str, box_scale: int) -> Dict[str, np.ndarray]:
    """Read the needed VG150 h5 datasets, each in one call.

    Returns:
        dict with ``labels`` (N_obj,), ``boxes`` (N_obj, 4) centre/size of frame
        ``box_scale``, ``relationships`` (N_rel, 2), ``predicates`` (N_rel,), ``split`` and
        the four ``img_to_*`` arrays (N_img,).

    Raises:
        DatasetFormatError: listing every missing dataset, or naming a bad shape.
    """
    require_file(h5_file, "h5_file")
    box_key = f"boxes_{box_scale}"
    needed = (*H5_REQUIRED_KEYS, box_key)
    if not h5py.is_hdf5(h5_file):
        raise DatasetFormatError(
            f"h5_file {h5_file} is not an HDF5 file (expected the VG150 h5, e.g. "
            "VG-SGG-with-attri.h5)"
        )
    with h5py.File(h5_file, "r") as f:
        missing = [k for k in needed if k not in f]
        if missing:
            raise DatasetFormatError(
                f"h5_file {h5_file}: missing required dataset(s) {', '.join(missing)} "
                f"(a VG150 h5 needs {', '.join(needed)})"
            )
        arrays = {k: np.asarray(f[k][()]) for k in needed}
    arrays["boxes"] = arrays.pop(box_key)
    for key in ("labels", "predicates"):
        if arrays[key].ndim == 2 and arrays[key].shape[1] == 1:
            arrays[key] = arrays[key][:, 0]
    _check_shapes(arrays, h5_file, box_key)
    return arrays


def _check_shapes(a: Dict[str, np.ndarray], h5_file: str, box_key: str) -> None:
    n_img, n_obj, n_rel = len(a["split"]), len(a["labels"]), len(a["predicates"])
    expected = {
        "labels": (n_obj,),
        "boxes": (n_obj, 4),
        "relationships": (n_rel, 2),
        "predicates": (n_rel,),
        "split": (n_img,),
        **{k: (n_img,) for k in _PER_IMAGE},
    }
    for key, shape in expected.items():
        if a[key].shape != shape:
            name = box_key if key == "boxes" else key
            raise DatasetFormatError(
                f"h5_file {h5_file}: dataset {name} has shape {a[key].shape}, expected "
                f"{shape} (N_img={n_img}, N_obj={n_obj} from labels, N_rel={n_rel} from "
                "predicates)"
            )


def gather_ranges(first: np.ndarray, last: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Expand inclusive per-image ranges into per-item arrays, without a Python loop.

    Args:
        first, last: (N_img,) inclusive ranges, -1 for an empty image (already validated).

    Returns:
        ``owner`` (M,) image index of each covered item and ``position`` (M,) its index.
    """
    images = np.nonzero(first >= 0)[0]
    counts = (last[images] - first[images] + 1).astype(np.int64)
    owner = np.repeat(images, counts)
    starts = np.cumsum(counts) - counts
    position = np.repeat(first[images].astype(np.int64) - starts, counts)
    position += np.arange(len(owner), dtype=np.int64)
    return owner, position


def _check_ranges(first, last, n_items: int, what: str, h5_file: str) -> None:
    """Check the ``img_to_first_<what>``/``img_to_last_<what>`` ranges."""
    names = f"img_to_first_{what}/img_to_last_{what}"
    problems = (
        ((first == -1) != (last == -1), "only one end is -1"),
        ((first != -1) & ((first < 0) | (last >= n_items)), f"out of bounds [0, {n_items})"),
        ((first != -1) & (first > last), "first > last"),
    )
    for bad, message in problems:
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            raise DatasetFormatError(
                f"h5_file {h5_file}: image index {i}: {names} = {first[i]}, {last[i]}: {message}"
            )
    images = np.nonzero(first >= 0)[0]
    order = images[np.argsort(first[images], kind="stable")]
    overlap = first[order][1:] <= last[order][:-1]
    if overlap.any():
        j = int(np.nonzero(overlap)[0][0])
        raise DatasetFormatError(
            f"h5_file {h5_file}: image index {order[j + 1]}: {names} range overlaps the range "
            f"of image index {order[j]}"
        )


def _owner_of_items(first, last, n_items: int) -> np.ndarray:
    owner = np.full(n_items, -1, dtype=np.int64)
    image, position = gather_ranges(first, last)
    owner[position] = image
    return owner


def validate_vg_h5(
    a: Dict[str, np.ndarray],
    h5_file: str,
    num_classes: int,
    num_predicates: int,
    self_relations: str = "error",
) -> Tuple[np.ndarray, np.ndarray]:
    """Check ranges, relation indices, labels, predicates and box sizes of a VG150 h5.

    ``self_relations``: ``"error"`` refuses a relation whose subject is its object;
    ``"drop"`` lets them through (the caller drops and counts them).

    Returns:
        ``box_owner`` (N_obj,) and ``rel_owner`` (N_rel,): image index of each object and
        relation, -1 for items no image range covers.
    """
    n_obj, n_rel = len(a["labels"]), len(a["predicates"])
    bad_split = ~np.isin(a["split"], SPLIT_CODES)
    if bad_split.any():
        i = int(np.nonzero(bad_split)[0][0])
        raise DatasetFormatError(
            f"h5_file {h5_file}: image index {i}: split = {a['split'][i]}, expected 0 (train/val) "
            f"or 2 (test); {int(bad_split.sum())} image(s) have another split code"
        )
    first_box, last_box = a["img_to_first_box"], a["img_to_last_box"]
    _check_ranges(first_box, last_box, n_obj, "box", h5_file)
    _check_ranges(a["img_to_first_rel"], a["img_to_last_rel"], n_rel, "rel", h5_file)
    box_owner = _owner_of_items(first_box, last_box, n_obj)
    rel_owner = _owner_of_items(a["img_to_first_rel"], a["img_to_last_rel"], n_rel)

    owned = rel_owner >= 0
    image = np.where(owned, rel_owner, 0)
    lo, hi = first_box[image][:, None], last_box[image][:, None]
    pairs = a["relationships"]
    outside = owned & ((lo[:, 0] < 0) | np.any((pairs < lo) | (pairs > hi), axis=1))
    if outside.any():
        g = int(np.nonzero(outside)[0][0])
        i = int(rel_owner[g])
        raise DatasetFormatError(
            f"h5_file {h5_file}: image index {i}: relation {g} = {pairs[g].tolist()} points "
            f"outside the image's boxes [{first_box[i]}, {last_box[i]}]"
        )
    self_rel = owned & (pairs[:, 0] == pairs[:, 1])
    if self_rel.any() and self_relations == "error":
        g = int(np.nonzero(self_rel)[0][0])
        raise DatasetFormatError(
            f"h5_file {h5_file}: image index {rel_owner[g]}: relation {g} = {pairs[g].tolist()} "
            f"relates box {pairs[g][0]} to itself (subject == object), which no model can "
            f"predict; {int(self_rel.sum())} such relation(s) in the file (self_relations="
            f"'drop' drops them, counted and logged)"
        )
    _check_values(a["labels"], box_owner, num_classes, "labels", "object class", h5_file)
    _check_values(a["predicates"], rel_owner, num_predicates, "predicates", "predicate", h5_file)
    sizes = a["boxes"][:, 2:]
    bad = (box_owner >= 0) & np.any(~np.isfinite(sizes) | (sizes < 0), axis=1)
    if bad.any():
        g = int(np.nonzero(bad)[0][0])
        raise DatasetFormatError(
            f"h5_file {h5_file}: image index {box_owner[g]}: box {g} = "
            f"{a['boxes'][g].tolist()} has a negative or non-finite width/height"
        )
    return box_owner, rel_owner


def _check_values(values, owner, count: int, key: str, what: str, h5_file: str) -> None:
    bad = (owner >= 0) & ((values < 1) | (values > count))
    if bad.any():
        g = int(np.nonzero(bad)[0][0])
        raise DatasetFormatError(
            f"h5_file {h5_file}: image index {owner[g]}: {key}[{g}] = {values[g]} is not a "
            f"1-based {what} in [1, {count}]"
        )


def _index_list(mapping, dicts_file: str, key: str) -> List[str]:
    expected = {str(i) for i in range(1, len(mapping) + 1)}
    if not isinstance(mapping, dict) or set(mapping) != expected:
        raise DatasetFormatError(
            f"dicts_file {dicts_file}: {key} must map the strings '1'..'N' to names"
        )
    return [mapping[str(i)] for i in range(1, len(mapping) + 1)]


def load_vg_classes(dicts_file: str) -> Tuple[List[str], List[str]]:
    """Object and predicate class names (0-based lists) from ``VG-SGG-dicts*.json``."""
    d = load_json_file(dicts_file, "dicts_file")
    missing = [k for k in ("idx_to_label", "idx_to_predicate") if k not in d]
    if missing:
        raise DatasetFormatError(f"dicts_file {dicts_file}: missing key(s) {', '.join(missing)}")
    return (
        _index_list(d["idx_to_label"], dicts_file, "idx_to_label"),
        _index_list(d["idx_to_predicate"], dicts_file, "idx_to_predicate"),
    )


def load_image_data(
    image_data_file: str, num_h5_images: int, h5_file: str
) -> Dict[str, np.ndarray]:
    """Image ids and sizes from ``image_data.json``, aligned with the h5 rows.

    The file is used as is when its length equals the h5 image count; otherwise the known
    corrupt entries (:data:`CORRUPT_IMAGE_IDS`) are dropped first (the public h5 files
    leave them out).

    Returns:
        dict of (N_img,) arrays ``image_id``, ``width``, ``height``.
    """
    entries = load_json_file(image_data_file, "image_data_file")
    if not isinstance(entries, list):
        raise DatasetFormatError(f"image_data_file {image_data_file}: expected a JSON list")
    ids = [e.get("image_id", e.get("id")) if isinstance(e, dict) else None for e in entries]
    if None in ids:
        i = ids.index(None)
        raise DatasetFormatError(
            f"image_data_file {image_data_file}: entry {i} has no 'image_id' (or 'id')"
        )
    keep = range(len(entries))
    if len(entries) != num_h5_images:
        keep = [i for i, image_id in enumerate(ids) if image_id not in CORRUPT_IMAGE_IDS]
        logger.info("image_data: dropped %d known-corrupt entries", len(entries) - len(keep))
    if len(keep) != num_h5_images:
        raise DatasetFormatError(
            f"image_data_file {image_data_file} has {len(keep)} entries (after dropping known "
            f"corrupt ids) but h5_file {h5_file} has {num_h5_images} images; the two must be "
            "aligned row by row"
        )
    out = {
        "image_id": np.array([ids[i] for i in keep], dtype=np.int64),
        "width": np.array([entries[i].get("width", 0) for i in keep], dtype=np.float64),
        "height": np.array([entries[i].get("height", 0) for i in keep], dtype=np.float64),
    }
    bad = (out["width"] <= 0) | (out["height"] <= 0)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise DatasetFormatError(
            f"image_data_file {image_data_file}: image index {i} (image_id "
            f"{out['image_id'][i]}) has no positive width/height"
        )
    return out
