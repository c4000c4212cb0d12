"""demo/demo.py and SceneGraphPredictor on synthetic images (untrained tiny model)."""

import json

import numpy as np
from engine_support import MOTIFS, NARROW, run_script, succeeded

SMALL = [*NARROW, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.DETECTIONS_PER_IMAGE", "5"]


def run_demo(world, mode, inputs, out, *extra):
    """demo.py on ``inputs`` (an image folder), random weights, tiny widths."""
    args = ["--config-file", MOTIFS.format(mode), "--input", str(inputs), "--output", str(out)]
    succeeded(run_script(["demo/demo.py", *args, *extra, "--random-weights", *SMALL], world))


def test_sgdet_demo_writes_json_and_png(world, tmp_path):
    images = sorted((world / "synthetic" / "images").iterdir())
    run_demo(world, "sgdet", world / "synthetic" / "images", tmp_path)
    for image in images:
        graph = json.loads((tmp_path / (image.stem + ".json")).read_text())
        assert graph["objects"] and graph["relations"]
        n = len(graph["objects"])
        assert all(0 <= r["subject"] < n and 0 <= r["object"] < n for r in graph["relations"])
        scores = [r["score"] for r in graph["relations"]]
        assert scores == sorted(scores, reverse=True)
        png = tmp_path / (image.stem + ".png")
        assert png.stat().st_size > 10_000
        from PIL import Image

        assert np.asarray(Image.open(png)).std() > 10  # not a blank picture


def test_predcls_demo_uses_the_given_boxes(world, tmp_path):
    images = sorted((world / "synthetic" / "images").iterdir())
    boxes = {
        images[0].name: [
            {"box": [10, 10, 60, 60], "class": "ball"},
            {"box": [70, 20, 120, 90], "class": "ring"},
            {"box": [30, 80, 90, 150], "class": "star"},
        ]
    }
    table = tmp_path / "boxes.json"
    table.write_text(json.dumps(boxes))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / images[0].name).write_bytes(images[0].read_bytes())
    run_demo(world, "predcls", tmp_path / "in", tmp_path / "out", "--boxes", str(table))
    graph = json.loads((tmp_path / "out" / (images[0].stem + ".json")).read_text())
    assert [o["class"] for o in graph["objects"]] == ["ball", "ring", "star"]
    assert [o["box"] for o in graph["objects"]] == [b["box"] for b in boxes[images[0].name]]
    assert len(graph["relations"]) == 6 and all(o["score"] == 1.0 for o in graph["objects"])
