"""The study of ``tools/ablate.py``: its models, variants and evaluation modes, the
(joint) detectors it trains once, and each (model, seed) run: config, training and
evaluations, resumed from what ``--out`` already holds."""

import os
import shlex
import threading
import time

if __package__:  # imported as tools._ablate_study (tests, python -m tools.ablate)
    from . import _ablate_lib as lib
else:  # python tools/ablate.py: Python puts this script's folder on sys.path
    import _ablate_lib as lib


class Study:
    """One ``tools/ablate.py`` invocation's study; ``args`` are its parsed arguments."""

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
        variants = [lib.parse_variant(v) for v in args.variant]
        variants += [lib.parse_variant(m, "--models") for m in inline]
        self.variants = {v.name: v for v in variants}
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
        for name in args.on_joint_detector:
            if name not in args.models:
                raise ValueError(
                    f"--on-joint-detector {name}: not in --models {args.models} (an alias "
                    f"NAME=BASE in --models runs a model on both detectors)"
                )
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
        return (
            self.grounded(name)
            or self.args.plain_on_joint_detector
            or name in self.args.on_joint_detector
        )

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
