"""Bi-level resampling (BGNN): repeat factors and instance drops on a hand-made dataset,
the training loader that uses them, and an exact resume of a resampled run."""

import math

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.samplers import RepeatFactorTrainingSampler
from detectron2.utils.env import seed_all_rng
from engine_support import NARROW, REPO, vg_files

from sgg_d2.config import load_config
from sgg_d2.data import register_visual_genome
from sgg_d2.data.resampling import (
    RelationDropper,
    build_resampling,
    drop_probabilities,
    image_repeat_factors,
    predicate_repeat_factors,
)
from sgg_d2.engine.trainer import SceneGraphTrainer


def image(*predicates):
    """A dataset dict whose relations have ``predicates`` (objects 0 -> 1, 1 -> 2, ...)."""
    rows = [[i, i + 1, p] for i, p in enumerate(predicates)]
    return {"relations": np.array(rows, dtype=np.int64).reshape(-1, 3)}


# Predicate 0: 6 of the 10 relations (share 0.6), predicate 1: 3 (0.3), predicate 2: 1 (0.1).
# With t = 0.4: r_0 = max(1, sqrt(0.4 / 0.6)) = 1, r_1 = sqrt(4 / 3), r_2 = sqrt(4) = 2.
DICTS = [image(0, 0, 0), image(0, 1, 1), image(0, 0, 1, 2), image()]
R1 = math.sqrt(4 / 3)


def test_predicate_and_image_repeat_factors_hand_computed():
    factors = predicate_repeat_factors(DICTS, num_predicates=4, threshold=0.4)
    assert np.allclose(factors, [1.0, R1, 2.0, 1.0])  # predicate 3 has no relation: 1
    images = image_repeat_factors(DICTS, factors)
    assert images.dtype == torch.float32
    assert torch.allclose(images, torch.tensor([1.0, R1, 2.0, 1.0]))  # the rarest predicate
    # a higher threshold repeats more: t = 0.6 makes predicate 0 reach 1 exactly
    assert np.allclose(predicate_repeat_factors(DICTS, 3, 0.6), [1.0, math.sqrt(2), math.sqrt(6)])


def test_bad_keys_and_predicates_are_named():
    with pytest.raises(ValueError, match="REPEAT_THRESHOLD is 0"):
        predicate_repeat_factors(DICTS, 3, 0)
    with pytest.raises(ValueError, match="outside \\[0, 2\\)"):
        predicate_repeat_factors(DICTS, 2, 0.4)
    with pytest.raises(ValueError, match="DROP_RATE is -1"):
        RelationDropper(np.ones(3), -1)


def test_drop_probabilities_hand_computed():
    factors = np.array([1.0, R1, 2.0])
    # image 2 (r_i = 2), gamma_d = 0.8: p0 0.8 (1 - 1/2) = 0.4, p1 0.8 (1 - R1 / 2), p2 0
    probs = drop_probabilities(np.array([0, 0, 1, 2]), factors, 2.0, 0.8)
    assert np.allclose(probs, [0.4, 0.4, 0.8 * (1 - R1 / 2), 0.0])
    # image 1 (r_i = R1): only predicate 0 can go, with 0.8 (1 - 1 / R1)
    assert np.allclose(drop_probabilities(np.array([0, 1, 1]), factors, R1, 0.8),
                       [0.8 * (1 - 1 / R1), 0, 0])  # fmt: skip
    # not over-sampled: nothing is dropped, whatever gamma_d
    assert not drop_probabilities(np.array([0, 0, 0]), factors, 1.0, 5.0).any()
    # a large gamma_d is clipped to certainty
    assert np.allclose(drop_probabilities(np.array([0, 2]), factors, 2.0, 3.0), [1.0, 0.0])


def test_instance_drops_over_many_draws():
    dropper = RelationDropper(np.array([1.0, R1, 2.0]), drop_rate=0.8)
    rng = np.random.RandomState(0)
    draws = 20000
    kept = np.zeros(4)
    for _ in range(draws):
        rows = DICTS[2]["relations"]
        out = dropper(DICTS[2], rows, rng)
        kept += np.isin(np.arange(4), np.nonzero((rows[:, None] == out[None]).all(2))[0])
    rates = 1 - kept / draws
    assert np.allclose(rates, [0.4, 0.4, 0.8 * (1 - R1 / 2), 0.0], atol=0.015)
    assert rates[3] == 0, "the image's rarest predicate is never dropped"
    for record in (DICTS[0], DICTS[3]):  # r_i = 1: never loses a relation
        for _ in range(200):
            assert np.array_equal(dropper(record, record["relations"], rng), record["relations"])
    # r_i comes from the dict's own relations, the rows to thin out may be fewer
    out = dropper(DICTS[2], DICTS[2]["relations"][:2], np.random.RandomState(1))
    assert len(out) <= 2 and dropper.image_factor(DICTS[2]) == 2.0


# ---- the training loader and exact resume ---------------------------------------------

TRAIN = "tests_resampling_train"


@pytest.fixture(scope="module")
def resampled_cfg(world):
    """Frequency baseline, PredCls, on the tiny world's 12 training images (no workers),
    resampled with a threshold that over-samples most images."""
    if TRAIN not in DatasetCatalog.list():
        register_visual_genome(TRAIN, *vg_files(world / "synthetic"), "train", val_size=0)
    return load_config(
        str(REPO / "configs/synthetic/frequency_R18_FPN_predcls.yaml"),
        ["DATASETS.TRAIN", f"('{TRAIN}',)", "DATASETS.TEST", "()", "TEST.EVAL_PERIOD", "0",
         "MODEL.SGG.DETECTOR_WEIGHTS", "", "MODEL.DEVICE", "cpu",
         "DATASETS.SGG.FILTER_DUPLICATE_RELATIONS", "False", "DATALOADER.NUM_WORKERS", "0",
         "SOLVER.IMS_PER_BATCH", "2", "SEED", "3", "DATALOADER.SGG_RESAMPLING.ENABLED", "True",
         "DATALOADER.SGG_RESAMPLING.REPEAT_THRESHOLD", "0.5", *NARROW],
    )  # fmt: skip


def test_loader_repeats_and_drops_deterministically(resampled_cfg):
    dicts = DatasetCatalog.get(TRAIN)
    sampler, dropper = build_resampling(resampled_cfg, dicts)
    assert isinstance(sampler, RepeatFactorTrainingSampler)
    factors = {d["image_id"]: dropper.image_factor(d) for d in dicts}
    assert any(f > 1 for f in factors.values())

    def batches():
        seed_all_rng(resampled_cfg.SEED)  # as train_net.py's setup: the sampler's seed
        loader = iter(SceneGraphTrainer.build_train_loader(resampled_cfg))
        return [[(x["image_id"], x["relations"].tolist()) for x in next(loader)] for _ in range(12)]

    first = batches()
    assert first == batches()
    raw = {d["image_id"]: d["relations"].tolist() for d in dicts}
    seen = [sample for batch in first for sample in batch]
    dropped = [i for i, rels in seen if len(rels) < len(raw[i])]
    assert dropped and all(factors[i] > 1 for i in dropped)
    assert all(rels == raw[i] for i, rels in seen if factors[i] == 1)
    assert all(all(r in raw[i] for r in rels) for i, rels in seen), "only drops, no changes"


def test_resampled_run_resumes_bit_exactly(resampled_cfg, tmp_path):
    """4 iterations straight, and 2 + 2 resumed from the checkpoint after iteration 1."""

    def train(out, resume=False):
        cfg = resampled_cfg.clone()
        cfg.merge_from_list(["OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "4",
                             "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.WARMUP_ITERS", "0",
                             "SOLVER.STEPS", "()"])  # fmt: skip
        seed_all_rng(cfg.SEED)
        trainer = SceneGraphTrainer(cfg)
        trainer.resume_or_load(resume=resume)
        trainer.train()
        return torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)

    whole = train(tmp_path / "whole")
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    (resumed_dir / "model_0000001.pth").write_bytes(
        (tmp_path / "whole" / "model_0000001.pth").read_bytes()
    )
    (resumed_dir / "last_checkpoint").write_text("model_0000001.pth")
    resumed = train(resumed_dir, resume=True)
    assert whole["iteration"] == resumed["iteration"] == 3
    assert whole["model"].keys() == resumed["model"].keys()
    different = [
        k for k in whole["model"] if not torch.equal(whole["model"][k], resumed["model"][k])
    ]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    start = torch.load(resumed_dir / "model_0000001.pth", map_location="cpu", weights_only=True)
    trained = [k for k in whole["model"] if not torch.equal(whole["model"][k], start["model"][k])]
    assert trained, "the last two iterations changed no weight"
    assert whole["trainer"]["sgg_resume"]["batches_consumed"] == 4
    assert resumed["trainer"]["sgg_resume"]["batches_consumed"] == 4
