"""``SceneGraphPredictor``: run a trained model on one image (own images, demo)."""

import logging
import os
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.catalog import Metadata
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from ..config import build_config
from ..data.config_datasets import register_json_datasets
from .weights import StrictCheckpointer

__all__ = [
    "SceneGraphPredictor",
    "OUTPUT_FORMAT",
    "check_boxes",
    "load_inference_config",
    "unavailable_datasets",
]

logger = logging.getLogger(__name__)

# What the JSON of a scene graph means (written into every file, see ``to_scene_graph``).
OUTPUT_FORMAT = {
    "box_mode": "XYXY_ABS: [x1, y1, x2, y2] in pixels of the input image",
    "object_score": "PredCls: 1 (given label); SGCls: softmax probability of the predicted "
    "class; SGDet: the detector's probability of the object's class (softmax including "
    "background)",
    "relation_score": "subject score * object score * probability of the predicate",
}


class SceneGraphPredictor(DefaultPredictor):
    """Detectron2's ``DefaultPredictor`` for scene-graph models.

    ``predictor(image_bgr)`` returns a JSON-ready scene graph::

        {"objects": [{"id", "box": [x1, y1, x2, y2], "class", "score", ("mask": RLE)}],
         "relations": [{"subject", "predicate", "object", "score"}]}   # best first

    In PredCls/SGCls the model needs boxes (and, in PredCls, labels): pass ``boxes``
    ((N, 4) XYXY in the image's pixels) and ``labels`` (class names or indices).

    Class and predicate names come from the model itself (a trained ``SceneGraphRCNN``
    carries them in its weights), so no dataset needs to be registered: dataset entries of
    the config that are not (a saved config's ``DATASETS.SGG.JSON`` files missing, see
    :func:`load_inference_config`; ``DATASETS.TRAIN`` / ``TEST`` names not registered) are
    named in one logged notice. For weights without names, they come from the metadata of
    ``DATASETS.TEST`` / ``DATASETS.TRAIN``.

    ``MODEL.WEIGHTS`` is required (an existing file): a forgotten key would silently give
    a random model. ``allow_random_weights=True`` accepts an empty key on purpose. Weights
    that do not fit the model built from the config (another class count, missing or
    unused entries) are refused (:class:`~sgg_d2.engine.weights.StrictCheckpointer`).

    Raises:
        ValueError: empty ``MODEL.WEIGHTS``; no class names anywhere;
            :class:`~sgg_d2.engine.weights.WeightsMismatchError` (naming the file, the
            first mismatching parameter and both shapes).
        FileNotFoundError: ``MODEL.WEIGHTS`` names no file.
    """

    def __init__(self, cfg, max_relations: int = 100, allow_random_weights: bool = False):
        weights = cfg.MODEL.WEIGHTS
        if not weights and not allow_random_weights:
            raise ValueError(
                "MODEL.WEIGHTS is empty: give the trained model (MODEL.WEIGHTS "
                "path/to/model_final.pth), or allow a random model explicitly "
                "(demo.py --random-weights)"
            )
        if weights and "://" not in weights and not os.path.isfile(weights):
            raise FileNotFoundError(f"MODEL.WEIGHTS: no such file {weights}")
        # DefaultPredictor.__init__'s steps, with the strict loader in place of Detectron2's
        # (which skips mismatching parameters and leaves them random)
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        StrictCheckpointer(self.model, require_complete=True).load(weights)
        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be RGB or BGR, got {self.input_format!r}")
        self.mode = cfg.MODEL.SGG.MODE
        self.max_relations = max_relations
        self.model_name = os.path.basename(weights) if weights else "random weights"
        self.metadata = self._find_metadata(cfg)
        self.thing_classes = list(self.metadata.thing_classes)
        self.predicate_classes = list(self.metadata.predicate_classes)

    def _find_metadata(self, cfg):
        """Names from the model's state (weights) or, failing that, a registered dataset."""
        meta = self.model.sgg_metadata() if hasattr(self.model, "sgg_metadata") else None
        unavailable = unavailable_datasets(cfg)
        if meta is not None:
            if unavailable:
                logger.info(
                    "Class and predicate names and statistics come from MODEL.WEIGHTS %s; "
                    "dataset entries of the config not found (not needed for inference): %s",
                    cfg.MODEL.WEIGHTS,
                    "; ".join(unavailable),
                )
            return Metadata(
                thing_classes=meta["thing_classes"], predicate_classes=meta["predicate_classes"]
            )
        names = list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)
        found = [
            MetadataCatalog.get(n)
            for n in names
            if MetadataCatalog.get(n).get("predicate_classes", None)
        ]
        if not found:
            raise ValueError(
                f"SceneGraphPredictor: MODEL.WEIGHTS {cfg.MODEL.WEIGHTS!r} carries no class and "
                f"predicate names (not a trained sgg_d2 scene-graph model?), and none of "
                f"DATASETS.TEST/TRAIN {names} is registered with thing_classes and "
                f"predicate_classes (not found: {'; '.join(unavailable) or 'none'})"
            )
        logger.info("class names from the metadata of dataset %s", found[0].name)
        return found[0]

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
        """Raw model output ``{"instances", "relations"}`` for a BGR (H, W, 3) image.

        Args:
            image: (H, W, 3) uint8 BGR.
            boxes: PredCls/SGCls only: (N, 4) XYXY pixels, inside the image.
            labels: PredCls only: N class names or indices.

        Raises:
            ValueError: missing or malformed boxes/labels (naming the bad box), or boxes
                given in SGDet (the detector finds the objects; they would be ignored).
        """
        if self.mode == "sgdet" and boxes is not None:
            raise ValueError(
                "mode 'sgdet' detects its own objects: given boxes would be ignored; use "
                "MODEL.SGG.MODE predcls or sgcls to run on your boxes"
            )
        if self.mode != "sgdet" and boxes is None:
            raise ValueError(f"mode {self.mode!r} needs boxes (and labels in predcls)")
        if self.mode == "predcls" and labels is None:
            raise ValueError("mode 'predcls' needs labels for the boxes")
        height, width = image.shape[:2]
        if boxes is not None:
            boxes = check_boxes(boxes, height, width)
            if labels is not None and len(labels) != len(boxes):
                raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
        if self.input_format == "RGB":
            image = image[:, :, ::-1]
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
        with torch.no_grad(), warnings.catch_warnings():
            # Detectron2's anchor generator calls torch.meshgrid without ``indexing``; the
            # notice is about torch's future default, not the user's input.
            warnings.filterwarnings("ignore", "torch.meshgrid", UserWarning)
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
        return {"format": OUTPUT_FORMAT, "objects": objects, "relations": relations}

    def __call__(self, image: np.ndarray, boxes=None, labels: Optional[Sequence] = None):
        """Scene graph of a BGR image; see the class docstring."""
        return self.to_scene_graph(self.run(image, boxes, labels))


def check_boxes(boxes, height: int, width: int) -> np.ndarray:
    """(N, 4) float32 XYXY pixel boxes, checked against an image of ``height`` x ``width``.

    Raises:
        ValueError: naming the first bad box: not 4 numbers, x2 <= x1 or y2 <= y1 (e.g. an
            XYWH box), or outside the image.
    """
    try:
        arr = np.asarray(boxes, dtype="float32")
    except (TypeError, ValueError) as e:
        raise ValueError(f"boxes must be numbers [x1, y1, x2, y2]: {e}") from e
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) [x1, y1, x2, y2]; got shape {arr.shape}")
    for i, (x1, y1, x2, y2) in enumerate(arr.tolist()):
        if not np.isfinite([x1, y1, x2, y2]).all():
            raise ValueError(f"box {i} {[x1, y1, x2, y2]} is not finite")
        if x2 <= x1 or y2 <= y1:
            raise ValueError(
                f"box {i} {[x1, y1, x2, y2]} has x2 <= x1 or y2 <= y1: boxes are XYXY "
                "[x1, y1, x2, y2] in pixels (an XYWH box must be converted)"
            )
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise ValueError(f"box {i} {[x1, y1, x2, y2]} lies outside the {width}x{height} image")
    return arr


def _files_missing(entry) -> Optional[str]:
    """Why a well-formed ``[name, annotation_file, image_root]`` entry cannot be
    registered here ("<file> not found"), or None (present, or malformed: registration
    then names the problem)."""
    if not (isinstance(entry, (list, tuple)) and len(entry) == 3):
        return None
    if not all(isinstance(v, str) and v for v in entry):
        return None
    _, json_file, image_root = entry
    if not os.path.isfile(json_file):
        return f"{json_file} not found"
    if not os.path.isdir(image_root):
        return f"image folder {image_root} not found"
    return None


def load_inference_config(config_file: str, opts: Sequence[str] = ()) -> CfgNode:
    """The frozen config for inference from weights (``SceneGraphPredictor``, demo).

    As :func:`sgg_d2.config.load_config` (Detectron2 defaults -> sgg_d2 keys -> file ->
    overrides -> validation), except that ``DATASETS.SGG.JSON`` entries whose annotation
    file or image folder does not exist from here (e.g. relative paths of a run's saved
    ``config.yaml`` read from another folder) are left unregistered instead of failing: a
    trained model carries the names and statistics it needs, and
    :class:`SceneGraphPredictor` names such entries in its notice. Malformed entries and
    name clashes are still errors.

    Args:
        config_file: a YAML config ("" for the defaults alone).
        opts: flat ``[KEY, VALUE, ...]`` overrides.
    """
    cfg = build_config(config_file, opts)
    register_json_datasets([e for e in cfg.DATASETS.SGG.JSON if _files_missing(e) is None])
    return cfg


def unavailable_datasets(cfg) -> List[str]:
    """The config's dataset entries that are not registered, each as one phrase:
    ``"DATASETS.SGG.JSON my_train (my/train.json not found)"``,
    ``"DATASETS.TRAIN my_train not registered"``."""
    known = set(DatasetCatalog.list())
    out = []
    for entry in cfg.DATASETS.SGG.JSON:
        if entry[0] not in known:
            out.append(
                f"DATASETS.SGG.JSON {entry[0]} ({_files_missing(entry) or 'not registered'})"
            )
    for key in ("TRAIN", "TEST"):
        missing = [n for n in cfg.DATASETS[key] if n not in known]
        if missing:
            out.append(f"DATASETS.{key} {', '.join(missing)} not registered")
    return out
