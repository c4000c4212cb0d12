#!/usr/bin/env python
"""COCO mask AP of transferred target-class masks of a trained joint detector.

The synthetic world's target test set has an exact mask for every object
(``synthetic_json_test``), so the transfer of auxiliary masks to target classes
(docs/GROUNDING.md) can be scored directly, for each transfer option:

    python tools/eval_transferred_masks.py \\
        --config configs/synthetic/mask_rcnn_R18_FPN_joint_detector.yaml \\
        --weights output/synthetic/joint_detector/model_final.pth \\
        --modes predcls sgcls sgdet --png-dir output/synthetic/transfer_pngs

Options compared (``--options``, each ``SPACE/SIMILARITY``): the transfer space
(``MODEL.SGG.GROUNDING.TRANSFER_SPACE``: ``logits`` or ``probs``) x the normalisation of S
(``MODEL.SGG.GROUNDING.SIMILARITY``: ``dot``, ``softmax``, ``cosine``), with the
config's word vectors, softmax temperature/threshold and one-hot rows settings; ``box/dot``
scores box-filling masks (the reference a transfer must beat).

Objects per mode: PredCls, GT boxes and GT classes (score 1); SGCls, GT boxes classified
by the target box predictor (arg-max, its probability as score); SGDet, the detector's
target-class detections. Each object's auxiliary mask logits come from the joint
detector's mask head on its box; its mask is the transfer to its class, pasted into the
image (threshold 0.5). Scores: pycocotools ``COCOeval`` (``segm``) against the exact masks.
``--png-dir``: the first ``--num-png`` test images as PNGs (image | GT masks | PredCls
transferred masks of the first option), one colour per object.

With ``--relation-config`` / ``--relation-weights`` (a trained grounded relation model), the
scored masks are that model's output ``pred_masks`` in each mode instead (options
``refined`` and ``unrefined``: ``REFINE_AT_TEST`` on / off; the PNGs show the refined ones):

    python tools/eval_transferred_masks.py --config <joint detector config> --weights "" \
        --relation-config configs/synthetic/motifs_grounded_R18_FPN_sgcls.yaml \
        --relation-weights output/synthetic/motifs_grounded_sgcls/model_final.pth
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import sgg_d2  # noqa: E402, F401  (first: Detectron2's compiled-ops stand-in, datasets, models)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True, help="joint detector config")
    p.add_argument(
        "--weights", required=True, help="trained joint detector (model_final.pth; '' = random)"
    )
    p.add_argument("--dataset", default="synthetic_json_test", help="target set with masks")
    p.add_argument(
        "--grounded-config",
        default="configs/synthetic/Base-Synthetic-SGG-Grounded.yaml",
        help="config whose MODEL.SGG.GROUNDING word vectors / softmax settings are used",
    )
    p.add_argument(
        "--options",
        nargs="+",
        default=[
            "logits/dot",
            "logits/softmax",
            "logits/cosine",
            "probs/dot",
            "probs/softmax",
            "probs/cosine",
        ],
    )
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
    p.add_argument("--relation-config", default="", help="grounded relation model config")
    p.add_argument("--relation-weights", default="", help="its trained weights")
    p.add_argument("--opts", nargs="*", default=[], help="config overrides KEY VALUE ...")
    return p.parse_args(argv)


def load_cfg(path, opts):
    from detectron2.config import get_cfg

    from sgg_d2.config import add_sgg_config

    cfg = get_cfg()
    add_sgg_config(cfg)
    cfg.merge_from_file(path)
    cfg.merge_from_list(opts)
    return cfg


def similarity(target, aux, g, normalization, cache_dir):
    """S of the grounded config's node ``g`` with the normalisation ``normalization``."""
    from sgg_d2.modeling.grounding.similarity import grounding_similarity

    S = grounding_similarity(g, target, aux, cache_dir, normalization)
    return torch.as_tensor(S, dtype=torch.float32)


def transfer(S, aux_logits, labels, space):
    """(N, d_m, M, M) logits, (N,) labels -> (N, M, M) target mask probabilities
    (``space`` "box": the whole box, the no-mask reference)."""
    if space == "box":
        return aux_logits.new_ones((len(aux_logits), *aux_logits.shape[-2:]))
    rows = S[labels]
    if space == "logits":
        return torch.sigmoid(torch.einsum("nm,nmhw->nhw", rows, aux_logits))
    return torch.einsum("nm,nmhw->nhw", rows, torch.sigmoid(aux_logits)).clamp(0.0, 1.0)


@torch.no_grad()
def objects(model, x, mode):
    """Boxes (network frame), labels, scores and aux mask logits of one input."""
    from detectron2.structures import Boxes

    heads = model.roi_heads
    images = model.preprocess_image([x])
    features = model.backbone(images.tensor)
    if mode == "sgdet":
        proposals, _ = model.proposal_generator(images, features, None)
        det = heads._group_inference("target", features, proposals)[0]
        boxes, labels, scores = det.pred_boxes.tensor, det.pred_classes, det.scores
    else:
        boxes = x["instances"].gt_boxes.tensor.to(images.tensor.device)
        labels = x["instances"].gt_classes.to(boxes.device)
        scores = torch.ones(len(boxes))
        if mode == "sgcls" and len(boxes):
            feats = heads._box_features(features, [Boxes(boxes)])
            probs = heads.box_predictor(feats)[0].softmax(dim=1)[:, :-1]
            scores, labels = probs.max(dim=1)
    maps = [features[f] for f in heads.mask_in_features]
    aux = heads.mask_head.layers(heads.mask_pooler(maps, [Boxes(boxes)]))
    return boxes, labels, scores, aux, images.image_sizes[0]


def paste(masks, boxes, size_in, size_out):
    """Masks (N, M, M) on boxes in the network frame -> (N, H, W) bool at the image size."""
    from detectron2.layers.mask_ops import paste_masks_in_image

    sy, sx = size_out[0] / size_in[0], size_out[1] / size_in[1]
    scaled = boxes * torch.tensor([sx, sy, sx, sy])
    if len(boxes) == 0:
        return torch.zeros((0, *size_out), dtype=torch.bool)
    return paste_masks_in_image(masks, scaled, size_out, threshold=0.5)


def coco_gt(dicts, num_classes):
    import pycocotools.mask as mask_util
    from detectron2.structures import BoxMode

    images, anns = [], []
    for i, d in enumerate(dicts):
        images.append({"id": i, "height": d["height"], "width": d["width"]})
        for a in d["annotations"]:
            segm = a["segmentation"]
            if isinstance(segm, list):  # polygons
                rle = mask_util.merge(mask_util.frPyObjects(segm, d["height"], d["width"]))
            else:
                rle = dict(segm)
                if isinstance(rle["counts"], list):
                    rle = mask_util.frPyObjects(rle, d["height"], d["width"])
            box = BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYWH_ABS)
            anns.append({
                "id": len(anns) + 1, "image_id": i, "category_id": a["category_id"] + 1,
                "segmentation": rle, "area": float(mask_util.area(rle)), "bbox": list(box),
                "iscrowd": 0,
            })  # fmt: skip
    cats = [{"id": c + 1} for c in range(num_classes)]
    return {"images": images, "annotations": anns, "categories": cats}


def coco_ap(gt, results):
    """(AP, AP50) in percent of ``results`` (COCO segm result dicts)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(gt, default=_bytes))
        coco.createIndex()
        if not results:
            return 0.0, 0.0
        dt = coco.loadRes(json.loads(json.dumps(results, default=_bytes)))
        ev = COCOeval(coco, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100 * float(ev.stats[0]), 100 * float(ev.stats[1])


def _bytes(o):
    if isinstance(o, bytes):
        return o.decode("ascii")
    raise TypeError(type(o))


def save_png(path, image_rgb, gt_masks, pred_masks):
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


@torch.no_grad()
def relation_model_results(args, dicts, gt, mapper):
    """COCO results of a grounded relation model's ``pred_masks`` per mode, refined and not."""
    import pycocotools.mask as mask_util
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import detection_utils as utils

    from sgg_d2.engine import SceneGraphTrainer

    results = {}
    for mode in args.modes:
        cfg = load_cfg(args.relation_config, ["MODEL.SGG.MODE", mode, *args.opts])
        model = SceneGraphTrainer.build_model(cfg).eval()
        DetectionCheckpointer(model).load(args.relation_weights)
        for refined in (True, False):
            model.roi_heads.grounding.refine_at_test = refined
            key = (mode, "refined" if refined else "unrefined")
            results[key] = []
            for i, d in enumerate(dicts):
                x = mapper(dict(d))
                inst = model([x])[0]["instances"].to("cpu")
                masks = inst.pred_masks.numpy()
                if args.png_dir and i < args.num_png and mode == "predcls" and refined:
                    gtm = [
                        mask_util.decode(a["segmentation"]) > 0
                        for a in gt["annotations"]
                        if a["image_id"] == i
                    ]
                    image = utils.read_image(d["file_name"], format="RGB")
                    save_png(os.path.join(args.png_dir, f"{i:03d}_refined.png"), image, gtm, masks)
                for m, c, s in zip(masks, inst.pred_classes.tolist(), inst.scores.tolist()):
                    rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
                    results[key].append(
                        {"image_id": i, "category_id": c + 1, "segmentation": rle, "score": s}
                    )
    return results


def main(argv=None):
    import pycocotools.mask as mask_util
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import DatasetCatalog
    from detectron2.data import detection_utils as utils

    from sgg_d2.data import SceneGraphDatasetMapper
    from sgg_d2.engine import SceneGraphTrainer
    from sgg_d2.modeling.grounding.similarity import dataset_class_names

    args = parse_args(argv)
    cfg = load_cfg(args.config, args.opts)
    g = load_cfg(args.grounded_config, []).MODEL.SGG.GROUNDING
    model = SceneGraphTrainer.build_model(cfg).eval()
    if args.weights and not args.relation_config:
        DetectionCheckpointer(model).load(args.weights)
    dicts = DatasetCatalog.get(args.dataset)
    if args.max_images:
        dicts = dicts[: args.max_images]
    target = dataset_class_names(args.dataset)
    aux = dataset_class_names(cfg.DATASETS.AUX_TRAIN[0])
    cache = os.path.join(cfg.OUTPUT_DIR, "grounding_cache")
    options = [o.split("/") for o in args.options]
    S = {n: similarity(target, aux, g, n, cache) for n in {o[1] for o in options}}
    mapper = SceneGraphDatasetMapper(cfg, is_train=False)
    gt = coco_gt(dicts, len(target))
    results = {(m, "/".join(o)): [] for m in args.modes for o in options}
    if args.png_dir:
        os.makedirs(args.png_dir, exist_ok=True)
    if args.relation_config:
        results = relation_model_results(args, dicts, gt, mapper)
    for i, d in enumerate(dicts if not args.relation_config else []):
        x = mapper(dict(d))
        x["source"] = "target"
        size_out = (d["height"], d["width"])
        for mode in args.modes:
            boxes, labels, scores, aux_logits, size_in = objects(model, x, mode)
            for space, norm in options:
                masks = paste(
                    transfer(S[norm], aux_logits, labels, space), boxes, size_in, size_out
                )
                if (
                    args.png_dir
                    and i < args.num_png
                    and mode == "predcls"
                    and (space, norm) == tuple(options[0])
                ):
                    image = utils.read_image(d["file_name"], format="RGB")
                    gtm = [
                        mask_util.decode(a["segmentation"]) > 0
                        for a in gt["annotations"]
                        if a["image_id"] == i
                    ]
                    save_png(
                        os.path.join(args.png_dir, f"{i:03d}_{space}_{norm}.png"),
                        image, gtm, masks.numpy(),
                    )  # fmt: skip
                for m, c, s in zip(masks.numpy(), labels.tolist(), scores.tolist()):
                    rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
                    results[(mode, f"{space}/{norm}")].append(
                        {"image_id": i, "category_id": c + 1, "segmentation": rle, "score": s}
                    )
    table = []
    print(f"{'mode':8s} {'space/S':16s} {'mask AP':>8s} {'AP50':>6s}   ({len(dicts)} images)")
    for (mode, option), res in results.items():
        ap, ap50 = coco_ap(gt, res)
        table.append({"mode": mode, "option": option, "AP": ap, "AP50": ap50})
        print(f"{mode:8s} {option:16s} {ap:8.1f} {ap50:6.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(table, f, indent=1)
    return table


if __name__ == "__main__":
    main()
