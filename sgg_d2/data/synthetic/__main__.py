"""Command line: ``python -m sgg_d2.data.synthetic --root DIR [options]``."""

import argparse
import sys
import time
from dataclasses import fields
from typing import List, Optional

from .generate import WorldConfig, generate_world


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (defaults = :class:`WorldConfig` defaults)."""
    defaults = WorldConfig()
    parser = argparse.ArgumentParser(
        prog="python -m sgg_d2.data.synthetic",
        description="Generate the synthetic scene-graph world (VG150 h5, VRD, OpenImages, "
        "custom JSON, COCO auxiliary masks, GloVe vectors).",
    )
    parser.add_argument("--root", required=True, help="output folder, e.g. datasets/synthetic")
    helps = {
        "seed": "base random seed",
        "num_train": "train images (h5 split 0), including the val carve-out",
        "num_val": "val images: the first N train images",
        "num_test": "test images (h5 split 2)",
        "num_mask_train": "auxiliary COCO mask train images",
        "num_mask_val": "auxiliary COCO mask val images",
        "image_size": "long side of the images in pixels",
    }
    for f in fields(WorldConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        parser.add_argument(flag, type=int, default=default, help=f"{helps[f.name]} ({default})")
    parser.add_argument("--force", action="store_true", help="regenerate even if complete")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _print_summary(summary: dict) -> None:
    print(
        f"images: train {summary['num_train']} (first {summary['num_val']} = val), "
        f"test {summary['num_test']}, masks {summary['num_mask_train']}/{summary['num_mask_val']}"
    )
    print(f"objects: {summary['num_objects']}  relations: {summary['num_relations']}")
    print(f"{'predicate':<12}{'train':>7}{'test':>7}")
    counts = summary["predicate_counts"]
    for name in summary["predicate_classes"]:
        print(f"{name:<12}{counts['train'][name]:>7}{counts['test'][name]:>7}")
    held = "; ".join(" ".join(t) for t in summary["held_out_triplets"])
    print(f"held out of train (zero-shot): {held}")


def main(argv: Optional[List[str]] = None) -> int:
    """Generate the world; print a summary. Returns the process exit code."""
    args = parse_args(argv)
    cfg = WorldConfig(**{f.name: getattr(args, f.name) for f in fields(WorldConfig)})
    try:
        cfg.validate()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    summary = generate_world(args.root, cfg, force=args.force, progress=not args.no_progress)
    _print_summary(summary)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
