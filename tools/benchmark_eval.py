#!/usr/bin/env python
"""Benchmark ``SceneGraphEvaluator`` on a VG-test-sized synthetic evaluation.

By default 26,446 images, 40 objects each, all 40 * 39 = 1,560 ordered pairs scored over
50 predicates (150 object classes), SGCls-like outputs (one predicted object per GT
object, jittered boxes, 70 % correct labels) generated per image from a fixed seed.

The evaluator (``reset`` / ``process`` / ``evaluate``) is timed on every image. A
straightforward per-image numpy implementation of the same protocol (full stable sorts,
Python loops over GT and predicted triplets), written below, runs on the first
``--reference-images`` images, as does a second evaluator run, and all metrics are
compared. When the reference does not see every image, its time is extrapolated
linearly (the output says so). Peak memory is the process's maximum RSS
(``resource.getrusage``). Example::

    python tools/benchmark_eval.py --num-images 2000 --reference-images 200
"""

import argparse
import resource
import time

# isort: off
# Before detectron2: installs the stand-in for a missing detectron2._C.
import sgg_d2  # noqa: F401

# isort: on
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from sgg_d2.evaluation import SceneGraphEvaluator
from sgg_d2.structures import Relations, all_ordered_pairs


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=26446)
    parser.add_argument("--num-objects", type=int, default=40)
    parser.add_argument("--num-predicates", type=int, default=50)
    parser.add_argument("--num-classes", type=int, default=150)
    parser.add_argument("--reference-images", type=int, default=1000)
    parser.add_argument("--ks", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--mode", default="sgcls", choices=["predcls", "sgcls", "sgdet"])
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


class Synthetic:
    """Deterministic per-image ground truth and model outputs (a function of the index)."""

    def __init__(self, args):
        self.args = args
        self.pairs = all_ordered_pairs(args.num_objects)
        # Zero-shot set: every (subject, object, predicate) with a fixed residue.
        s, o, p = np.meshgrid(
            *(np.arange(n) for n in (args.num_classes, args.num_classes, args.num_predicates)),
            indexing="ij",
        )
        keep = (s * 7 + o * 13 + p) % 10 == 0
        self.zero_shot = np.stack([s[keep], o[keep], p[keep]], axis=1).astype(np.int64)
        self.zero_shot_set = {tuple(row) for row in self.zero_shot.tolist()}

    def _rng(self, index, stream):
        return np.random.default_rng((self.args.seed, index, stream))

    def gt_record(self, index):
        a, rng = self.args, self._rng(index, 0)
        xy = rng.uniform(0, 500, (a.num_objects, 2))
        wh = rng.uniform(20, 200, (a.num_objects, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1).round(1)
        labels = rng.integers(0, a.num_classes, a.num_objects)
        # ~2 % of the images have no relation (skipped by R@K); some have duplicates.
        num_rel = 0 if index % 50 == 49 else int(rng.integers(5, 21))
        rows = rng.integers(0, len(self.pairs), num_rel)
        relations = np.concatenate(
            [self.pairs[rows].numpy(), rng.integers(0, a.num_predicates, (num_rel, 1))], axis=1
        )
        if num_rel and rng.random() < 0.2:
            relations = np.concatenate([relations, relations[:1]])
        annotations = [
            {"bbox": box.tolist(), "bbox_mode": BoxMode.XYXY_ABS, "category_id": int(label)}
            for box, label in zip(boxes, labels)
        ]
        return {
            "file_name": f"{index}.jpg",
            "image_id": index,
            "height": 700,
            "width": 700,
            "annotations": annotations,
            "relations": relations.astype(np.int64),
        }

    def output(self, index, record):
        a, rng = self.args, self._rng(index, 1)
        gt_boxes = np.array([x["bbox"] for x in record["annotations"]], dtype=np.float32)
        gt_labels = np.array([x["category_id"] for x in record["annotations"]])
        boxes = gt_boxes + rng.normal(0, 4, gt_boxes.shape).astype(np.float32)
        correct = rng.random(a.num_objects) < 0.7
        labels = np.where(correct, gt_labels, rng.integers(0, a.num_classes, a.num_objects))
        object_scores = torch.from_numpy(rng.uniform(0.2, 1.0, a.num_objects).astype(np.float32))
        logits = rng.standard_normal((len(self.pairs), a.num_predicates + 1), dtype=np.float32)
        rel = record["relations"]
        rows = rel[:, 0] * (a.num_objects - 1) + rel[:, 1] - (rel[:, 1] > rel[:, 0])
        logits[rows, rel[:, 2] + 1] += 5.0  # make GT predicates likelier
        probs = torch.from_numpy(logits).softmax(dim=1)[:, 1:]
        instances = Instances((700, 700))
        instances.pred_boxes = Boxes(torch.from_numpy(boxes))
        instances.pred_classes = torch.from_numpy(labels)
        instances.scores = object_scores
        relations = Relations.from_pair_scores((700, 700), self.pairs, probs, object_scores)
        return {"instances": instances, "relations": relations}


def register(name, synthetic, records, num_predicates):
    # Generated once: the evaluator's ground-truth time then excludes the synthesis.
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        thing_classes=[f"c{i}" for i in range(synthetic.args.num_classes)],
        predicate_classes=[f"p{i}" for i in range(num_predicates)],
        evaluator_type="scene_graph",
        train_split=name,
    )


def run_evaluator(name, synthetic, records):
    """``reset`` / ``process`` / ``evaluate`` over ``records``; output synthesis not timed."""
    a = synthetic.args
    timings = {"ground truth": 0.0, "process": 0.0, "evaluate": 0.0}
    evaluator = SceneGraphEvaluator(
        name, mode=a.mode, ks=a.ks, zero_shot_triplets=synthetic.zero_shot
    )
    start = time.perf_counter()
    evaluator.reset()
    evaluator.ground_truth()
    timings["ground truth"] = time.perf_counter() - start
    for index, record in enumerate(records):
        output = synthetic.output(index, record)
        start = time.perf_counter()
        evaluator.process([{"image_id": index}], [output])
        timings["process"] += time.perf_counter() - start
    start = time.perf_counter()
    results = evaluator.evaluate()["sgg"]
    timings["evaluate"] = time.perf_counter() - start
    return results, timings


def run_reference(synthetic, records):
    """The plain reference over ``records`` (same outputs); returns (metrics, seconds)."""
    seconds, per_image = 0.0, []
    for index, record in enumerate(records):
        output = synthetic.output(index, record)
        start = time.perf_counter()
        per_image.append(reference_image(record, output, synthetic.args, synthetic.zero_shot_set))
        seconds += time.perf_counter() - start
    start = time.perf_counter()
    metrics = reference_aggregate(per_image, synthetic.args)
    return metrics, seconds + time.perf_counter() - start


# ---------------------------------------------------------------- reference (plain)
def reference_iou(a, b):
    """IoU with Detectron2's float32 formula, (N, M)."""
    width_height = np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(
        a[:, None, :2], b[None, :, :2]
    )
    inter = np.clip(width_height, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_a[:, None] + area_b[None, :] - inter)
    return np.where(inter > 0, iou, np.float32(0)).astype(np.float32)


def reference_first_ranks(cands, gt_rels, boxes, labels, gt_boxes, gt_labels, iou, thr):
    ranks = []
    for s, o, p in gt_rels:
        rank = None
        for t, (ps, po, pp) in enumerate(cands):
            if (
                pp == p
                and labels[ps] == gt_labels[s]
                and labels[po] == gt_labels[o]
                and iou[ps, s] >= thr
                and iou[po, o] >= thr
            ):
                rank = t
                break
        ranks.append(rank)
    return ranks


def reference_image(record, output, a, zero_shot_set):
    """Per-image first-match ranks for gc / ng / pairs, straight from the definitions."""
    gt_boxes = np.array([x["bbox"] for x in record["annotations"]], dtype=np.float32)
    gt_labels = [x["category_id"] for x in record["annotations"]]
    gt_rels = [tuple(int(v) for v in row) for row in record["relations"]]
    inst, rel = output["instances"], output["relations"]
    boxes = inst.pred_boxes.tensor.numpy()
    labels = inst.pred_classes.numpy().tolist()
    obj = inst.scores.numpy()
    pairs = rel.pair_indices.numpy()
    k = max(a.ks)
    order = np.argsort(-rel.scores.numpy(), kind="stable")
    preds = rel.predicates.numpy()
    gc = [(pairs[t, 0], pairs[t, 1], preds[t]) for t in order[:k]]
    flat = ((obj[pairs[:, 0]] * obj[pairs[:, 1]])[:, None] * rel.predicate_scores.numpy()).ravel()
    num_p = a.num_predicates
    ng = [
        (pairs[f // num_p, 0], pairs[f // num_p, 1], f % num_p)
        for f in np.argsort(-flat, kind="stable")[:k]
    ]
    gt_pairs = {(s, o) for s, o, _ in gt_rels}
    on_gt = [
        (pairs[t, 0], pairs[t, 1], preds[t])
        for t in order
        if (pairs[t, 0], pairs[t, 1]) in gt_pairs
    ][:k]
    iou = reference_iou(boxes, gt_boxes)
    args = (gt_rels, boxes, labels, gt_boxes, gt_labels, iou, 0.5)
    zs = [(gt_labels[s], gt_labels[o], p) in zero_shot_set for s, o, p in gt_rels]
    return {
        "predicates": [p for _, _, p in gt_rels],
        "zs": zs,
        "gc": reference_first_ranks(gc, *args),
        "ng": reference_first_ranks(ng, *args),
        "pairs": reference_first_ranks(on_gt, *args),
    }


def reference_aggregate(per_image, a):
    metrics = {}
    for name, prefix in (("gc", ""), ("ng", "ng-")):
        for k in a.ks:
            recalls, zs_recalls = [], []
            class_sum, class_images = [0.0] * a.num_predicates, [0] * a.num_predicates
            for img in per_image:
                hits = [r is not None and r < k for r in img[name]]
                if not hits:
                    continue
                recalls.append(sum(hits) / len(hits))
                zs_hits = [h for h, z in zip(hits, img["zs"]) if z]
                if zs_hits:
                    zs_recalls.append(sum(zs_hits) / len(zs_hits))
                for c in sorted(set(img["predicates"])):
                    of_c = [h for h, p in zip(hits, img["predicates"]) if p == c]
                    class_sum[c] += sum(of_c) / len(of_c)
                    class_images[c] += 1
            per_class = [s / n if n else 0.0 for s, n in zip(class_sum, class_images)]
            metrics[f"{prefix}R@{k}"] = 100 * float(np.mean(recalls))
            metrics[f"{prefix}mR@{k}"] = 100 * float(np.mean(per_class))
            metrics[f"{prefix}zsR@{k}"] = 100 * float(np.mean(zs_recalls))
    if a.mode in ("predcls", "sgcls"):
        total = sum(len(img["pairs"]) for img in per_image)
        for k in a.ks:
            hit = sum(r is not None and r < k for img in per_image for r in img["pairs"])
            metrics[f"A@{k}"] = 100 * hit / total
    return metrics


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main():
    a = parse_args()
    torch.set_num_threads(1)  # fair single-thread comparison on a shared machine
    synthetic = Synthetic(a)
    n, n_ref = a.num_images, min(a.reference_images, a.num_images)
    print(
        f"images {n}, objects {a.num_objects} ({a.num_objects * (a.num_objects - 1)} pairs)"
        f", predicates {a.num_predicates}, classes {a.num_classes}, mode {a.mode}, ks {a.ks}"
    )
    records = [synthetic.gt_record(i) for i in range(n)]
    register("sgg_d2_benchmark_full", synthetic, records, a.num_predicates)
    register("sgg_d2_benchmark_ref", synthetic, records[:n_ref], a.num_predicates)
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    full, full_t = run_evaluator("sgg_d2_benchmark_full", synthetic, records)
    wall = time.perf_counter() - start
    rss_full = peak_rss_mb()
    subset, sub_t = run_evaluator("sgg_d2_benchmark_ref", synthetic, records[:n_ref])
    ref, ref_seconds = run_reference(synthetic, records[:n_ref])
    keys = list(ref)  # the reference's metrics (ours add F@K and the predicate groups)
    nan = float("nan")
    diff = max(abs(subset.get(key, nan) - ref[key]) for key in keys)
    identical = all(subset.get(key) == ref[key] for key in keys)
    ours_full = sum(full_t.values())
    ours_sub = sub_t["ground truth"] + sub_t["process"] + sub_t["evaluate"]
    ref_full = ref_seconds * n / n_ref
    print(
        f"\nevaluator, all {n} images: ground truth {full_t['ground truth']:.1f} s, process "
        f"{full_t['process']:.1f} s, evaluate {full_t['evaluate']:.1f} s, total "
        f"{ours_full:.1f} s ({1000 * ours_full / n:.2f} ms/image); wall incl. output "
        f"synthesis {wall:.1f} s"
    )
    print(
        f"peak RSS after the full run: {rss_full:.0f} MB (target < 2048 MB); before it "
        f"{rss_before:.0f} MB (interpreter, torch, Detectron2, the synthetic dataset dicts)"
    )
    print(
        f"\nsubset of {n_ref} images: evaluator {ours_sub:.2f} s, reference "
        f"{ref_seconds:.2f} s -> speed ratio {ref_seconds / ours_sub:.1f}x"
    )
    extrapolated = " (extrapolated linearly from the subset)" if n_ref < n else ""
    print(
        f"reference on all {n} images: {ref_full:.0f} s{extrapolated} -> speed ratio "
        f"{ref_full / ours_full:.1f}x"
    )
    print(f"subset metrics identical to the reference: {identical} (max |diff| {diff:.3g})")
    print(f"\n{'metric':>10} | {'all images':>10} | {'subset':>10} | {'reference':>10}")
    for key in keys:
        print(
            f"{key:>10} | {full.get(key, nan):10.4f} | {subset.get(key, nan):10.4f} | "
            f"{ref.get(key, nan):10.4f}"
        )
    print(f"\npeak RSS at exit: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
