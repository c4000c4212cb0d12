"""Record (or compare) every relation model's losses, gradients and outputs, bit for bit.

A refactoring check: each context model (Frequency, IMP, MOTIFS, VCTree, LinkNet, RelDN,
F-Net) in each mode (PredCls, SGCls, SGDet), plus grounded MOTIFS and VCTree, is built from
a tiny config with fixed seeds on CPU, runs one training step (every loss, the gradient of
every parameter) and one inference pass on a fixed tiny batch; all tensors go to one file.
Two recordings, before and after a change, are then compared tensor by tensor with
``torch.equal``::

    python tools/research/record_model_outputs.py --out /tmp/before.pt
    # ... change the code ...
    python tools/research/record_model_outputs.py --out /tmp/after.pt
    python tools/research/record_model_outputs.py --compare /tmp/before.pt /tmp/after.pt

Run with ``OMP_NUM_THREADS=1`` both times (reductions may depend on the thread count).
"""

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

# isort: off
# sgg_d2 first: it installs Detectron2's compiled-ops stand-in where they are missing
import sgg_d2  # noqa: F401

# isort: on
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, BoxMode, Instances

import sgg_d2.modeling  # noqa: F401  (registers the models)
from sgg_d2 import add_sgg_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
NUM_CLASSES, NUM_PREDICATES = 5, 4
TRAIN, AUX = "record_outputs_tiny_train", "record_outputs_tiny_aux"
AUX_CLASSES = ["disc", "band", "blob"]
MODES = ("predcls", "sgcls", "sgdet")
# context -> config options making it tiny / exercising its paper's losses
CONTEXTS = {
    "FrequencyBaseline": [],
    "IMPContext": [],
    "MotifsContext": [],
    "VCTreeContext": [],
    "LinkNetContext": ["MODEL.SGG.LINKNET.EMBEDDING_DIM", 8],
    "RelDNContext": [
        "MODEL.SGG.EXTRA_RELATION_LOSSES",
        ["GraphicalContrastiveLoss"],
        "MODEL.SGG.RELATION_BACKBONE.ENABLED",
        True,
        "MODEL.SGG.CONTRASTIVE.ANCHORS_PER_IMAGE",
        3,
    ],  # fmt: skip
    "FactorizableNetContext": [
        "MODEL.SGG.FNET.SUBGRAPH_DIM",
        16,
        "MODEL.SGG.FNET.BOTTLENECK_DIM",
        8,
    ],  # fmt: skip
}
GROUNDED = ("MotifsContext", "VCTreeContext")


def _tiny_dicts() -> List[dict]:
    rng = np.random.default_rng(0)
    dicts = []
    for i in range(6):
        xy = rng.uniform(0, 60, (4, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(16, 40, (4, 2))], 1)
        annos = [
            {"bbox": b.tolist(), "bbox_mode": BoxMode.XYXY_ABS, "category_id": int(c)}
            for b, c in zip(boxes, rng.integers(0, NUM_CLASSES, 4))
        ]
        rels = np.array([[0, 1, i % NUM_PREDICATES], [2, 3, 0]], dtype=np.int64)
        dicts.append(
            {"file_name": f"{i}.jpg", "image_id": i, "height": 96, "width": 128}
            | {"annotations": annos, "relations": rels}
        )
    return dicts


def _register() -> None:
    if TRAIN not in DatasetCatalog.list():
        DatasetCatalog.register(TRAIN, _tiny_dicts)
        MetadataCatalog.get(TRAIN).set(
            thing_classes=[f"c{i}" for i in range(NUM_CLASSES)],
            predicate_classes=[f"p{i}" for i in range(NUM_PREDICATES)],
            evaluator_type="scene_graph",
            train_split=TRAIN,
        )
    if AUX not in DatasetCatalog.list():
        DatasetCatalog.register(AUX, lambda: [])
        MetadataCatalog.get(AUX).set(thing_classes=AUX_CLASSES, evaluator_type="coco")


def _write_vectors(folder: Path) -> str:
    rng = np.random.default_rng(0)
    path = folder / "tiny.8d.txt"
    words = [f"c{i}" for i in range(NUM_CLASSES)] + AUX_CLASSES
    path.write_text(
        "".join(w + " " + " ".join(f"{x:.4f}" for x in rng.normal(size=8)) + "\n" for w in words)
    )
    return str(path)


def tiny_cfg(context: str, mode: str, output_dir: str, vectors: str = ""):
    """The tiny relation config (R-18-FPN, tiny widths); grounded when ``vectors``."""
    cfg = get_cfg()
    add_sgg_config(cfg)
    cfg.merge_from_file(str(CONFIGS / "synthetic" / "Base-Synthetic.yaml"))
    cfg.merge_from_list(
        ["MODEL.META_ARCHITECTURE", "SceneGraphRCNN", "MODEL.ROI_HEADS.NAME",
         "SceneGraphROIHeads", "MODEL.ROI_HEADS.NUM_CLASSES", NUM_CLASSES,
         "MODEL.SGG.NUM_PREDICATES", NUM_PREDICATES, "MODEL.SGG.CONTEXT", context,
         "MODEL.SGG.MODE", mode, "DATASETS.TRAIN", (TRAIN,), "MODEL.SGG.UNION_DIM", 32,
         "MODEL.SGG.EMBED_DIM", 8, "MODEL.SGG.CONTEXT_HIDDEN_DIM", 16,
         "MODEL.FPN.OUT_CHANNELS", 32, "MODEL.ROI_BOX_HEAD.FC_DIM", 64,
         "OUTPUT_DIR", output_dir, "MODEL.RPN.POST_NMS_TOPK_TEST", 50,
         "TEST.DETECTIONS_PER_IMAGE", 8, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
         "MODEL.SGG.TRAIN_DETECTIONS_PER_IMAGE", 8]
        + CONTEXTS[context]
    )  # fmt: skip
    if vectors:
        cfg.merge_from_list(
            ["MODEL.MASK_ON", True, "MODEL.ROI_MASK_HEAD.NAME", "MaskTransferHead",
             "MODEL.ROI_MASK_HEAD.CONV_DIM", 8, "MODEL.ROI_MASK_HEAD.NUM_CONV", 1,
             "INPUT.MASK_FORMAT", "bitmask", "DATASETS.AUX_TRAIN", (AUX,),
             "MODEL.SGG.GROUNDING.ENABLED", True,
             "MODEL.SGG.GROUNDING.AUX_NUM_CLASSES", len(AUX_CLASSES),
             "MODEL.SGG.GROUNDING.WORD_VECTORS", vectors,
             "MODEL.SGG.GROUNDING.SIMILARITY", "softmax",
             "MODEL.SGG.GROUNDING.MASK_FEATURE_DIM", 8,
             "MODEL.SGG.GROUNDING.UNION_MASK_SIZE", 12, "MODEL.SGG.GROUNDING.KERNEL_SIZE", 3,
             "MODEL.SGG.GROUNDING.REFINE_RESOLUTION", 7]
        )  # fmt: skip
    return cfg


def target_input(num_objects: int, seed: int, size=(96, 128)) -> dict:
    """A mapper-format input with ``num_objects`` random GT boxes and a chain of relations."""
    g = torch.Generator().manual_seed(seed)
    inst = Instances(size)
    xy = torch.rand(num_objects, 2, generator=g) * 60
    wh = 16 + torch.rand(num_objects, 2, generator=g) * 24
    inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], 1))
    inst.gt_classes = torch.randint(0, NUM_CLASSES, (num_objects,), generator=g)
    rels = [[i, i + 1, i % NUM_PREDICATES] for i in range(num_objects - 1)]
    return {
        "image": torch.randint(0, 255, (3, *size), generator=g).float(),
        "instances": inst,
        "relations": torch.as_tensor(rels, dtype=torch.int64).reshape(-1, 3),
        "height": 2 * size[0],
        "width": 2 * size[1],
    }


def aux_input(num_objects: int, seed: int) -> dict:
    """An auxiliary-dataset input: GT boxes, auxiliary classes, box-filling masks."""
    x = target_input(num_objects, seed)
    del x["relations"]
    inst = x["instances"]
    masks = torch.zeros((num_objects, *inst.image_size), dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(inst.gt_boxes.tensor.round().long().tolist()):
        masks[i, y1:y2, x1:x2] = True
    inst.gt_masks = BitMasks(masks)
    inst.gt_classes = inst.gt_classes % len(AUX_CLASSES)
    x["source"] = "aux"
    return x


def _output_tensors(prefix: str, outputs: List[dict]) -> Dict[str, torch.Tensor]:
    out = {}
    for i, result in enumerate(outputs):
        for key, fields in result.items():
            for name, value in fields.get_fields().items():
                value = value.tensor if hasattr(value, "tensor") else value
                out[f"{prefix}/{i}/{key}/{name}"] = value.detach().clone()
    return out


def record_case(context: str, mode: str, vectors: str) -> Dict[str, torch.Tensor]:
    """Losses, gradients and inference outputs of one model (all tensors, by name)."""
    with tempfile.TemporaryDirectory() as out_dir:
        torch.manual_seed(0)
        model = build_model(tiny_cfg(context, mode, out_dir, vectors)).train()
    record = {f"init/{k}": v.detach().clone() for k, v in model.state_dict().items()}
    batch = [target_input(4, 1), target_input(3, 2)] + ([aux_input(3, 3)] if vectors else [])
    torch.manual_seed(1)
    losses = model(batch)
    sum(losses.values()).backward()
    record.update({f"loss/{k}": v.detach().clone() for k, v in losses.items()})
    for name, p in model.named_parameters():
        if p.grad is not None:
            record[f"grad/{name}"] = p.grad.clone()
    model.eval()
    inputs = [target_input(4, 1), target_input(5, 4)] + ([aux_input(2, 5)] if vectors else [])
    torch.manual_seed(2)
    with torch.no_grad():
        record.update(_output_tensors("inference", model(inputs)))
    return record


def record_all() -> Dict[str, Dict[str, torch.Tensor]]:
    _register()
    cases = {}
    with tempfile.TemporaryDirectory() as folder:
        vectors = _write_vectors(Path(folder))
        for context in CONTEXTS:
            for mode in MODES:
                cases[f"{context}/{mode}"] = record_case(context, mode, "")
        for context in GROUNDED:
            for mode in MODES:
                cases[f"grounded-{context}/{mode}"] = record_case(context, mode, vectors)
    return cases


def compare(path_a: str, path_b: str) -> bool:
    """Print, per case, the tensors that differ or exist in one file only; True if none."""
    a, b = torch.load(path_a), torch.load(path_b)
    same = True
    for case in sorted(set(a) | set(b)):
        ta, tb = a.get(case, {}), b.get(case, {})
        only = sorted(set(ta) ^ set(tb))
        diff = [k for k in sorted(set(ta) & set(tb)) if not _equal(ta[k], tb[k])]
        status = "identical" if not (only or diff) else "DIFFERS"
        print(f"{case}: {len(set(ta) & set(tb))} tensors compared, {status}")
        for k in only:
            print(f"  only in {'A' if k in ta else 'B'}: {k}")
        for k in diff:
            print(f"  not equal: {k}")
        same = same and not (only or diff)
    print("ALL IDENTICAL" if same else "DIFFERENCES FOUND")
    return same


def _equal(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", help="record every model's tensors to this .pt file")
    group.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two recordings")
    args = parser.parse_args()
    if args.compare:
        return 0 if compare(*args.compare) else 1
    cases = record_all()
    torch.save(cases, args.out)
    print(f"{len(cases)} models, {sum(len(c) for c in cases.values())} tensors -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
