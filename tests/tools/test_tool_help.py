"""Every Python script under tools/ runs from the repository root and answers ``--help``
(its imports resolve without any sys.path change)."""

import subprocess
import sys
from pathlib import Path

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


# One interpreter answers every script's --help (one torch import instead of ten): each
# script runs as ``python <script>`` would run it, its own folder first on the path.
CHILD = """
import contextlib, io, os, runpy, sys
for script in sys.argv[1:]:
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    sys.argv = [script, "--help"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code or 0
    print(script, code, out.getvalue().startswith("usage: "))
"""


def test_every_script_answers_help():
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *SCRIPTS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:-1] == [f"{s} 0 True" for s in SCRIPTS], proc.stdout
