"""Trainer wiring of segmentation grounding on a tiny synthetic world: the joint loader,
the auxiliary test loader, and COCO mask AP (not scene-graph metrics) on the mask data."""

import math
import os

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from engine_support import REPO, vg_files

from sgg_d2.data import register_visual_genome
from sgg_d2.data.joint_loader import JointLoader
from sgg_d2.engine.launch import load_config
from sgg_d2.engine.trainer import SceneGraphTrainer
from sgg_d2.evaluation.sg_evaluator import SceneGraphEvaluator

CONFIGS = REPO / "configs" / "synthetic"
SG_TRAIN, SG_VAL = "tests_grounding_sg_train", "tests_grounding_sg_val"
MASKS_TRAIN, MASKS_VAL = "tests_grounding_masks_train", "tests_grounding_masks_val"


@pytest.fixture(scope="module")
def synthetic(world):
    """The session's tiny world, its scene graphs and masks registered under test names."""
    root = world / "synthetic"
    if SG_TRAIN not in DatasetCatalog.list():
        for name, split in ((SG_TRAIN, "train"), (SG_VAL, "val")):
            register_visual_genome(name, *vg_files(root), split, val_size=2, train_split=SG_TRAIN)
        masks = root / "coco_masks"
        for name, split in ((MASKS_TRAIN, "train"), (MASKS_VAL, "val")):
            json_file = str(masks / "annotations" / f"instances_{split}.json")
            register_coco_instances(name, {}, json_file, str(masks / "images"))
    return root


def grounded_cfg(synthetic, tmp_path, *opts):
    """The synthetic grounded MOTIFS config on the tiny world, tiny widths."""
    return load_config(
        str(CONFIGS / "motifs_grounded_R18_FPN_sgcls.yaml"),
        [
            "MODEL.SGG.DETECTOR_WEIGHTS", "",
            "MODEL.SGG.GROUNDING.WORD_VECTORS", str(synthetic / "glove" / "synthetic.50d.txt"),
            "MODEL.SGG.UNION_DIM", "32", "MODEL.SGG.EMBED_DIM", "8",
            "MODEL.SGG.CONTEXT_HIDDEN_DIM", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
            "MODEL.ROI_MASK_HEAD.CONV_DIM", "8", "MODEL.SGG.GROUNDING.MASK_FEATURE_DIM", "8",
            "DATASETS.TRAIN", f"('{SG_TRAIN}',)", "DATASETS.AUX_TRAIN", f"('{MASKS_TRAIN}',)",
            "DATASETS.TEST", f"('{MASKS_VAL}',)", "DATALOADER.NUM_WORKERS", "0",
            "OUTPUT_DIR", str(tmp_path), *opts,
        ],
    )  # fmt: skip


def test_relation_training_mixes_auxiliary_images(synthetic, tmp_path):
    cfg = grounded_cfg(synthetic, tmp_path)
    loader = SceneGraphTrainer.build_train_loader(cfg).loader  # inside the resumable wrapper
    assert isinstance(loader, JointLoader)
    batch = next(iter(loader))  # IMS_PER_BATCH 5, AUX_FRACTION 0.2: 4 + 1
    assert [x["source"] for x in batch] == ["target"] * 4 + ["aux"]
    assert [x["dataset_name"] for x in batch] == [SG_TRAIN] * 4 + [MASKS_TRAIN]
    assert all("relations" in x for x in batch[:4]) and "relations" not in batch[4]
    assert batch[4]["instances"].has("gt_masks")
    plain = grounded_cfg(synthetic, tmp_path, "MODEL.SGG.GROUNDING.REFINE", "False")
    assert not isinstance(SceneGraphTrainer.build_train_loader(plain).loader, JointLoader)


def test_joint_detector_training_mixes_both_datasets(synthetic, tmp_path):
    cfg = load_config(
        str(CONFIGS / "mask_rcnn_R18_FPN_joint_detector.yaml"),
        ["DATASETS.TRAIN", f"('{SG_TRAIN}',)", "DATASETS.AUX_TRAIN", f"('{MASKS_TRAIN}',)",
         "DATASETS.AUX_FRACTION", "0.5", "DATALOADER.NUM_WORKERS", "0",
         "SOLVER.IMS_PER_BATCH", "4"],
    )  # fmt: skip
    batch = next(iter(SceneGraphTrainer.build_train_loader(cfg)))
    assert [x["source"] for x in batch] == ["target", "target", "aux", "aux"]
    sg_val = next(iter(SceneGraphTrainer.build_test_loader(cfg, SG_VAL)))[0]
    assert sg_val["source"] == "target" and "instances" not in sg_val


@pytest.mark.parametrize("mode,tasks", [("predcls", {"segm"}), ("sgdet", {"bbox", "segm"})])
def test_grounded_model_gives_mask_ap_on_the_auxiliary_data(synthetic, tmp_path, mode, tasks):
    cfg = grounded_cfg(synthetic, tmp_path, "MODEL.SGG.MODE", mode)
    torch.manual_seed(0)
    model = SceneGraphTrainer.build_model(cfg).eval()
    loader = SceneGraphTrainer.build_test_loader(cfg, MASKS_VAL)
    first = next(iter(loader))[0]
    assert first["source"] == "aux" and first["instances"].has("gt_masks")
    evaluator = SceneGraphTrainer.build_evaluator(cfg, MASKS_VAL)
    assert isinstance(evaluator, COCOEvaluator)
    results = inference_on_dataset(model, loader, evaluator)
    assert set(results) == tasks
    ap = results["segm"]["AP"]
    assert math.isfinite(ap) and 0.0 <= ap <= 100.0
    assert os.path.isfile(tmp_path / "inference" / MASKS_VAL / "coco_instances_results.json")


def test_scene_graph_data_keeps_the_scene_graph_evaluator(synthetic, tmp_path):
    cfg = grounded_cfg(synthetic, tmp_path)
    assert isinstance(SceneGraphTrainer.build_evaluator(cfg, SG_VAL), SceneGraphEvaluator)
