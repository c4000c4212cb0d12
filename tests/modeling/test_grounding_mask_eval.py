"""tools/eval_transferred_masks.py: the COCO mask AP of hand-made masks and the transfer it
scores (same as ``MaskTransferHead.transfer_masks``)."""

import sys
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.structures import BoxMode

from sgg_d2.modeling.grounding.mask_transfer import MaskTransferHead

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import eval_transferred_masks as tool  # noqa: E402


def _dicts():
    """One 20 x 20 image: a 6 x 6 square (class 0) and a 4 x 8 bar (class 1), RLE masks."""
    masks = np.zeros((2, 20, 20), dtype=np.uint8)
    masks[0, 2:8, 2:8] = 1
    masks[1, 12:16, 4:12] = 1
    anns = [
        {
            "bbox": list(mask_util.toBbox(mask_util.encode(np.asfortranarray(m)))),
            "bbox_mode": BoxMode.XYWH_ABS,
            "category_id": c,
            "segmentation": mask_util.encode(np.asfortranarray(m)),
        }
        for c, m in enumerate(masks)
    ]
    return [{"height": 20, "width": 20, "annotations": anns}], masks


def _result(mask, c, score=1.0):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"image_id": 0, "category_id": c + 1, "segmentation": rle, "score": score}


def test_exact_masks_score_100_and_wrong_masks_0():
    dicts, masks = _dicts()
    gt = tool.coco_gt(dicts, num_classes=2)
    assert [a["area"] for a in gt["annotations"]] == [36.0, 32.0]
    assert tool.coco_ap(gt, [_result(masks[0], 0), _result(masks[1], 1)]) == pytest.approx(
        (100, 100)
    )
    swapped = [_result(masks[0], 1), _result(masks[1], 0)]  # right masks, wrong classes
    assert tool.coco_ap(gt, swapped) == pytest.approx((0, 0))
    half = masks[0].copy()
    half[2:5] = 0  # IoU 0.5 with the square: counts at IoU 0.5 only
    ap, ap50 = tool.coco_ap(gt, [_result(half, 0), _result(masks[1], 1)])
    assert ap50 == pytest.approx(100) and ap == pytest.approx(55.0)  # class 0: 1 of 10 thresholds


def test_tool_transfer_matches_the_mask_head():
    S = torch.tensor([[0.7, 0.3], [0.1, 0.9], [2.0, -1.0]])
    head = MaskTransferHead(
        ShapeSpec(channels=4, height=7, width=7), num_classes=2, conv_dims=[4, 4], similarity=S
    )
    aux = torch.randn(3, 2, 5, 5) * 3
    labels = torch.tensor([2, 0, 1])
    for space in ("logits", "probs"):
        head.space = space
        torch.testing.assert_close(
            tool.transfer(S, aux, labels, space), head.transfer_masks(aux, labels)
        )
