"""A user's own DATASETS.SGG.JSON dataset in the engine: the detector config's evaluator
scores it (no ``iscrowd`` crash, ids 5/9/12 mapped), and ``train_net.py`` refuses bad
images and wrong class counts before any model is built."""

import json

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from engine_support import CPU, DETECTOR, REPO, failed, run_script
from own_data import write_own_dataset
from own_data_support import perfect_predictions
from PIL import Image

from sgg_d2.config import load_config
from sgg_d2.engine import SceneGraphTrainer


def own_opts(paths, prefix, num_classes=3):
    """Overrides that register the own dataset as ``<prefix>_train`` / ``<prefix>_test``."""
    entries = [[f"{prefix}_{s}", str(paths[s]), str(paths["images"])] for s in ("train", "test")]
    return [
        "DATASETS.SGG.JSON", json.dumps(entries),
        "DATASETS.TRAIN", f'("{prefix}_train",)', "DATASETS.TEST", f'("{prefix}_test",)',
        "MODEL.ROI_HEADS.NUM_CLASSES", str(num_classes),
    ]  # fmt: skip


@pytest.fixture
def own_paths(tmp_path):
    return write_own_dataset(tmp_path / "my")


def test_detector_evaluation_scores_perfect_boxes_100(own_paths, tmp_path):
    cfg = load_config(str(REPO / DETECTOR), [*own_opts(own_paths, "evalown"), *CPU])
    try:
        evaluator = SceneGraphTrainer.build_evaluator(cfg, "evalown_test", str(tmp_path / "ev"))
        evaluator.reset()
        evaluator.process(*perfect_predictions(DatasetCatalog.get("evalown_test")))
        assert evaluator.evaluate()["bbox"]["AP"] == pytest.approx(100.0)
    finally:
        for name in ("evalown_train", "evalown_test"):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def run_train_net(tmp_path, *args):
    out = ["OUTPUT_DIR", str(tmp_path / "out")]
    cmd = [str(REPO / "train_net.py"), "--config-file", str(REPO / DETECTOR), *args, *CPU, *out]
    return run_script(cmd, tmp_path / "no_datasets", one_thread=True)


def test_bad_images_fail_before_the_model_is_built(own_paths, tmp_path):
    (own_paths["images"] / "102.png").unlink()
    Image.new("RGB", (50, 40)).save(own_paths["images"] / "103.png")
    proc = run_train_net(tmp_path, *own_opts(own_paths, "mine"))
    message = failed(proc)
    assert "DATASETS.TRAIN: 2 of 8 checked images cannot be used" in message
    assert f"{own_paths['images'] / '102.png'} (image_id 102): image file not found" in message
    assert "the annotations say 96x80 (width x height) but the file is 50x40" in message
    log = proc.stdout + proc.stderr
    assert "Model:" not in log and "Starting training" not in log


def test_eval_only_class_count_fails_before_the_model_is_built(own_paths, tmp_path):
    opts = own_opts(own_paths, "mine", num_classes=11)
    proc = run_train_net(tmp_path, "--eval-only", *opts, "MODEL.WEIGHTS", "")
    message = failed(proc)
    assert "MODEL.ROI_HEADS.NUM_CLASSES is 11" in message
    assert "DATASETS.TEST dataset 'mine_test' has 3 classes" in message
    assert "Model:" not in proc.stdout + proc.stderr
