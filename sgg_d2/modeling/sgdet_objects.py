"""SGDet objects: the frozen detector's detections as the relation stage's objects.

In SGDet (``MODEL.SGG.MODE: sgdet``) the objects are the detector's post-NMS detections (at
most ``TEST.DETECTIONS_PER_IMAGE``, or ``MODEL.SGG.TRAIN_DETECTIONS_PER_IMAGE`` in
training) with the detector's own classes, scores (softmax including background) and
class logits (the context's input). A context model that re-classifies gives the final
class; the score stays the detector's probability of that class, and per-class NMS on the
final classes (``TEST.SGG.OBJECT_NMS_THRESH``) removes the copies a re-labelling creates.
In training, detections are assigned to GT objects by IoU >= ``MODEL.SGG.MATCH_IOU_THRESHOLD``
whatever their class, so the re-classification learns to correct the detector, as the
class it predicts is what test-time matching compares.

The detections themselves come from ``SceneGraphROIHeads._detect`` (the ROI heads' own box
head), each with ``det_logits`` (N_i, C + 1), background last.
"""

from typing import List, Tuple

import torch
from detectron2.structures import Instances

from .relation.postprocess import object_predictions, suppress_duplicate_objects
from .relation.sampling import match_to_gt

__all__ = ["SGDetObjects"]


class SGDetObjects:
    """SGDet's settings and the steps that treat detections as objects (module docstring).

    Holds no parameters (not a module): the ROI heads call it in SGDet only.
    """

    def __init__(
        self,
        train_detections_per_image: int = 64,
        match_iou_threshold: float = 0.5,
        object_nms_thresh: float = 0.5,
    ):
        """
        Args:
            train_detections_per_image: detections kept per image in training.
            match_iou_threshold: IoU a detection needs with a GT box to be assigned to it.
            object_nms_thresh: IoU of the per-class NMS on the final classes (<= 0: off).
        """
        self.train_detections_per_image = train_detections_per_image
        self.match_iou_threshold = match_iou_threshold
        self.object_nms_thresh = object_nms_thresh

    @classmethod
    def from_config(cls, cfg) -> "SGDetObjects":
        """The settings of ``MODEL.SGG`` and ``TEST.SGG``."""
        return cls(
            train_detections_per_image=cfg.MODEL.SGG.TRAIN_DETECTIONS_PER_IMAGE,
            match_iou_threshold=cfg.MODEL.SGG.MATCH_IOU_THRESHOLD,
            object_nms_thresh=cfg.TEST.SGG.OBJECT_NMS_THRESH,
        )

    def for_training(self, detections: List[Instances]) -> List[Instances]:
        """The first ``train_detections_per_image`` detections of each image."""
        return [d[: self.train_detections_per_image] for d in detections]

    def match(self, detections: List[Instances], targets: List[Instances]) -> List[torch.Tensor]:
        """Per image (N_i,) int64 GT index of each detection, -1 where unmatched.

        Class-agnostic: the label is the context's to predict (consistent with test).
        """
        return [
            match_to_gt(
                d.pred_boxes.tensor,
                torch.zeros_like(d.pred_classes),
                t.gt_boxes.tensor,
                torch.zeros_like(t.gt_classes),
                self.match_iou_threshold,
            )
            for d, t in zip(detections, targets)
        ]

    @staticmethod
    def context_logits(detections: List[Instances], num_classes: int) -> torch.Tensor:
        """(N, C) the detector's own class logits over the C real classes, images
        concatenated: the context's ``obj_logits`` (not re-derived from the boxes)."""
        return torch.cat([d.det_logits for d in detections])[:, :num_classes]

    @staticmethod
    def final_objects(
        obj_logits: torch.Tensor, detections: List[Instances], refined: bool
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N,) final labels and scores: the detector's scores, and its classes unless the
        context re-classifies (``refined``; ``obj_logits`` (N, C) are the context's)."""
        return object_predictions(
            obj_logits,
            None,
            torch.cat([d.det_logits for d in detections]).softmax(dim=1),
            torch.cat([d.pred_classes for d in detections]),
            refined=refined,
        )

    def suppress_duplicates(self, results: List[dict]) -> List[dict]:
        """Per-class NMS on the final classes (``suppress_duplicate_objects``)."""
        return suppress_duplicate_objects(results, self.object_nms_thresh)
