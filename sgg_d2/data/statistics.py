"""Dataset statistics for the relation models: predicate counts, the frequency tensor and
zero-shot triplets, computed from the loaded dataset dicts and cached on disk.

Conventions:

- Every ground-truth relation row counts once (duplicate (subject, object) pairs
  included: statistics see the dataset as loaded, before the mapper's train-time
  de-duplication).
- ``freq_tensor`` has shape (C, C, P + 1), indexed ``[subject class, object class, k]``:
  ``k = p + 1`` counts relations with predicate ``p``; ``k = 0`` counts *background*
  pairs: ordered pairs (i, j), i != j, of ground-truth objects of one image such that no
  relation has subject i and object j, and whose boxes overlap (IoU > 0, Detectron2's
  ``pairwise_iou``, no "+1"). A relation (i, j) does not make (j, i) foreground.
- Caching: ``<cache_dir>/<dataset name>.<kind>.<fingerprint>.npz`` where the fingerprint
  hashes the class lists and every image's id, classes, boxes and relations, so a changed
  dataset never reuses a stale file. Files are written to a temporary name and moved in
  place with ``os.replace``; processes computing the same file at once are harmless.
"""

import hashlib
import logging
import os
import re
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, pairwise_iou

__all__ = [
    "compute_statistics",
    "compute_zero_shot_triplets",
    "dataset_fingerprint",
    "get_dataset_statistics",
    "get_zero_shot_triplets",
    "triplets_of",
]

logger = logging.getLogger(__name__)


def _image_arrays(record: Dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes (N,), XYXY boxes (N, 4) float64 and relations (R, 3) of one dataset dict."""
    annos = record["annotations"]
    classes = np.fromiter((a["category_id"] for a in annos), dtype=np.int64, count=len(annos))
    boxes = np.array(
        [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos],
        dtype=np.float64,
    ).reshape(-1, 4)
    relations = np.asarray(record.get("relations", ()), dtype=np.int64).reshape(-1, 3)
    return classes, boxes, relations


def dataset_fingerprint(dataset_dicts: List[Dict], *extra: object) -> str:
    """Hex digest of the dicts' image ids, classes, boxes and relations (and ``extra``)."""
    h = hashlib.sha1()
    h.update(repr(extra).encode())
    for record in dataset_dicts:
        classes, boxes, relations = _image_arrays(record)
        h.update(repr((record.get("image_id"), len(classes), len(relations))).encode())
        h.update(classes.tobytes())
        h.update(boxes.tobytes())
        h.update(relations.tobytes())
    return h.hexdigest()[:20]


def _background_pairs(classes, boxes, relations, num_classes: int) -> np.ndarray:
    """Flat ``subject_class * C + object_class`` of the image's background pairs."""
    n = len(classes)
    if n < 2:
        return np.zeros(0, dtype=np.int64)
    box_t = Boxes(torch.from_numpy(boxes))
    candidate = (pairwise_iou(box_t, box_t) > 0).numpy()
    np.fill_diagonal(candidate, False)
    candidate[relations[:, 0], relations[:, 1]] = False
    subj, obj = np.nonzero(candidate)
    return classes[subj] * num_classes + classes[obj]


def compute_statistics(
    dataset_dicts: List[Dict], num_classes: int, num_predicates: int
) -> Dict[str, np.ndarray]:
    """Predicate counts and frequency tensor of ``dataset_dicts`` (see module docstring).

    Returns:
        dict with ``predicate_counts`` (P,) int64, ``freq_tensor`` (C, C, P + 1) int64 and
        ``num_images`` (0-d int64).
    """
    c, p = num_classes, num_predicates
    relation_keys, background_keys = [], []
    for record in dataset_dicts:
        classes, boxes, relations = _image_arrays(record)
        if len(relations):
            subj, obj = classes[relations[:, 0]], classes[relations[:, 1]]
            relation_keys.append((subj * c + obj) * (p + 1) + relations[:, 2] + 1)
        background_keys.append(_background_pairs(classes, boxes, relations, c))
    relation_keys = np.concatenate(relation_keys or [np.zeros(0, dtype=np.int64)])
    freq = np.bincount(relation_keys, minlength=c * c * (p + 1)).reshape(c, c, p + 1)
    background = np.concatenate(background_keys or [np.zeros(0, dtype=np.int64)])
    freq[:, :, 0] = np.bincount(background, minlength=c * c).reshape(c, c)
    return {
        "predicate_counts": freq[:, :, 1:].sum(axis=(0, 1)),
        "freq_tensor": freq,
        "num_images": np.array(len(dataset_dicts), dtype=np.int64),
    }


def triplets_of(dataset_dicts: List[Dict]) -> np.ndarray:
    """Sorted unique ``(subject_class, object_class, predicate)`` rows (T, 3) int64."""
    rows = []
    for record in dataset_dicts:
        classes, _, relations = _image_arrays(record)
        if len(relations):
            rows.append(
                np.stack([classes[relations[:, 0]], classes[relations[:, 1]], relations[:, 2]], 1)
            )
    if not rows:
        return np.zeros((0, 3), dtype=np.int64)
    return np.unique(np.concatenate(rows), axis=0)


def compute_zero_shot_triplets(train_dicts: List[Dict], test_dicts: List[Dict]) -> np.ndarray:
    """Triplets of ``test_dicts`` that never occur in ``train_dicts``.

    Returns:
        (Z, 3) int64 sorted unique rows ``(subject_class, object_class, predicate)``.
    """
    train, test = triplets_of(train_dicts), triplets_of(test_dicts)
    if len(train) == 0 or len(test) == 0:
        return test
    base = int(max(train.max(), test.max())) + 1

    def encode(rows: np.ndarray) -> np.ndarray:
        return (rows[:, 0] * base + rows[:, 1]) * base + rows[:, 2]

    return test[~np.isin(encode(test), encode(train))]


def _default_cache_dir(dataset_name: str, cache_dir: Optional[str]) -> str:
    if cache_dir:
        return cache_dir
    root = MetadataCatalog.get(dataset_name).get("dataset_root", None)
    if not root:
        raise ValueError(
            f"dataset {dataset_name!r} has no 'dataset_root' metadata; pass cache_dir "
            "(e.g. a folder under cfg.OUTPUT_DIR) to cache its statistics"
        )
    return os.path.join(root, ".sgg_cache")


def _cached(path: str, compute: Callable[[], Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """Load ``path`` if present, else compute, write atomically and return."""
    if os.path.isfile(path):
        with np.load(path, allow_pickle=False) as f:
            logger.info("Loaded cached statistics %s", path)
            return {k: f[k] for k in f.files}
    arrays = compute()
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    logger.info("Wrote statistics cache %s", path)
    return arrays


def _cache_path(cache_dir: str, name: str, kind: str, fingerprint: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return os.path.join(cache_dir, f"{safe}.{kind}.{fingerprint}.npz")


def get_dataset_statistics(dataset_name: str, cache_dir: Optional[str] = None) -> Dict:
    """Statistics of a registered scene-graph dataset, computed once and cached.

    Args:
        dataset_name: a registered name (its metadata needs ``thing_classes`` and
            ``predicate_classes``).
        cache_dir: folder of the cache; default ``<metadata dataset_root>/.sgg_cache``
            (an error if the metadata has no ``dataset_root``). Never the working directory.

    Returns:
        dict with ``predicate_counts`` (P,), ``freq_tensor`` (C, C, P + 1) (index 0 =
        background), ``num_images`` (int), and ``thing_classes``/``predicate_classes``.
    """
    folder = _default_cache_dir(dataset_name, cache_dir)
    meta = MetadataCatalog.get(dataset_name)
    thing, pred = list(meta.thing_classes), list(meta.predicate_classes)
    dicts = DatasetCatalog.get(dataset_name)
    key = dataset_fingerprint(dicts, thing, pred)
    path = _cache_path(folder, dataset_name, "stats", key)
    stats = _cached(path, lambda: compute_statistics(dicts, len(thing), len(pred)))
    out = {k: stats[k] for k in ("predicate_counts", "freq_tensor")}
    out.update(num_images=int(stats["num_images"]), thing_classes=thing, predicate_classes=pred)
    return out


def get_zero_shot_triplets(dataset_name: str, cache_dir: Optional[str] = None) -> np.ndarray:
    """Zero-shot triplets of ``dataset_name`` against its metadata ``train_split``.

    Returns:
        (Z, 3) int64 sorted unique ``(subject_class, object_class, predicate)`` rows that
        occur in the ground truth of ``dataset_name`` but never in that of ``train_split``.
    """
    folder = _default_cache_dir(dataset_name, cache_dir)
    train_name = MetadataCatalog.get(dataset_name).get("train_split", None)
    if not train_name:
        raise ValueError(f"dataset {dataset_name!r} has no 'train_split' metadata")
    test_dicts, train_dicts = DatasetCatalog.get(dataset_name), DatasetCatalog.get(train_name)
    key = dataset_fingerprint(test_dicts, train_name, dataset_fingerprint(train_dicts))
    path = _cache_path(folder, dataset_name, "zeroshot", key)
    arrays = _cached(
        path, lambda: {"triplets": compute_zero_shot_triplets(train_dicts, test_dicts)}
    )
    return arrays["triplets"].astype(np.int64).reshape(-1, 3)
