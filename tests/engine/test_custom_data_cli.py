"""Custom data from the command line (DATASETS.SGG.JSON): train, evaluate and run the demo
on a tiny world, and inference from the weights alone with no dataset registered."""

import json
from pathlib import Path

import pytest
from engine_support import CPU, MOTIFS, NARROW, run_script, schedule, succeeded

from sgg_d2.data.synthetic import THING_CLASSES

CONFIG = MOTIFS.format("sgcls")
SMALL = [*CPU, *NARROW, "MODEL.SGG.DETECTOR_WEIGHTS", ""]


def run(args, datasets_root, module=None):
    return run_script(args, datasets_root, module=module, one_thread=True)


@pytest.fixture(scope="module")
def setup(world, tmp_path_factory):
    """The tiny world used as custom data, an empty builtin root, and a trained model."""
    js, images = world / "synthetic" / "json", str(world / "synthetic" / "images")
    custom = json.dumps(
        [
            ["mine_train", str(js / "scene_graphs_train.json"), images],
            ["mine_test", str(js / "scene_graphs_test.json"), images],
        ]
    )
    empty = tmp_path_factory.mktemp("empty_datasets")
    out = tmp_path_factory.mktemp("train")
    proc = run(
        [
            "train_net.py",
            "--config-file",
            CONFIG,
            *SMALL,
            "DATASETS.SGG.JSON",
            custom,
            "DATASETS.TRAIN",
            '("mine_train",)',
            "DATASETS.TEST",
            '("mine_test",)',
            *schedule(4, 1),
            "SEED",
            "0",
            "OUTPUT_DIR",
            str(out),
        ],
        empty,
    )
    succeeded(proc)
    return {"json": js, "custom": custom, "empty": empty, "out": out, "images": images}


def test_training_evaluated_on_the_custom_test_split(setup):
    pred = setup["out"] / "inference" / "mine_test" / "scene_graph_predictions.pth"
    assert pred.is_file()
    js = setup["json"]
    args = ["--dataset", "mine_test", "--predictions", str(pred)]
    register = []
    for split in ("train", "test"):  # zsR@K compares with the training split
        register += ["--register", f"mine_{split}", str(js / f"scene_graphs_{split}.json")]
        register.append(setup["images"])
    proc = run([*args, *register], setup["empty"], module="sgg_d2.evaluation")
    succeeded(proc)
    assert "R@50" in json.loads(proc.stdout)["sgg"]
    # without registering it: an error naming the dataset and the builtin root
    proc = run(args, setup["empty"], module="sgg_d2.evaluation")
    assert proc.returncode != 0
    assert "'mine_test' is not registered" in proc.stderr and str(setup["empty"]) in proc.stderr


def test_demo_from_config_and_weights_only(setup, tmp_path):
    """Fresh process, $SGG_DATASETS empty, no DATASETS.SGG.JSON: names come from weights."""
    image = sorted(Path(setup["images"]).iterdir())[0]
    proc = run(
        [
            "demo/demo.py",
            "--config-file",
            CONFIG,
            "--input",
            str(image),
            "--output",
            str(tmp_path),
            "--export",
            "graphml",
            *SMALL,
            "MODEL.SGG.MODE",
            "sgdet",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            "0.0",
            "MODEL.WEIGHTS",
            str(setup["out"] / "model_final.pth"),
        ],
        setup["empty"],
    )
    succeeded(proc)
    graph = json.loads((tmp_path / (image.stem + ".json")).read_text())
    assert graph["objects"] and {o["class"] for o in graph["objects"]} <= set(THING_CLASSES)
    assert graph["model"]["mode"] == "sgdet" and "XYXY" in graph["format"]["box_mode"]
    assert (tmp_path / (image.stem + ".graphml")).is_file()


def test_missing_training_dataset_names_it_and_the_root(setup):
    proc = run(
        ["train_net.py", "--config-file", CONFIG, *SMALL, "DATASETS.TRAIN", '("nope_train",)'],
        setup["empty"],
    )
    assert proc.returncode != 0
    assert "DATASETS.TRAIN: dataset 'nope_train' is not registered" in proc.stderr
    assert str(setup["empty"]) in proc.stderr and "DATASETS.SGG.JSON" in proc.stderr


def test_bad_json_entry_names_the_key(setup):
    proc = run(
        ["train_net.py", "--config-file", CONFIG, *SMALL, "DATASETS.SGG.JSON", '[["a", "b"]]'],
        setup["empty"],
    )
    assert proc.returncode != 0
    assert "DATASETS.SGG.JSON[0]" in proc.stderr and "[name, annotation_file, image_root]" in (
        proc.stderr
    )
