"""tools/ablate.py with segmentation-grounded models: the joint detector, the grounded world
file and the detector each model starts from (dry run, no training)."""

import pytest
import yaml

from tools import ablate


def _config(out, name):
    return yaml.safe_load((out / "runs" / name / "seed1" / "config.yaml").read_text())


def test_grounded_models_use_the_joint_detector_and_the_grounded_world(tmp_path, capsys):
    argv = ["--world", "synthetic_crowded", "--models", "motifs", "motifs_grounded"]
    argv += ["unrefined=motifs_grounded:MODEL.SGG.GROUNDING.USE_REFINED_MASKS=False"]
    argv += ["--modes", "predcls", "--seeds", "1", "--out", str(tmp_path), "--dry-run"]
    assert ablate.main(argv) == 0
    printed = capsys.readouterr().out
    joint_cfg = yaml.safe_load((tmp_path / "joint_detector" / "config.yaml").read_text())
    assert joint_cfg["MODEL"]["META_ARCHITECTURE"] == "JointRCNN"
    assert joint_cfg["DATASETS"]["AUX_TRAIN"] == ["synthetic_crowded_masks_train"]
    assert joint_cfg["MODEL"]["ROI_HEADS"]["NUM_CLASSES"] == 20
    assert str(tmp_path / "joint_detector" / "config.yaml") in printed
    plain, grounded, unrefined = (
        _config(tmp_path, n) for n in ("motifs", "motifs_grounded", "unrefined")
    )
    assert plain["MODEL"]["SGG"]["DETECTOR_WEIGHTS"] == str(
        tmp_path / "detector" / "model_final.pth"
    )
    for cfg in (grounded, unrefined):
        sgg = cfg["MODEL"]["SGG"]
        assert sgg["DETECTOR_WEIGHTS"] == str(tmp_path / "joint_detector" / "model_final.pth")
        assert sgg["GROUNDING"]["WORD_VECTORS"].startswith("datasets/synthetic_crowded/")
        assert cfg["DATASETS"]["AUX_TRAIN"] == ["synthetic_crowded_masks_train"]
        assert cfg["DATASETS"]["TRAIN"] == ["synthetic_crowded_train"]
        assert sgg["NUM_PREDICATES"] == 16
    assert grounded["MODEL"]["SGG"]["GROUNDING"]["USE_REFINED_MASKS"] is True
    assert unrefined["MODEL"]["SGG"]["GROUNDING"]["USE_REFINED_MASKS"] is False


def test_plain_models_can_share_the_joint_detector(tmp_path, capsys):
    argv = ["--models", "motifs", "--modes", "predcls", "--seeds", "1", "--out", str(tmp_path)]
    argv += ["--dry-run", "--plain-on-joint-detector"]
    assert ablate.main(argv) == 0
    sgg = _config(tmp_path, "motifs")["MODEL"]["SGG"]
    assert sgg["DETECTOR_WEIGHTS"] == str(tmp_path / "joint_detector" / "model_final.pth")
    assert "mask_rcnn_R18_FPN_joint_detector" not in str(sgg)
    assert (tmp_path / "joint_detector" / "config.yaml").is_file()
    assert not (tmp_path / "detector").exists()  # the plain detector is not trained


def test_one_study_runs_a_plain_model_on_both_detectors(tmp_path, capsys):
    # the paper's Table 1 (plain detector + plain model vs joint detector + grounded model)
    # and Table 4 (both on the joint detector) from one study: an alias on the joint detector
    argv = ["--world", "synthetic_crowded", "--models", "motifs", "motifs_joint=motifs"]
    argv += ["motifs_grounded", "--on-joint-detector", "motifs_joint", "--modes", "predcls"]
    argv += ["--seeds", "1", "--out", str(tmp_path), "--dry-run"]
    assert ablate.main(argv) == 0
    plain, joint, grounded = (
        _config(tmp_path, n) for n in ("motifs", "motifs_joint", "motifs_grounded")
    )
    detector = str(tmp_path / "detector" / "model_final.pth")
    joint_weights = str(tmp_path / "joint_detector" / "model_final.pth")
    assert plain["MODEL"]["SGG"]["DETECTOR_WEIGHTS"] == detector
    assert joint["MODEL"]["SGG"]["DETECTOR_WEIGHTS"] == joint_weights
    assert grounded["MODEL"]["SGG"]["DETECTOR_WEIGHTS"] == joint_weights
    # the alias is the plain model's config in every other key
    for cfg in (plain, joint):
        cfg["MODEL"]["SGG"].pop("DETECTOR_WEIGHTS")
        cfg.pop("OUTPUT_DIR")
    assert plain == joint and "GROUNDING" not in str(joint.get("DATASETS"))
    assert not joint["MODEL"]["SGG"]["GROUNDING"]["ENABLED"]


def test_on_joint_detector_names_a_model_of_the_study(tmp_path):
    argv = ["--models", "motifs", "--on-joint-detector", "motfs", "--modes", "predcls"]
    argv += ["--seeds", "1", "--out", str(tmp_path), "--dry-run"]
    with pytest.raises(
        SystemExit, match=r"--on-joint-detector motfs: not in --models \['motifs'\]"
    ):
        ablate.main(argv)
