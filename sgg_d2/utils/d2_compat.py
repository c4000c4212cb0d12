"""Make Detectron2 importable when its compiled extension ``detectron2._C`` is absent.

The registry copy of Detectron2 (``pb1-detectron2==0.6``, see ``tools/install_detectron2.py``)
ships without the C++/CUDA sources, so ``detectron2/_C*.so`` does not exist and
``import detectron2.layers`` fails. Only a few features need those ops: rotated boxes
(IoU, NMS, RoIAlign), deformable convolutions and the fast C++ COCOeval. Everything this
project uses runs on torchvision ops instead. Detectron2 reaches those ops two ways:
attributes of ``detectron2._C`` (v0.6: all; upstream main: deformable convolutions and
COCOeval) and ``torch.ops.detectron2.<op>`` (v0.6: ``nms_rotated``; upstream main also
``box_iou_rotated`` and ``roi_align_rotated_forward/backward``); the stand-in covers both.

:func:`install_stand_in` puts a module in ``sys.modules["detectron2._C"]`` *only* when
the real extension cannot be found, so a user who built Detectron2 from source keeps
their own. Each missing op raises :class:`MissingDetectron2OpError`, which names the op
and says how to get a full build.
"""

import importlib.util
import sys
import types
import warnings

__all__ = [
    "MissingDetectron2OpError",
    "install_stand_in",
    "has_compiled_ops",
    "guard_version_queries",
    "import_without_jit_warnings",
]

MODULE_NAME = "detectron2._C"
_HOW_TO_FIX = (
    "Detectron2 was installed without its compiled extension (detectron2._C), so the op "
    "'{op}' is unavailable. Build Detectron2 from source to get it (Detectron2's "
    "INSTALL guide, 'Build Detectron2 from Source'), or run `D2_SOURCE=<folder | .tar.gz | git "
    "URL> make setup` (README: 'Installation'). COCO evaluation works without it when "
    "COCOEvaluator is built with use_fast_impl=False (sgg_d2's trainer does so)."
)
# Ops that the real extension exports and that Detectron2's Python code calls through
# ``detectron2._C`` (v0.6: all of them; upstream main: deformable convolutions and the
# fast COCOeval only).
_KNOWN_OPS = (
    "box_iou_rotated",
    "nms_rotated",
    "roi_align_rotated_forward",
    "roi_align_rotated_backward",
    "deform_conv_forward",
    "deform_conv_backward_input",
    "deform_conv_backward_filter",
    "modulated_deform_conv_forward",
    "modulated_deform_conv_backward",
    "COCOevalAccumulate",
    "COCOevalEvaluateImages",
    "InstanceAnnotation",
    "ImageEvaluation",
)
# Ops that Detectron2 calls as ``torch.ops.detectron2.<name>`` (registered by the real
# extension's TORCH_LIBRARY block): v0.6 calls nms_rotated so; upstream main also the
# rotated IoU and rotated RoIAlign. Schemas as in detectron2/layers/csrc/vision.cpp.
_TORCH_OPS = {
    "nms_rotated": "nms_rotated(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor",
    "box_iou_rotated": "box_iou_rotated(Tensor boxes1, Tensor boxes2) -> Tensor",
    "roi_align_rotated_forward": (
        "roi_align_rotated_forward(Tensor input, Tensor rois, float spatial_scale, "
        "int pooled_height, int pooled_width, int sampling_ratio) -> Tensor"
    ),
    "roi_align_rotated_backward": (
        "roi_align_rotated_backward(Tensor grad, Tensor rois, float spatial_scale, "
        "int pooled_height, int pooled_width, int batch_size, int channels, int height, "
        "int width, int sampling_ratio) -> Tensor"
    ),
}


class MissingDetectron2OpError(RuntimeError):
    """Raised when code calls an op of Detectron2's compiled extension, which is absent."""

    def __init__(self, op: str):
        super().__init__(_HOW_TO_FIX.format(op=op))
        self.op = op


class _StandInModule(types.ModuleType):
    """``detectron2._C`` replacement: environment queries answer, ops raise clearly."""

    IS_SGG_D2_STAND_IN = True

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _missing_op(name)

    # Queried by detectron2.utils.collect_env (default_setup logs it); not ops.
    @staticmethod
    def get_compiler_version() -> str:
        return "none (detectron2._C not built; sgg_d2 stand-in)"

    @staticmethod
    def get_cuda_version() -> str:
        return "none (detectron2._C not built; sgg_d2 stand-in)"

    @staticmethod
    def has_cuda() -> bool:
        return False


def _missing_op(name: str):
    def op(*args, **kwargs):
        raise MissingDetectron2OpError(name)

    op.__name__ = name
    return op


def has_compiled_ops() -> bool:
    """Whether the real ``detectron2._C`` is in use (not the stand-in, not missing)."""
    module = sys.modules.get(MODULE_NAME)
    if module is not None:
        return not getattr(module, "IS_SGG_D2_STAND_IN", False)
    return importlib.util.find_spec(MODULE_NAME) is not None


def _torch_op_exists(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.detectron2, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _register_torch_ops() -> None:
    """Define ``torch.ops.detectron2.<op>`` for every op of :data:`_TORCH_OPS` that no
    loaded library defines, each raising :class:`MissingDetectron2OpError` when called."""
    import torch

    lib = torch.library.Library("detectron2", "FRAGMENT")
    for name, schema in _TORCH_OPS.items():
        if _torch_op_exists(name):
            continue  # a loaded library defines it (never replace it)
        lib.define(schema)
        lib.impl(name, _missing_op(name), "CompositeExplicitAutograd")
    _StandInModule._torch_library = lib  # keep the registrations alive


def install_stand_in() -> bool:
    """Install the stand-in for ``detectron2._C`` if, and only if, the real one is absent.

    Must run before any ``detectron2.layers``/``detectron2.modeling`` import; importing
    ``sgg_d2`` does it. Idempotent.

    Returns:
        True if the stand-in is (now) installed, False if the real extension is used.
    """
    current = sys.modules.get(MODULE_NAME)
    if current is not None:
        return bool(getattr(current, "IS_SGG_D2_STAND_IN", False))
    if importlib.util.find_spec(MODULE_NAME) is not None:
        return False
    module = _StandInModule(MODULE_NAME, __doc__)
    for op in _KNOWN_OPS:
        setattr(module, op, _missing_op(op))
    sys.modules[MODULE_NAME] = module
    import detectron2

    detectron2._C = module
    _register_torch_ops()
    return True


# A CUDA build of Detectron2 (commit 02b5c4e, CUDA 13.0, torch 2.11, on an H200; README
# "Development") crashes the whole process with a segmentation fault in these two queries,
# which ``detectron2.utils.collect_env`` calls and ``default_setup`` logs at every start.
_VERSION_QUERIES = ("get_compiler_version", "get_cuda_version")
_VERSION_PROBE = "import torch\nfrom detectron2 import _C\n" + "".join(
    f"_C.{name}()\n" for name in _VERSION_QUERIES
)


def guard_version_queries(probe: str = _VERSION_PROBE) -> bool:
    """Before ``default_setup``: if the real ``detectron2._C`` has CUDA, run ``probe``
    (the version queries) once in a child process; if the child crashes, replace those
    queries in ``detectron2._C`` with ones that return a note instead of crashing, and
    log a warning. Returns True when they were replaced. No-op for the stand-in and for
    CPU-only builds (the crash was seen with CUDA builds only)."""
    if not has_compiled_ops():
        return False
    from detectron2 import _C

    if not _C.has_cuda():  # (has_compiled_ops() is False for the stand-in)
        return False
    if hasattr(_C, "_sgg_d2_version_queries_replaced"):
        return _C._sgg_d2_version_queries_replaced
    import logging
    import subprocess

    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    replaced = child.returncode != 0
    if replaced:
        for name in _VERSION_QUERIES:
            setattr(_C, name, lambda name=name: f"unknown (detectron2._C.{name}() crashes)")
        logging.getLogger(__name__).warning(
            "detectron2._C.%s crash in a child process (exit status %d) in this Detectron2 "
            "build; replaced by stand-ins so that collect_env does not crash the run.",
            " / ".join(_VERSION_QUERIES),
            child.returncode,
        )
    _C._sgg_d2_version_queries_replaced = replaced
    return replaced


# Modules that call torch.jit.script at import time: fvcore/nn/focal_loss.py (two
# functions; imported by detectron2.layers) and detectron2/modeling/box_regression.py (two
# functions). Recent torch (2.14 here) deprecates torch.jit.script with a FutureWarning on
# every call, so every command (even --help) printed two warnings before doing anything.
# sgg_d2 never calls torch.jit itself.
JIT_SCRIPTING_MODULES = ("fvcore.nn", "detectron2.modeling.box_regression")
_JIT_WARNING = r"`torch\.jit\.script` is deprecated"


def import_without_jit_warnings(modules=JIT_SCRIPTING_MODULES) -> None:
    """Import ``modules`` without the ``torch.jit.script`` deprecation warning that their
    import-time scripting emits.

    Only that message, only as raised in ``torch.jit``, and only during these imports is
    silenced; once imported, the modules sit in ``sys.modules`` and later imports of them
    (by Detectron2) warn nothing. Call after :func:`install_stand_in`.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=_JIT_WARNING, category=FutureWarning, module=r"torch\.jit"
        )
        for name in modules:
            importlib.import_module(name)
