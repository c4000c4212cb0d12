#!/usr/bin/env python
"""Install Detectron2 into the running Python environment (two tracks).

**Registry track** (default): Detectron2's authors do not publish it on PyPI. The only
registry copy usable offline is the sdist ``pb1-detectron2==0.6``, whose Python sources
equal upstream v0.6 but which lacks ``detectron2/layers/csrc``, so its ``setup.py`` fails
while compiling the C++ extension. This script downloads that sdist, switches the
extension build off (``ext_modules=[]``) and installs the result. ``sgg_d2`` then provides
a stand-in for ``detectron2._C`` (see ``sgg_d2/utils/d2_compat.py``). A Detectron2 that is
already importable (e.g. built from source with CUDA) is kept untouched.

**Upstream track** (``--source SRC``): build Detectron2 from its source with the compiled
ops. ``SRC`` is a source folder, a ``.tar.gz``/``.tgz``/``.zip`` archive of one (e.g.
``git archive`` output), or a git URL (``git+https://...`` or ``https://...git``). The
CUDA ops are built when ``nvcc`` exists *and* torch sees a GPU; otherwise
``FORCE_CUDA=0`` (CPU ops only), with ``MAX_JOBS=2`` unless set. A build from the same
source (recorded in ``<prefix>/.sgg_d2_detectron2_source``) is not repeated.

``--track`` prints which requirement file fits the importable Detectron2: ``registry``
when its sources still use the APIs that numpy 1.24 / Pillow 10 removed (v0.6), else
``upstream`` (``none`` when no Detectron2 is importable).

Usage: ``python tools/install_detectron2.py [--force] [--source SRC] [--track]``
(torch must be installed first).
"""

import argparse
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

SDIST = "pb1-detectron2==0.6"
EXT_LINE = "ext_modules=get_extensions(),"
SOURCE_RECORD = Path(sys.prefix) / ".sgg_d2_detectron2_source"
# (file inside the detectron2 package, pattern): what only the v0.6 sources still use.
LEGACY_MARKERS = (
    ("data/transforms/transform.py", r"Image\.LINEAR\b"),
    ("structures/masks.py", r"np\.bool\b"),
)


def run(cmd, env=None):
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def say(msg: str) -> None:
    print(f"install_detectron2: {msg}", flush=True)


def detectron2_dir():
    """The installed ``detectron2`` package folder, or None (found without importing it)."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def track_of_installed() -> str:
    """``registry`` (v0.6 sources), ``upstream`` (newer sources) or ``none``."""
    pkg = detectron2_dir()
    if pkg is None:
        return "none"
    for rel, pattern in LEGACY_MARKERS:
        path = pkg / rel
        if path.is_file() and re.search(pattern, path.read_text(errors="replace")):
            return "registry"
    return "upstream"


def extract(archive: Path, into: Path) -> Path:
    """Unpack ``archive`` into ``into``; return the folder holding ``setup.py``."""
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
    else:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses absolute paths and links out of the folder.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, filter="data")
            else:
                tar.extractall(into)
    found = sorted(into.glob("setup.py")) + sorted(into.glob("*/setup.py"))
    if not found:
        raise SystemExit(f"install_detectron2: no setup.py at the top of {archive}")
    return found[0].parent


def patch_setup(setup_py: Path) -> None:
    """Replace the C++ extension list in Detectron2's setup.py by an empty one."""
    text = setup_py.read_text()
    if EXT_LINE not in text:
        raise SystemExit(
            f"install_detectron2: {setup_py} has no line '{EXT_LINE}'; the sdist changed, "
            "update tools/install_detectron2.py"
        )
    setup_py.write_text(text.replace(EXT_LINE, "ext_modules=[],"))


def pip() -> list:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check"]


def install_registry_copy() -> None:
    """Download ``pb1-detectron2==0.6``, switch its extension off, install it."""
    with tempfile.TemporaryDirectory(prefix="d2-sdist-") as tmp:
        run(
            pip()
            + ["download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation"]
            + ["-d", tmp, SDIST]
        )
        archives = sorted(Path(tmp).glob("*.tar.gz"))
        if len(archives) != 1:
            raise SystemExit(f"install_detectron2: expected one sdist in {tmp}, got {archives}")
        src = extract(archives[0], Path(tmp) / "src")
        patch_setup(src / "setup.py")
        run(pip() + ["install", "--no-build-isolation", "--no-deps", str(src)])
    say("installed Detectron2 v0.6 without its C++ extension")


def source_key(source: str) -> str:
    """What identifies a build: the git URL, or the path plus a digest of the archive."""
    path = Path(source)
    if path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        return f"{path.resolve()} sha256:{digest}"
    if path.is_dir():
        return str(path.resolve())
    return source


def is_git_url(source: str) -> bool:
    return source.startswith("git+") or (
        "://" in source and (source.endswith(".git") or "github.com" in source)
    )


def source_kind(source: str) -> str:
    """``folder``, ``archive`` or ``git`` for a valid ``D2_SOURCE``; otherwise exit naming it."""
    path = Path(source)
    if path.is_dir():
        if not (path / "setup.py").is_file():
            raise SystemExit(f"install_detectron2: D2_SOURCE folder {source} has no setup.py")
        return "folder"
    if path.is_file():
        if not re.search(r"\.(tar\.gz|tgz|tar|zip)$", path.name):
            raise SystemExit(
                f"install_detectron2: D2_SOURCE file {source} is not a .tar.gz/.tgz/.tar/.zip"
            )
        return "archive"
    if is_git_url(source):
        return "git"
    raise SystemExit(
        f"install_detectron2: D2_SOURCE={source!r} is neither a folder, an archive "
        "(.tar.gz/.zip) nor a git URL (git+https://...)"
    )


def build_env() -> dict:
    """Environment for Detectron2's setup.py: CUDA ops only where nvcc and a GPU exist."""
    import torch

    env = dict(os.environ)
    gpu = torch.cuda.is_available() and torch.version.cuda is not None
    nvcc = shutil.which("nvcc") or (
        os.environ.get("CUDA_HOME") and Path(os.environ["CUDA_HOME"], "bin", "nvcc").exists()
    )
    if gpu and nvcc:
        env.setdefault("FORCE_CUDA", "1")
        if "TORCH_CUDA_ARCH_LIST" not in env:  # only this machine's GPU: faster build
            major, minor = torch.cuda.get_device_capability(0)
            env["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
        say(f"building the CUDA ops (arch {env['TORCH_CUDA_ARCH_LIST']}) and the CPU ops")
    else:
        env["FORCE_CUDA"] = "0"
        env["CUDA_VISIBLE_DEVICES"] = ""  # torch's extension builder then skips nvcc
        why = "no GPU visible to torch" if not gpu else "no nvcc found"
        say(f"building the CPU ops only ({why})")
    env.setdefault("MAX_JOBS", str(min(os.cpu_count() or 2, 2 if not gpu else 16)))
    return env


def install_from_source(source: str, force: bool) -> None:
    """Build and install Detectron2 with its compiled ops from ``source``."""
    key = source_key(source)
    if (
        not force
        and SOURCE_RECORD.is_file()
        and SOURCE_RECORD.read_text().strip() == key
        and compiled_ops_importable()
    ):
        say(f"keeping the Detectron2 already built from {source}")
        return
    kind = source_kind(source)  # validate before anything is uninstalled
    if importlib.util.find_spec("torch") is None:
        raise SystemExit("install_detectron2: install torch first (Detectron2 builds against it)")
    env = build_env()
    with tempfile.TemporaryDirectory(prefix="d2-build-") as tmp:
        if kind == "folder":
            target = str(Path(source))
        elif kind == "archive":
            target = str(extract(Path(source), Path(tmp) / "src"))
        else:
            target = source if source.startswith("git+") else f"git+{source}"
        wheels = Path(tmp) / "wheel"
        # Build first: a failed build leaves the installed Detectron2 untouched.
        run(pip() + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), target], env)
        (wheel,) = sorted(wheels.glob("detectron2-*.whl"))
        # The registry copy is another distribution name over the same files: remove it.
        subprocess.run(pip() + ["uninstall", "-y", "-q", "pb1-detectron2", "detectron2"])
        run(pip() + ["install", "--no-deps", "--force-reinstall", str(wheel)])
    if not compiled_ops_importable():
        raise SystemExit(f"install_detectron2: built from {source}, but detectron2._C is missing")
    SOURCE_RECORD.write_text(key + "\n")
    say(f"installed Detectron2 with its compiled ops from {source}")


def compiled_ops_importable() -> bool:
    """Whether ``detectron2._C`` (the compiled extension) imports, in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-c", "import torch, detectron2._C"], capture_output=True, text=True
    )
    return proc.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="install even if importable")
    parser.add_argument("--source", default="", help="build from this source (upstream track)")
    parser.add_argument(
        "--track", action="store_true", help="print registry/upstream/none for the installed one"
    )
    args = parser.parse_args()
    if args.track:
        print(track_of_installed())
        return
    if args.source:
        install_from_source(args.source, args.force)
        return
    if detectron2_dir() is not None and not args.force:
        say(f"keeping the Detectron2 found at {detectron2_dir()}")
        return
    if importlib.util.find_spec("torch") is None:
        raise SystemExit("install_detectron2: install torch first (Detectron2 builds against it)")
    install_registry_copy()


if __name__ == "__main__":
    main()
