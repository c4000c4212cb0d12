"""Weights that do not fit the model are refused (predictor, --eval-only, --resume), and
inference needs only a config and weights: a saved config whose dataset files are gone
gives one notice and the same scene graphs."""

import json

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data.detection_utils import read_image
from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model
from engine_support import CPU, MOTIFS, NARROW, REPO
from own_data_support import logged
from tiny_configs import tiny_relation_cfg

from sgg_d2.config import load_config
from sgg_d2.data.synthetic import THING_CLASSES
from sgg_d2.engine import (
    SceneGraphPredictor,
    StrictCheckpointer,
    WeightsMismatchError,
    load_inference_config,
    main,
)

SGCLS = str(REPO / MOTIFS.format("sgcls"))  # 11 classes, 11 predicates
# the count hint of a 3-class checkpoint under an 11-class config
THREE_VS_ELEVEN = (
    "the config's MODEL.ROI_HEADS.NUM_CLASSES is 11, the checkpoint was trained with 3"
)
# a model built without its training statistics (placeholders; the weights carry them)
UNREGISTERED = "tests_strict_unregistered"
UNREGISTERED_TRAIN = ["DATASETS.TRAIN", f'("{UNREGISTERED}",)']
BOXES = [[10, 10, 60, 60], [70, 20, 120, 90], [30, 80, 90, 150]]


def tiny(num_classes):
    # an unregistered training set and no frequency bias: no dataset statistics needed
    return tiny_relation_cfg(num_classes, 4, (UNREGISTERED,), use_bias=False)


def save(model, folder, name="model_final"):
    DetectionCheckpointer(model, save_dir=str(folder)).save(name)
    return str(folder / f"{name}.pth")


def test_predictor_refuses_another_class_count(tmp_path):
    weights = save(build_model(tiny(3)), tmp_path)
    cfg = tiny(11)
    cfg.MODEL.WEIGHTS = weights
    with pytest.raises(WeightsMismatchError) as err:
        SceneGraphPredictor(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"MODEL.WEIGHTS: {weights}: parameter ")
    assert "roi_heads.box_predictor.cls_score.weight has shape (4, 64) in the checkpoint" in message
    assert "but (12, 64) in the model" in message
    assert THREE_VS_ELEVEN in message


def without(state, prefix):
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda s: without(s, "roi_heads.context"),  # e.g. a detector's checkpoint
            r"the checkpoint lacks \d+ of the model's \d+ entries, e.g. roi_heads.context",
        ),
        (
            lambda s: {**s, "roi_heads.refiner.weight": torch.zeros(2)},
            r"the checkpoint holds entries the model does not have \(1: roi_heads.refiner.weight\)",
        ),
    ],
    ids=["missing", "unused"],
)
def test_predictor_refuses_incomplete_or_foreign_weights(tmp_path, edit, expected):
    cfg = tiny(5)
    path = tmp_path / "model.pth"
    torch.save({"model": edit(build_model(cfg).state_dict())}, path)
    cfg.MODEL.WEIGHTS = str(path)
    with pytest.raises(WeightsMismatchError, match=f"MODEL.WEIGHTS: {path}: {expected}"):
        SceneGraphPredictor(cfg)


def test_training_initialisation_may_be_partial_but_not_misshapen(tmp_path):
    """MODEL.WEIGHTS for a first training (an ImageNet backbone, another model) fills what
    it has; a resume must be complete; a shape mismatch is refused in every load."""
    model = build_model(tiny(5))
    backbone = {k: v for k, v in build_model(tiny(5)).state_dict().items() if "backbone" in k}
    path = tmp_path / "backbone.pth"
    torch.save({"model": backbone}, path)
    StrictCheckpointer(model).resume_or_load(str(path), resume=False)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in backbone.items())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    resuming = StrictCheckpointer(model, str(tmp_path), optimizer=optimizer)
    with pytest.raises(WeightsMismatchError, match=f"resume checkpoint: {path}: .* lacks"):
        resuming.load(str(path))
    key = "backbone.fpn_output2.weight"
    torch.save({"model": {key: torch.zeros(1, 1, 1, 1)}}, path)
    with pytest.raises(WeightsMismatchError, match=f"MODEL.WEIGHTS: {path}: parameter {key}"):
        StrictCheckpointer(model).resume_or_load(str(path), resume=False)


@pytest.fixture(scope="module")
def three_class_model(tmp_path_factory):
    """A checkpoint of the synthetic MOTIFS config (narrow) trained with 3 classes."""
    opts = [*CPU, *NARROW, "MODEL.ROI_HEADS.NUM_CLASSES", "3", *UNREGISTERED_TRAIN]
    folder = tmp_path_factory.mktemp("three_classes")
    return save(build_model(load_config(SGCLS, opts)), folder, "model_0000003")


def world_entries(world):
    root = world / "synthetic"
    images = str(root / "images")
    return json.dumps(
        [
            [f"strict_{split}", str(root / f"json/scene_graphs_{split}.json"), images]
            for split in ("train", "test")
        ]
    )


def test_eval_only_refuses_another_class_count(world, three_class_model, tmp_path):
    opts = [*CPU, *NARROW, "DATASETS.SGG.JSON", world_entries(world), *UNREGISTERED_TRAIN]
    opts += ["DATASETS.TEST", '("strict_test",)', "OUTPUT_DIR", str(tmp_path)]
    args = ["--config-file", SGCLS, "--eval-only", *opts, "MODEL.WEIGHTS", three_class_model]
    with pytest.raises(WeightsMismatchError) as err:
        main(default_argument_parser().parse_args(args))
    message = str(err.value)
    assert f"MODEL.WEIGHTS: {three_class_model}: parameter roi_heads.box_predictor" in message
    assert "(4, 256) in the checkpoint but (12, 256) in the model" in message
    assert THREE_VS_ELEVEN in message
    assert not (tmp_path / "inference").exists()  # nothing was evaluated


def test_resume_refuses_another_class_count(world, three_class_model, tmp_path):
    (tmp_path / "model_0000003.pth").write_bytes(open(three_class_model, "rb").read())
    (tmp_path / "last_checkpoint").write_text("model_0000003.pth")
    opts = [*CPU, *NARROW, "DATASETS.SGG.JSON", world_entries(world)]
    opts += ["DATASETS.TRAIN", '("strict_train",)', "DATASETS.TEST", '("strict_test",)']
    opts += ["MODEL.SGG.DETECTOR_WEIGHTS", "", "SOLVER.MAX_ITER", "6", "OUTPUT_DIR", str(tmp_path)]
    args = ["--config-file", SGCLS, "--resume", *opts]
    with pytest.raises(WeightsMismatchError) as err:
        main(default_argument_parser().parse_args(args))
    message = str(err.value)
    resumed = tmp_path / "model_0000003.pth"
    assert f"resume checkpoint: {resumed}: parameter roi_heads.box_predictor" in message
    assert "(4, 256) in the checkpoint but (12, 256) in the model" in message
    assert THREE_VS_ELEVEN in message


def test_saved_config_without_its_dataset_files(world, tmp_path, monkeypatch):
    """A run's config.yaml with relative DATASETS.SGG.JSON paths, read from another folder
    with an empty $SGG_DATASETS: one notice naming the entries, the same scene graphs as
    from the run's folder, where the files exist."""
    root = world / "synthetic"
    home, elsewhere, empty = tmp_path / "home", tmp_path / "elsewhere", tmp_path / "empty"
    for folder in (home / "my", elsewhere, empty):
        folder.mkdir(parents=True)
    (home / "my" / "train.json").symlink_to(root / "json" / "scene_graphs_train.json")
    (home / "my" / "images").symlink_to(root / "images")
    source = [
        ["strict_src_train", str(root / "json/scene_graphs_train.json"), str(root / "images")]
    ]
    opts = [*CPU, *NARROW, "MODEL.SGG.DETECTOR_WEIGHTS", "", "OUTPUT_DIR", str(tmp_path / "run")]
    cfg = load_config(
        SGCLS,
        [*opts, "DATASETS.SGG.JSON", json.dumps(source), "DATASETS.TRAIN", '("strict_src_train",)'],
    )
    torch.manual_seed(0)
    weights = save(build_model(cfg), tmp_path)  # carries names and statistics
    saved = cfg.clone()
    saved.defrost()
    saved.DATASETS.SGG.JSON = [["strict_rel_train", "my/train.json", "my/images"]]
    saved.DATASETS.TRAIN = saved.DATASETS.TEST = ("strict_rel_train",)
    (home / "config.yaml").write_text(saved.dump())
    image = read_image(str(sorted((root / "images").iterdir())[0]), format="BGR")

    def scene_graph(folder):
        monkeypatch.chdir(folder)
        with logged("sgg_d2.engine.predictor") as messages:
            run_cfg = load_inference_config(str(home / "config.yaml"), ["MODEL.WEIGHTS", weights])
            predictor = SceneGraphPredictor(run_cfg)
        return predictor(image, BOXES), messages

    monkeypatch.setenv("SGG_DATASETS", str(empty))
    away, notices = scene_graph(elsewhere)
    (notice,) = notices
    assert "DATASETS.SGG.JSON strict_rel_train (my/train.json not found)" in notice
    assert "DATASETS.TRAIN strict_rel_train not registered" in notice
    at_home, notices = scene_graph(home)  # the files exist: registered, no notice
    assert notices == []
    assert away == at_home
    assert {o["class"] for o in away["objects"]} <= set(THING_CLASSES)  # from the weights
    assert away["relations"] and all(r["predicate"] for r in away["relations"])
