"""``SceneGraphPredictor``: run a trained model on one image (own images, demo)."""

from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.structures import Boxes, Instances

__all__ = ["SceneGraphPredictor"]


class SceneGraphPredictor(DefaultPredictor):
    """Detectron2's ``DefaultPredictor`` for scene-graph models.

    ``predictor(image_bgr)`` returns a JSON-ready scene graph::

        {"objects": [{"id", "box": [x1, y1, x2, y2], "class", "score", ("mask": RLE)}],
         "relations": [{"subject", "predicate", "object", "score"}]}   # best first

    In PredCls/SGCls the model needs boxes (and, in PredCls, labels): pass ``boxes``
    ((N, 4) XYXY in the image's pixels) and ``labels`` (class names or indices).

    Class and predicate names come from the metadata of ``DATASETS.TEST[0]`` (or
    ``DATASETS.TRAIN[0]``).
    """

    def __init__(self, cfg, max_relations: int = 100):
        super().__init__(cfg)
        self.mode = cfg.MODEL.SGG.MODE
        self.max_relations = max_relations
        names = list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)
        metas = [MetadataCatalog.get(n) for n in names]
        found = [m for m in metas if m.get("predicate_classes", None)]
        if not found:
            raise ValueError(
                f"SceneGraphPredictor: none of DATASETS.TEST/TRAIN {names} is registered with "
                "thing_classes and predicate_classes (needed to name classes)"
            )
        self.metadata = found[0]
        self.thing_classes = list(self.metadata.thing_classes)
        self.predicate_classes = list(self.metadata.predicate_classes)

    def _label_indices(self, labels: Sequence) -> torch.Tensor:
        out = []
        for label in labels:
            if isinstance(label, str):
                if label not in self.thing_classes:
                    raise ValueError(f"unknown class {label!r}; known: {self.thing_classes}")
                label = self.thing_classes.index(label)
            out.append(int(label))
        return torch.as_tensor(out, dtype=torch.int64)

    def run(self, image: np.ndarray, boxes=None, labels=None) -> Dict:
        """Raw model output ``{"instances", "relations"}`` for a BGR (H, W, 3) image."""
        if self.mode != "sgdet" and boxes is None:
            raise ValueError(f"mode {self.mode!r} needs boxes (and labels in predcls)")
        if self.mode == "predcls" and labels is None:
            raise ValueError("mode 'predcls' needs labels for the boxes")
        if self.input_format == "RGB":
            image = image[:, :, ::-1]
        height, width = image.shape[:2]
        transform = self.aug.get_transform(image)
        tensor = torch.as_tensor(transform.apply_image(image).astype("float32").transpose(2, 0, 1))
        inputs = {"image": tensor, "height": height, "width": width}
        if boxes is not None:
            inst = Instances(tensor.shape[1:])
            inst.gt_boxes = Boxes(
                torch.as_tensor(transform.apply_box(np.asarray(boxes, "float32")))
            )
            n = len(inst.gt_boxes)
            inst.gt_classes = (
                self._label_indices(labels)
                if labels is not None
                else torch.zeros(n, dtype=torch.int64)
            )
            inputs["instances"] = inst
        with torch.no_grad():
            return self.model([inputs])[0]

    def to_scene_graph(self, outputs: Dict) -> Dict[str, List[Dict]]:
        """JSON-ready dict (see the class docstring) from a raw model output."""
        inst, rels = outputs["instances"].to("cpu"), outputs["relations"].to("cpu")
        objects = []
        for i in range(len(inst)):
            obj = {
                "id": i,
                "box": [round(float(v), 2) for v in inst.pred_boxes.tensor[i]],
                "class": self.thing_classes[int(inst.pred_classes[i])],
                "score": round(float(inst.scores[i]), 4),
            }
            if inst.has("pred_masks"):
                rle = mask_util.encode(
                    np.asfortranarray(inst.pred_masks[i].numpy().astype("uint8"))
                )
                obj["mask"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            objects.append(obj)
        relations = [
            {
                "subject": int(s),
                "predicate": self.predicate_classes[int(p)],
                "object": int(o),
                "score": round(float(score), 5),
            }
            for (s, o), p, score in zip(
                rels.pair_indices[: self.max_relations].tolist(),
                rels.predicates[: self.max_relations],
                rels.scores[: self.max_relations],
            )
        ]
        return {"objects": objects, "relations": relations}

    def __call__(self, image: np.ndarray, boxes=None, labels: Optional[Sequence] = None):
        """Scene graph of a BGR image; see the class docstring."""
        return self.to_scene_graph(self.run(image, boxes, labels))
