#!/usr/bin/env python
"""Multi-seed ablation study: train each model once per seed, evaluate it in each mode,
report mean ± std over seeds and paired (same-seed) differences with a verdict.

    python tools/ablate.py --world synthetic_crowded \\
        --models frequency motifs reldn reldn_nocontrastive --modes predcls sgcls sgdet \\
        --seeds 3 --out output/ablation --jobs 2 --compare reldn:reldn_nocontrastive

Steps (every step is a plain ``train_net.py`` command, printed so a row can be rerun by
hand; finished steps found in ``--out`` are reused, so an interrupted study resumes):

1. the world's detector (``configs/<world>/faster_rcnn_R18_FPN_detector.yaml``; the
   default world: ``configs/synthetic/...``), once, in ``OUT/detector`` (or ``--detector``);
   when a model is segmentation-grounded (its merged config has
   ``MODEL.SGG.GROUNDING.ENABLED``), also the world's joint detector
   (``configs/<world>/mask_rcnn_R18_FPN_joint_detector.yaml``) once, in
   ``OUT/joint_detector`` (or ``--joint-detector``): grounded models start from it (and,
   with ``--plain-on-joint-detector``, every model does; with ``--on-joint-detector M ...``,
   the models named), and grounded models of a world other than the default one also
   merge ``configs/<world>/world_grounded.yaml`` (its auxiliary mask set and word vectors)
   after ``world.yaml``;
2. each model ``M`` (config ``configs/synthetic/M_R18_FPN_sgcls.yaml`` +
   ``configs/<world>/world.yaml`` + variant overrides) once per seed (Detectron2's
   ``SEED`` = 1..N) in SGCls training, config written to ``OUT/runs/M/seed<S>/config.yaml``;
3. ``--eval-only MODEL.SGG.MODE <mode>`` on ``<world>_test`` for each mode, in
   ``OUT/runs/M/seed<S>/eval_<mode>``; the metrics are read from the evaluator's
   ``inference/<world>_test/scene_graph_metrics.json``. A ``--modes`` entry
   ``NAME=MODE:KEY=VALUE,...`` is an evaluation variant: the same trained run evaluated
   in MODE with evaluation-only overrides, in ``eval_NAME`` (e.g. both SGDet protocols:
   ``--modes sgdet sgdet_overlap=sgdet:TEST.SGG.SGDET_OVERLAP_ONLY=True``).

Results: ``OUT/ablation.json`` (every run, every metric, times, commands) and printed
tables; ``--per-predicate`` also compares each predicate's ``R@50(<predicate>)``.
Verdict of ``--compare A:B`` per metric: ``holds`` when the mean of A - B over seeds is
> 0 and > 2 x its standard error (std of the differences / sqrt(n)).
"""

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

if __package__:  # imported as tools.ablate (tests, python -m tools.ablate)
    from . import _ablate_lib as lib
    from . import _ablate_stats as stats
    from ._ablate_study import Study
else:  # python tools/ablate.py: Python puts this script's folder on sys.path
    import _ablate_lib as lib
    import _ablate_stats as stats
    from _ablate_study import Study


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--world",
        default="synthetic",
        help="synthetic (default world) or a name "
        "with configs/<world>/world.yaml, e.g. synthetic_crowded",
    )
    p.add_argument(
        "--models",
        nargs="+",
        required=True,
        help="config names, --variant names, inline NAME=BASE:KEY=VALUE,... or aliases NAME=BASE",
    )
    p.add_argument(
        "--modes",
        nargs="+",
        default=["predcls", "sgcls", "sgdet"],
        metavar="MODE",
        help="predcls, sgcls, sgdet, or an evaluation variant NAME=MODE:KEY=VALUE,... "
        "(evaluation-only overrides of the same trained run, e.g. "
        "sgdet_overlap=sgdet:TEST.SGG.SGDET_OVERLAP_ONLY=True)",
    )
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (SEED = 1..N)")
    p.add_argument("--out", required=True, help="study folder (reused to resume)")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=BASE:KEY=VALUE,...",
        help="ad-hoc model, e.g. linknet_nolayout=linknet:MODEL.SGG.LINKNET.LAYOUT=False",
    )
    p.add_argument("--compare", nargs="*", default=[], metavar="A:B")
    p.add_argument(
        "--compare-eval-variants",
        action="store_true",
        help="also compare each --modes NAME=MODE:... variant with MODE, per model",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        help="metrics compared (default: R@50, mR@50 and the "
        "subset R@50[...] / mR@50[...] found)",
    )
    p.add_argument(
        "--per-predicate",
        action="store_true",
        help="also compare each predicate's R@50, R@50(<predicate>), from the "
        "evaluator's per_predicate entry",
    )
    p.add_argument(
        "--relation-iters",
        type=int,
        help="relation-stage iterations (steps and " "warm-up scaled); default: the config's",
    )
    p.add_argument("--detector-iters", type=int, help="detector iterations (scaled likewise)")
    p.add_argument(
        "--detector-seed",
        type=int,
        default=1,
        help="SEED of the (joint) detector training, so that a study rerun from scratch "
        "trains the same detector (default 1)",
    )
    p.add_argument("--detector", help="trained detector (model_final.pth or its folder)")
    p.add_argument(
        "--joint-detector",
        help="trained joint detector of the grounded models (model_final.pth or its folder)",
    )
    p.add_argument(
        "--plain-on-joint-detector",
        action="store_true",
        help="plain models also start from the joint detector (same frozen detector for "
        "grounded and plain models)",
    )
    p.add_argument(
        "--on-joint-detector",
        nargs="+",
        default=[],
        metavar="MODEL",
        help="these plain models (names in --models) start from the joint detector; with "
        "an alias (e.g. --models motifs motifs_joint=motifs --on-joint-detector "
        "motifs_joint) one study has a model on both detectors",
    )
    p.add_argument("--jobs", type=int, default=1, help="parallel jobs, 1 thread each when > 1")
    p.add_argument("--dry-run", action="store_true", help="write the configs, print commands")
    p.add_argument(
        "--opts",
        nargs="+",
        default=[],
        metavar="KEY VALUE",
        help="config overrides for every model (after the world and variant)",
    )
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        study = Study(args)
        tasks = [(m, s) for s in range(1, args.seeds + 1) for m in args.models]
        for model, seed in tasks:  # every config is merged and checked before any training
            study.write_config(model, seed)
    except ValueError as err:  # a bad model, variant, key or world: no traceback
        raise SystemExit(f"ablate.py: {err}") from None
    os.makedirs(study.out, exist_ok=True)
    print(f"Commands run in {lib.REPO}", flush=True)
    detector = {"unused": True}  # every model starts from the joint detector
    if not all(study.uses_joint_detector(m) for m in args.models):
        detector = study.detector()
    joint_detector = None
    if any(study.uses_joint_detector(m) for m in args.models):
        joint_detector = study.detector(joint=True)
    runs, failures = _run_tasks(study, tasks, args)
    if args.dry_run:
        return 0
    _report(study, args, runs, failures, detector, joint_detector)
    return 1 if failures else 0


def _run_tasks(study, tasks, args):
    """Every (model, seed) run, ``--jobs`` at a time; returns ``(runs, failures)`` (a failed
    run is recorded, not raised: the others go on)."""
    runs, failures, durations = [], [], []
    to_do = {task for task in tasks if not study.finished(*task)}
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(study.run, m, s): (m, s) for m, s in tasks}
        for future in as_completed(futures):
            try:
                record = future.result()
            except Exception as err:  # one failed run must not lose the others
                failures.append(
                    {"model": futures[future][0], "seed": futures[future][1], "error": str(err)}
                )
                print(f"FAILED {futures[future]}: {err}", flush=True)
                to_do.discard(futures[future])
                continue
            runs.append(record)
            fresh = [record["train"]["seconds"]] + [e["seconds"] for e in record["evals"].values()]
            if all(s is not None for s in fresh) and not args.dry_run:
                durations.append(sum(fresh))
            to_do.discard((record["model"], record["seed"]))
            study.progress(record, len(runs) + len(failures), len(tasks), durations, len(to_do))
    return runs, failures


def _report(study, args, runs, failures, detector, joint_detector):
    """Summaries and paired comparisons: ``OUT/ablation.json`` and printed tables."""
    runs.sort(key=lambda r: (args.models.index(r["model"]), r["seed"]))
    main_metrics, subset, compared = stats.study_metrics(runs, args.metrics, args.per_predicate)
    summary = stats.summarize(runs, args.models, args.modes, main_metrics + subset)
    comparisons = stats.comparison_rows(runs, study.pairs, args.modes, compared)
    if args.compare_eval_variants:
        comparisons += stats.eval_variant_rows(runs, args.models, study.eval_modes, compared)
    wall = time.time() - study.started  # this invocation only (a resumed study: less)
    steps = [detector.get("seconds")] + [r["train"]["seconds"] for r in runs]
    steps += [(joint_detector or {}).get("seconds")]
    steps += [e["seconds"] for r in runs for e in r["evals"].values()]
    job_seconds = sum(s for s in steps if s)  # every recorded step, resumed ones included
    path = os.path.join(study.out, "ablation.json")
    lib.write_json(
        path,
        {
            "world": args.world,
            "test_set": study.test_set,
            "argv": sys.argv,
            "repo": lib.REPO,
            "detector": detector,
            "joint_detector": joint_detector,
            "runs": runs,
            "failures": failures,
            "summary": summary,
            "comparisons": comparisons,
            "wall_seconds": wall,
            "job_seconds": job_seconds,
        },
    )
    print(f"\nMean ± std over seeds ({args.world}, test split):")
    print(stats.summary_table(summary, args.models, args.modes, main_metrics))
    if subset:
        print("\nSubsets (R@50 / mR@50 on tagged images and predicate groups):")
        print(stats.summary_table(summary, args.models, args.modes, subset))
    if comparisons:
        print("\nPaired differences (same seed); holds: mean > 0 and mean > 2 SE:")
        print(stats.comparison_table(comparisons))
    print(
        f"\nWall time {lib.format_duration(wall)} (all steps, summed: "
        f"{lib.format_duration(job_seconds)}); results in {path}"
    )


if __name__ == "__main__":
    sys.exit(main())
