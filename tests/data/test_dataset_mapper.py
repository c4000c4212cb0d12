"""SceneGraphDatasetMapper: resize, no flip by default, masks, duplicate filtering, errors."""

import re

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from detectron2.data.detection_utils import SizeMismatchError
from detectron2.structures import BitMasks, BoxMode, PolygonMasks
from PIL import Image
from pycocotools import mask as mask_util

from sgg_d2.config import add_sgg_config
from sgg_d2.data import (
    AugmentedShapeMapper,
    SceneGraphDatasetMapper,
    build_augmentations,
    filter_duplicate_relations,
)

RELATIONS = np.array([[0, 1, 0], [0, 1, 1], [1, 0, 2], [0, 1, 2]], dtype=np.int64)


def make_cfg(**input_options):
    cfg = add_sgg_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TRAIN = (40,)
    cfg.INPUT.MIN_SIZE_TEST = 40
    for key, value in input_options.items():
        setattr(cfg.INPUT, key, value)
    return cfg


@pytest.fixture
def record(tmp_path):
    """A 20 x 10 (w x h) image with two annotated objects and four relations."""
    path = tmp_path / "img.png"
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :10] = 255  # left half white: a flip would show
    Image.fromarray(pixels).save(path)
    annos = [
        {"bbox": [2.0, 1.0, 10.0, 5.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 3},
        {"bbox": [12.0, 2.0, 6.0, 6.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1},
    ]
    return {
        "file_name": str(path),
        "image_id": 1,
        "height": 10,
        "width": 20,
        "annotations": annos,
        "relations": RELATIONS.copy(),
    }


def test_resize_scales_boxes_and_no_flip_by_default(record):
    cfg = make_cfg()
    assert cfg.INPUT.RANDOM_FLIP == "none"
    mapper = SceneGraphDatasetMapper(cfg, is_train=True)
    assert not any(isinstance(a, T.RandomFlip) for a in mapper.augmentations.augs)
    out = mapper(record)
    assert out["image"].shape == (3, 40, 80) and out["image"].dtype == torch.uint8
    # Scale 4; not mirrored: the white half stays on the left.
    # (columns next to the edge are interpolated)
    assert out["image"][:, :, :36].min() == 255 and out["image"][:, :, 44:].max() == 0
    expected = torch.tensor([[8.0, 4.0, 40.0, 20.0], [48.0, 8.0, 72.0, 32.0]])
    torch.testing.assert_close(out["instances"].gt_boxes.tensor, expected)
    assert out["instances"].gt_classes.tolist() == [3, 1]
    assert not out["instances"].has("gt_masks")
    assert record["annotations"][0]["bbox"] == [2.0, 1.0, 10.0, 5.0]  # input untouched


def test_flip_only_when_configured():
    mapper = SceneGraphDatasetMapper(make_cfg(RANDOM_FLIP="horizontal"), is_train=True)
    assert any(isinstance(a, T.RandomFlip) for a in mapper.augmentations.augs)
    mapper = SceneGraphDatasetMapper(make_cfg(RANDOM_FLIP="horizontal"), is_train=False)
    assert not any(isinstance(a, T.RandomFlip) for a in mapper.augmentations.augs)


def test_quarter_turns_move_boxes_with_the_pixels(record, tmp_path):
    """INPUT.RANDOM_ROTATE_90: every quarter turn appears, images keep their pixels (the
    frame of the turned image is expanded, not cropped) and each box still bounds its
    object's pixels; off at test time and by default."""
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[1:5, 2:12] = 255  # exactly annotation 0's box, [2, 1, 12, 5] XYXY
    Image.fromarray(pixels).save(tmp_path / "obj.png")
    record = dict(record, file_name=str(tmp_path / "obj.png"))
    record["annotations"] = [dict(record["annotations"][0], bbox=[2.0, 1.0, 12.0, 5.0])]
    record["relations"] = np.zeros((0, 3), dtype=np.int64)
    assert not make_cfg().INPUT.RANDOM_ROTATE_90
    assert not any(isinstance(a, T.RandomRotation) for a in build_augmentations(make_cfg(), True))
    cfg = make_cfg(RANDOM_ROTATE_90=True)
    assert not any(isinstance(a, T.RandomRotation) for a in build_augmentations(cfg, False))
    mapper = SceneGraphDatasetMapper(cfg, is_train=True)
    np.random.seed(0)
    seen = set()
    for _ in range(40):
        out = mapper(record)
        image = out["image"][0].numpy()
        assert sorted(image.shape) == [40, 80]
        ys, xs = np.nonzero(image > 127)  # the white object, after resize x4 and the turn
        box = out["instances"].gt_boxes.tensor[0].numpy()
        np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1.5)
        # the object is wider than tall, like the image: a quarter turn turns both
        assert (image.shape[0] > image.shape[1]) == (box[3] - box[1] > box[2] - box[0])
        seen.add((image.shape, tuple(np.round(box))))
    assert len(seen) == 4  # 0, 90, 180 and 270 degrees


def test_augmented_shape_mapper_reports_the_turned_size(record):
    """Aspect-ratio grouping reads height/width: after a quarter turn they must be the
    turned image's, else portrait and landscape images share a padded batch."""
    mapper = AugmentedShapeMapper(SceneGraphDatasetMapper(make_cfg(RANDOM_ROTATE_90=True), True))
    np.random.seed(1)
    shapes = set()
    for _ in range(12):
        out = mapper(record)
        assert (out["height"], out["width"]) == tuple(out["image"].shape[1:])
        shapes.add((out["height"], out["width"]))
    assert shapes == {(40, 80), (80, 40)}
    assert (record["height"], record["width"]) == (10, 20)  # the dataset dict is untouched


def test_duplicates_filtered_at_train_only(record):
    cfg = make_cfg()
    assert cfg.DATASETS.SGG.FILTER_DUPLICATE_RELATIONS
    train, test = SceneGraphDatasetMapper(cfg, True), SceneGraphDatasetMapper(cfg, False)
    assert torch.equal(test(record)["relations"], torch.from_numpy(RELATIONS))
    chosen = set()
    for seed in range(30):
        np.random.seed(seed)
        rel = train(record)["relations"]
        assert rel.dtype == torch.int64
        pairs = [tuple(r[:2]) for r in rel.tolist()]
        assert sorted(pairs) == [(0, 1), (1, 0)]  # one row per pair
        assert [2] == [r[2] for r in rel.tolist() if tuple(r[:2]) == (1, 0)]
        chosen.add(next(r[2] for r in rel.tolist() if tuple(r[:2]) == (0, 1)))
    assert chosen == {0, 1, 2}  # the kept predicate is random
    cfg.DATASETS.SGG.FILTER_DUPLICATE_RELATIONS = False
    assert len(SceneGraphDatasetMapper(cfg, True)(record)["relations"]) == 4


def test_filter_duplicate_relations_keeps_order():
    rel = np.array([[2, 3, 0], [0, 1, 4], [2, 3, 1], [5, 6, 2]])
    kept_for_pair = set()
    for seed in range(20):
        out = filter_duplicate_relations(rel, np.random.RandomState(seed)).tolist()
        index = [rel.tolist().index(row) for row in out]
        assert index == sorted(index) and len(index) == 3  # original order, one per pair
        assert {1, 3} <= set(index)  # rows of unique pairs always stay
        kept_for_pair.add(index[0] if index[0] in (0, 2) else index[1])
    assert kept_for_pair == {0, 2}


def test_masks_present_with_segmentation(record):
    record["annotations"][0]["segmentation"] = [[2.0, 1.0, 10.0, 1.0, 10.0, 5.0]]
    record["annotations"][1]["segmentation"] = [[12.0, 2.0, 18.0, 2.0, 18.0, 8.0, 12.0, 8.0]]
    out = SceneGraphDatasetMapper(make_cfg(), is_train=False)(record)
    masks = out["instances"].gt_masks
    assert isinstance(masks, PolygonMasks) and len(masks) == 2
    np.testing.assert_allclose(masks.polygons[0][0], [8, 4, 40, 4, 40, 20])
    # RLE masks switch the image to bitmasks.
    rle = mask_util.encode(np.asfortranarray(np.pad(np.ones((3, 3), np.uint8), ((0, 7), (0, 17)))))
    for a in record["annotations"]:
        a["segmentation"] = rle
    out = SceneGraphDatasetMapper(make_cfg(), is_train=False)(record)
    assert isinstance(out["instances"].gt_masks, BitMasks)
    assert out["instances"].gt_masks.tensor.shape == (2, 40, 80)
    assert int(out["instances"].gt_masks.tensor[0].sum()) == 144  # 3x3 pixels, scaled 4x


def test_mixed_segmentation_is_an_error(record):
    record["annotations"][0]["segmentation"] = [[2.0, 1.0, 10.0, 1.0, 10.0, 5.0]]
    with pytest.raises(ValueError, match="1 of 2 annotations have a segmentation"):
        SceneGraphDatasetMapper(make_cfg(), is_train=False)(record)


def test_missing_image_and_wrong_size_name_the_file(record, tmp_path):
    mapper = SceneGraphDatasetMapper(make_cfg(), is_train=True)
    missing = dict(record, file_name=str(tmp_path / "gone.jpg"))
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"image file not found: {tmp_path}/gone.jpg")
    ):
        mapper(missing)
    with pytest.raises(SizeMismatchError, match=re.escape(record["file_name"])):
        mapper(dict(record, width=21))


def test_relation_outside_annotations_is_an_error(record):
    record["relations"] = np.array([[0, 2, 0]])
    with pytest.raises(ValueError, match=r"img.png: relation 0 = \[0, 2, 0\] indexes outside"):
        SceneGraphDatasetMapper(make_cfg(), is_train=False)(record)
