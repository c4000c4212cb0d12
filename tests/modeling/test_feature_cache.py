"""Frozen backbone maps cached per image (MODEL.SGG.FEATURE_CACHE_MB / FEATURE_CACHE_DIR)."""

import pytest
import torch
from detectron2.modeling import build_model

from sgg_d2.modeling.feature_cache import FrozenFeatureCache


def _model(make_cfg, mode="sgcls", memory_mb=0, directory=""):
    cfg = make_cfg("MotifsContext", mode)
    cfg.MODEL.SGG.FEATURE_CACHE_MB = memory_mb
    cfg.MODEL.SGG.FEATURE_CACHE_DIR = str(directory)
    torch.manual_seed(0)
    return build_model(cfg)


def _count_backbone_calls(model):
    calls = []
    model.backbone.register_forward_hook(lambda *_: calls.append(1))
    return calls


def _equal_outputs(a, b):
    for x, y in zip(a, b):
        ia, ib = x["instances"], y["instances"]
        assert torch.equal(ia.pred_boxes.tensor, ib.pred_boxes.tensor)
        assert torch.equal(ia.pred_classes, ib.pred_classes)
        assert torch.equal(x["relations"].predicate_scores, y["relations"].predicate_scores)


@pytest.mark.parametrize("mode", ["predcls", "sgdet"])
def test_inference_bit_identical_from_memory_and_disk(make_cfg, make_input, tmp_path, mode):
    plain = _model(make_cfg, mode).eval()
    cached = _model(make_cfg, mode, memory_mb=64, directory=tmp_path).eval()
    cached.load_state_dict(plain.state_dict())
    inputs = [make_input(4, seed=1), make_input(3, seed=2)]
    with torch.no_grad():
        reference = [plain([x])[0] for x in inputs]
        cold = [cached([x])[0] for x in inputs]  # computed, written to disk
        warm = [cached([x])[0] for x in inputs]  # from memory
        fresh = _model(make_cfg, mode, directory=tmp_path).eval()  # another process
        fresh.load_state_dict(plain.state_dict())
        calls = _count_backbone_calls(fresh)
        disk = [fresh([x])[0] for x in inputs]
    for out in (cold, warm, disk):
        _equal_outputs(reference, out)
    cache = cached.feature_cache
    assert (cache.misses, cache.hits, len(cache)) == (2, 2, 2)
    assert fresh.feature_cache.disk_hits == 2 and not calls, "maps must come from disk"


def test_training_batch_is_each_images_own_maps_zero_padded(make_cfg, make_input):
    model = _model(make_cfg, memory_mb=64).train()
    small = make_input(3, seed=1, size=(64, 96))
    large = make_input(4, seed=2, size=(96, 128))
    with torch.no_grad():
        own = model.backbone(model.preprocess_image([small]).tensor)
    calls = _count_backbone_calls(model)
    maps = model.feature_cache.backbone_features(model, [small, large])
    assert len(calls) == 2  # one image at a time
    for name, batch in maps.items():
        h, w = own[name].shape[-2:]
        assert batch.shape[0] == 2 and batch.shape[-2:] == maps[name][1].shape[-2:]
        assert torch.equal(batch[0, :, :h, :w], own[name][0])
        assert not batch[0, :, h:, :].any() and not batch[0, :, :, w:].any()
    losses = model([small, large])  # second visit: no backbone call, a real training step
    assert len(calls) == 2 and model.feature_cache.hits == 2
    sum(losses.values()).backward()


def test_full_memory_cache_is_counted_and_logged(make_cfg, make_input, caplog):
    model = _model(make_cfg, memory_mb=0.001).train()  # ~1 KB: nothing fits
    model.feature_cache.backbone_features(model, [make_input(3, seed=1), make_input(3, seed=2)])
    assert model.feature_cache.uncached == 2 and len(model.feature_cache) == 0
    assert "MODEL.SGG.FEATURE_CACHE_MB: the cache is full" in caplog.text


def test_other_weights_use_another_disk_folder(make_cfg, make_input, tmp_path):
    a = _model(make_cfg, directory=tmp_path).eval()
    b = _model(make_cfg, directory=tmp_path).eval()
    with torch.no_grad():
        b.backbone.bottom_up.stem.conv1.weight.mul_(2)
        a([make_input(3, seed=1)])
        b([make_input(3, seed=1)])
    assert len(list(tmp_path.iterdir())) == 2  # one folder per backbone
    assert b.feature_cache.disk_hits == 0


def test_cache_needs_a_frozen_detector(make_cfg):
    cfg = make_cfg()
    cfg.MODEL.SGG.FEATURE_CACHE_MB = 16
    cfg.MODEL.SGG.FREEZE_DETECTOR = False
    with pytest.raises(ValueError, match="FREEZE_DETECTOR"):
        build_model(cfg)
    with pytest.raises(ValueError, match="FEATURE_CACHE_MB > 0 or a"):
        FrozenFeatureCache(0, "")
