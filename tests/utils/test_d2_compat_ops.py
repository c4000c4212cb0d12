"""Every op that the installed Detectron2 reaches through ``detectron2._C`` or
``torch.ops.detectron2`` raises ``MissingDetectron2OpError`` when the compiled extension
is absent.

These tests run on both install tracks: on the upstream track (compiled ``_C`` present)
each subprocess first hides the real extension (``sys.modules["detectron2._C"] = None``
before anything imports it), so upstream main's Python is checked against the stand-in
too; on the registry track the extension is absent anyway.
"""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import detectron2
import pytest
import torch

from sgg_d2.utils import d2_compat

HIDE_REAL_C = 'import sys; sys.modules["detectron2._C"] = None\n'
# Queried by collect_env, not ops: they answer instead of raising.
ENV_QUERIES = {"get_compiler_version", "get_cuda_version", "has_cuda"}


def ops_called_by_installed_detectron2():
    """(names used as ``_C.<name>``, names used as ``torch.ops.detectron2.<name>``) in the
    installed Detectron2's sources (config files use another ``_C``: skipped)."""
    root = Path(detectron2.__file__).parent
    c_ops, torch_ops = set(), set()
    for path in root.rglob("*.py"):
        if "config" in path.parts:
            continue
        text = path.read_text(errors="replace")
        torch_ops |= set(re.findall(r"torch\.ops\.detectron2\.(\w+)", text))
        if re.search(r"from detectron2 import _C|import detectron2\._C", text):
            c_ops |= set(re.findall(r"\b_C\.([A-Za-z]\w*)", text))
    return c_ops - ENV_QUERIES, torch_ops


def run_hidden(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", HIDE_REAL_C + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_every_op_of_the_installed_detectron2_is_known():
    c_ops, torch_ops = ops_called_by_installed_detectron2()
    # Both tracks call these; a scan that found nothing would prove nothing.
    assert {"deform_conv_forward", "COCOevalAccumulate"} <= c_ops
    assert "nms_rotated" in torch_ops
    assert c_ops <= set(d2_compat._KNOWN_OPS), c_ops - set(d2_compat._KNOWN_OPS)
    assert torch_ops <= set(d2_compat._TORCH_OPS), torch_ops - set(d2_compat._TORCH_OPS)


def test_every_op_raises_missing_op_error_with_the_extension_hidden():
    """Each ``_C`` attribute and each ``torch.ops.detectron2`` op, called with arguments
    of the right types, raises the named error (not AttributeError / a dispatcher error)."""
    proc = run_hidden(
        """
        import json, torch, sgg_d2
        import detectron2._C as C
        from sgg_d2.utils import d2_compat
        from sgg_d2.utils.d2_compat import MissingDetectron2OpError

        t = torch.zeros(2, 5)
        args = {
            "nms_rotated": (t, torch.ones(2), 0.5),
            "box_iou_rotated": (t, t),
            "roi_align_rotated_forward": (torch.zeros(1, 1, 4, 4), torch.zeros(1, 6), 1.0, 2, 2, 0),
            "roi_align_rotated_backward": (
                torch.zeros(1, 1, 2, 2), torch.zeros(1, 6), 1.0, 2, 2, 1, 1, 4, 4, 0),
        }
        out = {"stand_in": C.IS_SGG_D2_STAND_IN, "compiled": sgg_d2.HAS_COMPILED_D2_OPS}
        for name in d2_compat._KNOWN_OPS:
            try:
                getattr(C, name)()
            except MissingDetectron2OpError as e:
                out["_C." + name] = e.op
        for name in d2_compat._TORCH_OPS:
            try:
                getattr(torch.ops.detectron2, name)(*args[name])
            except MissingDetectron2OpError as e:
                out["torch.ops." + name] = e.op
        print(json.dumps(out))
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.pop("stand_in") is True and out.pop("compiled") is False
    expected = {f"_C.{n}": n for n in d2_compat._KNOWN_OPS}
    expected.update({f"torch.ops.{n}": n for n in d2_compat._TORCH_OPS})
    assert out == expected


def test_public_detectron2_layers_fail_clearly_with_the_extension_hidden():
    """The user's view: Detectron2's public layers and the fast COCOeval, which reach the
    ops by either route depending on the Detectron2 version, name the missing op."""
    proc = run_hidden(
        """
        import json, torch, sgg_d2
        from sgg_d2.utils.d2_compat import MissingDetectron2OpError
        from detectron2.layers import (
            DeformConv, ModulatedDeformConv, ROIAlignRotated, batched_nms_rotated, nms_rotated)
        from detectron2.layers.rotated_boxes import pairwise_iou_rotated
        from detectron2.structures import RotatedBoxes
        from detectron2.structures.rotated_boxes import pairwise_iou as rotated_pairwise_iou

        x, boxes = torch.zeros(1, 2, 6, 6), torch.tensor([[3.0, 3, 2, 2, 0], [3, 3, 2, 2, 30]])
        calls = {
            "pairwise_iou_rotated": lambda: pairwise_iou_rotated(boxes, boxes),
            "structures.rotated_boxes.pairwise_iou": lambda: rotated_pairwise_iou(
                RotatedBoxes(boxes), RotatedBoxes(boxes)),
            "nms_rotated": lambda: nms_rotated(boxes, torch.ones(2), 0.5),
            "batched_nms_rotated": lambda: batched_nms_rotated(
                boxes, torch.ones(2), torch.zeros(2, dtype=torch.long), 0.5),
            "ROIAlignRotated": lambda: ROIAlignRotated((2, 2), 1.0, 0)(
                x, torch.tensor([[0.0, 3, 3, 2, 2, 0]])),
            "DeformConv": lambda: DeformConv(2, 2, 3, padding=1)(x, torch.zeros(1, 18, 6, 6)),
            "ModulatedDeformConv": lambda: ModulatedDeformConv(2, 2, 3, padding=1)(
                x, torch.zeros(1, 18, 6, 6), torch.ones(1, 9, 6, 6)),
        }
        out = {}
        for name, call in calls.items():
            try:
                call()
                out[name] = "no error"
            except MissingDetectron2OpError as e:
                out[name] = e.op
            except NotImplementedError as e:  # Detectron2's own "not supported on CPUs"
                out[name] = "NotImplementedError: " + str(e)
        from pycocotools.coco import COCO
        from detectron2.evaluation.fast_eval_api import COCOeval_opt
        gt = COCO()
        gt.dataset = {
            "images": [{"id": 1, "width": 10, "height": 10}],
            "categories": [{"id": 1, "name": "a"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4],
                             "area": 16, "iscrowd": 0}],
        }
        gt.createIndex()
        dt = gt.loadRes([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 1}])
        try:
            COCOeval_opt(gt, dt, "bbox").evaluate()
            out["COCOeval_opt"] = "no error"
        except MissingDetectron2OpError as e:
            out["COCOeval_opt"] = e.op
        print(json.dumps(out))
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "pairwise_iou_rotated": "box_iou_rotated",
        "structures.rotated_boxes.pairwise_iou": "box_iou_rotated",
        "nms_rotated": "nms_rotated",
        "batched_nms_rotated": "nms_rotated",
        "ROIAlignRotated": "roi_align_rotated_forward",
        # On CPU Detectron2 runs it with torchvision's deform_conv2d: works without _C.
        "DeformConv": "no error",
        # Detectron2 refuses it on CPU before reaching the op (the op itself is covered by
        # the _C test above and by tests/test_cuda.py on a GPU).
        "ModulatedDeformConv": "NotImplementedError: Deformable Conv is not supported on CPUs!",
        "COCOeval_opt": "InstanceAnnotation",
    }


def test_stand_in_never_shadows_a_loaded_torch_op(monkeypatch):
    """An op that a loaded library already defines is left alone (no redefinition error,
    no replacement)."""
    monkeypatch.setattr(d2_compat, "_torch_op_exists", lambda name: True)
    defined = []

    class FakeLibrary:
        def __init__(self, *args):
            pass

        def define(self, schema):
            defined.append(schema)

        def impl(self, *args):
            defined.append(args)

    import torch

    monkeypatch.setattr(torch.library, "Library", FakeLibrary)
    monkeypatch.setattr(d2_compat._StandInModule, "_torch_library", None, raising=False)
    d2_compat._register_torch_ops()
    assert defined == []


@pytest.mark.skipif(
    not d2_compat.has_compiled_ops(), reason="needs Detectron2 built with its compiled ops"
)
@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.cuda,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
            ],
        ),
    ],
)
def test_compiled_rotated_ops_compute(device):
    """The real kernels (reached through torch.ops.detectron2 on upstream main)."""
    from detectron2.layers import nms_rotated
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[10.0, 10, 8, 4, 0], [10, 10, 8, 4, 90], [40, 40, 4, 4, 0]])
    boxes = boxes.to(device)
    iou = pairwise_iou_rotated(boxes, boxes)
    assert iou.device.type == device
    # the same box turned by 90 degrees: intersection 4x4 = 16, union 32 + 32 - 16 = 48
    torch.testing.assert_close(iou[0, 1].cpu(), torch.tensor(16 / 48), atol=1e-4, rtol=0)
    assert iou[0, 2].item() == 0 and torch.allclose(iou.diag().cpu(), torch.ones(3))
    keep = nms_rotated(boxes, torch.tensor([0.9, 0.8, 0.7], device=device), 0.2)
    assert keep.cpu().tolist() == [0, 2]
