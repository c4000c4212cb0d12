#!/usr/bin/env python
"""Time, FLOPs, fraction of the machine's matmul peak and peak memory of the relation stage
vs the detector stage, per context model, at 20 / 40 / 80 objects per image (all N(N-1)
pairs scored); with ``--latency``, end-to-end SGDet latency per image of the VG150 models.

Each (stage, model, N) is measured in a fresh subprocess (no cache or lazily built state
carried over from another model). The detector stage is backbone + RPN + box head with
per-class NMS; the relation stage is everything the ``SceneGraphROIHeads`` adds on N given
boxes (object features, union-box features, context, predictor, post-processing), i.e.
SGDet's extra cost at N detections. Per stage: time (mean of ``--repeats`` warm calls),
FLOPs of one call (``torch.utils.flop_counter`` plus recurrent layers analytically), the
achieved GFLOP/s and its fraction of the machine's fp32 matmul peak (the better of two
measurements, at the start and the end of the run, same device and thread count), and the
peak growth of live tensor bytes during a first call, from the allocator
(``tools/_benchmark_lib.py`` says what each counts and misses).

    python tools/benchmark_relation.py [--sizes 20 40 80] [--image-size 592] [--device cpu]
        [--widths synthetic|paper] [--json FILE] [--markdown FILE] [--top-ops N]
        [--contexts A B+variant ...] [--train]
    python tools/benchmark_relation.py --latency [--backbones X101 R50] [--device cuda]
        [--contexts ...] [--latency-image 592 800] [--opts KEY VALUE ...] [--markdown FILE]

``--widths synthetic`` (default): the synthetic configs' widths (F-Net's subgraph maps and
bottleneck as in ``configs/synthetic/fnet_*``). ``--widths paper``: every model at its
paper's (VG150 config) widths on the same synthetic backbone: 4096-d union features,
512-d context, 200-d embeddings, 1024-d box head, F-Net's 512-channel subgraph maps and
256-channel bottleneck. ``--json FILE`` writes one row per (model, N):
``{"context", "N", "pairs", "device", "threads", "peak_gflop_per_s"}`` and per stage
(``det`` / ``rel``): ``<stage>_s`` (seconds), ``<stage>_flops``, ``<stage>_gflop_per_s``,
``<stage>_flop_fraction_of_peak``, ``<stage>_peak_bytes``, ``<stage>_mb`` (the same in MiB;
before 2026-12 this was resident-set growth) and, with ``--top-ops N``,
``<stage>_top_ops`` (``[{"op", "self_s", "share", "calls"}]``, the N operators with the
most self time in one profiled call). ``--markdown FILE`` writes the table (and the top
operators) as Markdown.

A model may carry variants, ``<Context>+<variant>[+...]`` (:data:`VARIANTS`): e.g.
``RelDNContext+relbackbone`` adds RelDN's trained relation backbone
(``MODEL.SGG.RELATION_BACKBONE``), ``+contrastive`` the graphical contrastive losses.
``--train`` times one relation-stage training step instead (forward + backward on N GT
boxes with N/2 relations, frozen detector; rows ``{"context", "N", "train_s",
"train_mb", "train_peak_bytes"}``), where a trained relation backbone costs most.

``--latency``: every context model's VG150 SGDet config with random weights, per detector
backbone, on one VG-sized image (``tools/_benchmark_latency.py``).

No dataset is needed: with the synthetic world registered (``make synthetic``), the
frequency bias is built from its training split, without it from zeros (the same cost).
"""

import argparse
import json
import os
import subprocess
import sys

if __package__:  # imported as tools.benchmark_relation (tests)
    from . import _benchmark_latency as latency
    from . import _benchmark_lib as lib
    from . import _benchmark_tables as tables
else:  # run as a script: its folder is on sys.path
    import _benchmark_latency as latency
    import _benchmark_lib as lib
    import _benchmark_tables as tables

CONTEXTS = (
    "FrequencyBaseline",
    "IMPContext",
    "MotifsContext",
    "VCTreeContext",
    "LinkNetContext",
    "RelDNContext",
    "FactorizableNetContext",
    "RelDNContext+relbackbone",
)
SYNTH = os.path.join(os.path.dirname(__file__), "..", "configs", "synthetic")
# "<Context>+<variant>[+<variant>]" rows: config overrides of each variant.
VARIANTS = {
    "relbackbone": ["MODEL.SGG.RELATION_BACKBONE.ENABLED", "True"],  # RelDN's relation CNN
    "contrastive": ["MODEL.SGG.EXTRA_RELATION_LOSSES", "['GraphicalContrastiveLoss']"],
}
# Config overrides per --widths (the detector backbone is the synthetic one in both).
WIDTHS = {
    "synthetic": {"MODEL.SGG.FNET.SUBGRAPH_DIM": 128, "MODEL.SGG.FNET.BOTTLENECK_DIM": 64},
    "paper": {
        "MODEL.SGG.UNION_DIM": 4096,
        "MODEL.SGG.CONTEXT_HIDDEN_DIM": 512,
        "MODEL.SGG.EMBED_DIM": 200,
        "MODEL.ROI_BOX_HEAD.FC_DIM": 1024,
        "MODEL.SGG.FNET.SUBGRAPH_DIM": 512,
        "MODEL.SGG.FNET.BOTTLENECK_DIM": 256,
    },
}


def build(context: str, device: str, image_size: int, widths: str = "synthetic"):
    import sgg_d2  # noqa: F401,I001  (first: detectron2._C stand-in)
    import torch
    from detectron2.modeling import build_model
    from sgg_d2.engine import load_config

    context, *variants = context.split("+")
    cfg = load_config(
        os.path.join(SYNTH, "Base-Synthetic-SGG.yaml"),
        [
            "MODEL.DEVICE",
            device,
            "MODEL.SGG.CONTEXT",
            context,
            "MODEL.SGG.MODE",
            "sgcls",
            "MODEL.SGG.USE_FREQUENCY_BIAS",
            "False" if context != "FrequencyBaseline" else "True",
            "MODEL.SGG.DETECTOR_WEIGHTS",
            "",
            "INPUT.MIN_SIZE_TEST",
            str(image_size),
            "INPUT.MAX_SIZE_TEST",
            str(image_size),
            "TEST.DETECTIONS_PER_IMAGE",
            "100",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            "0.0",
            *[x for v in variants for x in VARIANTS[v]],
            *[x for key, value in WIDTHS[widths].items() for x in (key, str(value))],
        ],
    )
    torch.manual_seed(0)
    return build_model(cfg).eval()


def measure(stage, context, n, device, image_size, repeats, widths="synthetic", top_n=0):
    """Runs in the child process; prints one JSON line (:func:`_benchmark_lib.measure_stage`)."""
    import sgg_d2  # noqa: F401,I001  (first: detectron2._C stand-in)
    import torch
    from detectron2.structures import Boxes, Instances

    model = build(context, device, image_size, widths)
    g = torch.Generator().manual_seed(n)
    image = torch.randint(0, 255, (3, image_size, image_size), generator=g).float()
    xy = torch.rand(n, 2, generator=g) * image_size * 0.8
    inst = Instances((image_size, image_size))
    inst.gt_boxes = Boxes(torch.cat([xy, xy + 16 + torch.rand(n, 2, generator=g) * 80], 1))
    inst.gt_classes = torch.zeros(n, dtype=torch.long)
    batch = [{"image": image, "instances": inst, "height": image_size, "width": image_size}]

    def detector():
        images = model.preprocess_image(batch)
        feats = model.backbone(images.tensor)
        props, _ = model.proposal_generator(images, feats, None)
        heads = model.roi_heads
        maps = [feats[f] for f in heads.box_in_features]
        box_feats = heads.box_head(heads.box_pooler(maps, [p.proposal_boxes for p in props]))
        heads.box_predictor.inference(heads.box_predictor(box_feats), props)

    images = model.preprocess_image(batch)
    with torch.no_grad():
        features = model.backbone(images.tensor)
    targets = [inst.to(model.device)]

    def relation():
        model.roi_heads(images, features, None, targets, None)

    if stage == "relation_train":
        print(json.dumps(measure_train(model, images, features, targets, repeats, device)))
        return
    with torch.no_grad():
        fn = detector if stage == "detector" else relation
        print(json.dumps(lib.measure_stage(fn, device, repeats, top_n)))


def measure_train(model, images, features, targets, repeats, device):
    """One relation-stage training step (forward + backward, frozen detector) on N GT boxes
    with N // 2 random relations: what a trained relation backbone adds to training."""
    import torch

    model.train()
    n = len(targets[0])
    g = torch.Generator().manual_seed(n)
    subj = torch.randperm(n, generator=g)[: n // 2]
    obj = (subj + 1) % n
    pred = torch.randint(0, 4, (len(subj),), generator=g)  # any real predicates
    relations = [torch.stack([subj, obj, pred], 1).to(model.device)]
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        _, losses = model.roi_heads(images, features, None, targets, relations)
        sum(losses.values()).backward()
        for p in params:
            p.grad = None

    return lib.measure_stage(step, device, repeats)


def train_table(args):
    """``--train``: training-step time and peak memory per model and N (no detector column)."""
    print(
        f"device {args.device}, image {args.image_size}px, relation-stage TRAINING step "
        f"(forward + backward, {args.repeats} warm runs; memory: peak live tensor bytes of "
        "the first, from the allocator)"
    )
    print(f"{'model':<40}{'N':>4}{'train s':>9}{'train MB':>10}")
    table = []
    for n in args.sizes:
        for context in args.contexts:
            m = run_child("relation_train", context, n, args)
            row = {"context": context, "N": n, "train_s": m["time_s"]}
            row.update(train_mb=m["peak_bytes"] / 2**20, train_peak_bytes=m["peak_bytes"])
            table.append(row)
            print(f"{context:<40}{n:>4}{row['train_s']:>9.3f}{row['train_mb']:>10.1f}")
    tables.write_json(args.json, table)


def run_child(stage, context, n, args):
    """Measures one (stage, model, N) in a fresh interpreter; its JSON line as a dict."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", stage, context, str(n)]
    cmd += ["--device", args.device, "--image-size", str(args.image_size)]
    cmd += ["--repeats", str(args.repeats), "--widths", args.widths]
    cmd += ["--top-ops", str(args.top_ops)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"benchmark_relation: {stage} {context} N={n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def setup_line(args, peak: float) -> str:
    import torch

    return (
        f"device {args.device} ({lib.device_name(args.device)}, torch {torch.__version__}), "
        f"{torch.get_num_threads()} thread(s), image "
        f"{args.image_size}px, {args.widths} widths; time: mean of {args.repeats} warm "
        f"runs; memory: peak live tensor bytes of the first run (allocator); fp32 matmul "
        f"peak (best at the start and end of this run): {peak:.1f} GFLOP/s"
    )


def relation_table(args):
    """The default mode: detector and relation stage of every model at every N."""
    import torch

    first_peak = lib.matmul_peak_gflop_per_s(args.device)
    measured = []  # (context, N, detector measurement, relation measurement)
    for n in args.sizes:
        det = run_child("detector", "FrequencyBaseline", n, args)
        for context in args.contexts:
            measured.append((context, n, det, run_child("relation", context, n, args)))
            print(f"  measured {context} N={n}", file=sys.stderr)
    # the machine's best in this run: a busy moment at the start would inflate the fractions
    peak = max(first_peak, lib.matmul_peak_gflop_per_s(args.device))
    print(setup_line(args, peak))
    common = {"device": args.device, "threads": torch.get_num_threads()}
    common["peak_gflop_per_s"] = peak
    table = [
        {"context": context, "N": n, "pairs": n * (n - 1), **common}
        | tables.stage_fields("det", det, peak)
        | tables.stage_fields("rel", rel, peak)
        for context, n, det, rel in measured
    ]
    tables.print_table(table)
    tables.print_top_ops(table)
    tables.print_fnet_vs_motifs(table, args)
    tables.write_json(args.json, table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            head = f"{setup_line(args, peak)}. Command: `{lib.command_line()}`"
            f.write(tables.markdown(table, head))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 80])
    p.add_argument("--contexts", nargs="+", help="models (default: all; --latency: no variants)")
    p.add_argument("--image-size", type=int, default=592)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--widths", choices=sorted(WIDTHS), default="synthetic")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    p.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    p.add_argument(
        "--top-ops",
        type=int,
        default=0,
        metavar="N",
        help="per stage and model, the N operators with the most self time",
    )
    p.add_argument("--train", action="store_true", help="time a relation training step")
    latency.add_arguments(p)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        stage, context, n = args.child
        measure(
            stage,
            context,
            int(n),
            args.device,
            args.image_size,
            args.repeats,
            args.widths,
            args.top_ops,
        )
    elif args.latency:
        latency.run(args)
    else:
        args.contexts = args.contexts or list(CONTEXTS)
        for context in args.contexts:
            for variant in context.split("+")[1:]:
                if variant not in VARIANTS:
                    sys.exit(
                        f"--contexts {context}: unknown variant {variant!r}; "
                        f"expected one of {sorted(VARIANTS)}"
                    )
        if args.train:
            train_table(args)
        else:
            relation_table(args)


if __name__ == "__main__":
    main()
