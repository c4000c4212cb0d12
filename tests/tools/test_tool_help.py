"""Every Python script under tools/ runs from the repository root and answers ``--help``
(its imports resolve without any sys.path change)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = [
    "tools/ablate.py",
    "tools/benchmark_data.py",
    "tools/benchmark_eval.py",
    "tools/benchmark_grounding.py",
    "tools/benchmark_relation.py",
    "tools/benchmark_synthetic.py",
    "tools/install_detectron2.py",
    "tools/research/eval_transferred_masks.py",
    "tools/research/linknet_pair_parts.py",
    "tools/research/sgdet_top_triplets.py",
]


def test_every_script_is_listed():
    found = {str(p.relative_to(REPO)) for p in (REPO / "tools").rglob("*.py")}
    found = {p for p in found if not Path(p).name.startswith("_")}
    found.discard("tools/research/record_model_outputs.py")  # has its own tests
    assert found == set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_0(script):
    proc = subprocess.run(
        [sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("usage: "), proc.stdout[:500]
