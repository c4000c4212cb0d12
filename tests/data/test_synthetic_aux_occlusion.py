"""The synthetic world's auxiliary mask images: shapes overlap in drawing order and the
annotations hold visible-only (modal) masks, as COCO's do; the target world is unchanged."""

import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from sgg_d2.data.synthetic.aux_scene import (
    MIN_VISIBLE_FRACTION,
    MIN_VISIBLE_PIXELS,
    sample_aux_scene,
)
from sgg_d2.data.synthetic.generate import (
    _STREAM_MASK_TRAIN,
    WorldConfig,
    _image_size,
    generate_world,
)
from sgg_d2.data.synthetic.shapes import mask_box

CFG = WorldConfig(seed=4, num_train=3, num_val=1, num_test=2, num_mask_train=30, num_mask_val=3)


def quiet(_msg):
    return None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("aux_occlusion"))
    return root, generate_world(root, CFG, progress=False, log=quiet)


def train_images(root):
    """Per auxiliary train image: (k, decoded file masks (N, H, W), JPEG pixels, the scene
    re-sampled from the image's own random stream as the generator does)."""
    with open(os.path.join(root, "coco_masks", "annotations", "instances_train.json")) as f:
        coco = json.load(f)
    out = []
    for k, image in enumerate(coco["images"]):
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        masks = np.stack([mask_util.decode(a["segmentation"]).astype(bool) for a in anns])
        path = os.path.join(root, "coco_masks", "images", image["file_name"])
        pixels = np.asarray(Image.open(path), dtype=np.float64)
        rng = np.random.default_rng([CFG.seed, _STREAM_MASK_TRAIN, k])
        height, width = _image_size(rng, CFG.image_size)
        out.append((k, masks, pixels, sample_aux_scene(rng, height, width)))
    return out


def boxes_overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_a_third_of_the_images_overlap_and_masks_are_the_visible_parts(world):
    root, _ = world
    occluded = 0
    for _, masks, _, scene in train_images(root):
        # The files hold exactly the visible masks of the annotated shapes, in drawing order.
        np.testing.assert_array_equal(masks, scene.visible[scene.annotated])
        assert masks.reshape(len(masks), -1).sum(0).max() == 1, "visible masks overlap"
        amodal = scene.masks[scene.annotated]
        pairs = [(i, j) for i in range(len(masks)) for j in range(i + 1, len(masks))]
        overlapping = [
            (i, j)
            for i, j in pairs
            if (amodal[i] & amodal[j]).any()
            and boxes_overlap(mask_box(masks[i]), mask_box(masks[j]))
        ]
        if overlapping:
            occluded += 1
            i, j = overlapping[0]  # the earlier-drawn one lost the shared pixels
            assert not (masks[i] & amodal[j]).any() and (amodal[i] & ~masks[i]).any()
        # Drop rule: an instance is annotated iff enough of its shape is visible.
        seen = scene.visible.sum(axis=(1, 2))
        need = np.maximum(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * scene.masks.sum(axis=(1, 2)))
        np.testing.assert_array_equal(scene.annotated, seen >= need)
    assert occluded >= CFG.num_mask_train / 3, occluded


def shrink(mask, steps=2):
    """The mask eroded by ``steps`` pixels (4-neighbourhood), away from JPEG edge blur."""
    out = mask.copy()
    for _ in range(steps):
        out[1:-1, 1:-1] &= out[:-2, 1:-1] & out[2:, 1:-1] & out[1:-1, :-2] & out[1:-1, 2:]
        out[[0, -1]] = False
        out[:, [0, -1]] = False
    return out


def nearest(colours, palette):
    """(K,) index of the nearest of the (C, 3) ``palette`` colours to each (K, 3) colour."""
    return ((colours[:, None, :] - palette[None]) ** 2).sum(-1).argmin(1)


def test_each_visible_mask_is_what_the_image_shows(world):
    root, _ = world
    checked_hidden = 0
    for _, masks, pixels, scene in train_images(root):
        cores = [shrink(m) for m in masks]
        # Mean colour of each instance (its visible core) and of the background.
        means = [pixels[c].mean(0) for c in cores if c.sum() >= 10]
        if len(means) < len(masks):
            continue  # a sliver too thin to sample its colour
        means.append(pixels[shrink(~scene.masks.any(0))].mean(0))
        palette = np.stack(means)
        for i, core in enumerate(cores):
            assert (nearest(pixels[core], palette) == i).mean() > 0.97
            # Where another shape covers it, the image shows the occluder, not instance i.
            hidden = shrink(scene.masks[scene.annotated][i] & ~masks[i])
            if hidden.sum() >= 10:
                checked_hidden += 1
                assert (nearest(pixels[hidden], palette) == i).mean() < 0.03
    assert checked_hidden >= 5


def target_digest(root):
    """sha256 over the sha256 of every target-world text file (not coco_masks/, not the
    summary), so that a test does not depend on the JPEG / HDF5 library's bytes."""
    lines = []
    for folder, _, files in os.walk(root):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), root)
            if rel.startswith("coco_masks") or rel == "SUCCESS.json":
                continue
            if rel.endswith((".json", ".txt")):
                with open(os.path.join(root, rel), "rb") as f:
                    lines.append(f"{rel} {hashlib.sha256(f.read()).hexdigest()}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def file_bytes(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), root)
            if not rel.startswith("coco_masks") and rel != "SUCCESS.json":
                with open(os.path.join(root, rel), "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


# Digests of a tiny world of each preset from the generator before the auxiliary images
# overlapped (commit 49bc1f5, GENERATOR_VERSION 1).
PRE_OCCLUSION_DIGESTS = {
    "default": "f9cd27ac8cd260e20fd796cc5510adcfc80b268fd20246fcc7eaa948c72a88c4",
    "crowded": "9309c9385fa5f8011605025cdfc2aaeb7950fe89d2776d4de0f720766940d8fd",
}


@pytest.mark.parametrize("preset, size", [("default", 160), ("crowded", 224)])
def test_target_world_unchanged(tmp_path, preset, size):
    cfg = WorldConfig(seed=2, num_train=6, num_val=2, num_test=3, num_mask_train=4,
                      num_mask_val=2, image_size=size)  # fmt: skip
    generate_world(str(tmp_path / "a"), cfg, progress=False, log=quiet, preset=preset)
    assert target_digest(str(tmp_path / "a")) == PRE_OCCLUSION_DIGESTS[preset]
    # Every target file, images and h5 included, ignores the auxiliary set's parameters.
    other = WorldConfig(**{**cfg.__dict__, "num_mask_train": 7, "num_mask_val": 1})
    generate_world(str(tmp_path / "b"), other, progress=False, log=quiet, preset=preset)
    assert file_bytes(str(tmp_path / "a")) == file_bytes(str(tmp_path / "b"))


def test_summary_counts_occlusion_and_drops(world):
    root, summary = world
    stats = summary["auxiliary_masks"]
    assert "visible" in stats["masks"] and str(MIN_VISIBLE_PIXELS) in stats["drop_rule"]
    train = stats["train"]
    assert train["images"] == CFG.num_mask_train
    assert train["instances"] == summary["num_objects"]["mask_train"]
    scenes = [scene for *_, scene in train_images(root)]
    assert train["dropped_hidden"] == sum(int((~s.annotated).sum()) for s in scenes)
    assert train["occlusion_fraction"] >= 1 / 3
    assert 0 < train["touching_pair_fraction"] < 1
    assert train["images_with_touching_pair"] >= train["images_with_occlusion"]
