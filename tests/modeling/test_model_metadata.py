"""A trained SceneGraphRCNN carries its class/predicate names and frequency statistics."""

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

NUM_CLASSES, NUM_PREDICATES = 5, 4  # tests/modeling/conftest.py


def test_metadata_survives_a_checkpoint_without_the_dataset(make_cfg, make_input, tmp_path):
    cfg = make_cfg("MotifsContext", "sgcls")
    model = build_model(cfg)
    meta = model.sgg_metadata()
    assert meta["thing_classes"] == [f"c{i}" for i in range(NUM_CLASSES)]
    assert meta["predicate_classes"] == [f"p{i}" for i in range(NUM_PREDICATES)]
    freq = meta["freq_tensor"]
    assert freq.shape == (NUM_CLASSES, NUM_CLASSES, NUM_PREDICATES + 1) and freq.sum() > 0
    with torch.no_grad():  # a "trained" frequency bias the new model must not recompute
        model.roi_heads.relation_predictor.freq_bias.table.weight.add_(1.5)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model")

    cfg2 = make_cfg("MotifsContext", "sgcls")
    cfg2.DATASETS.TRAIN = ("no_such_dataset_train",)  # nothing registered under this name
    fresh = build_model(cfg2)
    assert fresh.sgg_metadata() is None
    with pytest.raises(RuntimeError, match="built without its training statistics"):
        fresh.train()([make_input(3)])
    DetectionCheckpointer(fresh).load(str(tmp_path / "model.pth"))
    loaded = fresh.sgg_metadata()
    assert loaded["thing_classes"] == meta["thing_classes"]
    assert loaded["predicate_classes"] == meta["predicate_classes"]
    np.testing.assert_array_equal(loaded["freq_tensor"], freq)
    torch.testing.assert_close(
        fresh.roi_heads.relation_predictor.freq_bias.table.weight,
        model.roi_heads.relation_predictor.freq_bias.table.weight,
    )


def test_names_too_long_or_miscounted_are_refused():
    from sgg_d2.modeling.meta_arch import NAME_BYTES, _decode_names, _encode_names

    table = _encode_names(["ball", "ñandú"], 2)
    assert table.shape == (2, NAME_BYTES) and _decode_names(table) == ["ball", "ñandú"]
    with pytest.raises(ValueError, match="longer than"):
        _encode_names(["x" * (NAME_BYTES + 1)], 1)
    with pytest.raises(ValueError, match="expected 3 names, got 2"):
        _encode_names(["a", "b"], 3)
