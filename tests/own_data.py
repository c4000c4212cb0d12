"""A dataset of a user's own, unlike the synthetic world: three classes with 1-based,
non-contiguous category ids, four predicates, plain coloured rectangles on grey images,
written in sgg_d2's scene-graph JSON format (datasets/README.md)."""

import json
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

CLASSES = {5: "lamp", 9: "table", 12: "cup"}  # category id -> name
PREDICATES = {3: "on", 4: "under", 8: "near", 11: "holds"}  # predicate id -> name
COLOURS = {5: (220, 40, 40), 9: (40, 180, 40), 12: (40, 60, 220)}
SIZE = (96, 80)  # width, height


def _image(rng: np.random.Generator, image_id: int, first_ann_id: int):
    """One image (PIL), its annotations and relations (JSON records)."""
    canvas = np.full((SIZE[1], SIZE[0], 3), 128, dtype=np.uint8)
    anns: List[Dict] = []
    for k, cat in enumerate(CLASSES):  # one object per class, left to right
        w, h = int(rng.integers(14, 24)), int(rng.integers(14, 30))
        x, y = 4 + 30 * k + int(rng.integers(0, 4)), int(rng.integers(2, SIZE[1] - h - 2))
        canvas[y : y + h, x : x + w] = COLOURS[cat]
        anns.append(
            {"id": first_ann_id + k, "image_id": image_id, "category_id": cat,
             "bbox": [x, y, w, h]}
        )  # fmt: skip
    preds = list(PREDICATES)
    rels = [
        {"image_id": image_id, "subject_id": anns[s]["id"], "object_id": anns[o]["id"],
         "predicate_id": preds[(s + 2 * o + image_id) % len(preds)]}
        for s, o in ((0, 1), (2, 1), (1, 2))
    ]  # fmt: skip
    return Image.fromarray(canvas), anns, rels


def write_own_dataset(root: Path, splits=(("train", 8), ("test", 4))) -> Dict[str, Path]:
    """Write ``root/images/*.png`` and ``root/<split>.json``; returns the paths by split
    (and ``"images"``)."""
    rng = np.random.default_rng(3)
    (root / "images").mkdir(parents=True, exist_ok=True)
    paths, image_id = {"images": root / "images"}, 100
    for split, count in splits:
        doc = {
            "categories": [{"id": i, "name": n} for i, n in CLASSES.items()],
            "predicate_categories": [{"id": i, "name": n} for i, n in PREDICATES.items()],
            "images": [],
            "annotations": [],
            "relations": [],
        }
        for _ in range(count):
            image_id += 1
            picture, anns, rels = _image(rng, image_id, 10 * image_id)
            name = f"{image_id}.png"
            picture.save(root / "images" / name)
            doc["images"].append(
                {"id": image_id, "file_name": name, "width": SIZE[0], "height": SIZE[1]}
            )
            doc["annotations"] += anns
            doc["relations"] += rels
        paths[split] = root / f"{split}.json"
        paths[split].write_text(json.dumps(doc))
    return paths
