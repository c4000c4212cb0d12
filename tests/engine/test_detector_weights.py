"""MODEL.SGG.DETECTOR_WEIGHTS: a detector checkpoint that does not fit the relation model,
or a file that is no checkpoint, is an error naming the key and the file; URLs load.
An unknown MODEL.SGG.CONTEXT lists the registered names."""

import os

import pytest
import torch
from detectron2.modeling import build_model
from own_data_support import logged
from tiny_configs import tiny_relation_cfg

import sgg_d2.modeling  # noqa: F401  (registers the models)
from sgg_d2.engine.checkpoint import DetectorWeightsError
from sgg_d2.engine.trainer import load_detector_weights

KEY = "MODEL.SGG.DETECTOR_WEIGHTS"


def tiny_model(num_classes=5, context="MotifsContext"):
    # an unregistered training set and no frequency bias: no dataset statistics needed
    train = ("tests_detector_weights_unregistered",)
    return build_model(tiny_relation_cfg(num_classes, 4, train, context, use_bias=False))


def detector_state(model):
    """What a trained detector's checkpoint holds: the detector modules' entries only."""
    ids = {id(m) for m in model.detector_modules()}
    prefixes = tuple(f"{n}." for n, m in model.named_modules() if id(m) in ids)
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith(prefixes)}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    source, target = tiny_model(), tiny_model()
    return source, target


@pytest.fixture(scope="module")
def detector_file(models, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "model_final.pth"
    torch.save({"model": detector_state(models[0]), "iteration": 99}, path)
    return path


def test_detector_weights_load_from_file_url(models, detector_file):
    source, target = models
    load_detector_weights(target, f"file://{detector_file}")
    got, want = target.state_dict(), detector_state(source)
    assert all(torch.equal(got[k], v) for k, v in want.items())


def test_partial_load_is_summarised_in_one_line(models, detector_file):
    with logged("fvcore.common.checkpoint") as detectron2, logged("sgg_d2.engine") as ours:
        load_detector_weights(models[1], str(detector_file))
    summaries = [m for m in ours if "left at their initialisation" in m]
    assert len(summaries) == 1, ours
    detector, total = len(detector_state(models[0])), len(models[1].state_dict())
    assert f"loaded {detector} of the model's {total} entries" in summaries[0]
    assert f"{total - detector} relation-stage entries left" in summaries[0]
    assert (
        "roi_heads.context (" in summaries[0] and "roi_heads.relation_predictor (" in summaries[0]
    )
    # no per-parameter lists from Detectron2's checkpointer
    assert not [m for m in detectron2 if "not found in the checkpoint" in m], detectron2


def test_missing_file_names_key(models, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{KEY}: no such file .*nothing.pth"):
        load_detector_weights(models[1], str(tmp_path / "nothing.pth"))


def test_keys_matching_nothing_is_an_error(models, tmp_path):
    state = {f"other_model.{k}": v for k, v in detector_state(models[0]).items()}
    path = tmp_path / "other.pth"
    torch.save({"model": state}, path)
    num = len(state)
    with pytest.raises(DetectorWeightsError) as err:
        load_detector_weights(models[1], str(path))
    message = str(err.value)
    assert f"{KEY}: {path}: only 0 of the detector's {num} parameters" in message
    assert "unmatched e.g. backbone." in message
    assert "other_model.backbone." in message  # what the checkpoint has instead


def test_min_match_fraction_is_configurable(models, tmp_path):
    state = detector_state(models[0])
    kept = dict(list(state.items())[: int(0.7 * len(state))])
    path = tmp_path / "partial.pth"
    torch.save({"model": kept}, path)
    with pytest.raises(DetectorWeightsError, match=f"only {len(kept)} of the detector's"):
        load_detector_weights(models[1], str(path), min_match=0.9)
    load_detector_weights(models[1], str(path), min_match=0.5)


def test_class_count_mismatch_names_key_and_shapes(tmp_path):
    path = tmp_path / "eleven_classes.pth"
    torch.save({"model": detector_state(tiny_model(num_classes=11))}, path)
    with pytest.raises(DetectorWeightsError) as err:
        load_detector_weights(tiny_model(num_classes=5), str(path))
    message = str(err.value)
    assert (
        "roi_heads.box_predictor.cls_score.weight has shape (12, 64) in the checkpoint" in message
    )
    assert "but (6, 64) in the model" in message
    assert "MODEL.ROI_HEADS.NUM_CLASSES" in message


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not weights\n", os.urandom(4096)],
    ids=["text", "random-bytes"],
)
def test_unreadable_file_names_file_and_key(models, tmp_path, content):
    path = tmp_path / "model_final.pth"
    path.write_bytes(content)
    with pytest.raises(DetectorWeightsError) as err:
        load_detector_weights(models[1], str(path))
    message = str(err.value)
    assert message.startswith(f"{KEY}: {path} is not a readable PyTorch checkpoint")
    assert "weights_only" not in message  # torch's advice would mislead here


def test_bare_tensor_file_names_file_and_key(models, tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(DetectorWeightsError, match=f"{KEY}: .*tensor.pth holds a Tensor, not a"):
        load_detector_weights(models[1], str(path))


def test_unknown_context_lists_registered_names():
    with pytest.raises(KeyError) as err:
        tiny_model(context="MotifContext")
    message = str(err.value)
    assert "MODEL.SGG.CONTEXT = 'MotifContext' is not a registered context model" in message
    assert "IMPContext" in message and "MotifsContext" in message and "VCTreeContext" in message
