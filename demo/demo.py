#!/usr/bin/env python
"""Run a trained scene-graph model on your own images; write a JSON and a PNG per image.

    python demo/demo.py --config-file configs/synthetic/motifs_R18_FPN_sgdet.yaml \
        --input path/to/img_or_dir --output out/demo MODEL.WEIGHTS model_final.pth

PredCls/SGCls need the objects' boxes (and labels): ``--boxes boxes.json`` with
``{"<image file name>": [{"box": [x1, y1, x2, y2], "class": "ball"}, ...], ...}``.
"""

import argparse
import json
import os
import sys

# isort: off
import sgg_d2  # noqa: F401  (first: installs the detectron2._C stand-in when needed)
from detectron2.data.detection_utils import read_image
from detectron2.utils.logger import setup_logger

# isort: on
from PIL import Image

from sgg_d2.engine import SceneGraphPredictor, load_config
from sgg_d2.utils.visualization import draw_scene_graph

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--input", required=True, help="an image or a folder of images")
    p.add_argument("--output", required=True, help="folder for <name>.json and <name>.png")
    p.add_argument("--boxes", help="JSON of boxes/classes per image (PredCls/SGCls)")
    p.add_argument("--top-k", type=int, default=10, help="relations drawn per image")
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


def boxes_for(table, image_path: str):
    if table is None:
        return None, None
    key = os.path.basename(image_path)
    if key not in table:
        raise SystemExit(f"--boxes: no entry for image {key!r}")
    entries = table[key]
    return [e["box"] for e in entries], [e["class"] for e in entries]


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="sgg_d2")
    cfg = load_config(args.config_file, args.opts)
    predictor = SceneGraphPredictor(cfg)
    table = None
    if args.boxes:
        try:
            with open(args.boxes) as f:
                table = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"--boxes {args.boxes}: cannot read a JSON boxes table ({e})") from e
    os.makedirs(args.output, exist_ok=True)
    for path in list_images(args.input):
        image = read_image(path, format="BGR")
        boxes, labels = boxes_for(table, path)
        outputs = predictor.run(image, boxes, labels if cfg.MODEL.SGG.MODE == "predcls" else None)
        graph = predictor.to_scene_graph(outputs)
        stem = os.path.splitext(os.path.basename(path))[0]
        with open(os.path.join(args.output, stem + ".json"), "w") as f:
            json.dump({"image": path, **graph}, f, indent=1)
        picture = draw_scene_graph(
            image[:, :, ::-1], outputs, graph, predictor.metadata, args.top_k
        )
        Image.fromarray(picture).save(os.path.join(args.output, stem + ".png"))
        top = graph["relations"][0] if graph["relations"] else None
        print(
            f"{path}: {len(graph['objects'])} objects, {len(graph['relations'])} relations"
            + (
                f"; best: {graph['objects'][top['subject']]['class']} {top['predicate']} "
                f"{graph['objects'][top['object']]['class']}"
                if top
                else ""
            )
        )


if __name__ == "__main__":
    sys.exit(main())
