#!/usr/bin/env python
"""COCO mask AP of the target-class masks that segmentation grounding transfers.

The synthetic world's target test set has an exact mask for every object
(``synthetic_json_test``), so the transfer of auxiliary masks to target classes
(docs/GROUNDING.md) can be scored directly, for each transfer option:

    python tools/research/eval_transferred_masks.py \\
        --weights output/synthetic/joint_detector/model_final.pth \\
        --modes predcls sgcls sgdet --png-dir output/synthetic/transfer_pngs

Joint detector (default). The grounded relation config (``--grounded-config``: word
vectors, softmax settings, datasets) is built with the Frequency baseline as its context
(it keeps the detector's classes), refinement off, and the joint detector's weights
(``--weights``, default the config's ``MODEL.SGG.DETECTOR_WEIGHTS``); its output
``pred_masks`` are then the transfer of the joint detector's auxiliary masks to each
object's class, pasted at threshold 0.5. Options (``--options``, each ``SPACE/SIMILARITY``):
``MODEL.SGG.GROUNDING.TRANSFER_SPACE`` (``logits`` or ``probs``) x the normalisation of S
(``MODEL.SGG.GROUNDING.SIMILARITY``: ``dot``, ``softmax``, ``cosine``); ``box/dot`` scores
box-filling masks (the reference a transfer must beat). Objects per mode: PredCls, GT
boxes and classes; SGCls, GT boxes with the target box predictor's classes; SGDet, the
detector's target-class detections.

A trained grounded relation model (``--relation-weights``, its config as
``--grounded-config``): its output ``pred_masks`` in each mode, options ``refined`` and
``unrefined`` (``MODEL.SGG.GROUNDING.REFINE_AT_TEST`` on / off):

    python tools/research/eval_transferred_masks.py \\
        --grounded-config configs/synthetic/motifs_grounded_R18_FPN_sgcls.yaml \\
        --relation-weights output/synthetic/motifs_grounded_sgcls/model_final.pth

Scores: Detectron2's ``COCOEvaluator`` (``segm``) inside ``inference_on_dataset``, against
the exact masks of ``--dataset``. ``--png-dir``: the first ``--num-png`` test images as PNGs
(image | GT masks | predicted masks) for PredCls and the first option, one colour per object.
"""

import argparse
import json
import os
import tempfile

import numpy as np
import torch

# isort: off
import sgg_d2  # noqa: F401  (first: Detectron2's compiled-ops stand-in, datasets, models)
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    inference_on_dataset,
)
from detectron2.layers.mask_ops import paste_masks_in_image

# isort: on
from sgg_d2.config import load_config
from sgg_d2.engine import SceneGraphTrainer
from sgg_d2.utils.d2_compat import has_compiled_ops

TRANSFER_OPTIONS = [f"{s}/{n}" for s in ("logits", "probs") for n in ("dot", "softmax", "cosine")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--grounded-config",
        default="configs/synthetic/Base-Synthetic-SGG-Grounded.yaml",
        help="segmentation-grounded relation config (word vectors, S settings, datasets)",
    )
    p.add_argument(
        "--weights", default="", help="joint detector (default: MODEL.SGG.DETECTOR_WEIGHTS)"
    )
    p.add_argument("--relation-weights", default="", help="a trained grounded relation model")
    p.add_argument("--dataset", default="synthetic_json_test", help="target set with masks")
    p.add_argument("--options", nargs="+", help=f"default: {' '.join(TRANSFER_OPTIONS)}")
    p.add_argument(
        "--modes",
        nargs="+",
        default=["predcls", "sgcls", "sgdet"],
        choices=["predcls", "sgcls", "sgdet"],
    )
    p.add_argument("--max-images", type=int, default=0, help="0 = all")
    p.add_argument("--png-dir", default="")
    p.add_argument("--num-png", type=int, default=4)
    p.add_argument("--out", default="", help="write the table as JSON here")
    p.add_argument("--opts", nargs="*", default=[], help="config overrides KEY VALUE ...")
    args = p.parse_args(argv)
    default = ["refined", "unrefined"] if args.relation_weights else TRANSFER_OPTIONS
    args.options = args.options or default
    for option in args.options:
        if args.relation_weights and option not in ("refined", "unrefined"):
            p.error(f"--options {option!r}: with --relation-weights, refined or unrefined")
        if not args.relation_weights and option.split("/")[0] not in ("logits", "probs", "box"):
            p.error(f"--options {option!r}: expected SPACE/SIMILARITY, SPACE logits|probs|box")
    return args


def option_overrides(args, option: str) -> list:
    """Config overrides that make the grounded model's output masks those of ``option``."""
    if args.relation_weights:
        refine = str(option == "refined")
        return [
            "MODEL.WEIGHTS",
            args.relation_weights,
            "MODEL.SGG.GROUNDING.REFINE_AT_TEST",
            refine,
        ]
    space, _, similarity = option.partition("/")
    opts = ["MODEL.WEIGHTS", "", "MODEL.SGG.CONTEXT", "FrequencyBaseline"]
    opts += ["MODEL.SGG.GROUNDING.REFINE", "False"]
    opts += ["MODEL.SGG.GROUNDING.TRANSFER_SPACE", "logits" if space == "box" else space]
    opts += ["MODEL.SGG.GROUNDING.SIMILARITY", similarity or "dot"]
    return opts + (["MODEL.SGG.DETECTOR_WEIGHTS", args.weights] if args.weights else [])


def build_model(cfg):
    """The model in eval mode; ``MODEL.WEIGHTS`` loaded, else it starts from
    ``MODEL.SGG.DETECTOR_WEIGHTS`` (``SceneGraphTrainer.build_model``)."""
    model = SceneGraphTrainer.build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return model


def first_images(dataset: str, count: int) -> str:
    """A registered dataset of the first ``count`` images of ``dataset`` (same metadata);
    ``dataset`` itself when ``count`` is 0."""
    if not count:
        return dataset
    name = f"{dataset}_first{count}"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DatasetCatalog.get(dataset)[:count])
        meta = MetadataCatalog.get(dataset).as_dict()
        MetadataCatalog.get(name).set(**{k: v for k, v in meta.items() if k != "name"})
    return name


class BoxMasks(DatasetEvaluator):
    """Hands ``evaluator`` outputs whose ``pred_masks`` fill each object's box."""

    def __init__(self, evaluator: DatasetEvaluator):
        self.evaluator = evaluator

    def reset(self):
        self.evaluator.reset()

    def process(self, inputs, outputs):
        for output in outputs:
            inst = output["instances"]
            ones = torch.ones((len(inst), 28, 28), device=inst.pred_boxes.device)
            inst.pred_masks = paste_masks_in_image(ones, inst.pred_boxes, inst.image_size)
        self.evaluator.process(inputs, outputs)

    def evaluate(self):
        return self.evaluator.evaluate()


class MaskPanels(DatasetEvaluator):
    """Writes the first ``count`` images as PNGs: image | GT masks | predicted masks."""

    def __init__(self, dataset: str, folder: str, count: int, tag: str):
        self.dicts = {d["image_id"]: d for d in DatasetCatalog.get(dataset)}
        self.folder, self.count, self.tag, self.written = folder, count, tag, 0

    def process(self, inputs, outputs):
        for x, output in zip(inputs, outputs):
            if self.written >= self.count:
                return
            record = self.dicts[x["image_id"]]
            size = (record["height"], record["width"])
            gt = utils.annotations_to_instances(record["annotations"], size, mask_format="bitmask")
            image = utils.read_image(record["file_name"], format="RGB")
            pred = output["instances"].pred_masks.cpu().numpy().reshape(-1, *size)
            path = os.path.join(self.folder, f"{self.written:03d}_{self.tag}.png")
            save_png(path, image, gt.gt_masks.tensor.numpy(), pred)
            self.written += 1


def save_png(path, image_rgb, gt_masks, pred_masks):
    """(H, W, 3) image, (G, H, W) and (N, H, W) bool masks -> one panel, 2x, one colour each."""
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = rng.integers(64, 256, size=(max(len(gt_masks), len(pred_masks), 1), 3))

    def overlay(masks):
        out = np.zeros_like(image_rgb)
        for k, m in enumerate(masks):
            out[m] = colours[k]
        return out

    panel = np.concatenate([image_rgb, overlay(gt_masks), overlay(pred_masks)], axis=1)
    Image.fromarray(panel.astype(np.uint8)).resize(
        (panel.shape[1] * 2, panel.shape[0] * 2), Image.NEAREST
    ).save(path)


def mask_ap(args, dataset: str, mode: str, option: str, work_dir: str) -> dict:
    """``{"mode", "option", "AP", "AP50"}`` of the model's output masks on ``dataset``."""
    opts = ["MODEL.SGG.MODE", mode, *option_overrides(args, option), *args.opts]
    cfg = load_config(args.grounded_config, opts)
    evaluator = COCOEvaluator(
        dataset,
        tasks=("segm",),
        distributed=False,
        output_dir=work_dir,
        use_fast_impl=has_compiled_ops(),  # the pure-Python COCOeval without detectron2._C
    )
    if option.startswith("box/"):
        evaluator = BoxMasks(evaluator)
    evaluators = [evaluator]
    if args.png_dir and mode == "predcls" and option == args.options[0]:
        tag = option.replace("/", "_")
        evaluators.append(MaskPanels(dataset, args.png_dir, args.num_png, tag))
    loader = SceneGraphTrainer.build_test_loader(cfg, dataset)
    results = inference_on_dataset(build_model(cfg), loader, DatasetEvaluators(evaluators))
    segm = results["segm"]
    return {"mode": mode, "option": option, "AP": segm["AP"], "AP50": segm["AP50"]}


def main(argv=None):
    args = parse_args(argv)
    if args.png_dir:
        os.makedirs(args.png_dir, exist_ok=True)
    dataset = first_images(args.dataset, args.max_images)
    with tempfile.TemporaryDirectory() as work_dir:  # the COCO-format ground truth
        table = [
            mask_ap(args, dataset, mode, option, work_dir)
            for mode in args.modes
            for option in args.options
        ]
    images = len(DatasetCatalog.get(dataset))
    print(f"{'mode':8s} {'option':16s} {'mask AP':>8s} {'AP50':>6s}   ({images} images)")
    for row in table:
        print(f"{row['mode']:8s} {row['option']:16s} {row['AP']:8.1f} {row['AP50']:6.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(table, f, indent=1)
    return table


if __name__ == "__main__":
    main()
