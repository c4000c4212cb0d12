"""A new user's own dataset from the command line, end to end, as the README's "Your own
data" section says: a JSON dataset unlike the synthetic world (3 classes with ids 5/9/12,
4 predicates), registered with ``DATASETS.SGG.JSON`` by relative paths, the detector
trained and evaluated, a relation model trained on it, the evaluation CLI, the demo from
another working directory with no dataset anywhere, and the weights refused under a config
of another class count."""

import json
import os
import subprocess
import sys

import pytest
from engine_support import CPU, DETECTOR, MOTIFS, NARROW, REPO, failed, schedule, succeeded
from own_data import CLASSES, PREDICATES, write_own_dataset

ENTRIES = json.dumps(
    [["my_train", "my/train.json", "my/images"], ["my_test", "my/test.json", "my/images"]]
)
OWN = [
    "DATASETS.SGG.JSON",
    ENTRIES,
    "DATASETS.TRAIN",
    '("my_train",)',
    "DATASETS.TEST",
    '("my_test",)',
    "MODEL.ROI_HEADS.NUM_CLASSES",
    str(len(CLASSES)),
]
RELATION = [*OWN, "MODEL.SGG.NUM_PREDICATES", str(len(PREDICATES)), *NARROW]


def run(args, cwd, datasets, module=None) -> subprocess.CompletedProcess:
    """``python [-m module] *args`` in ``cwd`` with ``$SGG_DATASETS`` = ``datasets``."""
    cmd = [sys.executable, *(["-m", module] if module else []), *args]
    env = dict(os.environ, SGG_DATASETS=str(datasets), OMP_NUM_THREADS="1")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def user_error(proc) -> str:
    """Asserts a failed run that printed a message, not a traceback; its stderr."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return proc.stderr


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """The user's folder (``my/`` holds the data), an empty datasets root, and the two
    trained stages (detector, MOTIFS SGCls) in ``det/`` and ``rel/``."""
    home = tmp_path_factory.mktemp("user")
    write_own_dataset(home / "my")
    empty = tmp_path_factory.mktemp("empty_datasets")
    train = [str(REPO / "train_net.py"), "--config-file"]
    det = run(
        [*train, str(REPO / DETECTOR), *CPU, *OWN, *schedule(6, 1), "OUTPUT_DIR", "det"],
        home,
        empty,
    )
    rel = run(
        [
            *train,
            str(REPO / MOTIFS.format("sgcls")),
            *CPU,
            *RELATION,
            "MODEL.SGG.DETECTOR_WEIGHTS",
            "det/model_final.pth",
            *schedule(4, 1),
            "SEED",
            "0",
            "OUTPUT_DIR",
            "rel",
        ],
        home,
        empty,
    ) if det.returncode == 0 else None  # fmt: skip
    return {"home": home, "empty": empty, "det": det, "rel": rel}


def test_detector_trains_and_its_final_evaluation_runs(user):
    out = succeeded(user["det"])
    assert (user["home"] / "det" / "model_final.pth").is_file()
    assert "Evaluation results for bbox" in out  # COCOEvaluator on my_test, no crash


def test_relation_model_trains_on_the_own_dataset(user):
    succeeded(user["rel"])
    metrics = user["home"] / "rel" / "inference" / "my_test" / "scene_graph_metrics.json"
    assert "R@50" in json.loads(metrics.read_text())["metrics"]


def test_evaluation_cli_prints_the_metrics_the_run_wrote(user):
    inference = user["home"] / "rel" / "inference" / "my_test"
    args = ["--config-file", "rel/config.yaml", "--dataset", "my_test"]
    proc = run(
        [*args, "--predictions", str(inference / "scene_graph_predictions.pth")],
        user["home"],
        user["empty"],
        module="sgg_d2.evaluation",
    )
    printed = json.loads(succeeded(proc) and proc.stdout)["sgg"]
    written = json.loads((inference / "scene_graph_metrics.json").read_text())["metrics"]
    assert printed == pytest.approx(written)


def demo(user, tmp_path, config, *opts):
    """The demo in a fresh folder (no ``my/`` there, no dataset root) on one image."""
    image = sorted((user["home"] / "my" / "images").iterdir())[0]
    args = [str(REPO / "demo" / "demo.py"), "--config-file", str(config)]
    args += ["--input", str(image), "--output", str(tmp_path / "out"), *CPU]
    args += ["MODEL.SGG.MODE", "sgdet", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    weights = str(user["home"] / "rel" / "model_final.pth")
    return image, run([*args, *opts, "MODEL.WEIGHTS", weights], tmp_path, user["empty"])


def test_demo_from_another_folder_with_no_dataset(user, tmp_path):
    image, proc = demo(user, tmp_path, user["home"] / "rel" / "config.yaml")
    log = succeeded(proc)
    assert "my/train.json" in log  # a notice: the dataset is not needed for inference
    graph = json.loads((tmp_path / "out" / f"{image.stem}.json").read_text())
    assert graph["objects"] and {o["class"] for o in graph["objects"]} <= set(CLASSES.values())
    assert {r["predicate"] for r in graph["relations"]} <= set(PREDICATES.values())


def test_weights_refused_under_a_config_of_another_class_count(user, tmp_path):
    stock = REPO / MOTIFS.format("sgcls")  # 11 classes, 11 predicates
    _, proc = demo(user, tmp_path, stock, *NARROW)
    message = user_error(proc)
    assert "cls_score" in message or "shape" in message, message[-2000:]
    assert str(len(CLASSES) + 1) in message and "12" in message


def test_stock_class_count_on_own_data_is_an_error_before_training(user):
    proc = run(
        [str(REPO / "train_net.py"), "--config-file", str(REPO / DETECTOR), *CPU,
         *OWN[:-2], "OUTPUT_DIR", "det_wrong"],
        user["home"],
        user["empty"],
    )  # fmt: skip
    message = failed(proc)
    assert "MODEL.ROI_HEADS.NUM_CLASSES" in message and "11" in message and "3" in message
    assert "Starting training" not in proc.stdout + proc.stderr


def test_missing_training_dataset_names_it_and_the_root(user):
    proc = run(
        [str(REPO / "train_net.py"), "--config-file", str(REPO / DETECTOR), *CPU,
         "DATASETS.TRAIN", '("nope_train",)'],
        user["home"],
        user["empty"],
    )  # fmt: skip
    message = failed(proc)
    assert "DATASETS.TRAIN: dataset 'nope_train' is not registered" in message
    assert str(user["empty"]) in message and "DATASETS.SGG.JSON" in message


def test_bad_json_entry_names_the_key(user):
    proc = run(
        [str(REPO / "train_net.py"), "--config-file", str(REPO / DETECTOR), *CPU,
         "DATASETS.SGG.JSON", '[["a", "b"]]'],
        user["home"],
        user["empty"],
    )  # fmt: skip
    message = failed(proc)
    assert "DATASETS.SGG.JSON[0]" in message and "[name, annotation_file, image_root]" in message
