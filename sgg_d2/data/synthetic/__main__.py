"""Command line: ``python -m sgg_d2.data.synthetic --root DIR [options]``."""

import argparse
import sys
import time
from dataclasses import fields
from typing import List, Optional

from .generate import PRESET_CONFIGS, WorldConfig, generate_world


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line (unset sizes = the preset's :data:`PRESET_CONFIGS` entry)."""
    parser = argparse.ArgumentParser(
        prog="python -m sgg_d2.data.synthetic",
        description="Generate the synthetic scene-graph world (VG150 h5, VRD, OpenImages, "
        "custom JSON, COCO auxiliary masks, GloVe vectors).",
    )
    parser.add_argument("--root", required=True, help="output folder, e.g. datasets/synthetic")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESET_CONFIGS),
        default="default",
        help="which world: 'default' (2-6 objects, 11 classes/predicates, 160 px) or "
        "'crowded' (8-20 objects, 20 classes, 16 predicates, 224 px)",
    )
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
        per_preset = ", ".join(f"{k} {getattr(c, f.name)}" for k, c in PRESET_CONFIGS.items())
        parser.add_argument(flag, type=int, default=None, help=f"{helps[f.name]} ({per_preset})")
    parser.add_argument("--force", action="store_true", help="regenerate even if complete")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _print_summary(summary: dict) -> None:
    print(
        f"images: train {summary['num_train']} (first {summary['num_val']} = val), "
        f"test {summary['num_test']}, masks {summary['num_mask_train']}/{summary['num_mask_val']}"
    )
    print(f"objects: {summary['num_objects']}  relations: {summary['num_relations']}")
    stats = summary.get("statistics")
    groups = stats["predicate_groups"] if stats else {}
    group_of = {p: g for g, names in groups.items() for p in names}
    print(f"{'predicate':<14}{'train':>7}{'test':>7}  group")
    counts = summary["predicate_counts"]
    for name in summary["predicate_classes"]:
        train, test = counts["train"][name], counts["test"][name]
        print(f"{name:<14}{train:>7}{test:>7}  {group_of.get(name, '')}")
    held = "; ".join(" ".join(t) for t in summary["held_out_triplets"])
    print(f"held out of train (zero-shot): {held}")
    if stats is None:  # the default world's summary file has no measured statistics
        return
    print(f"classes: {stats['num_thing_classes']}  predicates: {stats['num_predicates']}")
    for split in ("train", "test"):
        o = stats["objects_per_image"][split]
        tags = ", ".join(f"{t} {v:.0%}" for t, v in stats["tag_fractions"][split].items())
        print(
            f"{split}: objects/image {o['min']}-{o['max']} (mean {o['mean']:.2f}), "
            f"relations/image {stats['relations_per_image'][split]:.2f}, images tagged: {tags}"
        )
    print(f"long tail (most / least frequent train predicate): {stats['long_tail_ratio']}")


def main(argv: Optional[List[str]] = None) -> int:
    """Generate the world; print a summary. Returns the process exit code."""
    args = parse_args(argv)
    base = PRESET_CONFIGS[args.preset]
    cfg = WorldConfig(
        **{
            f.name: getattr(base, f.name)
            if getattr(args, f.name) is None
            else getattr(args, f.name)
            for f in fields(WorldConfig)
        }
    )
    try:
        cfg.validate()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    summary = generate_world(
        args.root, cfg, force=args.force, progress=not args.no_progress, preset=args.preset
    )
    _print_summary(summary)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
