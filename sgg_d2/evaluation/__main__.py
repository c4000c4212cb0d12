"""Re-evaluate saved compact predictions.

Usage::

    python -m sgg_d2.evaluation --dataset vg150_test \\
        --predictions output/inference/scene_graph_predictions.pth [--mode predcls] \\
        [--output-dir DIR] [--zero-shot-triplets FILE.npy]

The file is the ``<kind>_predictions.pth`` an evaluator writes to its ``output_dir``;
its ``evaluator`` field picks the evaluator and its settings are reused. The dataset must
be registered: ``import sgg_d2`` registers the builtin ones, ``--config-file C`` the
custom ones of ``DATASETS.SGG.JSON`` in C, ``--register NAME JSON IMAGE_ROOT`` one
scene-graph JSON file (repeatable). Prints the metrics as JSON
on stdout; the tables go to the log (stderr).

Predictions saved in a mode are reported in that mode only (PredCls ones were made with
ground-truth boxes and labels); ``--mode`` chooses for files saved without one. zsR@K is
skipped, with a notice, when the dataset's training split is not registered. A user
mistake is one ``error:`` line on stderr and exit status 2.
"""

import argparse
import json
import logging
import sys
from typing import List, Optional

import numpy as np
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..config import SGG_MODES, load_config
from ..data.config_datasets import (
    DatasetNotRegisteredError,
    register_json_datasets,
    require_registered,
)
from .build import EVALUATOR_TYPES
from .prediction_io import load_compact_predictions
from .sg_evaluator import SceneGraphEvaluator

logger = logging.getLogger("sgg_d2.evaluation")
PROG = "python -m sgg_d2.evaluation"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="registered dataset name")
    parser.add_argument("--predictions", required=True, help="<kind>_predictions.pth file")
    parser.add_argument(
        "--mode",
        choices=SGG_MODES,
        help="scene_graph files only: mode to report (default: the saved one); a file "
        "saved with a mode can be reported only in that mode, one saved without a mode in "
        "any (predcls/sgcls add A@K)",
    )
    parser.add_argument("--output-dir", help="write <kind>_metrics.json here")
    parser.add_argument(
        "--config-file", help="register the custom datasets of its DATASETS.SGG.JSON"
    )
    parser.add_argument(
        "--register",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a scene-graph JSON dataset under NAME (repeatable)",
    )
    parser.add_argument(
        "--zero-shot-triplets",
        help="scene_graph files only: .npy of (Z, 3) rows (subject class, object class, "
        "predicate); default: the data layer's zero-shot set of the dataset",
    )
    return parser.parse_args(argv)


def _log_to_stderr() -> None:
    """Tables and warnings go to stderr, so that stdout holds only the JSON results."""
    root = logging.getLogger("sgg_d2")
    for handler in root.handlers:
        if getattr(handler, "_sgg_d2_cli", False):
            handler.stream = sys.stderr  # main() called again: the current stderr
            break
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s]: %(message)s", "%H:%M:%S"))
        handler._sgg_d2_cli = True
        root.addHandler(handler)
    root.setLevel(logging.INFO)


# What each saved mode's predictions were made with, and so the only mode they can be
# reported as (a file saved without a mode may be reported as any).
_MADE_WITH = {
    "predcls": "ground-truth boxes and labels",
    "sgcls": "ground-truth boxes",
    "sgdet": "detected boxes",
}


def _check_mode(args: argparse.Namespace, saved: Optional[str]) -> None:
    if args.mode is None or saved is None or args.mode == saved:
        return
    made_with = _MADE_WITH.get(saved, "an unknown setup")
    raise ValueError(
        f"--mode {args.mode}: {args.predictions} holds {saved} predictions (made with "
        f"{made_with}); they can be reported only as {saved} (--mode {saved} or no --mode)"
    )


def _zero_shot_triplets(args: argparse.Namespace) -> Optional[np.ndarray]:
    """The --zero-shot-triplets array; an empty one (zsR@K skipped, with a notice) when
    the dataset's metadata names no ``train_split`` or that split is not registered;
    None: the data layer's set."""
    if args.zero_shot_triplets:
        try:
            return np.load(args.zero_shot_triplets)
        except (OSError, ValueError) as e:
            raise ValueError(f"--zero-shot-triplets {args.zero_shot_triplets}: {e}") from e
    train = MetadataCatalog.get(args.dataset).get("train_split", None)
    if train and train in DatasetCatalog.list():
        return None
    reason = (
        f"its training split {train!r} (metadata train_split) is not registered"
        if train
        else "its metadata names no train_split"
    )
    logger.warning(
        f"zsR@K skipped: the zero-shot triplets of {args.dataset!r} are those never seen in "
        f"training, and {reason}; register it (--register, --config-file) or pass "
        "--zero-shot-triplets FILE.npy"
    )
    return np.zeros((0, 3), np.int64)


def build_evaluator(args: argparse.Namespace, payload: dict):
    """The evaluator that wrote ``payload``, rebuilt with its settings and the overrides.

    Raises:
        ValueError: unknown evaluator kind, scene-graph options for another kind, a
            ``--mode`` the saved predictions cannot be reported as.
    """
    kind = payload["evaluator"]
    if kind not in EVALUATOR_TYPES:
        raise ValueError(
            f"{args.predictions}: unknown evaluator {kind!r}; known: {sorted(EVALUATOR_TYPES)}"
        )
    settings = dict(payload["settings"])
    cls = EVALUATOR_TYPES[kind]
    if cls is not SceneGraphEvaluator:
        if args.mode or args.zero_shot_triplets:
            raise ValueError(
                f"--mode and --zero-shot-triplets apply to scene_graph predictions; "
                f"{args.predictions} holds {kind!r} predictions"
            )
        return cls(args.dataset, output_dir=args.output_dir, **settings)
    _check_mode(args, settings.get("mode"))
    if args.mode:
        settings["mode"] = args.mode
    zero_shot = _zero_shot_triplets(args)
    if zero_shot is not None:
        settings["zero_shot_triplets"] = zero_shot
    return cls(args.dataset, output_dir=args.output_dir, **settings)


def evaluate(args: argparse.Namespace) -> dict:
    """Register the datasets, load the predictions, evaluate; returns the results.

    Raises:
        ValueError, OSError, DatasetNotRegisteredError: the user's input is wrong (the
            message names the argument or file and what was expected).
    """
    if args.config_file:
        try:
            load_config(args.config_file)
        except (KeyError, yaml.YAMLError) as e:  # unknown key, bad YAML
            raise ValueError(f"--config-file {args.config_file}: {e}") from e
    register_json_datasets(args.register, key="--register")
    hint = "--register NAME JSON IMAGE_ROOT, or --config-file C with DATASETS.SGG.JSON"
    require_registered([args.dataset], "--dataset", hint)
    payload = load_compact_predictions(args.predictions)
    if payload["dataset"] != args.dataset:
        logger.warning(
            f"{args.predictions} was written for dataset {payload['dataset']!r}, evaluating "
            f"against {args.dataset!r}"
        )
    evaluator = build_evaluator(args, payload)
    return evaluator.evaluate_predictions(payload["predictions"])


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the CLI; returns ``{"sgg": {metric: percent}}``.

    A user mistake (unknown dataset, missing or foreign file, impossible ``--mode``) is
    one ``python -m sgg_d2.evaluation: error: ...`` line on stderr and exit status 2.
    """
    args = parse_args(argv)
    _log_to_stderr()
    try:
        results = evaluate(args)
    except (ValueError, OSError, DatasetNotRegisteredError) as e:
        message = " ".join(str(e).split())  # one line
        print(f"{PROG}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from e
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return results


if __name__ == "__main__":
    main()
