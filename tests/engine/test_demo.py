"""demo/demo.py and SceneGraphPredictor on synthetic images (untrained tiny model)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sgg_d2.data.synthetic import WorldConfig, generate_world

REPO = Path(__file__).resolve().parents[2]
CONFIG = "configs/synthetic/motifs_R18_FPN_{}.yaml"
SMALL = [
    "MODEL.SGG.UNION_DIM",
    "32",
    "MODEL.SGG.CONTEXT_HIDDEN_DIM",
    "16",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
    "TEST.DETECTIONS_PER_IMAGE",
    "5",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    config = WorldConfig(num_train=6, num_val=2, num_test=2, num_mask_train=2, num_mask_val=2)
    generate_world(str(root / "synthetic"), config, progress=False, log=lambda _: None)
    return root


def run_demo(world, mode, out, *extra):
    images = world / "synthetic" / "images"
    env = dict(os.environ, SGG_DATASETS=str(world))
    proc = subprocess.run(
        [
            sys.executable,
            "demo/demo.py",
            "--config-file",
            CONFIG.format(mode),
            "--input",
            str(images),
            "--output",
            str(out),
            *extra,
            "--random-weights",
            *SMALL,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return sorted(images.iterdir())


def test_sgdet_demo_writes_json_and_png(world, tmp_path):
    images = run_demo(world, "sgdet", tmp_path)
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
    env = dict(os.environ, SGG_DATASETS=str(world))
    proc = subprocess.run(
        [
            sys.executable,
            "demo/demo.py",
            "--config-file",
            CONFIG.format("predcls"),
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--boxes",
            str(table),
            "--random-weights",
            *SMALL,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    graph = json.loads((tmp_path / "out" / (images[0].stem + ".json")).read_text())
    assert [o["class"] for o in graph["objects"]] == ["ball", "ring", "star"]
    assert [o["box"] for o in graph["objects"]] == [b["box"] for b in boxes[images[0].name]]
    assert len(graph["relations"]) == 6 and all(o["score"] == 1.0 for o in graph["objects"])
