#!/usr/bin/env python
"""Time and peak memory of the relation stage vs the detector stage, per context model,
at 20 / 40 / 80 objects per image (all N(N-1) pairs scored).

Each (stage, model, N) is measured in a fresh subprocess so that peak memory (RSS growth
on CPU, ``torch.cuda.max_memory_allocated`` on CUDA) is not polluted by earlier runs.
The detector stage is backbone + RPN + box head with per-class NMS; the relation stage is
everything the ``SceneGraphROIHeads`` adds on N given boxes (object features, union-box
features, context, predictor, post-processing), i.e. SGDet's extra cost at N detections.

    python tools/benchmark_relation.py [--sizes 20 40 80] [--image-size 592] [--device cpu]
        [--widths synthetic|paper] [--json FILE] [--contexts A B+variant ...] [--train]

``--widths synthetic`` (default): the synthetic configs' widths (F-Net's subgraph maps and
bottleneck as in ``configs/synthetic/fnet_*``). ``--widths paper``: every model at its
paper's (VG150 config) widths on the same synthetic backbone: 4096-d union features,
512-d context, 200-d embeddings, 1024-d box head, F-Net's 512-channel subgraph maps and
256-channel bottleneck. ``--json FILE`` writes the table as a list of rows
``{"context", "N", "det_s", "rel_s", "det_mb", "rel_mb"}``.

A model may carry variants, ``<Context>+<variant>[+...]`` (:data:`VARIANTS`): e.g.
``RelDNContext+relbackbone`` adds RelDN's trained relation backbone
(``MODEL.SGG.RELATION_BACKBONE``), ``+contrastive`` the graphical contrastive losses.
``--train`` times one relation-stage training step instead (forward + backward on N GT
boxes with N/2 relations, frozen detector; rows ``{"context", "N", "train_s",
"train_mb"}``), where a trained relation backbone costs most.

Needs the synthetic world (``make synthetic``): the frequency bias is built from its
training split.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

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
    "synthetic": ["MODEL.SGG.FNET.SUBGRAPH_DIM", "128", "MODEL.SGG.FNET.BOTTLENECK_DIM", "64"],
    "paper": [
        "MODEL.SGG.UNION_DIM",
        "4096",
        "MODEL.SGG.CONTEXT_HIDDEN_DIM",
        "512",
        "MODEL.SGG.EMBED_DIM",
        "200",
        "MODEL.ROI_BOX_HEAD.FC_DIM",
        "1024",
        "MODEL.SGG.FNET.SUBGRAPH_DIM",
        "512",
        "MODEL.SGG.FNET.BOTTLENECK_DIM",
        "256",
    ],
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
            *WIDTHS[widths],
        ],
    )
    torch.manual_seed(0)
    return build_model(cfg).eval()


class RssSampler:
    """Peak growth of this process's resident memory while the block runs (CPU), sampled
    from /proc every millisecond in a background thread."""

    def __enter__(self):
        self.base = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())
        self.peak_growth_mb = (self.peak - self.base) / 2**20


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(stage, context, n, device, image_size, repeats, widths="synthetic"):
    """Runs in the child process; prints one JSON line."""
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
        row = time_and_peak(detector if stage == "detector" else relation, repeats, device)
    print(json.dumps(row))


def time_and_peak(fn, repeats, device):
    """``{"seconds", "peak_mb"}``: the mean time of ``repeats`` warm calls of ``fn``, and the
    peak memory growth during a first call before them (nothing cached yet): resident
    memory on CPU, allocated memory on CUDA."""
    import torch

    if device != "cpu":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        with RssSampler() as sampler:
            fn()
        peak = sampler.peak_growth_mb
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device != "cpu":
        torch.cuda.synchronize()
    return {"seconds": (time.perf_counter() - t0) / repeats, "peak_mb": peak}


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

    return time_and_peak(step, repeats, device)


def train_table(args):
    """``--train``: training-step time and peak memory per model and N (no detector column)."""
    print(
        f"device {args.device}, image {args.image_size}px, relation-stage TRAINING step "
        f"(forward + backward, {args.repeats} warm runs; memory: peak growth of the first)"
    )
    print(f"{'model':<40}{'N':>4}{'train s':>9}{'train MB':>10}")
    table = []
    for n in args.sizes:
        for context in args.contexts:
            row = run_child("relation_train", context, n, args)
            table.append(
                {"context": context, "N": n, "train_s": row["seconds"], "train_mb": row["peak_mb"]}
            )
            print(f"{context:<40}{n:>4}{row['seconds']:>9.3f}{row['peak_mb']:>10.1f}")
    if getattr(args, "json", None):
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


def run_child(stage, context, n, args):
    cmd = [
        sys.executable,
        __file__,
        "--child",
        stage,
        context,
        str(n),
        "--device",
        args.device,
        "--image-size",
        str(args.image_size),
        "--repeats",
        str(args.repeats),
        "--widths",
        args.widths,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 80])
    p.add_argument("--contexts", nargs="+", default=list(CONTEXTS))
    p.add_argument("--image-size", type=int, default=592)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--widths", choices=sorted(WIDTHS), default="synthetic")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    p.add_argument("--train", action="store_true", help="time a relation training step")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        stage, context, n = args.child
        measure(stage, context, int(n), args.device, args.image_size, args.repeats, args.widths)
        return
    if args.train:
        return train_table(args)
    print(
        f"device {args.device}, image {args.image_size}px, {args.widths} widths, "
        f"time: mean of {args.repeats} warm runs; memory: peak growth during the first run "
        "(resident memory on CPU, allocated memory on CUDA)"
    )
    print(
        f"{'model':<24}{'N':>4}{'pairs':>7}{'det s':>8}{'rel s':>8}{'rel/det':>9}"
        f"{'det MB':>9}{'rel MB':>9}"
    )
    rows, table = {}, []
    for n in args.sizes:
        det = run_child("detector", "FrequencyBaseline", n, args)
        for context in args.contexts:
            rel = rows[context, n] = run_child("relation", context, n, args)
            table.append(
                {
                    "context": context,
                    "N": n,
                    "det_s": det["seconds"],
                    "rel_s": rel["seconds"],
                    "det_mb": det["peak_mb"],
                    "rel_mb": rel["peak_mb"],
                }
            )
            ratio = rel["seconds"] / det["seconds"]
            print(
                f"{context:<24}{n:>4}{n * (n - 1):>7}{det['seconds']:>8.3f}{rel['seconds']:>8.3f}"
                f"{ratio:>9.2f}{det['peak_mb']:>9.1f}{rel['peak_mb']:>9.1f}"
            )
    if {"MotifsContext", "FactorizableNetContext"} <= set(args.contexts):
        print("\nF-Net vs MOTIFS relation stage (same run): time ratio, memory ratio")
        for n in args.sizes:
            f, m = rows["FactorizableNetContext", n], rows["MotifsContext", n]
            print(
                f"  N={n:>3}: {f['seconds'] / m['seconds']:.2f}x time, "
                f"{f['peak_mb'] / max(m['peak_mb'], 1e-6):.2f}x memory"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
