#!/usr/bin/env python
"""Time the VG150 loader on a file of Visual Genome's size (no images needed).

Writes, into a temporary folder, a random but valid ``VG-SGG-with-attri.h5`` with about
108k images, 1.1M boxes and 620k relations, a ``VG-SGG-dicts-with-attri.json`` (150
classes, 50 predicates) and an aligned ``image_data.json`` (plus the four known-corrupt
entries, which the loader must drop). Then, in a fresh process, builds the ``train``
(val_size 5000) and ``test`` dicts with :func:`sgg_d2.data.load_visual_genome` and
reports wall time and the loading process's peak resident memory (``ru_maxrss``).

Usage::

    python tools/benchmark_data.py [--images 108073] [--boxes 1100000] [--relations 620000]

Targets: <= 20 s and <= 2 GB for train + test.
"""

import argparse
import json
import multiprocessing as mp
import os
import resource
import tempfile
import time

import h5py
import numpy as np

NUM_CLASSES, NUM_PREDICATES = 150, 50
CORRUPT_IDS = (1592, 1722, 4616, 4617)


def _ranges(counts: np.ndarray):
    """Inclusive [first, last] per image for consecutive blocks of ``counts`` items."""
    last = np.cumsum(counts) - 1
    first = last - counts + 1
    empty = counts == 0
    return np.where(empty, -1, first), np.where(empty, -1, last)


def _split_total(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts proportional to ``weights`` (>= 0) that sum exactly to ``total``."""
    counts = np.floor(weights / weights.sum() * total).astype(np.int64)
    counts[np.argsort(-weights, kind="stable")[: total - counts.sum()]] += 1
    return counts


def write_fixture(folder: str, n_images: int, n_boxes: int, n_rels: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    # A few images without boxes, and about 5% of the rest without relations, so that the
    # loader's filters have work to do.
    box_weights = rng.gamma(2.0, 1.0, n_images) * (rng.random(n_images) >= 0.002)
    box_counts = _split_total(box_weights, n_boxes)
    # Relations only in images with >= 2 boxes, roughly in proportion to their boxes.
    rel_weights = np.where(box_counts >= 2, box_counts, 0) * (rng.random(n_images) > 0.05)
    rel_counts = _split_total(rel_weights.astype(np.float64), n_rels)
    first_box, last_box = _ranges(box_counts)
    first_rel, last_rel = _ranges(rel_counts)
    # Relation endpoints: two distinct boxes of the owning image.
    owner = np.repeat(np.arange(n_images), rel_counts)
    n_box_of = box_counts[owner]
    subj = rng.integers(0, n_box_of)
    obj = (subj + rng.integers(1, np.maximum(n_box_of, 2))) % n_box_of
    relationships = np.stack([subj, obj], 1) + first_box[owner][:, None]
    # Image sizes and boxes (centre/size) inside each image's 1024 frame.
    widths = rng.integers(300, 1025, n_images)
    heights = rng.integers(300, 1025, n_images)
    scale = 1024.0 / np.maximum(widths, heights)
    box_owner = np.repeat(np.arange(n_images), box_counts)
    fw, fh = (widths * scale)[box_owner], (heights * scale)[box_owner]
    w = np.maximum(1, rng.random(n_boxes) * fw / 2).astype(np.int32)
    h = np.maximum(1, rng.random(n_boxes) * fh / 2).astype(np.int32)
    cx = (w / 2 + rng.random(n_boxes) * (fw - w)).astype(np.int32)
    cy = (h / 2 + rng.random(n_boxes) * (fh - h)).astype(np.int32)
    boxes = np.stack([cx, cy, w, h], 1)
    with h5py.File(os.path.join(folder, "VG-SGG-with-attri.h5"), "w") as f:
        f["labels"] = rng.integers(1, NUM_CLASSES + 1, (n_boxes, 1))
        f["boxes_1024"] = boxes
        f["boxes_512"] = boxes // 2
        f["relationships"] = relationships
        f["predicates"] = rng.integers(1, NUM_PREDICATES + 1, (len(owner), 1))
        f["img_to_first_box"], f["img_to_last_box"] = first_box, last_box
        f["img_to_first_rel"], f["img_to_last_rel"] = first_rel, last_rel
        f["split"] = np.where(rng.random(n_images) < 0.7, 0, 2)
        f["attributes"] = np.zeros((n_boxes, 10), dtype=np.int64)
    dicts = {
        "idx_to_label": {str(i): f"class{i}" for i in range(1, NUM_CLASSES + 1)},
        "idx_to_predicate": {str(i): f"predicate{i}" for i in range(1, NUM_PREDICATES + 1)},
    }
    with open(os.path.join(folder, "VG-SGG-dicts-with-attri.json"), "w") as f:
        json.dump(dicts, f)
    ids = [i for i in range(1, n_images + len(CORRUPT_IDS) + 1) if i not in CORRUPT_IDS]
    image_data = [
        {"image_id": i, "width": int(wi), "height": int(hi), "url": f"https://x/{i}.jpg"}
        for i, wi, hi in zip(ids, widths, heights)
    ]
    for i in CORRUPT_IDS:  # at their id order position, as in the real file
        image_data.insert(i - 1, {"image_id": i, "width": 10, "height": 10, "url": ""})
    with open(os.path.join(folder, "image_data.json"), "w") as f:
        json.dump(image_data, f)
    print(
        f"fixture: {n_images} images, {int(box_counts.sum())} boxes, {len(owner)} relations, "
        f"{len(image_data)} image_data entries"
    )


def _load_and_measure(folder: str, queue) -> None:
    """Child process: build train and test dicts, report times and peak RSS."""
    import sgg_d2  # noqa: F401  (installs the detectron2._C stand-in first)
    from sgg_d2.data import load_visual_genome

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    files = [
        os.path.join(folder, n)
        for n in ("VG-SGG-with-attri.h5", "VG-SGG-dicts-with-attri.json", "image_data.json")
    ]
    result, kept = {}, []
    for split in ("train", "test"):
        start = time.perf_counter()
        dicts = load_visual_genome(*files, "VG_100K", split, val_size=5000)
        result[split] = {
            "seconds": time.perf_counter() - start,
            "images": len(dicts),
            "boxes": sum(len(d["annotations"]) for d in dicts),
            "relations": sum(len(d["relations"]) for d in dicts),
        }
        kept.append(dicts)  # both splits stay alive, as in training with evaluation
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["rss_after_imports_mb"] = base_rss / 1024
    queue.put(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=108073)
    parser.add_argument("--boxes", type=int, default=1_100_000)
    parser.add_argument("--relations", type=int, default=620_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sgg_benchmark_data_") as folder:
        start = time.perf_counter()
        write_fixture(folder, args.images, args.boxes, args.relations)
        print(f"fixture written in {time.perf_counter() - start:.1f} s")
        ctx = mp.get_context("spawn")  # a fresh process: its peak RSS is the loader's alone
        queue = ctx.Queue()
        child = ctx.Process(target=_load_and_measure, args=(folder, queue))
        child.start()
        result = queue.get()
        child.join()
    total = 0.0
    for split in ("train", "test"):
        r = result[split]
        total += r["seconds"]
        print(
            f"{split:5s}: {r['seconds']:6.2f} s  {r['images']} images, {r['boxes']} boxes, "
            f"{r['relations']} relations"
        )
    print(f"total: {total:6.2f} s (target <= 20 s)")
    print(
        f"peak RSS of the loading process: {result['peak_rss_mb']:.0f} MB "
        f"(after imports: {result['rss_after_imports_mb']:.0f} MB; target <= 2048 MB)"
    )


if __name__ == "__main__":
    main()
