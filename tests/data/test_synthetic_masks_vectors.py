"""The synthetic world's auxiliary COCO mask dataset and its GloVe word-vector file."""

import os

import cv2
import numpy as np
import pytest
from detectron2.data.datasets import load_coco_json
from detectron2.structures import BoxMode
from gensim.models import KeyedVectors
from PIL import Image
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sgg_d2.data.synthetic import AUX_CLASSES, PREDICATES, THING_CLASSES
from sgg_d2.data.synthetic.generate import WorldConfig, generate_world
from sgg_d2.data.synthetic.shapes import hole_mask
from sgg_d2.data.synthetic.vectors import build_word_vectors, write_glove
from sgg_d2.data.synthetic.world import TARGET_TO_AUX

CFG = WorldConfig(seed=11, num_train=3, num_val=1, num_test=2, num_mask_train=8, num_mask_val=4)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic_aux"))
    generate_world(root, CFG, progress=False, log=lambda _msg: None)
    return root


def coco_paths(root, split):
    masks = os.path.join(root, "coco_masks")
    return os.path.join(masks, "annotations", f"instances_{split}.json"), os.path.join(
        masks, "images"
    )


def elongation(mask):
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    (_, _), (w, h), _ = cv2.minAreaRect(np.concatenate(contours))
    return min(w, h) / max(w, h)


def check_shape(name, mask):
    """The decoded mask has the geometry its auxiliary class promises."""
    has_hole = hole_mask(mask).sum() > 20
    assert has_hole == (name == "annulus"), name
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    fill = mask.sum() / (w * h)
    if name == "circle":
        assert abs(fill - np.pi / 4) < 0.08 and elongation(mask) > 0.85
    elif name == "stripe":
        assert elongation(mask) < 0.5
    elif name == "polygon":
        assert elongation(mask) > 0.6 and fill < 0.9


@pytest.mark.parametrize("split, count, first_id", [("train", 8, 1), ("val", 4, 9)])
def test_coco_masks_load_in_detectron2_and_decode_to_drawn_shapes(world, split, count, first_id):
    json_file, image_root = coco_paths(world, split)
    dicts = load_coco_json(json_file, image_root, f"synthetic_masks_test_{split}")
    assert len(dicts) == count and dicts[0]["image_id"] == first_id
    seen, isolated = set(), 0
    for d in dicts:
        pixels = np.asarray(Image.open(d["file_name"]), dtype=float)
        assert pixels.shape[:2] == (d["height"], d["width"])
        assert 1 <= len(d["annotations"]) <= 4
        masks = [mask_util.decode(a["segmentation"]).astype(bool) for a in d["annotations"]]
        for k, (ann, mask) in enumerate(zip(d["annotations"], masks)):
            assert ann["bbox_mode"] == BoxMode.XYWH_ABS and ann["iscrowd"] == 0
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            x, y = cols[0], rows[0]
            assert ann["bbox"] == [x, y, cols[-1] + 1 - x, rows[-1] + 1 - y]
            name = AUX_CLASSES[ann["category_id"]]  # detectron2 maps ids 1.. to 0..
            seen.add(name)
            # Shapes overlap in drawing order (tests/data/test_synthetic_aux_occlusion.py);
            # one far from every other instance is neither occluded nor occluding.
            near = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
            if any((near & m).any() for j, m in enumerate(masks) if j != k):
                continue
            isolated += 1
            check_shape(name, mask)
            # The painted pixels of the mask are one colour, unlike the ring around it.
            core = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            rim = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
            rim &= ~cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            if core.sum() >= 10:
                assert pixels[core].std(axis=0).max() < 20
                assert np.abs(pixels[core].mean(0) - pixels[rim].mean(0)).max() > 40
    assert isolated >= 2
    if split == "train":
        assert len(seen) >= 3


def test_coco_file_categories_and_perfect_self_evaluation(world):
    json_file, _ = coco_paths(world, "val")
    gt = COCO(json_file)
    cats = gt.loadCats(gt.getCatIds())
    assert [(c["id"], c["name"]) for c in cats] == [(i + 1, n) for i, n in enumerate(AUX_CLASSES)]
    anns = gt.loadAnns(gt.getAnnIds())
    for a in anns:
        assert a["area"] == int(mask_util.area(a["segmentation"]))
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"],
         "segmentation": a["segmentation"], "score": 1.0}
        for a in anns
    ]  # fmt: skip
    evaluator = COCOeval(gt, gt.loadRes(results), iouType="segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_glove_file_loads_with_gensim_and_covers_both_vocabularies(world):
    path = os.path.join(world, "glove", "synthetic.50d.txt")
    with open(path) as f:
        first = f.readline().split()
    assert len(first) == 51 and first[0] == AUX_CLASSES[0]  # no header line
    kv = KeyedVectors.load_word2vec_format(path, binary=False, no_header=True)
    assert kv.vector_size == 50
    words = {w for name in THING_CLASSES + AUX_CLASSES + PREDICATES for w in name.split()}
    assert words <= set(kv.index_to_key) and {"left", "of", "hole"} <= words


def test_glove_similarity_structure(world):
    kv = KeyedVectors.load_word2vec_format(
        os.path.join(world, "glove", "synthetic.50d.txt"), binary=False, no_header=True
    )
    for target, aux in TARGET_TO_AUX.items():
        mine = kv.similarity(target, aux)
        others = [kv.similarity(target, a) for a in AUX_CLASSES if a != aux]
        assert mine > 0.6 and mine > max(others) + 0.3, (target, aux, mine, others)
    assert kv.similarity("ball", "left") < 0.5 and kv.similarity("circle", "stripe") < 0.5
    # Multi-word names average their words: "in hole of" is not a circle either.
    phrase = np.mean([kv["in"], kv["hole"], kv["of"]], axis=0)
    cosine = np.dot(phrase, kv["circle"]) / np.linalg.norm(phrase) / np.linalg.norm(kv["circle"])
    assert cosine < 0.5
    # The file depends on the seed (and only on it).
    other = os.path.join(world, "..", "other_glove.txt")
    write_glove(other, build_word_vectors(CFG.seed + 1))
    assert (
        KeyedVectors.load_word2vec_format(other, no_header=True).similarity("ball", "circle") > 0.6
    )
    assert not np.allclose(
        KeyedVectors.load_word2vec_format(other, no_header=True)["ball"], kv["ball"]
    )
