"""Multi-process training: DDP wrapper, launch check, and two CPU processes end to end.

The two-process test needs a Detectron2 whose ``launch`` runs CPU processes (gloo; upstream
after v0.6, ``make test-upstream``) or two GPUs; the registry track's v0.6 instead fails
early with a message saying what is needed (tested here too).
"""

import importlib.util
import json
import socket
import subprocess

import pytest
import torch
from detectron2.config import get_cfg
from engine_support import MOTIFS, REPO, metrics_rows, run_script, schedule, succeeded

from sgg_d2.config import add_sgg_config
from sgg_d2.engine import distributed
from sgg_d2.engine.distributed import check_launch, create_ddp_model, launch_runs_on_cpu

CONFIG = MOTIFS.format("predcls")
GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
TWO_PROCESSES = launch_runs_on_cpu() or GPUS >= 2


def test_single_process_model_is_not_wrapped():
    cfg = get_cfg()
    add_sgg_config(cfg)
    model = torch.nn.Linear(2, 2)
    assert create_ddp_model(model, cfg) is model


def test_check_launch_names_what_v0_6_needs(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(distributed, "launch_runs_on_cpu", lambda: False)
    check_launch(1)  # one process never needs a process group
    with pytest.raises(SystemExit) as err:
        check_launch(2)
    message = str(err.value)
    assert "--num-gpus 2" in message and "NCCL" in message
    assert "one CUDA GPU per process" in message and "D2_SOURCE=" in message


def test_check_launch_accepts_cpu_processes_where_launch_uses_gloo(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(distributed, "launch_runs_on_cpu", lambda: True)
    check_launch(2)


def test_check_launch_refuses_more_processes_than_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_launch(2)
    with pytest.raises(SystemExit, match="sees only 2 CUDA GPU"):
        check_launch(4)


def test_launch_capability_matches_the_installed_detectron2():
    """v0.6 (registry track) launches with NCCL only; upstream main falls back to gloo."""
    tool = REPO / "tools" / "install_detectron2.py"
    spec = importlib.util.spec_from_file_location("install_detectron2", tool)
    install_detectron2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install_detectron2)
    assert launch_runs_on_cpu() == (install_detectron2.track_of_installed() == "upstream")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_net(world, *args) -> subprocess.CompletedProcess:
    return run_script(["train_net.py", *args], world, one_thread=True)


COMMON = [
    "--config-file",
    CONFIG,
    "MODEL.DEVICE",
    "cuda" if GPUS >= 2 else "cpu",
    "MODEL.SGG.DETECTOR_WEIGHTS",
    "",  # a random detector: frozen all the same, and no stage-1 training needed
    "DATALOADER.NUM_WORKERS",
    "0",
    "DATASETS.TEST",
    "('synthetic_test',)",
]


@pytest.mark.skipif(
    TWO_PROCESSES or GPUS > 0,
    reason="this Detectron2 can start two processes here (tested by the two-process test)",
)
def test_two_processes_without_gpus_fail_clearly_on_v0_6(world, tmp_path):
    proc = train_net(world, "--num-gpus", "2", *COMMON, "OUTPUT_DIR", str(tmp_path))
    assert proc.returncode != 0
    assert "NCCL" in proc.stderr and "D2_SOURCE=" in proc.stderr, proc.stderr[-2000:]
    assert "cuda is not available" not in proc.stderr


@pytest.mark.skipif(
    not TWO_PROCESSES,
    reason="Detectron2 v0.6 (registry track) launches with NCCL only, and there are no two "
    "GPUs; run `make test-upstream D2_SOURCE=...` (gloo on CPU)",
)
def test_two_process_training_then_evaluation_equals_single_process(world, tmp_path):
    """Relation stage (MOTIFS PredCls, frozen detector) in two processes: DDP trains, and
    the final evaluation, sharded over both processes and gathered, gives exactly the
    metrics of a single-process evaluation of the same checkpoint."""
    out = tmp_path / "ddp"
    proc = train_net(
        world,
        "--num-gpus",
        "2",
        "--dist-url",
        f"tcp://127.0.0.1:{free_port()}",
        *COMMON,
        "SOLVER.IMS_PER_BATCH",
        "2",  # one image per process
        *schedule(4, 1),
        "SOLVER.REFERENCE_WORLD_SIZE",
        "0",
        "OUTPUT_DIR",
        str(out),
    )
    succeeded(proc)
    # Detectron2's default_setup logs each process's rank (rank 1: to its own log file)
    assert "World size: 2" in (out / "log.txt.rank1").read_text()
    rows = metrics_rows(out)
    # (one loss in PredCls: Detectron2 logs only total_loss, gathered over both processes)
    assert max(r["iteration"] for r in rows if "total_loss" in r) == 3
    (ddp_json,) = list((out / "inference").rglob("*_metrics.json"))

    single = tmp_path / "single"
    proc = train_net(
        world,
        "--eval-only",
        *COMMON,
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
        "OUTPUT_DIR",
        str(single),
    )
    succeeded(proc)
    (single_json,) = list((single / "inference").rglob("*_metrics.json"))
    ddp_metrics = json.loads(ddp_json.read_text())
    single_metrics = json.loads(single_json.read_text())
    assert ddp_metrics["num_images"] == single_metrics["num_images"] == 4
    assert ddp_metrics["metrics"] == pytest.approx(single_metrics["metrics"], rel=1e-9)
