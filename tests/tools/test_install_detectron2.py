"""tools/install_detectron2.py: which track an installed Detectron2 needs, and how a
``D2_SOURCE`` is recognised and unpacked (no build here: CI builds on the upstream track)."""

import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "install_detectron2.py"
spec = importlib.util.spec_from_file_location("install_detectron2", TOOL)
install_detectron2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_detectron2)


@pytest.fixture(autouse=True)
def no_pip(monkeypatch):
    """Nothing here may run pip (install or uninstall) in the test environment."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to run {args}")

    monkeypatch.setattr(install_detectron2.subprocess, "run", refuse)
    monkeypatch.setattr(install_detectron2, "run", refuse)


def fake_package(root: Path, transform: str, masks: str) -> Path:
    pkg = root / "detectron2"
    (pkg / "data" / "transforms").mkdir(parents=True)
    (pkg / "structures").mkdir()
    (pkg / "data" / "transforms" / "transform.py").write_text(transform)
    (pkg / "structures" / "masks.py").write_text(masks)
    return pkg


@pytest.mark.parametrize(
    "transform, masks, track",
    [
        ("def f(interp=Image.LINEAR): pass\n", "x = y.astype(bool)\n", "registry"),
        ("interp=Image.BILINEAR\n", "return np.zeros((h, w)).astype(np.bool)\n", "registry"),
        ("interp=Image.BILINEAR\n", "x = y.astype(np.bool_)  # np.bool_ is fine\n", "upstream"),
    ],
)
def test_track_follows_the_apis_that_numpy_1_24_and_pillow_10_removed(
    tmp_path, monkeypatch, transform, masks, track
):
    pkg = fake_package(tmp_path, transform, masks)
    monkeypatch.setattr(install_detectron2, "detectron2_dir", lambda: pkg)
    assert install_detectron2.track_of_installed() == track


def test_no_detectron2_is_track_none(monkeypatch):
    monkeypatch.setattr(install_detectron2, "detectron2_dir", lambda: None)
    assert install_detectron2.track_of_installed() == "none"


def test_the_installed_detectron2_track_matches_its_compiled_ops():
    """In this test environment: the registry copy has no compiled ops, an upstream build
    has them (CI's two tracks)."""
    import sgg_d2

    expected = "upstream" if sgg_d2.HAS_COMPILED_D2_OPS else "registry"
    assert install_detectron2.track_of_installed() == expected


def test_source_kinds_and_keys(tmp_path):
    archive = tmp_path / "d2.tar.gz"
    archive.write_bytes(b"abc")
    key = install_detectron2.source_key(str(archive))
    assert key.startswith(str(archive.resolve())) and "sha256:" in key
    archive.write_bytes(b"abd")
    assert install_detectron2.source_key(str(archive)) != key, "a changed archive rebuilds"
    assert install_detectron2.is_git_url("git+https://github.com/facebookresearch/detectron2.git")
    assert install_detectron2.is_git_url("https://example.org/detectron2.git")
    assert not install_detectron2.is_git_url("detectron2-main.tar.gz")


def test_extract_finds_setup_py_under_the_archive_top_folder(tmp_path):
    archive = tmp_path / "src.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"from setuptools import setup\n"
        info = tarfile.TarInfo("detectron2/setup.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    folder = install_detectron2.extract(archive, tmp_path / "out")
    assert folder == tmp_path / "out" / "detectron2"
    with pytest.raises(SystemExit, match="no setup.py"):
        empty = tmp_path / "empty.tar.gz"
        with tarfile.open(empty, "w:gz"):
            pass
        install_detectron2.extract(empty, tmp_path / "out2")


def test_bad_source_is_named_before_anything_is_touched(tmp_path):
    (tmp_path / "checkout").mkdir()
    with pytest.raises(SystemExit, match="has no setup.py"):
        install_detectron2.install_from_source(str(tmp_path / "checkout"), force=True)
    with pytest.raises(SystemExit, match="neither a folder, an archive"):
        install_detectron2.install_from_source(str(tmp_path / "nope"), force=True)
    bad = tmp_path / "detectron2.rar"
    bad.write_bytes(b"x")
    with pytest.raises(SystemExit, match=r"is not a \.tar\.gz"):
        install_detectron2.install_from_source(str(bad), force=True)
