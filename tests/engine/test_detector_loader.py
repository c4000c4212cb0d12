"""The plain detector's training batches (configs/synthetic/faster_rcnn_R18_FPN_detector.yaml):
sgg_d2's augmentations, and turned images batched by their turned orientation."""

from detectron2.data import DatasetCatalog
from engine_support import DETECTOR, REPO, vg_files

from sgg_d2.data import register_visual_genome
from sgg_d2.engine.launch import load_config
from sgg_d2.engine.trainer import SceneGraphTrainer

TRAIN = "tests_detector_loader_train"


def test_turned_images_are_batched_by_their_new_orientation(world):
    root = world / "synthetic"
    if TRAIN not in DatasetCatalog.list():
        register_visual_genome(TRAIN, *vg_files(root), "train", val_size=0)
    cfg = load_config(
        str(REPO / DETECTOR),
        ["DATASETS.TRAIN", f"('{TRAIN}',)", "DATALOADER.NUM_WORKERS", "0",
         "SOLVER.IMS_PER_BATCH", "2", "SEED", "3"],
    )  # fmt: skip
    assert cfg.INPUT.RANDOM_ROTATE_90 and cfg.INPUT.RANDOM_FLIP == "horizontal"
    loader = SceneGraphTrainer.build_train_loader(cfg)
    orientations = set()
    for _, batch in zip(range(12), loader):
        landscape = {x["image"].shape[2] > x["image"].shape[1] for x in batch}
        assert len(landscape) == 1, [tuple(x["image"].shape) for x in batch]
        orientations |= landscape
        for x in batch:  # the stored size is the turned image's (AugmentedShapeMapper)
            assert (x["height"], x["width"]) == tuple(x["image"].shape[1:])
    assert orientations == {True, False}
