#!/usr/bin/env python
"""Install Detectron2 into the running Python environment, unless one is importable.

Detectron2's authors do not publish it on PyPI. The only registry copy usable here is
the sdist ``pb1-detectron2==0.6``, whose Python sources equal upstream v0.6 but which
lacks ``detectron2/layers/csrc``, so its ``setup.py`` fails while compiling the C++
extension. This script downloads that sdist, switches the extension build off
(``ext_modules=[]``) and installs the result. ``sgg_d2`` then provides a stand-in for
``detectron2._C`` (see ``sgg_d2/utils/d2_compat.py``).

A user who already has Detectron2 (e.g. built from source with CUDA) keeps it: the
script exits without touching anything when ``import detectron2`` works.

Usage: ``python tools/install_detectron2.py [--force]`` (torch must be installed).
"""

import argparse
import importlib.util
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "pb1-detectron2==0.6"
EXT_LINE = "ext_modules=get_extensions(),"


def run(cmd):
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def patch_setup(setup_py: Path) -> None:
    """Replace the C++ extension list in Detectron2's setup.py by an empty one."""
    text = setup_py.read_text()
    if EXT_LINE not in text:
        raise SystemExit(
            f"install_detectron2: {setup_py} has no line '{EXT_LINE}'; the sdist changed, "
            "update tools/install_detectron2.py"
        )
    setup_py.write_text(text.replace(EXT_LINE, "ext_modules=[],"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="install even if importable")
    args = parser.parse_args()
    if importlib.util.find_spec("detectron2") is not None and not args.force:
        import detectron2

        print(f"install_detectron2: keeping the Detectron2 found at {detectron2.__file__}")
        return
    if importlib.util.find_spec("torch") is None:
        raise SystemExit("install_detectron2: install torch first (Detectron2 builds against it)")
    pip = [sys.executable, "-m", "pip"]
    with tempfile.TemporaryDirectory(prefix="d2-sdist-") as tmp:
        run(
            pip
            + [
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--no-build-isolation",
                "-d",
                tmp,
                SDIST,
            ]
        )
        archives = sorted(Path(tmp).glob("*.tar.gz"))
        if len(archives) != 1:
            raise SystemExit(f"install_detectron2: expected one sdist in {tmp}, got {archives}")
        with tarfile.open(archives[0]) as tar:
            # The "data" filter refuses absolute paths and links out of the folder.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:
                tar.extractall(tmp)
        setup_files = sorted(Path(tmp).glob("*/setup.py"))
        if not setup_files:
            raise SystemExit(f"install_detectron2: no setup.py inside {archives[0]}")
        patch_setup(setup_files[0])
        run(pip + ["install", "--no-build-isolation", "--no-deps", str(setup_files[0].parent)])
    print("install_detectron2: installed Detectron2 v0.6 without its C++ extension")


if __name__ == "__main__":
    main()
