#!/usr/bin/env python
"""How much each part of LinkNet's pair feature G1 = [G0; K2 b] drives the predicate logits.

G0 = E^s * E^o * F (element-wise product of the two edge embeddings and the union feature)
and K2 b (the embedded geometric layout) are concatenated and read by one linear
classifier, so the logits split exactly into a G0 part and a layout part. For each
checkpoint this prints, averaged over the pairs of the first ``--images`` test images:
the norm of each part and the spread (std over the predicate classes) of the logits each
part contributes — a part whose spread is near 0 does not influence the ranking.

    python tools/research/linknet_pair_parts.py --run output/study/crowded1000/runs/linknet/seed1 \
        --weights model_0000299.pth model_final.pth --dataset synthetic_crowded_test

``--run`` is a training folder holding ``config.yaml`` (a LinkNet model) and the weights.
"""

import argparse
import os

import torch

# isort: off
import sgg_d2  # noqa: F401  (first: Detectron2's compiled-ops stand-in, models, datasets)
from detectron2.checkpoint import DetectionCheckpointer

# isort: on
from sgg_d2.config import load_config
from sgg_d2.engine import SceneGraphTrainer


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="training folder with config.yaml")
    parser.add_argument("--weights", nargs="+", default=["model_final.pth"])
    parser.add_argument("--dataset", default=None, help="default: the config's DATASETS.TEST")
    parser.add_argument("--mode", default="predcls", choices=["predcls", "sgcls", "sgdet"])
    parser.add_argument("--images", type=int, default=10)
    return parser.parse_args(argv)


def part_statistics(model, loader, images: int):
    """Mean over the batches of (|G0|, |K2 b|, logit std from G0, from K2 b) per pair."""
    heads = model.roi_heads
    context, classifier = heads.context, heads.relation_predictor.classifier
    if type(context).__name__ != "LinkNetContext" or context.layout_embed is None:
        raise SystemExit("linknet_pair_parts.py: the model is not LinkNet with its layout")
    split = context.union_dim
    rows = []

    def record(_module, _inputs, outputs):
        g = outputs.pair_features
        g0, layout = g[:, :split], g[:, split:]
        w = classifier.weight
        rows.append(
            [
                g0.norm(dim=1).mean(),
                layout.norm(dim=1).mean(),
                (g0 @ w[:, :split].T).std(dim=1).mean(),
                (layout @ w[:, split:].T).std(dim=1).mean(),
            ]
        )

    handle = context.register_forward_hook(record)
    seen = 0
    with torch.no_grad():
        for batch in loader:
            model(batch)
            seen += len(batch)
            if seen >= images:
                break
    handle.remove()
    return torch.tensor(rows).mean(dim=0).tolist()


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(os.path.join(args.run, "config.yaml"), ["MODEL.SGG.MODE", args.mode])
    model = SceneGraphTrainer.build_model(cfg).eval()
    loader = SceneGraphTrainer.build_test_loader(cfg, args.dataset or cfg.DATASETS.TEST[0])
    print("| weights | norm of G0 | norm of K2 b | logit std from G0 | from K2 b |")
    print("|---|---:|---:|---:|---:|")
    for name in args.weights:
        DetectionCheckpointer(model).load(os.path.join(args.run, name))
        stats = part_statistics(model, loader, args.images)
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in stats) + " |", flush=True)


if __name__ == "__main__":
    main()
