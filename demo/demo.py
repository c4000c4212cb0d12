#!/usr/bin/env python
"""Run a trained scene-graph model on your own images; write a JSON and a PNG per image.

    python demo/demo.py --config-file configs/synthetic/motifs_R18_FPN_sgcls.yaml \
        --input path/to/img_or_dir --output out/demo \
        MODEL.WEIGHTS model_final.pth MODEL.SGG.MODE sgdet

Only the config and the weights are needed (a trained model carries its class names and
statistics; no dataset has to be registered). ``MODEL.WEIGHTS`` is required, unless
``--random-weights`` asks for an untrained model on purpose.

PredCls/SGCls need the objects' boxes (and, in PredCls, classes): ``--boxes boxes.json``
with ``{"<image file name>": [{"box": [x1, y1, x2, y2], "class": "ball"}, ...], ...}``,
boxes in pixels (XYXY; an entry may say ``"box_mode": "XYWH"`` for [x, y, width, height]).
In SGDet the detector finds the objects and ``--boxes`` is refused.

An image that cannot be read is skipped (logged and counted); the others are processed.
"""

import argparse
import json
import logging
import os
import sys

# isort: off
import sgg_d2  # noqa: F401  (first: installs the detectron2._C stand-in when needed)
from detectron2.data.detection_utils import read_image
from detectron2.utils.logger import setup_logger

# isort: on
from PIL import Image
from tqdm import tqdm

from sgg_d2.engine import SceneGraphPredictor, load_inference_config
from sgg_d2.utils.export import EXPORT_FORMATS, write_scene_graph
from sgg_d2.utils.visualization import draw_scene_graph

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
BOX_MODES = ("XYXY", "XYWH")
logger = logging.getLogger("sgg_d2.demo")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--input", required=True, help="an image or a folder of images")
    p.add_argument("--output", required=True, help="folder for <name>.json and <name>.png")
    p.add_argument("--boxes", help="JSON of boxes/classes per image (PredCls/SGCls)")
    p.add_argument("--top-k", type=int, default=10, help="relations drawn per image")
    p.add_argument(
        "--score-threshold",
        type=float,
        default=0.3,
        help="objects with a lower score are not drawn (all are kept in the JSON)",
    )
    p.add_argument(
        "--export",
        choices=EXPORT_FORMATS,
        action="append",
        default=[],
        help="also write the scene graph as <name>.graphml / <name>.dot (repeatable)",
    )
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="allow an empty MODEL.WEIGHTS (an untrained model, e.g. to test a setup)",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p.parse_args(argv)


def list_images(path: str):
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise SystemExit(f"--input {path}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
        return [os.path.join(path, f) for f in files]
    if not os.path.isfile(path):
        raise SystemExit(f"--input {path}: no such file or folder")
    return [path]


def read_boxes_table(path: str) -> dict:
    """The ``--boxes`` JSON: ``{image file name: [entry, ...]}``."""
    try:
        with open(path) as f:
            table = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"--boxes {path}: cannot read a JSON boxes table ({e})") from e
    if not isinstance(table, dict):
        raise SystemExit(f"--boxes {path}: expected an object {{image file name: [entries]}}")
    return table


def parse_entry(entry, where: str):
    """(XYXY box, class or None) of one ``--boxes`` entry; ``where`` names it in errors."""
    if not isinstance(entry, dict) or "box" not in entry:
        raise SystemExit(f'{where}: expected {{"box": [x1, y1, x2, y2], "class": ...}}')
    box, mode = entry["box"], str(entry.get("box_mode", "XYXY")).upper()
    if mode not in BOX_MODES:
        raise SystemExit(f"{where}: box_mode {mode!r}; known: {', '.join(BOX_MODES)}")
    if (
        not isinstance(box, list)
        or len(box) != 4
        or not all(isinstance(v, (int, float)) for v in box)
    ):
        raise SystemExit(f'{where}: "box" must be 4 numbers [x1, y1, x2, y2], got {box!r}')
    if mode == "XYWH":
        box = [box[0], box[1], box[0] + box[2], box[1] + box[3]]
    return box, entry.get("class")


def boxes_for(table, image_path: str, predictor: SceneGraphPredictor, args):
    """Checked (boxes, labels) of one image from the ``--boxes`` table (None, None: none)."""
    if table is None:
        return None, None
    key = os.path.basename(image_path)
    if key not in table:
        raise SystemExit(f"--boxes {args.boxes}: no entry for image {key!r}")
    if not isinstance(table[key], list):
        raise SystemExit(f"--boxes {args.boxes}: image {key!r}: expected a list of entries")
    boxes, labels = [], []
    for i, entry in enumerate(table[key]):
        where = f"--boxes {args.boxes}: image {key!r}, entry {i}"
        box, label = parse_entry(entry, where)
        if label is not None and isinstance(label, str) and label not in predictor.thing_classes:
            if predictor.mode == "predcls":
                raise SystemExit(
                    f"{where}: unknown class {label!r}; known: {predictor.thing_classes}"
                )
            logger.warning(
                "%s: unknown class %r (ignored: %s predicts the classes)",
                where,
                label,
                predictor.mode,
            )
        if predictor.mode == "predcls" and label is None:
            raise SystemExit(f'{where}: PredCls needs a "class" for every box')
        boxes.append(box)
        labels.append(label)
    return boxes, labels


def model_description(args, cfg) -> dict:
    return {
        "config": args.config_file,
        "weights": cfg.MODEL.WEIGHTS or "random",
        "mode": cfg.MODEL.SGG.MODE,
        "context": cfg.MODEL.SGG.CONTEXT,
    }


class UnreadableImage(Exception):
    """An input image that cannot be decoded (skipped, counted)."""


def process(path, predictor, table, args, cfg) -> str:
    """Write the outputs of one image; returns a one-line summary."""
    try:
        image = read_image(path, format="BGR")
    except OSError as e:  # missing, truncated, not an image (PIL errors are OSErrors)
        raise UnreadableImage(str(e)) from e
    boxes, labels = boxes_for(table, path, predictor, args)
    if boxes is not None:
        try:
            outputs = predictor.run(image, boxes, labels if predictor.mode == "predcls" else None)
        except ValueError as e:
            raise SystemExit(f"--boxes {args.boxes}: image {os.path.basename(path)!r}: {e}") from e
    else:
        outputs = predictor.run(image)
    graph = predictor.to_scene_graph(outputs)
    stem = os.path.splitext(os.path.basename(path))[0]
    with open(os.path.join(args.output, stem + ".json"), "w") as f:
        json.dump({"image": path, "model": model_description(args, cfg), **graph}, f, indent=1)
    for fmt in args.export:
        write_scene_graph(graph, os.path.join(args.output, f"{stem}.{fmt}"), fmt)
    picture = draw_scene_graph(
        image[:, :, ::-1], outputs, graph, predictor.metadata, args.top_k, args.score_threshold
    )
    Image.fromarray(picture).save(os.path.join(args.output, stem + ".png"))
    top = graph["relations"][0] if graph["relations"] else None
    best = ""
    if top:
        objs = graph["objects"]
        best = (
            f"; best: {objs[top['subject']]['class']} {top['predicate']} "
            f"{objs[top['object']]['class']}"
        )
    return f"{path}: {len(graph['objects'])} objects, {len(graph['relations'])} relations{best}"


def check_boxes_option(args, mode: str) -> None:
    """``--boxes`` is required in PredCls/SGCls and refused in SGDet."""
    if args.boxes and mode == "sgdet":
        raise SystemExit(
            "--boxes: mode sgdet detects its own objects and would ignore them; set "
            "MODEL.SGG.MODE predcls or sgcls to use your boxes"
        )
    if not args.boxes and mode != "sgdet":
        needs = "boxes and classes" if mode == "predcls" else "boxes"
        raise SystemExit(
            f"--boxes is required in mode {mode}: it runs on the objects' {needs} that you "
            "give (--boxes boxes.json, format in demo/demo.py's docstring); or set "
            "MODEL.SGG.MODE sgdet to detect them"
        )


def check_all_images_listed(table, images, boxes_file: str) -> None:
    """Every input image has an entry in the ``--boxes`` table (checked before any model
    work, so that a folder does not stop half-way); names the missing ones."""
    if table is None:
        return
    missing = [os.path.basename(p) for p in images if os.path.basename(p) not in table]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise SystemExit(
            f"--boxes {boxes_file}: no entry for {len(missing)} of the {len(images)} input "
            f"images: {shown}{more} (keys are image file names)"
        )


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="sgg_d2")
    cfg = load_inference_config(args.config_file, args.opts)
    check_boxes_option(args, cfg.MODEL.SGG.MODE)
    table = read_boxes_table(args.boxes) if args.boxes else None
    images = list_images(args.input)
    check_all_images_listed(table, images, args.boxes)
    try:
        predictor = SceneGraphPredictor(cfg, allow_random_weights=args.random_weights)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from e
    os.makedirs(args.output, exist_ok=True)
    skipped = []
    for path in tqdm(images, desc="scene graphs", unit="img", disable=len(images) < 2):
        try:
            summary = process(path, predictor, table, args, cfg)
        except UnreadableImage as e:  # skip it, keep going with the others
            logger.warning("skipping %s: cannot read the image (%s)", path, e)
            skipped.append(path)
            continue
        tqdm.write(summary)
    if skipped:
        print(f"skipped {len(skipped)} of {len(images)} images (unreadable): {skipped}")
    if len(skipped) == len(images):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
