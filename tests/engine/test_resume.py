"""Exact resume: a training process killed with SIGKILL after a checkpoint and resumed with
``--resume`` ends with the same weights as an uninterrupted run, bit for bit; a damaged
last checkpoint is an error naming it, and ``--resume-from-last-good`` falls back."""

import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

import pytest
import torch
from engine_support import REPO, assert_same_weights, script_env
from engine_support import model_weights as weights

from sgg_d2.engine.checkpoint import (
    DamagedCheckpointError,
    ResumableTrainLoader,
    checkpoint_problem,
    select_resume_checkpoint,
)

# MOTIFS SGCls: random pair sampling (torch), duplicate-relation filtering in the mapper
# (numpy, in a data-loader worker), SGD momentum, a warm-up longer than the first checkpoint.
ARGS = [
    "--config-file",
    "configs/synthetic/motifs_R18_FPN_sgcls.yaml",
    "MODEL.DEVICE",
    "cpu",
    "MODEL.SGG.DETECTOR_WEIGHTS",
    "",
    "DATALOADER.NUM_WORKERS",
    "1",
    "DATASETS.SGG.FILTER_DUPLICATE_RELATIONS",
    "True",
    "DATASETS.TEST",
    "()",
    "TEST.EVAL_PERIOD",
    "0",
    "SEED",
    "7",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "16",
    "SOLVER.CHECKPOINT_PERIOD",
    "4",
    "SOLVER.WARMUP_ITERS",
    "10",
    "SOLVER.STEPS",
    "()",
]


def start(world, out, *extra):
    """Start ``train_net.py`` writing into ``out``; its console output goes to a temporary file
    (a pipe nobody reads while the run goes on fills at 64 KiB and blocks the run)."""
    console = tempfile.TemporaryFile("w+")  # read and closed by finish()
    proc = subprocess.Popen(
        [sys.executable, "train_net.py", *extra, *ARGS, "OUTPUT_DIR", str(out)],
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


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    """An uninterrupted run and a run killed after its first checkpoint, then resumed."""
    base = tmp_path_factory.mktemp("resume")
    whole, killed = base / "whole", base / "killed"
    uninterrupted = start(world, whole)
    victim = start(world, killed)
    deadline = time.time() + 300
    while not (killed / "last_checkpoint").is_file():
        assert victim.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    victim.console.close()
    resumed_from = (killed / "last_checkpoint").read_text().strip()
    log = finish(start(world, killed, "--resume"))
    finish(uninterrupted)
    return whole, killed, resumed_from, log


def test_killed_run_resumes_bit_identical(runs):
    whole, killed, resumed_from, log = runs
    assert resumed_from != "model_final.pth", "the kill came after the end of training"
    assert f"Loading from {killed / resumed_from}" in log
    assert "batches replayed and skipped" in log
    assert_same_weights(weights(whole / "model_final.pth"), weights(killed / "model_final.pth"))


def test_checkpoint_holds_the_run_state_once(runs):
    whole = runs[0]
    trainer = torch.load(whole / "model_0000007.pth", map_location="cpu", weights_only=True)[
        "trainer"
    ]
    assert trainer["iteration"] == 7
    state = trainer["sgg_resume"]
    assert state["batches_consumed"] == 8 and state["data_seed"] == 7
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    # the optimizer is saved exactly once: by Detectron2 (> 0.6) or by the trainer (0.6)
    saved = [trainer.get("_trainer", {}).get("optimizer"), trainer.get("sgg_optimizer")]
    saved = [s for s in saved if s is not None]
    assert len(saved) == 1
    momentum = [v["momentum_buffer"] for v in saved[0]["state"].values()]
    assert momentum and any(bool(m.abs().sum() > 0) for m in momentum)


def test_damaged_last_checkpoint_falls_back_to_last_good(runs, world, tmp_path):
    whole, killed, _, _ = runs
    run = tmp_path / "run"
    shutil.copytree(killed, run)
    (run / "model_final.pth").unlink()
    (run / "last_checkpoint").write_text("model_0000015.pth")
    data = (run / "model_0000015.pth").read_bytes()
    (run / "model_0000015.pth").write_bytes(data[: len(data) // 2])  # truncated
    log = finish(start(world, run, "--resume-from-last-good"))
    assert f"resuming from the newest intact earlier checkpoint {run / 'model_0000011.pth'}" in log
    assert_same_weights(weights(whole / "model_final.pth"), weights(run / "model_final.pth"))


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
