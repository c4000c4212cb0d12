"""Measurements shared by the benchmarks (``tools/benchmark_relation.py``): how long a call
takes, how many FLOPs it does, how that compares with the machine's matmul peak measured in
the same run, the peak of live tensor bytes during it, and where its time goes.

* FLOPs: :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products and
  convolutions: ``mm``, ``addmm``, ``bmm``, ``baddbmm``, ``convolution``, attention
  kernels, forward and backward). Elementwise ops, reductions, pooling, RoIAlign, NMS,
  sorting and indexing count zero. A recurrent layer (``nn.LSTM`` / ``nn.GRU`` /
  ``nn.RNN``) runs as one fused kernel (oneDNN on CPU for padded input, cuDNN on CUDA)
  that the counter does not see: :func:`recurrent_flops` adds its matrix products
  analytically wherever the counter saw fewer. RoIAlign's arithmetic is counted apart
  (:func:`roi_align_flops`, ``roi_align_flops`` of :func:`measure_stage`), not in
  ``flops``: it is a gather, bound by memory access, not by the matmul peak.
* Memory: peak growth of live tensor bytes during one call, from the allocator: on CUDA
  ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; on CPU the running
  sum of the allocation and free events of ``torch.profiler.profile(profile_memory=True)``.
  Allocations outside PyTorch's allocator (oneDNN / cuDNN workspaces kept by the library)
  are not included. Deterministic for a deterministic call (unlike resident-set sampling).
"""

import platform
import shlex
import sys
import time
from contextlib import contextmanager
from typing import Callable, Dict, List

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "command_line",
    "count_flops",
    "device_name",
    "matmul_peak_gflop_per_s",
    "measure_stage",
    "ops_summary",
    "peak_live_bytes",
    "rate_fields",
    "recurrent_flops",
    "roi_align_flops",
    "synchronize",
    "top_ops",
]

# Matrix side of the timed fp32 ``torch.mm`` that measures the machine's peak, per device
# type: large enough to reach the BLAS's steady state, short enough to time in a second.
PEAK_MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}
_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def synchronize(device) -> None:
    """Waits for the device's queued work (CUDA); nothing on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device) -> str:
    """The GPU's name, or the CPU's model name from /proc/cpuinfo (else the architecture)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.machine()


def command_line() -> str:
    """This process's command line, shell-quoted, as ``python <script> <args>``."""
    return " ".join(shlex.quote(a) for a in ["python", *sys.argv])


def recurrent_flops(module: nn.RNNBase, inputs) -> int:
    """FLOPs of the matrix products of one call of a recurrent layer, analytically.

    Per time step, direction and layer: ``2 * gates * hidden * (in + hidden)`` (input and
    recurrent projections; 4 gates for an LSTM, 3 for a GRU), plus ``2 * hidden * proj``
    for an LSTM's projection. Elementwise gate arithmetic is not counted.

    Args:
        module: an ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``.
        inputs: the positional arguments of its forward: a (T, B, in) / (B, T, in) / (T, in)
            tensor or a ``PackedSequence`` first.
    """
    x = inputs[0]
    if isinstance(x, nn.utils.rnn.PackedSequence):
        steps = x.data.shape[0]  # sum of the sequence lengths
    else:
        steps = x.shape[0] * (x.shape[1] if x.dim() == 3 else 1)
    gates, hidden = _GATES[module.mode], module.hidden_size
    out = module.proj_size or hidden
    directions = 2 if module.bidirectional else 1
    total = 0
    for layer in range(module.num_layers):
        width = module.input_size if layer == 0 else out * directions
        per_step = 2 * gates * hidden * (width + out) + 2 * hidden * module.proj_size
        total += per_step * steps * directions
    return total


@contextmanager
def _recurrent_top_up(counter: FlopCounterMode):
    """While active, every recurrent layer call adds to ``extra[0]`` its analytic FLOPs
    (:func:`recurrent_flops`) less what ``counter`` saw during that call."""
    extra, seen = [0], {}

    def pre(module, args):
        if isinstance(module, nn.RNNBase):
            seen[id(module)] = (counter.get_total_flops(), recurrent_flops(module, args))

    def post(module, args, output):
        if isinstance(module, nn.RNNBase) and id(module) in seen:
            before, analytic = seen.pop(id(module))
            extra[0] += max(0, analytic - (counter.get_total_flops() - before))

    handles = [
        nn.modules.module.register_module_forward_pre_hook(pre),
        nn.modules.module.register_module_forward_hook(post),
    ]
    try:
        yield extra
    finally:
        for h in handles:
            h.remove()


def roi_align_flops(features, rois, spatial_scale, pooled_h, pooled_w, sampling, aligned, **_):
    """Arithmetic of one ``torchvision::roi_align`` call, from its actual boxes.

    Each output value (box, channel, bin) averages the box's grid of bilinear samples
    (``sampling`` per side, or ``ceil(box side / bins)`` when it is 0, as the kernel does):
    a sample is 4 products and 4 sums (3 to interpolate, 1 to accumulate), then one
    division per value. Per box: ``C * (8 * samples + pooled_h * pooled_w)``.

    Args:
        features: (B, C, H, W) map; rois: (K, 5) rows (batch index, x1, y1, x2, y2).
    """
    channels = features.shape[1]
    boxes = rois[:, 1:].double() * spatial_scale
    size = boxes[:, 2:] - boxes[:, :2]
    if not aligned:
        size = size.clamp(min=1.0)
    if sampling > 0:
        grid = torch.full_like(size, float(sampling))
    else:
        grid = torch.ceil(size / size.new_tensor([pooled_w, pooled_h])).clamp(min=1.0)
    samples = grid.prod(1) * pooled_h * pooled_w
    return int(channels * (8 * samples.sum().item() + len(rois) * pooled_h * pooled_w))


roi_align_flops._get_raw = True  # FlopCounterMode hands it the tensors, not their shapes


def _roi_align_op():
    """The ``torchvision::roi_align`` operator, or None where torchvision has no such op."""
    try:
        return torch.ops.torchvision.roi_align
    except (AttributeError, RuntimeError):
        return None


def count_flops(fn: Callable[[], object], with_roi_align: bool = False):
    """FLOPs of one call of ``fn`` (see the module docstring for what is counted).

    A multiply-add counts 2: ``nn.Linear(64, 32)`` on 10 rows is ``2 * 10 * 64 * 32``.
    With ``with_roi_align``, returns ``(flops, roi_align_flops)``: RoIAlign's arithmetic
    (:func:`roi_align_flops`) counted apart, not in ``flops``.
    """
    op = _roi_align_op()
    mapping = {op: roi_align_flops} if op is not None else {}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        with _recurrent_top_up(counter) as extra:
            fn()
    roi = int(counter.get_flop_counts()["Global"].get(op, 0)) if op is not None else 0
    flops = int(counter.get_total_flops() + extra[0]) - roi
    return (flops, roi) if with_roi_align else flops


def matmul_peak_gflop_per_s(device="cpu", size: int = 0, repeats: int = 5) -> float:
    """The machine's achievable fp32 matmul rate: the best of ``repeats`` timed
    ``size x size`` ``torch.mm`` calls on ``device`` with the current thread count.

    Args:
        size: matrix side; 0 for :data:`PEAK_MATMUL_SIZE` of the device type.

    Returns:
        GFLOP/s (``2 * size**3`` FLOPs per product).
    """
    size = size or PEAK_MATMUL_SIZE[torch.device(device).type]
    g = torch.Generator().manual_seed(0)
    a = torch.rand(size, size, generator=g).to(device)
    b = torch.rand(size, size, generator=g).to(device)
    torch.mm(a, b)  # warm-up: BLAS threads, CUDA kernels
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def peak_live_bytes(fn: Callable[[], object], device="cpu") -> int:
    """Peak growth of live tensor bytes on ``device`` during one call of ``fn``, from the
    allocator (CUDA statistics, or the CPU profiler's allocation events)."""
    device = torch.device(device)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        fn()
    events = []
    for root in prof.profiler.kineto_results.experimental_event_tree():
        _collect_allocations(root, events)
    running = peak = 0
    for _, size in sorted(events):
        running += size
        peak = max(peak, running)
    return peak


def _collect_allocations(node, out: List) -> None:
    """Appends ``(start_ns, bytes)`` of every CPU allocation (+) / free (-) below ``node``."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n.tag == torch._C._profiler._EventType.Allocation:
            fields = n.extra_fields
            if fields.device.type == "cpu":
                out.append((n.start_time_ns, fields.alloc_size))
        stack.extend(n.children)


def top_ops(fn: Callable[[], object], device="cpu", n: int = 10) -> List[Dict]:
    """The ``n`` operators with the most self time in one profiled call of ``fn``: self CPU
    time on CPU, self device (kernel) time on CUDA.

    Returns:
        ``[{"op", "self_s", "share", "calls"}, ...]``, most time first; ``share`` is the
        op's fraction of the self time of all ops.
    """
    on_cuda = torch.device(device).type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU]
    if on_cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        synchronize(device)
    key = "self_device_time_total" if on_cuda else "self_cpu_time_total"
    ops = [e for e in prof.key_averages() if getattr(e, key) > 0]
    total = sum(getattr(e, key) for e in ops) or 1.0
    ops.sort(key=lambda e: getattr(e, key), reverse=True)
    return [
        {
            "op": e.key,
            "self_s": getattr(e, key) / 1e6,
            "share": getattr(e, key) / total,
            "calls": e.count,
        }
        for e in ops[:n]
    ]


def ops_summary(ops: List[Dict]) -> str:
    """:func:`top_ops` as one Markdown line: ```op` share, ...``."""
    return ", ".join(f"`{o['op']}` {o['share']:.0%}" for o in ops)


def rate_fields(flops: int, seconds: float, peak_gflop_per_s: float) -> Dict[str, float]:
    """``{"gflop_per_s", "flop_fraction_of_peak"}`` of ``flops`` done in ``seconds``."""
    rate = flops / seconds / 1e9 if seconds > 0 else 0.0
    return {"gflop_per_s": rate, "flop_fraction_of_peak": rate / peak_gflop_per_s}


def measure_stage(fn: Callable[[], object], device, repeats: int, top_n: int = 0) -> Dict:
    """Everything measured of one stage, each from its own call(s) of ``fn``, in order:

    1. peak live tensor bytes of a first call (nothing cached yet; :func:`peak_live_bytes`);
    2. ``time_s``: the mean of ``repeats`` warm calls (synchronized on CUDA);
    3. ``flops`` and ``roi_align_flops`` of one call (:func:`count_flops`);
    4. with ``top_n``, ``top_ops`` of one profiled call (:func:`top_ops`).

    Returns:
        ``{"time_s", "flops", "roi_align_flops", "peak_bytes", "top_ops"}`` (``top_ops``
        empty without top_n).
    """
    peak = peak_live_bytes(fn, device)
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    seconds = (time.perf_counter() - t0) / repeats
    flops, roi_flops = count_flops(fn, with_roi_align=True)
    return {
        "time_s": seconds,
        "flops": flops,
        "roi_align_flops": roi_flops,
        "peak_bytes": peak,
        "top_ops": top_ops(fn, device, top_n) if top_n else [],
    }
