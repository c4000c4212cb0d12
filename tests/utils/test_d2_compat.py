"""The detectron2._C stand-in: installed only when the real extension is absent."""

import inspect
import logging
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from sgg_d2.utils import d2_compat

REAL_C_PRESENT = not getattr(sys.modules["detectron2._C"], "IS_SGG_D2_STAND_IN", False)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(REAL_C_PRESENT, reason="this Detectron2 has its compiled _C")
def test_absent_extension_gets_stand_in_and_imports_work():
    proc = run_python(
        """
        import sgg_d2
        import detectron2._C as C
        import detectron2.layers, detectron2.modeling, detectron2.evaluation  # must import
        from detectron2.utils.collect_env import collect_env_info
        assert "stand-in" in collect_env_info()
        print(C.IS_SGG_D2_STAND_IN, sgg_d2.HAS_COMPILED_D2_OPS)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False"]


@pytest.mark.skipif(REAL_C_PRESENT, reason="this Detectron2 has its compiled _C")
@pytest.mark.parametrize(
    "call, op",
    [
        (
            "from detectron2.layers import nms_rotated;"
            " nms_rotated(torch.zeros(2, 5), torch.ones(2), 0.5)",
            "nms_rotated",
        ),
        (
            "from detectron2.layers.rotated_boxes import pairwise_iou_rotated;"
            " pairwise_iou_rotated(torch.zeros(2, 5), torch.zeros(2, 5))",
            "box_iou_rotated",
        ),
        ("import detectron2._C as C; C.some_future_op()", "some_future_op"),
    ],
)
def test_missing_op_names_itself_and_the_fix(call, op):
    proc = run_python(
        f"""
        import sgg_d2, torch
        from sgg_d2.utils.d2_compat import MissingDetectron2OpError
        try:
            {call}
        except MissingDetectron2OpError as e:
            print(e.op); print(e)
        """
    )
    assert proc.returncode == 0, proc.stderr
    first, message = proc.stdout.split("\n", 1)
    assert first == op
    assert f"'{op}'" in message and "Build Detectron2 from source" in message


def test_present_extension_is_kept(tmp_path):
    """A real detectron2._C (here a fake module found on detectron2's path) is never replaced."""
    (tmp_path / "_C.py").write_text("IS_REAL_EXTENSION = True\n")
    proc = run_python(
        f"""
        import detectron2
        detectron2.__path__.append({str(tmp_path)!r})
        import sgg_d2
        import detectron2._C as C
        print(getattr(C, "IS_REAL_EXTENSION", False), sgg_d2.HAS_COMPILED_D2_OPS)
        """
    )
    assert proc.returncode == 0, proc.stderr
    if REAL_C_PRESENT:
        assert proc.stdout.split()[1] == "True"
    else:
        assert proc.stdout.split() == ["True", "True"]


def test_install_is_idempotent():
    assert d2_compat.install_stand_in() is (not REAL_C_PRESENT)
    module = sys.modules["detectron2._C"]
    assert d2_compat.install_stand_in() is (not REAL_C_PRESENT)
    assert sys.modules["detectron2._C"] is module


def test_dunder_lookups_are_plain_attribute_errors():
    if REAL_C_PRESENT:
        pytest.skip("this Detectron2 has its compiled _C")
    with pytest.raises(AttributeError):
        sys.modules["detectron2._C"].__wrapped__  # noqa: B018


def _fake_compiled_module(monkeypatch, has_cuda=True):
    """A real-looking ``detectron2._C`` (not the stand-in) with CUDA and version queries."""
    import detectron2

    fake = types.ModuleType("detectron2._C")
    fake.has_cuda = lambda: has_cuda
    fake.get_compiler_version = lambda: "GCC 13.3"
    fake.get_cuda_version = lambda: "13.0"
    monkeypatch.setitem(sys.modules, "detectron2._C", fake)
    monkeypatch.setattr(detectron2, "_C", fake, raising=False)
    return fake


CRASH = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"


def test_version_queries_replaced_when_the_probe_crashes(monkeypatch, caplog):
    fake = _fake_compiled_module(monkeypatch)
    with caplog.at_level(logging.WARNING):
        assert d2_compat.guard_version_queries(probe=CRASH) is True
    assert "crash in a child process" in caplog.text
    assert fake.get_compiler_version() == "unknown (detectron2._C.get_compiler_version() crashes)"
    assert fake.get_cuda_version() == "unknown (detectron2._C.get_cuda_version() crashes)"
    # collect_env, which default_setup logs, now runs through them.
    from detectron2.utils.collect_env import collect_env_info

    assert "unknown (detectron2._C.get_c" in collect_env_info()


def test_version_queries_kept_when_the_probe_works_or_no_cuda(monkeypatch):
    fake = _fake_compiled_module(monkeypatch)
    assert d2_compat.guard_version_queries(probe="pass") is False
    assert fake.get_cuda_version() == "13.0"
    cpu_only = _fake_compiled_module(monkeypatch, has_cuda=False)
    assert d2_compat.guard_version_queries(probe=CRASH) is False  # not even probed
    assert cpu_only.get_compiler_version() == "GCC 13.3"


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script", ["train_net.py", "demo/demo.py"])
def test_help_prints_no_warning(script):
    """Importing sgg_d2 (and Detectron2 through it) warns nothing: no torch.jit
    deprecation warnings from the modules that script functions at import time."""
    command = [sys.executable, script, "--help"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr


def test_jit_warning_is_silenced_only_during_those_imports(tmp_path):
    """With FutureWarnings as errors, ``import sgg_d2`` passes, and scripting a function
    afterwards still warns: the filter was narrow, not left behind."""
    if "deprecated" not in inspect.getsource(torch.jit._script.script):
        pytest.skip("this torch does not deprecate torch.jit.script")
    user_file = tmp_path / "user_code.py"
    user_file.write_text("def add_one(x: int) -> int:\n    return x + 1\n")
    code = f"""
        import importlib.util, sys, torch, sgg_d2
        from sgg_d2.utils.d2_compat import JIT_SCRIPTING_MODULES
        assert set(JIT_SCRIPTING_MODULES) <= set(sys.modules)
        spec = importlib.util.spec_from_file_location("user_code", {str(user_file)!r})
        user_code = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(user_code)
        add_one = user_code.add_one
        try:
            torch.jit.script(add_one)
        except FutureWarning as e:
            print("warned:", e)
        """
    proc = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("warned: `torch.jit.script` is deprecated")
