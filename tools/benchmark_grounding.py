#!/usr/bin/env python
"""Segmentation grounding (seed paper 004) on the synthetic world: grounded vs plain.

1. Trains the joint detector (synthetic_train boxes + synthetic_masks_train masks).
2. For MOTIFS and VCTree, trains the plain relation model and the segmentation-grounded one
   in SGCls mode, both on that same frozen detector (so grounding is the only difference).
3. Evaluates each on ``synthetic_test`` in PredCls and SGCls: mR@50, mR@50 restricted to the
   mask-dependent predicates (touching, on, behind, inside, in hole of, around; from the
   per-predicate recalls in ``scene_graph_metrics.json``), zsR@50, R@50.
4. Evaluates the grounded models' masks on ``synthetic_masks_val`` (COCO mask AP) in
   PredCls, SGCls and SGDet, without and with refinement (``REFINE_AT_TEST``).

    python tools/benchmark_grounding.py [--models motifs vctree] [--out DIR]
        [--detector-iters N] [--relation-iters N] [--force]

Every step is a plain ``train_net.py`` command (printed), so each number can be
reproduced by hand. Existing checkpoints in ``--out`` are reused unless ``--force``.
Results are printed as tables and written to ``DIR/results.json``.
"""

import json
import os
import re
import sys

import _ablate_lib as lib  # this script's folder is on sys.path

MODELS = ("motifs", "vctree")
SG_MODES = ("predcls", "sgcls")
MASK_MODES = ("predcls", "sgcls", "sgdet")
MASK_DEPENDENT = ("touching", "on", "behind", "inside", "in hole of", "around")
JOINT_DETECTOR = "configs/synthetic/mask_rcnn_R18_FPN_joint_detector.yaml"


def evaluate(config, weights, mode, dataset, out_dir, opts):
    """``train_net.py --eval-only`` on ``dataset`` into ``out_dir``; returns its log's path."""
    os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(out_dir, "eval_stdout.log")
    lib.run_step(lib.eval_command(config, weights, mode, dataset, out_dir, opts), log_path)
    return log_path


def parse_copypaste(log_path):
    """``{task: {metric: value}}`` from Detectron2's ``copypaste:`` lines of a log."""
    lines = [ln.split("copypaste: ", 1)[1].strip() for ln in open(log_path) if "copypaste: " in ln]
    out = {}
    for i, line in enumerate(lines[:-2]):
        match = re.fullmatch(r"Task: (\S+)", line)
        if match:
            names, values = lines[i + 1].split(","), lines[i + 2].split(",")
            out[match.group(1)] = {n: float(v) for n, v in zip(names, values)}
    return out


def sg_metrics(config, weights, mode, out_dir, opts):
    """Scene-graph metrics on synthetic_test, plus the mask-dependent mR@50."""
    evaluate(config, weights, mode, "synthetic_test", out_dir, opts)
    path = lib.metrics_file(out_dir, "synthetic_test")
    metrics = lib.read_metrics(path)
    missing = [p for p in MASK_DEPENDENT if f"R@50({p})" not in metrics]
    if missing:
        raise SystemExit(f"{path}: no per-predicate recall for {missing}")
    recalls = [metrics[f"R@50({p})"] for p in MASK_DEPENDENT]
    metrics["mask-dep mR@50"] = sum(recalls) / len(MASK_DEPENDENT)
    return metrics


def mask_ap(config, weights, mode, refine, out_dir, opts):
    """COCO mask AP of a grounded model on synthetic_masks_val."""
    opts = ["MODEL.SGG.GROUNDING.REFINE_AT_TEST", str(refine), *opts]
    log_path = evaluate(config, weights, mode, "synthetic_masks_val", out_dir, opts)
    results = parse_copypaste(log_path)
    if "segm" not in results:
        raise SystemExit(f"{log_path}: no mask AP (Task: segm) found")
    return results["segm"]


def parse_args(argv=None):
    return lib.benchmark_args(__doc__.split("\n")[0], MODELS, "output/benchmark_grounding", argv)


def schedule(iters):
    """Overrides for a shortened schedule (LR steps scaled, warm-up capped)."""
    if not iters:
        return []
    return ["SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", f"({int(0.8 * iters)},)",
            "SOLVER.WARMUP_ITERS", str(min(50, max(1, iters // 10)))]  # fmt: skip


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    results = lib.exit_on_failed_step("benchmark_grounding.py", run_models, args, out)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print_tables(results, args.models)


def run_models(args, out):
    """Joint detector once; plain and grounded runs of each model on it, their scene-graph
    metrics and the grounded runs' mask AP."""
    root = lib.make_synthetic_world(out)
    det_dir = os.path.join(out, "joint_detector")
    detector = lib.train_once(JOINT_DETECTOR, det_dir, schedule(args.detector_iters), args.force)
    results = {"detector": detector_metrics(det_dir), "sg": {}, "masks": {}}
    vectors = os.path.join(root, "synthetic", "glove", "synthetic.50d.txt")
    for model in args.models:
        for variant, config in (
            ("plain", f"configs/synthetic/{model}_R18_FPN_sgcls.yaml"),
            ("grounded", f"configs/synthetic/{model}_grounded_R18_FPN_sgcls.yaml"),
        ):
            opts = ["MODEL.SGG.DETECTOR_WEIGHTS", detector]
            if variant == "grounded":
                opts += ["MODEL.SGG.GROUNDING.WORD_VECTORS", vectors]
            run_dir = os.path.join(out, f"{model}_{variant}")
            train_opts = opts + schedule(args.relation_iters)
            weights = lib.train_once(config, run_dir, train_opts, args.force)
            for mode in SG_MODES:
                key = f"{model}/{variant}/{mode}"
                results["sg"][key] = sg_metrics(
                    config, weights, mode, os.path.join(run_dir, mode), opts
                )
            if variant == "grounded":
                for mode in MASK_MODES:
                    for refine in (False, True):
                        key = f"{model}/{mode}/{'refined' if refine else 'no refine'}"
                        sub = os.path.join(
                            run_dir, f"masks_{mode}_{'refined' if refine else 'raw'}"
                        )
                        results["masks"][key] = mask_ap(config, weights, mode, refine, sub, opts)
    return results


def detector_metrics(det_dir):
    """Final box/mask AP of the joint detector (its end-of-training evaluation)."""
    path = os.path.join(det_dir, "metrics.json")
    rows = [json.loads(line) for line in open(path)] if os.path.isfile(path) else []
    final = {}
    for row in rows:
        final.update({k: v for k, v in row.items() if k.endswith(("/AP", "/AP50"))})
    return final


def print_tables(results, models):
    print("\nJoint detector:", ", ".join(f"{k} {v:.1f}" for k, v in results["detector"].items()))
    cols = ("mR@50", "mask-dep mR@50", "zsR@50", "R@50")
    print("\n| model | grounding | mode | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---:|" * len(cols))
    for model in models:
        for mode in SG_MODES:
            for variant in ("plain", "grounded"):
                m = results["sg"][f"{model}/{variant}/{mode}"]
                row = " | ".join(f"{m[c]:.1f}" for c in cols)
                print(f"| {model} | {variant} | {mode} | {row} |")
    print("\n| model | mode | mask AP (no refine) | mask AP (refined) | AP50 (no refine) | "
          "AP50 (refined) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|")
    for model in models:
        for mode in MASK_MODES:
            raw = results["masks"][f"{model}/{mode}/no refine"]
            ref = results["masks"][f"{model}/{mode}/refined"]
            print(
                f"| {model} | {mode} | {raw['AP']:.1f} | {ref['AP']:.1f} | {raw['AP50']:.1f} | "
                f"{ref['AP50']:.1f} |"
            )


if __name__ == "__main__":
    sys.exit(main())
