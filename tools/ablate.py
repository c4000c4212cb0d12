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
   with ``--plain-on-joint-detector``, every model does), and grounded models of a world
   other than the default one also merge ``configs/<world>/world_grounded.yaml`` (its
   auxiliary mask set and word vectors) after ``world.yaml``;
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
import shlex
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

if __package__:  # imported as tools.ablate (tests, python -m tools.ablate)
    from . import _ablate_lib as lib
else:  # python tools/ablate.py: Python puts this script's folder on sys.path
    import _ablate_lib as lib


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
        help="config names, --variant names or inline NAME=BASE:KEY=VALUE,...",
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


class Study:
    def __init__(self, args):
        self.args = args
        self.out = os.path.abspath(args.out)
        self.world_file, self.detector_config = lib.world_files(args.world)
        folder = os.path.join(lib.REPO, "configs", args.world)
        self.joint_config = os.path.join(folder, "mask_rcnn_R18_FPN_joint_detector.yaml")
        self.grounded_world_file = (
            os.path.join(folder, "world_grounded.yaml") if self.world_file else None
        )
        self._grounded = {}
        self.test_set = f"{args.world}_test"
        # A --models entry may itself be a variant spec NAME=BASE:KEY=VALUE,...
        inline = [m for m in args.models if "=" in m]
        self.variants = {v.name: v for v in map(lib.parse_variant, args.variant + inline)}
        args.models = [m.split("=", 1)[0] if "=" in m else m for m in args.models]
        for name in args.models + [m for pair in args.compare for m in pair.split(":")]:
            self.variants.setdefault(name, lib.Variant(name, name))
        for v in self.variants.values():
            lib.leaf_config(v.base)  # fail now, listing the known models
        # A --modes entry: a mode, or an evaluation variant NAME=MODE:KEY=VALUE,...
        self.eval_modes = {}
        for text in args.modes:
            ev = (
                lib.parse_variant(text, "--modes", "MODE")
                if "=" in text
                else lib.Variant(text, text)
            )
            if ev.base not in lib.MODES:
                raise ValueError(f"--modes {text!r}: mode {ev.base!r} is not one of {lib.MODES}")
            self.eval_modes[ev.name] = ev
        args.modes = list(self.eval_modes)
        self.pairs = []
        for pair in args.compare:
            a, sep, b = pair.partition(":")
            if not (sep and a in args.models and b in args.models):
                raise SystemExit(f"--compare {pair!r}: expected A:B with A and B in --models")
            self.pairs.append((a, b))
        self.lock = threading.Lock()
        self.started = time.time()

    def execute(self, cmd, log_path, single_thread):
        """Run one train_net.py command (cwd: the repository); returns seconds."""
        prefix = "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 " if single_thread else ""
        with self.lock:
            print(f"$ {prefix}{shlex.join(cmd)}", flush=True)
        if self.args.dry_run:
            return 0.0
        return lib.run(cmd, log_path, lib.single_thread_env() if single_thread else None)

    def grounded(self, name) -> bool:
        """Whether model ``name`` (leaf config + variant overrides) is segmentation-grounded."""
        if name not in self._grounded:
            variant = self.variants[name]
            cfg = lib.build_config([lib.leaf_config(variant.base)], variant.opts())
            self._grounded[name] = bool(cfg.MODEL.SGG.GROUNDING.ENABLED)
        return self._grounded[name]

    def uses_joint_detector(self, name) -> bool:
        return self.grounded(name) or self.args.plain_on_joint_detector

    def detector_weights(self, joint=False):
        """The (joint) detector checkpoint the relation models start from (trained or not yet)."""
        path = self.args.joint_detector if joint else self.args.detector
        if not path:
            folder = "joint_detector" if joint else "detector"
            return os.path.join(self.out, folder, "model_final.pth")
        path = os.path.join(path, "model_final.pth") if os.path.isdir(path) else path
        if not os.path.isfile(path):
            raise ValueError(f"--{'joint-' if joint else ''}detector: no such file {path}")
        return path

    def detector(self, joint=False):
        """Train the (joint) detector unless present; returns its record."""
        weights = self.detector_weights(joint)
        if self.args.joint_detector if joint else self.args.detector:
            return {"weights": weights, "given": True}
        folder = os.path.dirname(weights)
        config = self.joint_config if joint else self.detector_config
        if joint and not os.path.isfile(config):
            raise ValueError(f"grounded models need a joint detector config: no such file {config}")
        record = {"weights": weights, "config": config}
        if os.path.isfile(weights):
            print(f"Detector found: {weights}", flush=True)
            return {**record, **lib.read_json(os.path.join(folder, "timing.json"))}
        os.makedirs(folder, exist_ok=True)
        opts = ["OUTPUT_DIR", folder, "SEED", str(self.args.detector_seed)]
        cfg = lib.build_config([config], opts, self.args.detector_iters)
        config_path = lib.dump_config(cfg, os.path.join(folder, "config.yaml"))
        cmd = lib.train_command(config_path)
        seconds = self.execute(cmd, os.path.join(folder, "train.log"), single_thread=False)
        record.update(command=shlex.join(cmd), seconds=seconds)
        if not self.args.dry_run:
            lib.write_json(
                os.path.join(folder, "timing.json"),
                {"command": record["command"], "seconds": seconds},
            )
        return record

    def write_config(self, name, seed):
        """Merge and validate one run's config, write it; returns (folder, config path).
        Training skips the end-of-training validation (``DATASETS.TEST`` = ()); runs on a
        frozen detector share its backbone maps in ``OUT/feature_cache``
        (``MODEL.SGG.FEATURE_CACHE_DIR``, unless ``--opts`` sets it)."""
        variant = self.variants[name]
        folder = self.run_folder(name, seed)
        os.makedirs(folder, exist_ok=True)
        files = [lib.leaf_config(variant.base)] + ([self.world_file] if self.world_file else [])
        opts = variant.opts() + list(self.args.opts)
        opts += ["SEED", str(seed), "OUTPUT_DIR", folder, "DATASETS.TEST", "()"]
        try:
            if self.grounded(name) and self.grounded_world_file:
                files.append(self.grounded_world_file)
            weights = self.detector_weights(self.uses_joint_detector(name))
            opts += ["MODEL.SGG.DETECTOR_WEIGHTS", weights]
            cfg = lib.build_config(files, opts, self.args.relation_iters)
            if cfg.MODEL.SGG.FREEZE_DETECTOR and "MODEL.SGG.FEATURE_CACHE_DIR" not in opts:
                # every run and evaluation on the same detector shares its backbone maps
                cfg.MODEL.SGG.FEATURE_CACHE_DIR = os.path.join(self.out, "feature_cache")
        except (AssertionError, KeyError, ValueError) as err:  # yacs asserts on a bad key
            message = err.args[0] if err.args else repr(err)
            raise ValueError(f"model {name!r}, configs {files}: {message}") from err
        return folder, lib.dump_config(cfg, os.path.join(folder, "config.yaml"))

    def run_folder(self, name, seed):
        """``OUT/runs/<name>/seed<seed>``: one run's config, weights, logs and evals."""
        return os.path.join(self.out, "runs", name, f"seed{seed}")

    def finished(self, name, seed):
        """Whether the run's weights and every requested mode's metrics already exist
        (the run will be reused, not retrained)."""
        folder = self.run_folder(name, seed)
        return os.path.isfile(os.path.join(folder, "model_final.pth")) and all(
            os.path.isfile(lib.metrics_file(os.path.join(folder, f"eval_{m}"), self.test_set))
            for m in self.args.modes
        )

    def run(self, name, seed):
        """Train one model with one seed (unless done) and evaluate it in every mode."""
        variant = self.variants[name]
        folder, config_path = self.write_config(name, seed)
        single = self.args.jobs > 1
        timing_path = os.path.join(folder, "timing.json")
        timing = lib.read_json(timing_path)
        weights = os.path.join(folder, "model_final.pth")
        record = {
            "model": name,
            "base": variant.base,
            "overrides": variant.overrides,
            "seed": seed,
            "config": config_path,
            "evals": {},
        }
        cmd = lib.train_command(config_path)
        record["train"] = {"command": shlex.join(cmd), "seconds": timing.get("train")}
        if not os.path.isfile(weights):
            timing["train"] = self.execute(cmd, os.path.join(folder, "train.log"), single)
            record["train"]["seconds"] = timing["train"]
        for mode in self.args.modes:
            eval_dir = os.path.join(folder, f"eval_{mode}")
            metrics_path = lib.metrics_file(eval_dir, self.test_set)
            ev = self.eval_modes[mode]
            cmd = lib.eval_command(
                config_path, weights, ev.base, self.test_set, eval_dir, ev.opts()
            )
            key = f"eval_{mode}"
            if not os.path.isfile(metrics_path):
                os.makedirs(eval_dir, exist_ok=True)
                timing[key] = self.execute(cmd, os.path.join(folder, f"{key}.log"), single)
            entry = {
                "command": shlex.join(cmd),
                "seconds": timing.get(key),
                "metrics_file": metrics_path,
            }
            if not self.args.dry_run:
                entry["metrics"] = lib.read_metrics(metrics_path)
            record["evals"][mode] = entry
        if not self.args.dry_run:
            lib.write_json(timing_path, timing)
        return record

    def progress(self, record, done, total, durations, to_do):
        """One line per finished run; the ETA counts only runs still ``to_do`` (a run
        reused from ``--out`` costs nothing, wherever it sits in the task order)."""
        seconds = sum(
            s
            for s in [record["train"]["seconds"]] + [e["seconds"] for e in record["evals"].values()]
            if s
        )
        headline = ""
        for mode in ("predcls", *self.args.modes):
            value = record["evals"].get(mode, {}).get("metrics", {}).get("mR@50")
            if value is not None:
                headline = f", {mode} mR@50 {value:.2f}"
                break
        eta = ""
        if durations and to_do:
            per_run = sum(durations) / len(durations)
            eta = f", ETA {lib.format_duration(per_run * to_do / self.args.jobs)}"
        print(
            f"[{done}/{total}] {record['model']} seed {record['seed']}: "
            f"{lib.format_duration(seconds)}{headline}{eta}",
            flush=True,
        )


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
    main_metrics, subset, compared = lib.study_metrics(runs, args.metrics, args.per_predicate)
    summary = lib.summarize(runs, args.models, args.modes, main_metrics + subset)
    comparisons = lib.comparison_rows(runs, study.pairs, args.modes, compared)
    if args.compare_eval_variants:
        comparisons += lib.eval_variant_rows(runs, args.models, study.eval_modes, compared)
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
    print(lib.summary_table(summary, args.models, args.modes, main_metrics))
    if subset:
        print("\nSubsets (R@50 / mR@50 on tagged images and predicate groups):")
        print(lib.summary_table(summary, args.models, args.modes, subset))
    if comparisons:
        print("\nPaired differences (same seed); holds: mean > 0 and mean > 2 SE:")
        print(lib.comparison_table(comparisons))
    print(
        f"\nWall time {lib.format_duration(wall)} (all steps, summed: "
        f"{lib.format_duration(job_seconds)}); results in {path}"
    )


if __name__ == "__main__":
    sys.exit(main())
