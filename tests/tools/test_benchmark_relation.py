"""tools/benchmark_relation.py and its measurement helpers: FLOP counts checked by hand
(linear layers, LSTMs the counter cannot see), allocator-based peak memory, the JSON rows of
a tiny relation benchmark, and the SGDet latency table on CPU."""

import contextlib
import io
import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tools import _benchmark_latency as latency
from tools import _benchmark_lib as lib
from tools import benchmark_relation

STAGE_FIELDS = ("s", "flops", "gflop_per_s", "flop_fraction_of_peak", "peak_bytes", "mb")


def test_linear_flops_by_hand():
    layer = nn.Linear(64, 32)
    x = torch.randn(10, 64)
    assert lib.count_flops(lambda: layer(x)) == 2 * 10 * 64 * 32


def test_lstm_flops_counted_once_padded_or_packed():
    """Padded input runs as one oneDNN kernel the counter misses, packed input as addmm
    calls it sees: both must come out as the analytic count, neither doubled nor zero."""
    torch.manual_seed(0)
    lstm = nn.LSTM(12, 8, num_layers=2, bidirectional=True)
    # per step and direction: layer 1 2*4*8*(12+8) = 1280, layer 2 2*4*8*(16+8) = 1536
    padded = torch.randn(5, 3, 12)  # 15 steps
    assert lib.count_flops(lambda: lstm(padded)) == (1280 + 1536) * 15 * 2
    packed = nn.utils.rnn.pack_sequence([torch.randn(n, 12) for n in (5, 3, 2)], False)
    assert lib.count_flops(lambda: lstm(packed)) == (1280 + 1536) * 10 * 2
    assert lib.recurrent_flops(nn.GRU(4, 2), (torch.randn(3, 4),)) == 2 * 3 * 2 * (4 + 2) * 3


def test_roi_align_flops_by_hand_and_apart():
    """A 8 x 4 box into 2 x 2 bins, adaptive sampling: 4 x 2 samples per bin, 32 samples,
    each 8 FLOPs per channel, plus one division per value: 2 * (8 * 32 + 4) = 520; with 3
    samples per side given: 2 * (8 * 36 + 4) = 584. Counted apart from ``flops``."""
    from torchvision.ops import roi_align  # noqa: PLC0415

    maps = torch.randn(1, 2, 10, 10)
    box = torch.tensor([[0.0, 1.0, 2.0, 9.0, 6.0]])
    layer = nn.Linear(3, 2)
    x = torch.randn(4, 3)

    def call(sampling):
        return lambda: (roi_align(maps, box, (2, 2), 1.0, sampling, True), layer(x))

    assert lib.count_flops(call(0), with_roi_align=True) == (2 * 4 * 3 * 2, 520)
    assert lib.count_flops(call(3), with_roi_align=True) == (2 * 4 * 3 * 2, 584)
    assert lib.count_flops(call(0)) == 2 * 4 * 3 * 2


def test_peak_live_bytes_from_the_allocator():
    def two_alive_then_freed():
        a = torch.ones(1000, 1000)  # 4 MB
        b = a * 2  # 4 MB more while a is alive
        del a, b

    first = lib.peak_live_bytes(two_alive_then_freed)
    assert 8_000_000 <= first < 8_100_000
    assert lib.peak_live_bytes(two_alive_then_freed) == first  # deterministic


def test_rate_fields_against_measured_peak():
    peak = lib.matmul_peak_gflop_per_s("cpu", size=128, repeats=2)
    assert peak > 0
    rate = lib.rate_fields(2 * 10**9, 0.5, peak)
    assert rate["gflop_per_s"] == pytest.approx(4.0)
    assert rate["flop_fraction_of_peak"] == pytest.approx(4.0 / peak)


def _child_in_process(cmd, **kwargs):
    """``subprocess.run`` of a ``--child`` command line, run in this process (seconds
    instead of a fresh interpreter per stage); the parent reads its stdout as usual."""
    assert cmd[1] == benchmark_relation.__file__ and cmd[2] == "--child", cmd
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        benchmark_relation.main(cmd[2:])
    return SimpleNamespace(returncode=0, stdout=buffer.getvalue(), stderr="")


def test_relation_benchmark_rows(tmp_path, monkeypatch):
    """The JSON rows and Markdown table of a tiny run (no dataset registered: the frequency
    statistics are zeros, which changes no cost)."""
    monkeypatch.setattr(benchmark_relation.subprocess, "run", _child_in_process)
    out, md = tmp_path / "rows.json", tmp_path / "table.md"
    benchmark_relation.main(
        ["--sizes", "4", "--image-size", "64", "--repeats", "1", "--contexts", "MotifsContext"]
        + ["--top-ops", "2", "--json", str(out), "--markdown", str(md)]
    )
    (row,) = json.loads(out.read_text())
    assert (row["context"], row["N"], row["pairs"]) == ("MotifsContext", 4, 12)
    assert row["device"] == "cpu" and row["threads"] == torch.get_num_threads()
    for stage in ("det", "rel"):
        assert all(f"{stage}_{f}" in row for f in STAGE_FIELDS)
        assert row[f"{stage}_flops"] > 0 and row[f"{stage}_peak_bytes"] > 0
        assert 0 < row[f"{stage}_flop_fraction_of_peak"] <= 1.5
        assert row[f"{stage}_mb"] == row[f"{stage}_peak_bytes"] / 2**20
        ops = row[f"{stage}_top_ops"]
        assert len(ops) == 2 and ops[0]["self_s"] >= ops[1]["self_s"] > 0
    rate = row["rel_flops"] / row["rel_s"] / 1e9
    assert row["rel_gflop_per_s"] == pytest.approx(rate)
    text = md.read_text()
    assert "| model | N | pairs | det s | rel s |" in text and "| MotifsContext | 4 | 12 |" in text


def test_latency_table_on_cpu(tmp_path):
    md, out = tmp_path / "latency.md", tmp_path / "latency.json"
    benchmark_relation.main(
        ["--latency", "--config-dir", "configs/synthetic", "--backbones", "config"]
        + ["--contexts", "MotifsContext", "--latency-image", "40", "56", "--device", "cpu"]
        + ["--opts", "INPUT.MIN_SIZE_TEST", "40", "INPUT.MAX_SIZE_TEST", "56"]
        + ["TEST.DETECTIONS_PER_IMAGE", "5", "MODEL.ROI_BOX_HEAD.FC_DIM", "32"]
        + ["--repeats", "1", "--warmup", "0", "--markdown", str(md), "--json", str(out)]
    )
    (row,) = json.loads(out.read_text())
    assert row["input_hw"] == [40, 56] and 2 <= row["detections"] <= 5
    assert row["pairs"] == row["detections"] * (row["detections"] - 1)
    assert row["flops"] > 0 and row["peak_bytes"] > 0 and row["time_s"] > 0
    assert 0 < row["flop_fraction_of_peak"] <= 1.5
    lines = md.read_text().splitlines()
    assert lines[2] == "| " + " | ".join(latency.COLUMNS) + " |"
    assert lines[4].startswith("| MotifsContext | config | ")


def test_latency_configs_and_backbones(sgg_cfg):
    for context in latency.CONFIG_PREFIX:  # one plain (not grounded) VG150 SGDet leaf each
        path = latency.config_file("configs/vg150", context)
        assert path.endswith("_X101_FPN_sgdet.yaml") and "grounded" not in path
    with pytest.raises(ValueError, match="--latency --contexts: 'RelDNContext\\+relbackbone'"):
        latency.config_file("configs/vg150", "RelDNContext+relbackbone")
    sgg_cfg.merge_from_list(latency.BACKBONES["R50"])
    resnet = sgg_cfg.MODEL.RESNETS
    assert (resnet.DEPTH, resnet.STRIDE_IN_1X1, resnet.NUM_GROUPS, resnet.WIDTH_PER_GROUP) == (
        50,
        True,
        1,
        64,
    )
