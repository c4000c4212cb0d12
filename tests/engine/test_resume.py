"""Exact resume: a training process killed with SIGKILL after a checkpoint and resumed with
``--resume`` ends with the same weights and optimizer state as an uninterrupted run, bit for
bit, with 0 and with 1 data-loader workers; a damaged last checkpoint is an error naming
it, and ``--resume-from-last-good`` falls back."""

import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from engine_support import MOTIFS, NARROW, REPO, metrics_rows, script_env, vg_files

from sgg_d2.config import load_config
from sgg_d2.data import register_visual_genome
from sgg_d2.engine.checkpoint import (
    DamagedCheckpointError,
    checkpoint_problem,
    select_resume_checkpoint,
)
from sgg_d2.engine.resume_state import (
    ResumableTrainLoader,
    SeededMapper,
    capture_rng_state,
    isolated_rng,
)
from sgg_d2.engine.trainer import SceneGraphTrainer

# MOTIFS SGCls on a trained detector: random pair sampling (torch), duplicate-relation
# filtering in the mapper (numpy), SGD momentum. The kill comes after the checkpoint of
# iteration 19, a logging step (Detectron2's PeriodicWriter writes every 20 iterations)
# inside the LR warm-up (40 iterations, longer than the run). With SEED 6 and 3 images a
# batch, the aspect-ratio grouping holds a mapped image with duplicate relations at that
# checkpoint, handed out after it: with 0 workers, before each mapper call had random
# states of its own, the replay mapped it differently (42 of 144 tensors differed).
ARGS = [
    "--config-file", MOTIFS.format("sgcls"), "MODEL.DEVICE", "cpu",
    "DATASETS.SGG.FILTER_DUPLICATE_RELATIONS", "True", "DATASETS.TEST", "()",
    "TEST.EVAL_PERIOD", "0", "SEED", "6", "SOLVER.IMS_PER_BATCH", "3",
    "SOLVER.MAX_ITER", "30", "SOLVER.CHECKPOINT_PERIOD", "20",
    "SOLVER.WARMUP_ITERS", "40", "SOLVER.STEPS", "()", *NARROW,
]  # fmt: skip
CHECKPOINT = "model_0000019.pth"


def start(world, out, opts, *flags):
    """Start ``train_net.py *flags`` with ``ARGS`` and the config overrides ``opts``, writing
    into ``out``; its console output goes to a temporary file (a pipe nobody reads while the
    run goes on fills at 64 KiB and blocks the run)."""
    console = tempfile.TemporaryFile("w+")  # read and closed by finish()
    proc = subprocess.Popen(
        [sys.executable, "train_net.py", *flags, *ARGS, *opts, "OUTPUT_DIR", str(out)],
        cwd=REPO,
        env=script_env(world, one_thread=True),
        stdout=console,
        stderr=subprocess.STDOUT,
    )
    proc.console = console
    return proc


def finish(proc):
    proc.wait(timeout=600)
    with proc.console:
        proc.console.seek(0)
        out = proc.console.read()
    assert proc.returncode == 0, out[-5000:]
    return out


def kill_after_checkpoint(proc, out):
    """SIGKILL ``proc`` as soon as it has written ``CHECKPOINT`` (10 iterations before its end)."""
    last, deadline = out / "last_checkpoint", time.time() + 300
    while not (last.is_file() and last.read_text().strip() == CHECKPOINT):
        assert proc.poll() is None, "the run ended before its checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.console.close()
    assert not (out / "model_final.pth").exists(), "the kill came after the end of training"


@pytest.fixture(scope="module")
def runs(world, trained_detector, tmp_path_factory):
    """``runs(workers)``: the folders of the uninterrupted run and of the killed-and-resumed
    run, the resumed run's log and the overrides used; each setting trains once per module."""
    done = {}
    detector = ["MODEL.SGG.DETECTOR_WEIGHTS", str(trained_detector / "model_final.pth")]

    def run(workers: int):
        if workers not in done:
            base = tmp_path_factory.mktemp(f"resume{workers}")
            whole, killed = base / "whole", base / "killed"
            opts = [*detector, "DATALOADER.NUM_WORKERS", str(workers)]
            uninterrupted, victim = start(world, whole, opts), start(world, killed, opts)
            kill_after_checkpoint(victim, killed)
            log = finish(start(world, killed, opts, "--resume"))
            finish(uninterrupted)
            done[workers] = whole, killed, log, opts
        return done[workers]

    return run


def checkpoint(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def differences(a, b, path="") -> list:
    """Where two checkpoint trees differ: tensors by ``torch.equal``, other values by ``==``."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a)} vs {sorted(b)}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}/{i}")]
    if torch.is_tensor(a) and torch.is_tensor(b):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    else:
        same = type(a) is type(b) and a == b
    return [] if same else [path]


def assert_same_final_state(whole, killed):
    """Weights, optimizer (momentum), scheduler, random states and data position of the two
    ``model_final.pth`` are identical."""
    a, b = checkpoint(whole / "model_final.pth"), checkpoint(killed / "model_final.pth")
    weights = differences(a["model"], b["model"])
    assert not weights, f"{len(weights)} of {len(a['model'])} weight tensors differ: {weights[:5]}"
    rest = differences({**a, "model": None}, {**b, "model": None})
    assert not rest, f"the trainer states differ at {rest[:8]}"
    optimizer = a["trainer"].get("sgg_optimizer") or a["trainer"]["_trainer"]["optimizer"]
    assert optimizer["state"], "no optimizer state was compared"


@pytest.mark.parametrize("workers", [0, 1], ids=["0-workers", "1-worker"])
def test_killed_run_resumes_bit_identical(runs, workers):
    whole, killed, log, _ = runs(workers)
    assert f"Loading from {killed / CHECKPOINT}" in log
    assert "Data position restored: 20 batches replayed and skipped" in log
    assert_same_final_state(whole, killed)
    # the scenario: the checkpoint is at a logging step and inside the LR warm-up
    lr = {row["iteration"]: row["lr"] for row in metrics_rows(whole) if "lr" in row}
    assert sorted(lr) == [19, 29]
    assert lr[19] < lr[29] < 0.01  # SOLVER.BASE_LR of Base-Synthetic-SGG.yaml


def test_checkpoint_holds_the_run_state_once(runs):
    whole = runs(0)[0]
    trainer = checkpoint(whole / CHECKPOINT)["trainer"]
    assert trainer["iteration"] == 19
    state = trainer["sgg_resume"]
    assert state["batches_consumed"] == 20 and state["data_seed"] == 6
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    # the optimizer is saved exactly once: by Detectron2 (> 0.6) or by the trainer (0.6)
    saved = [trainer.get("_trainer", {}).get("optimizer"), trainer.get("sgg_optimizer")]
    saved = [s for s in saved if s is not None]
    assert len(saved) == 1
    momentum = [v["momentum_buffer"] for v in saved[0]["state"].values()]
    assert momentum and any(bool(m.abs().sum() > 0) for m in momentum)


def test_damaged_last_checkpoint_falls_back_to_last_good(runs, world, tmp_path):
    whole, killed, _, opts = runs(0)
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    data = (run / "model_final.pth").read_bytes()
    (run / "model_final.pth").write_bytes(data[: len(data) // 2])  # truncated
    assert (run / "last_checkpoint").read_text().strip() == "model_final.pth"
    log = finish(start(world, run, opts, "--resume-from-last-good"))
    assert f"resuming from the newest intact earlier checkpoint {run / CHECKPOINT}" in log
    assert_same_final_state(whole, run)


# ---- the data pipeline ----------------------------------------------------------------


def draw_everywhere():
    """What a training step may draw from the global random states."""
    return torch.rand(2).tolist(), np.random.rand(2).tolist(), random.random()


def test_seeded_mapper_draws_by_call_number_only():
    mapper = SeededMapper(lambda _: draw_everywhere(), stream=0)
    mapper.restart(5)
    first = [mapper(None) for _ in range(3)]
    draw_everywhere()
    before = capture_rng_state()
    mapper.restart(5)
    again = [mapper(None) for _ in range(3)]
    after = capture_rng_state()
    assert again == first and len({str(x) for x in first}) == 3
    assert not differences(before, after), "mapping moved the training's random states"
    mapper.restart(6)
    assert mapper(None) != first[0]
    other = SeededMapper(lambda _: draw_everywhere(), stream=1)
    other.restart(5)
    assert other(None) != first[0]


LOADER_TRAIN = "tests_resume_train"


@pytest.fixture(scope="module")
def loader_cfg(world):
    """MOTIFS SGCls on the tiny world's 12 training images, data loading in this process."""
    if LOADER_TRAIN not in DatasetCatalog.list():
        root = world / "synthetic"
        register_visual_genome(LOADER_TRAIN, *vg_files(root), "train", val_size=0)
    return load_config(
        str(REPO / MOTIFS.format("sgcls")),
        ["DATASETS.TRAIN", f"('{LOADER_TRAIN}',)", "MODEL.SGG.DETECTOR_WEIGHTS", "",
         "DATASETS.SGG.FILTER_DUPLICATE_RELATIONS", "True", "DATALOADER.NUM_WORKERS", "0",
         "SOLVER.IMS_PER_BATCH", "3", "SEED", "6"],
    )  # fmt: skip


def test_zero_worker_batches_ignore_the_training_random_states(loader_cfg):
    """With 0 workers the mapper runs in the training process: whatever the training draws
    between batches, the batches are the same, and loading them moves no random state."""

    def stream(draw: bool) -> list:
        with isolated_rng():  # Detectron2's sampler draws its seed from numpy's state
            np.random.seed(0)
            batches, loader = [], iter(SceneGraphTrainer.build_train_loader(loader_cfg))
        for _ in range(10):
            before = capture_rng_state()
            batch = next(loader)
            assert not differences(before, capture_rng_state()), "loading moved random states"
            batches.append([(x["image_id"], x["relations"].tolist()) for x in batch])
            if draw:
                draw_everywhere()
        return batches

    plain = stream(draw=False)
    assert plain == stream(draw=True)
    # duplicate relations were filtered (random draws in the mapper)
    raw = {d["image_id"]: len(d["relations"]) for d in DatasetCatalog.get(LOADER_TRAIN)}
    assert any(len(r) < raw[i] for batch in plain for i, r in batch)


def test_loader_skips_batches_without_touching_random_states():
    batches = ResumableTrainLoader(range(100), seed=3)
    it = iter(batches)
    assert [next(it) for _ in range(4)] == [0, 1, 2, 3]
    assert batches.batches_consumed == 4
    batches.skip(4)
    before = torch.get_rng_state()
    it = iter(batches)
    assert next(it) == 4
    assert torch.equal(torch.get_rng_state(), before)
    assert batches.batches_consumed == 5


# ---- damaged checkpoints --------------------------------------------------------------


@pytest.fixture
def checkpoint_dir(tmp_path):
    for iteration in (3, 7):
        torch.save(
            {"model": {"w": torch.full((2,), float(iteration))}, "iteration": iteration},
            tmp_path / f"model_{iteration:07d}.pth",
        )
    return tmp_path


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda data: data[: len(data) - 100], "not a PyTorch checkpoint"),
        (lambda data: b"", "empty (0 bytes)"),
        (lambda data: os.urandom(len(data)), "not a PyTorch checkpoint"),
    ],
    ids=["truncated", "zero-bytes", "random-bytes"],
)
def test_damaged_checkpoint_error_names_file_and_intact_one(checkpoint_dir, damage, problem):
    last = checkpoint_dir / "model_0000007.pth"
    last.write_bytes(damage(last.read_bytes()))
    with pytest.raises(DamagedCheckpointError) as err:
        select_resume_checkpoint(str(checkpoint_dir), str(last), fall_back=False)
    message = str(err.value)
    assert f"points to {last}, which is damaged" in message
    assert problem in message
    assert f"newest intact earlier checkpoint is {checkpoint_dir / 'model_0000003.pth'}" in message
    assert "--resume-from-last-good" in message
    good = select_resume_checkpoint(str(checkpoint_dir), str(last), fall_back=True)
    assert good == str(checkpoint_dir / "model_0000003.pth")


def test_damaged_checkpoint_without_intact_one(checkpoint_dir):
    for path in checkpoint_dir.glob("*.pth"):
        path.write_bytes(b"")
    last = checkpoint_dir / "model_0000007.pth"
    with pytest.raises(DamagedCheckpointError, match="No intact earlier checkpoint exists"):
        select_resume_checkpoint(str(checkpoint_dir), str(last), fall_back=True)


def test_corrupted_member_fails_crc_check(checkpoint_dir):
    path = checkpoint_dir / "model_0000007.pth"
    with zipfile.ZipFile(path) as archive:
        member = next(i for i in archive.infolist() if i.filename.endswith("data/0"))
    data = bytearray(path.read_bytes())
    # local header: 30 bytes, then the name and the extra field, then the stored bytes
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26 :][:4])
    data[member.header_offset + 30 + name_len + extra_len] ^= 0xFF
    path.write_bytes(bytes(data))
    assert checkpoint_problem(str(path)) is not None
    assert checkpoint_problem(str(checkpoint_dir / "model_0000003.pth")) is None
