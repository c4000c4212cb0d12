#!/usr/bin/env python
"""How trustworthy are a model's best SGDet triplets? Precision of the top K per image.

    python tools/research/sgdet_top_triplets.py \\
        --config-file configs/synthetic/motifs_R18_FPN_sgcls.yaml \\
        --dataset synthetic_test --top-k 5 MODEL.WEIGHTS output/demo/motifs/model_final.pth

For every image of ``--dataset`` the model runs in SGDet mode (``SceneGraphPredictor``,
boxes in the image's pixels); each of its ``--top-k`` best triplets counts as correct when
a GT relation has the same subject class, object class and predicate and both GT boxes
overlap the predicted ones with IoU >= 0.5 (the SGDet matching rule of
``sgg_d2.evaluation.functional.relation_overlaps``). Prints the fraction
of correct triplets among all top-K triplets, and the number of same-class object pairs
whose boxes overlap with IoU > ``--nms-iou`` (duplicates), as JSON.
"""

import argparse
import json
import sys

# isort: off
import sgg_d2  # noqa: F401  (first: installs the detectron2._C stand-in when needed)
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from detectron2.structures import pairwise_iou

# isort: on
import torch
from tqdm import tqdm

from sgg_d2.config import load_config
from sgg_d2.engine import SceneGraphPredictor
from sgg_d2.evaluation.functional import GroundTruthGraph, PredictedTriplets, relation_overlaps
from sgg_d2.evaluation.ground_truth import predicate_classes_of, record_to_ground_truth


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--dataset", default="synthetic_test")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--nms-iou", type=float, default=0.5, help="duplicate: same class, IoU >")
    p.add_argument("--max-images", type=int, default=0, help="0: all")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p.parse_args(argv)


def top_k_hits(inst, rels, gt: GroundTruthGraph, k: int, iou_threshold: float = 0.5):
    """Number of the ``k`` best predicted triplets that match some GT triplet (the SGDet
    rule of ``relation_overlaps``: same classes and predicate, both IoUs >= the threshold),
    and how many triplets were counted (fewer than ``k`` when the model gives fewer).

    Args:
        inst: the image's objects (``pred_boxes``, ``pred_classes``), on the CPU.
        rels: its ``Relations``, best first (``pair_indices``, ``predicates``).
        gt: its ground truth, boxes in the same frame as ``inst``.
    """
    top = rels[:k]
    pred = PredictedTriplets(
        inst.pred_boxes.tensor.numpy(),
        inst.pred_classes.numpy(),
        top.pair_indices.numpy(),
        top.predicates.numpy(),
    )
    matched = (relation_overlaps(gt, pred) >= iou_threshold).any(axis=1)
    return int(matched.sum()), len(top)


def duplicates(inst, iou_threshold: float) -> int:
    """Same-class object pairs (unordered) whose boxes overlap with IoU > threshold."""
    iou = pairwise_iou(inst.pred_boxes, inst.pred_boxes)
    same = inst.pred_classes[:, None] == inst.pred_classes[None, :]
    upper = torch.ones_like(same).triu(diagonal=1)
    return int(((iou > iou_threshold) & same & upper).sum())


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config_file, [*args.opts, "MODEL.SGG.MODE", "sgdet"])
    predictor = SceneGraphPredictor(cfg)
    records = DatasetCatalog.get(args.dataset)
    num_predicates = len(predicate_classes_of(args.dataset))
    if args.max_images:
        records = records[: args.max_images]
    hits = counted = dups = objects = 0
    for record in tqdm(records, desc=args.dataset, unit="img"):
        out = predictor.run(read_image(record["file_name"], format="BGR"))
        inst, rels = out["instances"].to("cpu"), out["relations"].to("cpu")
        gt = record_to_ground_truth(
            record, num_predicates, f"{args.dataset}: {record['file_name']}"
        )
        h, c = top_k_hits(inst, rels, gt, args.top_k)
        hits, counted = hits + h, counted + c
        dups += duplicates(inst, args.nms_iou)
        objects += len(inst)
    result = {
        "dataset": args.dataset,
        "images": len(records),
        f"top{args.top_k}_precision": round(hits / max(counted, 1), 4),
        "top_triplets_counted": counted,
        "objects_per_image": round(objects / max(len(records), 1), 2),
        f"same_class_pairs_iou_gt_{args.nms_iou}": dups,
    }
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return result


if __name__ == "__main__":
    main()
