"""Helpers of ``tools/ablate.py`` and the benchmarks beside it: variants, config files,
the ``train_net.py`` commands and how one is run, metrics files, JSON files and
durations. The statistics over seeds and the tables are in ``_ablate_stats.py``.

No Detectron2 import here except in :func:`build_config`.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODES = ("predcls", "sgcls", "sgdet")
# A comma followed by "KEY.PATH=" starts the next override; other commas belong to values.
_NEXT_OVERRIDE = re.compile(r",(?=\s*[A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)+\s*=)")


class Variant:
    """A model name: its leaf config and the ``KEY VALUE`` overrides applied on top."""

    def __init__(self, name: str, base: str, overrides: Sequence[Tuple[str, str]] = ()):
        self.name, self.base, self.overrides = name, base, list(overrides)

    def opts(self) -> List[str]:
        return [item for pair in self.overrides for item in pair]

    def __repr__(self):
        return f"Variant({self.name!r}, {self.base!r}, {self.overrides!r})"


def parse_variant(text: str, flag: str = "--variant", base_label: str = "BASEMODEL") -> Variant:
    """``NAME=BASE:KEY=VALUE,KEY=VALUE`` -> :class:`Variant`; ``NAME=BASE`` (no overrides) is
    an alias, the base under another name (e.g. the same model on another detector, see
    ``tools/ablate.py --on-joint-detector``).

    Example: ``linknet_nolayout=linknet:MODEL.SGG.LINKNET.LAYOUT=False``. A value may
    hold commas (``SOLVER.STEPS=(100,200)``): only a comma followed by an upper-case
    dotted key and ``=`` separates overrides.

    ``flag`` and ``base_label`` name the option and what stands before the colon in errors
    (``--modes`` entries use the same form with a mode as the base).

    Raises:
        ValueError: the text does not have that form (quotes it).
    """
    form = f"expected NAME={base_label}[:KEY=VALUE,KEY=VALUE...]"
    head, sep, tail = text.partition(":")
    name, eq, base = head.partition("=")
    name, base = name.strip(), base.strip()
    if not (eq and name and base and (tail.strip() or not sep)):
        raise ValueError(f"{flag} {text!r}: {form}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"{flag} {text!r}: name {name!r} may hold only [A-Za-z0-9_.-]")
    overrides = []
    for item in _NEXT_OVERRIDE.split(tail) if sep else ():
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not re.fullmatch(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+", key) or not value:
            raise ValueError(f"{flag} {text!r}: bad override {item!r}; {form}")
        overrides.append((key, value))
    return Variant(name, base, overrides)


def leaf_config(model: str) -> str:
    """``configs/synthetic/<model>_R18_FPN_sgcls.yaml`` (absolute); error lists the models."""
    path = os.path.join(REPO, "configs", "synthetic", f"{model}_R18_FPN_sgcls.yaml")
    if not os.path.isfile(path):
        folder = os.path.dirname(path)
        known = sorted(
            f[: -len("_R18_FPN_sgcls.yaml")]
            for f in os.listdir(folder)
            if f.endswith("_R18_FPN_sgcls.yaml")
        )
        raise ValueError(f"model {model!r}: no config {path} (models: {', '.join(known)})")
    return path


def world_files(world: str) -> Tuple[Optional[str], str]:
    """(partial world config or None for the default world, detector config)."""
    if world == "synthetic":
        return None, os.path.join(REPO, "configs", "synthetic", "faster_rcnn_R18_FPN_detector.yaml")
    folder = os.path.join(REPO, "configs", world)
    files = (
        os.path.join(folder, "world.yaml"),
        os.path.join(folder, "faster_rcnn_R18_FPN_detector.yaml"),
    )
    for path in files:
        if not os.path.isfile(path):
            raise ValueError(f"--world {world}: no such file {path}")
    return files


def scaled_schedule(cfg_solver, iters: int) -> List[str]:
    """Overrides that shorten a schedule to ``iters`` iterations, steps and warm-up scaled
    proportionally (warm-up at least 1)."""
    scale = iters / cfg_solver.MAX_ITER
    steps = tuple(max(1, round(s * scale)) for s in cfg_solver.STEPS)
    warmup = max(1, round(cfg_solver.WARMUP_ITERS * scale))
    return [
        "SOLVER.MAX_ITER",
        str(iters),
        "SOLVER.STEPS",
        str(steps),
        "SOLVER.WARMUP_ITERS",
        str(warmup),
    ]


def build_config(files: Sequence[str], opts: Sequence[str], schedule_iters: Optional[int] = None):
    """Detectron2 defaults -> sgg_d2 keys -> each file in order -> ``opts`` (validated).

    Returns the (unfrozen) CfgNode; ``cfg.dump()`` writes a config train_net.py reads.
    """
    from detectron2.config import get_cfg  # noqa: PLC0415  (heavy import, only here)

    import sgg_d2  # noqa: PLC0415
    from sgg_d2.config import add_sgg_config, validate_sgg_config  # noqa: PLC0415

    # Configs must be merged with the sgg_d2 whose train_net.py runs the steps: a study run
    # from a second checkout would otherwise write configs with the installed copy's keys.
    installed = os.path.dirname(os.path.dirname(os.path.abspath(sgg_d2.__file__)))
    if os.path.realpath(installed) != os.path.realpath(REPO):
        raise ValueError(
            f"sgg_d2 is imported from {installed}, not from this checkout {REPO}: "
            "install this checkout (pip install -e .) in the Python that runs the tool"
        )
    cfg = add_sgg_config(get_cfg())
    for path in files:
        cfg.merge_from_file(path)
    cfg.merge_from_list(list(opts))
    if schedule_iters:
        cfg.merge_from_list(scaled_schedule(cfg.SOLVER, schedule_iters))
    validate_sgg_config(cfg)
    return cfg


def train_command(config: str, opts: Sequence[str] = ()) -> List[str]:
    """``python train_net.py --config-file config *opts`` (run from :data:`REPO`)."""
    return [sys.executable, "train_net.py", "--config-file", config, *opts]


def eval_command(
    config: str, weights: str, mode: str, dataset: str, out_dir: str, opts: Sequence[str] = ()
) -> List[str]:
    """``train_net.py --eval-only`` of ``weights`` in ``mode`` on ``dataset`` only, results in
    ``out_dir`` (the scene-graph metrics in :func:`metrics_file`); ``opts`` come last."""
    return train_command(
        config,
        [
            "--eval-only",
            "MODEL.WEIGHTS",
            weights,
            "MODEL.SGG.MODE",
            mode,
            "DATASETS.TEST",
            f'["{dataset}"]',  # a list: readable once shell-quoted
            "OUTPUT_DIR",
            out_dir,
            *opts,
        ],
    )


def single_thread_env() -> Dict[str, str]:
    """This environment with one OpenMP / MKL thread (for parallel jobs)."""
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def run(cmd: Sequence[str], log_path: str, env: Optional[Mapping[str, str]] = None) -> float:
    """Run ``cmd`` from :data:`REPO`, its stdout and stderr in ``log_path``; returns seconds.

    Raises:
        RuntimeError: a non-zero exit, naming the exit code, the command and the log.
    """
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"exit {proc.returncode}: {shlex.join(cmd)} (log: {log_path})")
    return time.time() - start


def run_step(cmd: Sequence[str], log_path: str) -> float:
    """:func:`run`, printing the command before and its time after (sequential tools)."""
    print(f"$ {shlex.join(cmd)}", flush=True)
    seconds = run(cmd, log_path)
    print(f"  done in {seconds:.0f} s (log {log_path})", flush=True)
    return seconds


def train_once(config: str, out_dir: str, opts: Sequence[str] = (), force: bool = False) -> str:
    """Train ``config`` + ``opts`` into ``out_dir`` unless its ``model_final.pth`` exists
    (or with ``force``); returns that checkpoint's path."""
    final = os.path.join(out_dir, "model_final.pth")
    if os.path.isfile(final) and not force:
        print(f"reusing {final}", flush=True)
        return final
    os.makedirs(out_dir, exist_ok=True)
    cmd = train_command(config, [*opts, "OUTPUT_DIR", out_dir])
    run_step(cmd, os.path.join(out_dir, "train_stdout.log"))
    return final


def benchmark_args(description: str, models: Sequence[str], out: str, argv=None):
    """The benchmarks' shared options: ``--models`` (of ``models``, default all), ``--out``
    (default ``out``), ``--detector-iters``, ``--relation-iters``, ``--force``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--models", nargs="+", default=list(models), choices=models)
    p.add_argument("--out", default=out)
    p.add_argument("--detector-iters", type=int, default=None, help="override SOLVER.MAX_ITER")
    p.add_argument("--relation-iters", type=int, default=None, help="override SOLVER.MAX_ITER")
    p.add_argument("--force", action="store_true", help="retrain even if checkpoints exist")
    return p.parse_args(argv)


def exit_on_failed_step(tool: str, steps, *args):
    """``steps(*args)``; a failed step's :class:`RuntimeError` (its command and log) ends the
    tool with that one line instead of a traceback."""
    try:
        return steps(*args)
    except RuntimeError as err:
        raise SystemExit(f"{tool}: {err}") from None


def make_synthetic_world(out: str) -> str:
    """Generate the synthetic world under ``$SGG_DATASETS`` (default ``datasets``) unless
    there (log in ``out/synthetic.log``); returns that datasets root."""
    root = os.environ.get("SGG_DATASETS", "datasets")
    os.makedirs(out, exist_ok=True)
    cmd = [sys.executable, "-m", "sgg_d2.data.synthetic", "--no-progress"]
    run_step(cmd + ["--root", os.path.join(root, "synthetic")], os.path.join(out, "synthetic.log"))
    return root


def metrics_file(eval_dir: str, dataset: str) -> str:
    """Where ``train_net.py --eval-only`` leaves the evaluator's JSON for ``dataset``."""
    return os.path.join(eval_dir, "inference", dataset, "scene_graph_metrics.json")


def read_metrics(path: str) -> Dict[str, float]:
    """The ``metrics`` of a ``scene_graph_metrics.json`` (percent), plus each predicate's
    recall from its ``per_predicate`` entry as ``R@K(<predicate>)`` (e.g. ``R@50(on)``)."""
    with open(path) as f:
        summary = json.load(f)
    if "metrics" not in summary:
        raise ValueError(f"{path}: no 'metrics' key (keys: {sorted(summary)})")
    metrics = {k: float(v) for k, v in summary["metrics"].items()}
    for predicate, values in summary.get("per_predicate", {}).items():
        for key in ("R@20", "R@50", "R@100"):
            if key in values:
                metrics[f"{key}({predicate})"] = float(values[key])
    return metrics


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def dump_config(cfg, path: str) -> str:
    """Write ``cfg.dump()`` (a config train_net.py reads) to ``path``; returns ``path``."""
    with open(path, "w") as f:
        f.write(cfg.dump())
    return path


def read_json(path: str) -> dict:
    """The JSON object in ``path``; {} when the file does not exist."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_json(path: str, data) -> None:
    """Write JSON atomically (a temporary file, then a rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)
