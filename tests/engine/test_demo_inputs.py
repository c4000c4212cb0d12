"""demo/demo.py on bad inputs: each gives a clear message, or a counted and logged skip."""

import importlib.util
import json
import logging
import subprocess
import sys

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from engine_support import MOTIFS, NARROW, REPO

from sgg_d2.engine import load_config

CONFIG = str(REPO / MOTIFS)
SMALL = NARROW


def _demo_module():
    spec = importlib.util.spec_from_file_location("sgg_demo", REPO / "demo" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(world, tmp_path_factory):
    """The tiny world registered through DATASETS.SGG.JSON and an (untrained) checkpoint."""
    root = world / "synthetic"
    train = ["demo_inputs_train", str(root / "json/scene_graphs_train.json"), str(root / "images")]
    opts = [*SMALL, "DATASETS.SGG.JSON", json.dumps([train])]
    opts += ["DATASETS.TRAIN", '("demo_inputs_train",)']
    torch.manual_seed(0)
    model = build_model(load_config(CONFIG.format("sgcls"), opts))
    out = tmp_path_factory.mktemp("demo_weights")
    DetectionCheckpointer(model, save_dir=str(out)).save("model")
    image = sorted((root / "images").iterdir())[0]
    # the checkpoint alone names the classes: no dataset needed below
    return {"weights": str(out / "model.pth"), "image": image, "demo": _demo_module()}


def run_demo(setup, tmp_path, mode, *extra, boxes=None, inputs=None):
    args = ["--config-file", CONFIG.format(mode), "--output", str(tmp_path / "out")]
    args += ["--input", str(inputs or setup["image"])]
    if boxes is not None:
        (tmp_path / "boxes.json").write_text(json.dumps({setup["image"].name: boxes}))
        args += ["--boxes", str(tmp_path / "boxes.json")]
    return setup["demo"].main([*args, *extra, *SMALL, "MODEL.WEIGHTS", setup["weights"]])


def test_unreadable_image_is_skipped_and_counted(setup, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / setup["image"].name).write_bytes(setup["image"].read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    good = setup["image"].read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    assert run_demo(setup, tmp_path, "sgdet", inputs=folder) == 0
    out = capsys.readouterr().out
    assert "skipped 2 of 3 images (unreadable)" in out and "broken.jpg" in out
    assert (tmp_path / "out" / (setup["image"].stem + ".png")).is_file()


GOOD = {"box": [10, 10, 60, 60], "class": "ball"}


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"class": "ball"}, 'entry 1: expected {"box"'),
        ({"box": [1, 2, 3], "class": "ball"}, '"box" must be 4 numbers'),
        ({"box": [50, 50, 10, 10], "class": "ball"}, "x2 <= x1 or y2 <= y1"),
        (
            {"box": [0, 0, 500, 20], "class": "ball"},
            "box 1 [0.0, 0.0, 500.0, 20.0] lies outside the",
        ),
        ({"box": [1, 2, 3, 4], "box_mode": "XYWHA", "class": "ball"}, "box_mode 'XYWHA'"),
        ({"box": [10, 10, 40, 40], "class": "blob"}, "unknown class 'blob'"),
    ],
)
def test_bad_boxes_entries_name_image_and_entry(setup, tmp_path, entry, message):
    with pytest.raises(SystemExit) as err:
        run_demo(setup, tmp_path, "predcls", boxes=[GOOD, entry])
    assert message in str(err.value) and setup["image"].name in str(err.value)


def test_xywh_entries_and_unknown_class_notice_in_sgcls(setup, tmp_path, caplog):
    boxes = [GOOD, {"box": [70, 20, 30, 40], "box_mode": "XYWH", "class": "blob"}]
    with caplog.at_level(logging.WARNING, logger="sgg_d2.demo"):
        assert run_demo(setup, tmp_path, "sgcls", boxes=boxes) == 0
    assert "unknown class 'blob'" in caplog.text
    graph = json.loads((tmp_path / "out" / (setup["image"].stem + ".json")).read_text())
    assert [o["box"] for o in graph["objects"]] == [[10, 10, 60, 60], [70, 20, 100, 60]]


def test_boxes_in_sgdet_and_missing_weights_are_refused(setup, tmp_path):
    with pytest.raises(SystemExit, match="sgdet detects its own objects"):
        run_demo(setup, tmp_path, "sgdet", boxes=[GOOD])
    args = ["--config-file", CONFIG.format("sgdet"), "--input", str(setup["image"])]
    with pytest.raises(SystemExit, match="MODEL.WEIGHTS is empty.*--random-weights"):
        setup["demo"].main([*args, "--output", str(tmp_path), *SMALL, "MODEL.WEIGHTS", ""])
    with pytest.raises(SystemExit, match="MODEL.WEIGHTS: no such file"):
        setup["demo"].main([*args, "--output", str(tmp_path), "MODEL.WEIGHTS", "nope.pth"])


def _no_model_work(setup, monkeypatch):
    """Makes building the predictor fail the test: the error must come before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the inputs were checked")

    monkeypatch.setattr(setup["demo"], "SceneGraphPredictor", refuse)


def _one_line_error(err) -> str:
    """SystemExit(message): Python prints the message on stderr and exits with status 1."""
    assert isinstance(err.value.code, str) and "\n" not in err.value.code
    return err.value.code


@pytest.mark.parametrize("mode, needs", [("predcls", "boxes and classes"), ("sgcls", "boxes")])
def test_gt_box_modes_without_boxes_name_the_option(setup, tmp_path, monkeypatch, mode, needs):
    _no_model_work(setup, monkeypatch)
    with pytest.raises(SystemExit) as err:
        run_demo(setup, tmp_path, mode)
    message = _one_line_error(err)
    assert message.startswith(f"--boxes is required in mode {mode}") and needs in message


def test_predcls_without_boxes_exits_without_traceback(tmp_path):
    args = ["demo/demo.py", "--config-file", CONFIG.format("predcls"), "--input", str(tmp_path)]
    command = [sys.executable, *args, "--output", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("--boxes is required in mode predcls")


def test_images_missing_from_boxes_are_all_named_before_any_model_work(
    setup, tmp_path, monkeypatch
):
    folder = tmp_path / "in"
    folder.mkdir()
    names = ["a.jpg", "b.jpg", "c.png"]
    for name in names:
        (folder / name).write_bytes(setup["image"].read_bytes())
    table = tmp_path / "boxes.json"
    table.write_text(json.dumps({"b.jpg": [GOOD]}))
    _no_model_work(setup, monkeypatch)
    args = ["--config-file", CONFIG.format("predcls"), "--input", str(folder)]
    args += ["--output", str(tmp_path / "out"), "--boxes", str(table)]
    with pytest.raises(SystemExit) as err:
        setup["demo"].main([*args, *SMALL, "MODEL.WEIGHTS", setup["weights"]])
    message = _one_line_error(err)
    assert f"--boxes {table}: no entry for 2 of the 3 input images: 'a.jpg', 'c.png'" in message
    assert not (tmp_path / "out").exists()
