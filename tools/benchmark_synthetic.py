#!/usr/bin/env python
"""Scene-graph results on the synthetic world: every context model x every mode.

Trains the detector (stage 1) once, then each context model in SGCls mode on the frozen
detector (stage 2), and evaluates each trained model on ``synthetic_test`` in PredCls,
SGCls and SGDet (the mode only changes what the model is given at test time). Prints a
model-zoo table (R@K, mR@K, zsR@K, ng-R@50) and checks the relation-stage claim: every
context model beats the Frequency baseline by >= 10 points of PredCls mR@50.

    python tools/benchmark_synthetic.py [--models frequency motifs ...] [--out DIR]
        [--detector-iters N] [--relation-iters N] [--force]

Every step is a plain ``train_net.py`` command (printed), so each row can be reproduced
by hand. Existing checkpoints and evaluations (newer than their checkpoint) in ``--out``
are reused unless ``--force``.
"""

import os
import sys

import _ablate_lib as lib  # this script's folder is on sys.path

MODELS = (
    "frequency",
    "imp",
    "motifs",
    "vctree",
    "linknet",
    "reldn",
    "reldn_nocontrastive",
    "fnet",
)
MODES = ("predcls", "sgcls", "sgdet")
COLUMNS = ("R@20", "R@50", "R@100", "mR@20", "mR@50", "mR@100", "zsR@50", "ng-R@50")
TEST_SET = "synthetic_test"


def evaluate(config, weights, mode, out_dir, force=False):
    """Scene-graph metrics of ``weights`` in ``mode`` on ``synthetic_test``; an evaluation
    in ``out_dir`` newer than the checkpoint is reused unless ``force``."""
    path = lib.metrics_file(out_dir, TEST_SET)
    if os.path.isfile(path) and not force and os.path.getmtime(path) > os.path.getmtime(weights):
        return lib.read_metrics(path)
    os.makedirs(out_dir, exist_ok=True)
    cmd = lib.eval_command(config, weights, mode, TEST_SET, out_dir)
    lib.run_step(cmd, os.path.join(out_dir, "eval_stdout.log"))
    return lib.read_metrics(path)


def parse_args(argv=None):
    return lib.benchmark_args(__doc__.split("\n")[0], MODELS, "output/benchmark_synthetic", argv)


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    results = lib.exit_on_failed_step("benchmark_synthetic.py", run_models, args, out)
    print_table(results, args.models)
    check_claim(results, args.models)
    if {"reldn", "reldn_nocontrastive"} <= set(args.models):
        compare_on_same_class_images(out)


def run_models(args, out):
    """Detector once, then each model trained in SGCls and evaluated in every mode;
    returns ``{(model, mode): metrics}``."""
    lib.make_synthetic_world(out)
    det_opts = ["SOLVER.MAX_ITER", str(args.detector_iters)] if args.detector_iters else []
    detector = lib.train_once(
        "configs/synthetic/faster_rcnn_R18_FPN_detector.yaml",
        os.path.join(out, "detector"),
        det_opts,
        args.force,
    )
    results = {}
    for model in args.models:
        config = f"configs/synthetic/{model}_R18_FPN_sgcls.yaml"
        opts = ["MODEL.SGG.DETECTOR_WEIGHTS", detector]
        if args.relation_iters:
            opts += ["SOLVER.MAX_ITER", str(args.relation_iters)]
        weights = lib.train_once(config, os.path.join(out, model), opts, args.force)
        for mode in MODES:
            results[model, mode] = evaluate(
                config, weights, mode, os.path.join(out, model, mode), args.force
            )
    return results


def print_table(results, models):
    print("\n| model | mode | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---:|" * len(COLUMNS))
    for model in models:
        for mode in MODES:
            m = results[model, mode]
            row = " | ".join(f"{m.get(c, float('nan')):.1f}" for c in COLUMNS)
            print(f"| {model} | {mode} | {row} |")


def check_claim(results, models):
    if "frequency" not in models:
        return
    base = results["frequency", "predcls"]["mR@50"]
    print(f"\nPredCls mR@50 of the Frequency baseline: {base:.1f}")
    for model in models:
        if model == "frequency":
            continue
        gain = results[model, "predcls"]["mR@50"] - base
        verdict = "PASS" if gain >= 10 else "FAIL"
        print(f"{model}: PredCls mR@50 {base + gain:.1f} ({gain:+.1f} points) -> {verdict}")


def compare_on_same_class_images(out):
    """RelDN with vs without the contrastive losses on the test images that contain
    several instances of one class (where the entity-class-aware loss should matter)."""
    import sgg_d2  # noqa: F401,I001  (first: registers the datasets)
    import numpy as np
    from detectron2.data import DatasetCatalog
    from sgg_d2.evaluation import SceneGraphEvaluator
    from sgg_d2.evaluation.prediction_io import load_compact_predictions

    dicts = DatasetCatalog.get("synthetic_test")
    keep = {
        d["image_id"]
        for d in dicts
        if np.bincount([a["category_id"] for a in d["annotations"]]).max() >= 2
    }
    print(
        f"\nRelDN on the {len(keep)} of {len(dicts)} test images with several same-class "
        "instances:"
    )
    print("| model | mode | R@50 | mR@50 | R@100 | mR@100 |\n|---|---|---:|---:|---:|---:|")
    for model in ("reldn", "reldn_nocontrastive"):
        for mode in ("predcls", "sgcls", "sgdet"):
            folder = os.path.dirname(lib.metrics_file(os.path.join(out, model, mode), TEST_SET))
            saved = load_compact_predictions(os.path.join(folder, "scene_graph_predictions.pth"))
            records = [r for r in saved["predictions"] if r["image_id"] in keep]
            m = SceneGraphEvaluator("synthetic_test", mode=mode).evaluate_predictions(records)
            m = m["sgg"]
            print(
                f"| {model} | {mode} | {m['R@50']:.1f} | {m['mR@50']:.1f} | "
                f"{m['R@100']:.1f} | {m['mR@100']:.1f} |"
            )


if __name__ == "__main__":
    sys.exit(main())
