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
"""

import argparse
import json
import logging
import sys
from typing import List, Optional

import numpy as np

from ..config.defaults import SGG_MODES
from ..data.config_datasets import register_json_datasets, require_registered
from .build import EVALUATOR_TYPES
from .prediction_io import load_compact_predictions
from .sg_evaluator import SceneGraphEvaluator

logger = logging.getLogger("sgg_d2.evaluation")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sgg_d2.evaluation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", required=True, help="registered dataset name")
    parser.add_argument("--predictions", required=True, help="<kind>_predictions.pth file")
    parser.add_argument(
        "--mode",
        choices=SGG_MODES,
        help="scene_graph files only: mode to report (default: the saved one); "
        "predcls/sgcls add A@K",
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
    if not any(getattr(h, "_sgg_d2_cli", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s]: %(message)s", "%H:%M:%S"))
        handler._sgg_d2_cli = True
        root.addHandler(handler)
    root.setLevel(logging.INFO)


def build_evaluator(args: argparse.Namespace, payload: dict):
    """The evaluator that wrote ``payload``, rebuilt with its settings and the overrides."""
    kind = payload["evaluator"]
    if kind not in EVALUATOR_TYPES:
        raise ValueError(
            f"{args.predictions}: unknown evaluator {kind!r}; known: {sorted(EVALUATOR_TYPES)}"
        )
    settings = dict(payload["settings"])
    cls = EVALUATOR_TYPES[kind]
    if cls is not SceneGraphEvaluator and (args.mode or args.zero_shot_triplets):
        raise ValueError(
            f"--mode and --zero-shot-triplets apply to scene_graph predictions; "
            f"{args.predictions} holds {kind!r} predictions"
        )
    if args.mode:
        settings["mode"] = args.mode
    if args.zero_shot_triplets:
        settings["zero_shot_triplets"] = np.load(args.zero_shot_triplets)
    return cls(args.dataset, output_dir=args.output_dir, **settings)


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the CLI; returns ``{"sgg": {metric: percent}}``."""
    args = parse_args(argv)
    _log_to_stderr()
    try:
        if args.config_file:
            from ..engine.launch import load_config

            load_config(args.config_file)
        register_json_datasets(args.register, key="--register")
        require_registered([args.dataset], "--dataset")
    except (ValueError, KeyError) as e:
        raise SystemExit(f"error: {e}") from e
    payload = load_compact_predictions(args.predictions)
    if payload["dataset"] != args.dataset:
        logger.warning(
            f"{args.predictions} was written for dataset {payload['dataset']!r}, evaluating "
            f"against {args.dataset!r}"
        )
    evaluator = build_evaluator(args, payload)
    results = evaluator.evaluate_predictions(payload["predictions"])
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return results


if __name__ == "__main__":
    main()
