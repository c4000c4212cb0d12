"""End-to-end SGDet latency per image (``tools/benchmark_relation.py --latency``).

For every context model, its SGDet config in ``--config-dir`` (``<model>_<backbone>_FPN_
sgdet.yaml``, default ``configs/vg150``) is built with random weights (latency does not
depend on training) for each detector backbone of ``--backbones``: ``X101`` (the VG150
configs' ResNeXt-101-32x8d), ``R50`` (Detectron2's R-50-FPN: depth 50, stride in the 1x1,
one group of width 64) or ``config`` (as the file says). One random image of
``--latency-image H W`` pixels (592 x 800, a typical VG image) is resized as
``DefaultPredictor`` does (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``: 600 x 811 for VG150)
and run through ``model([input])`` under ``no_grad``: ``--warmup`` calls, then one call for
peak memory, ``--repeats`` timed calls, one FLOP-counted call (and one profiled call with
``--top-ops``). The detector's score threshold is 0 so that it keeps
``TEST.DETECTIONS_PER_IMAGE`` boxes (80 for VG150: 6,320 pairs), as a trained detector
does on a real image; the frequency statistics are zeros (no dataset is read).
"""

import gc
import os
import re

if __package__:
    from . import _benchmark_lib as lib
else:
    import _benchmark_lib as lib

__all__ = ["BACKBONES", "CONFIG_PREFIX", "add_arguments", "config_file", "run"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Context model -> the prefix of its config files.
CONFIG_PREFIX = {
    "FrequencyBaseline": "frequency",
    "IMPContext": "imp",
    "MotifsContext": "motifs",
    "VCTreeContext": "vctree",
    "LinkNetContext": "linknet",
    "RelDNContext": "reldn",
    "FactorizableNetContext": "fnet",
}


def _resnet(depth: str, stride_in_1x1: str, groups: str, width: str) -> list:
    keys = ("DEPTH", "STRIDE_IN_1X1", "NUM_GROUPS", "WIDTH_PER_GROUP", "RES2_OUT_CHANNELS")
    values = (depth, stride_in_1x1, groups, width, "256")
    pairs = [x for k, v in zip(keys, values) for x in (f"MODEL.RESNETS.{k}", v)]
    return ["MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone", *pairs]


# Detector backbones (config overrides): the VG150 configs' X-101-32x8d, Detectron2's R-50.
BACKBONES = {
    "config": [],
    "X101": _resnet("101", "False", "32", "8"),
    "R50": _resnet("50", "True", "1", "64"),
}
COLUMNS = (
    "model",
    "detector",
    "detections",
    "pairs",
    "ms / image",
    "GFLOP",
    "GFLOP/s",
    "of peak",
    "peak MB",
    "weights MB",
)


def add_arguments(parser) -> None:
    """The ``--latency`` options of ``tools/benchmark_relation.py``."""
    g = parser.add_argument_group("--latency: end-to-end SGDet latency per image")
    g.add_argument("--latency", action="store_true", help="measure SGDet latency per image")
    g.add_argument("--backbones", nargs="+", choices=sorted(BACKBONES), default=["X101", "R50"])
    g.add_argument("--config-dir", default=os.path.join(REPO, "configs", "vg150"))
    g.add_argument("--latency-image", nargs=2, type=int, default=[592, 800], metavar=("H", "W"))
    g.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    g.add_argument(
        "--opts", nargs="+", default=[], metavar="KEY VALUE", help="extra config overrides, last"
    )


def config_file(config_dir: str, context: str) -> str:
    """The one ``<prefix>_<Backbone>_FPN_sgdet.yaml`` of ``context`` in ``config_dir``."""
    if context not in CONFIG_PREFIX:
        raise ValueError(
            f"--latency --contexts: {context!r} has no SGDet config; expected one of "
            f"{sorted(CONFIG_PREFIX)} (no variants)"
        )
    pattern = re.compile(rf"^{CONFIG_PREFIX[context]}_[A-Z][A-Za-z0-9]*_FPN_sgdet\.yaml$")
    names = sorted(n for n in os.listdir(config_dir) if pattern.match(n))
    if len(names) != 1:
        raise ValueError(
            f"--config-dir {config_dir}: expected one {pattern.pattern} for {context}, "
            f"found {names}"
        )
    return os.path.join(config_dir, names[0])


def build_sgdet(path: str, backbone: str, device: str, opts):
    """``(cfg, model)``: the SGDet model of config ``path`` with random weights."""
    import sgg_d2  # noqa: F401,I001  (first: detectron2._C stand-in)
    import torch
    from detectron2.modeling import build_model
    from sgg_d2.engine import load_config

    cfg = load_config(path, [
        "MODEL.DEVICE", device,
        "MODEL.SGG.MODE", "sgdet",
        "MODEL.WEIGHTS", "",
        "MODEL.SGG.DETECTOR_WEIGHTS", "",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
        # an unregistered training set: zero frequency statistics, no dataset read
        "DATASETS.TRAIN", "('sgg_latency_no_dataset',)",
        *BACKBONES[backbone],
        *opts,
    ])  # fmt: skip
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def make_input(cfg, height: int, width: int) -> dict:
    """One random ``height x width`` image, resized and laid out as ``DefaultPredictor``."""
    import numpy as np
    import torch
    from detectron2.data import transforms as T

    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    image = resize.get_transform(image).apply_image(image)
    tensor = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))
    return {"image": tensor, "height": height, "width": width}


def measure_model(context: str, backbone: str, args) -> dict:
    """One JSON row: the model's latency, detections, FLOPs, peak memory (the rates
    against the machine's peak are added by :func:`run`)."""
    import torch

    path = config_file(args.config_dir, context)
    cfg, model = build_sgdet(path, backbone, args.device, args.opts)
    inputs = [make_input(cfg, *args.latency_image)]
    with torch.no_grad():
        for _ in range(args.warmup):
            model(inputs)
        m = lib.measure_stage(lambda: model(inputs), args.device, args.repeats, args.top_ops)
        out = model(inputs)[0]
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    row = {"context": context, "backbone": backbone, "config": os.path.relpath(path, REPO)}
    row.update(device=args.device, threads=torch.get_num_threads())
    row.update(input_hw=list(inputs[0]["image"].shape[1:]))
    row.update(detections=len(out["instances"]), pairs=len(out["relations"]))
    row.update(time_s=m["time_s"], ms_per_image=m["time_s"] * 1e3, flops=m["flops"])
    row.update(peak_bytes=m["peak_bytes"], peak_mb=m["peak_bytes"] / 2**20)
    row.update(weights_mb=weights / 2**20, top_ops=m["top_ops"])
    return row


def _cells(row: dict) -> list:
    return [
        row["context"], row["backbone"], str(row["detections"]), str(row["pairs"]),
        f"{row['ms_per_image']:.1f}", f"{row['flops'] / 1e9:.1f}",
        f"{row['gflop_per_s']:.1f}", f"{row['flop_fraction_of_peak']:.3f}",
        f"{row['peak_mb']:.1f}", f"{row['weights_mb']:.1f}",
    ]  # fmt: skip


def header(args, rows, peak: float) -> str:
    """Where and how the table was measured (device, threads, input size, command)."""
    import torch

    name = lib.device_name(args.device)
    h, w = rows[0]["input_hw"] if rows else (0, 0)
    return (
        f"SGDet latency per image on {args.device} ({name}, {torch.get_num_threads()} "
        f"thread(s), torch {torch.__version__}): a {args.latency_image[0]}x"
        f"{args.latency_image[1]} image resized to {h}x{w}, random weights, detector score "
        f"threshold 0; mean of {args.repeats} warm runs after {args.warmup} warm-up; peak MB: "
        f"live tensors above the weights (allocator); fp32 matmul peak (best at the start and "
        f"end of this run): {peak:.1f} GFLOP/s. Command: `{lib.command_line()}`"
    )


def markdown(rows, head: str) -> str:
    """The latency table (and each model's top operators, if measured) as Markdown."""
    lines = [head, "", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    for r in rows:
        if r["top_ops"]:
            lines.append(f"- {r['context']} / {r['backbone']}: {lib.ops_summary(r['top_ops'])}")
    return "\n".join(lines) + "\n"


def run(args) -> list:
    """``--latency``: measures every (backbone, model), prints the table, writes
    ``--json`` / ``--markdown``; returns the rows."""
    import json

    import torch

    contexts = args.contexts or list(CONFIG_PREFIX)
    for context in contexts:  # fail before the first model is built
        config_file(args.config_dir, context)
    first_peak = lib.matmul_peak_gflop_per_s(args.device)
    rows = []
    for backbone in args.backbones:
        for context in contexts:
            rows.append(measure_model(context, backbone, args))
            gc.collect()  # the model is gone: free its memory before the next one
            if torch.device(args.device).type == "cuda":
                torch.cuda.empty_cache()
            print(f"  {context} / {backbone}: {rows[-1]['ms_per_image']:.1f} ms", flush=True)
    # the machine's best in this run: a busy moment at the start would inflate the fractions
    peak = max(first_peak, lib.matmul_peak_gflop_per_s(args.device))
    for row in rows:
        row.update(peak_gflop_per_s=peak, **lib.rate_fields(row["flops"], row["time_s"], peak))
    text = markdown(rows, header(args, rows, peak))
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    return rows
