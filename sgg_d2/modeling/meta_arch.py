"""``SceneGraphRCNN``: a (frozen) Faster/Mask R-CNN plus the relation stage."""

from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import Instances

from ..structures import Relations

__all__ = ["SceneGraphRCNN"]


@META_ARCH_REGISTRY.register()
class SceneGraphRCNN(GeneralizedRCNN):
    """Backbone + RPN + ``SceneGraphROIHeads``.

    Inputs (per image, from ``SceneGraphDatasetMapper``): ``image``, ``instances`` (GT
    boxes/classes: needed in training, and in PredCls/SGCls inference), ``relations``
    ((G, 3) int64, training), ``height``/``width`` (output resolution).

    Output per image: ``{"instances": Instances, "relations": Relations}`` with boxes in
    the original image's coordinates (the output contract of ``sgg_d2.evaluation``).

    With ``freeze_detector`` the backbone, RPN and box head get no gradient and stay in
    eval mode (normalisation statistics and proposal settings of inference).
    """

    @configurable
    def __init__(self, *, freeze_detector: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.freeze_detector = freeze_detector
        if freeze_detector:
            for module in self.detector_modules():
                module.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["freeze_detector"] = cfg.MODEL.SGG.FREEZE_DETECTOR
        return ret

    def detector_modules(self) -> List[torch.nn.Module]:
        """The modules of the detector stage (frozen when ``freeze_detector``)."""
        heads = self.roi_heads
        mods = [self.backbone, self.proposal_generator, heads.box_head, heads.box_predictor]
        if heads.mask_on:
            mods.append(heads.mask_head)
        return mods

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_detector:
            for module in self.detector_modules():
                module.train(False)
        return self

    def _run(self, batched_inputs: List[Dict]):
        images = self.preprocess_image(batched_inputs)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_detector):
            features = self.backbone(images.tensor)
            proposals = None
            if self.roi_heads.mode == "sgdet":
                was_training = self.proposal_generator.training
                self.proposal_generator.train(False)  # proposals only, no RPN loss
                proposals, _ = self.proposal_generator(images, features, None)
                self.proposal_generator.train(was_training)
        targets = relations = None
        if "instances" in batched_inputs[0]:
            targets = [x["instances"].to(self.device) for x in batched_inputs]
        if "relations" in batched_inputs[0]:
            relations = [x["relations"].to(self.device) for x in batched_inputs]
        return self.roi_heads(images, features, proposals, targets, relations), images

    def forward(self, batched_inputs: List[Dict]):
        """Training: dict of losses. Inference: list of per-image output dicts."""
        if not self.training:
            return self.inference(batched_inputs)
        (_, losses), _ = self._run(batched_inputs)
        return losses

    def inference(self, batched_inputs: List[Dict], do_postprocess: bool = True):
        """Per image ``{"instances", "relations"}``; boxes rescaled to the original size."""
        assert not self.training
        (results, _), images = self._run(batched_inputs)
        if not do_postprocess:
            return results
        for result, inputs in zip(results, batched_inputs):
            inst = result["instances"]
            size = (
                inputs.get("height", inst.image_size[0]),
                inputs.get("width", inst.image_size[1]),
            )
            result["instances"] = rescale_instances(inst, size)
            result["relations"] = Relations(size, **result["relations"].get_fields())
        return results


def rescale_instances(instances: Instances, size) -> Instances:
    """Boxes from the network's input frame to an image of ``size`` (height, width).

    Unlike Detectron2's ``detector_postprocess`` no instance is dropped (relations index
    them), boxes are only clipped.
    """
    out = Instances(size, **instances.get_fields())
    boxes = out.pred_boxes.clone()
    boxes.scale(size[1] / instances.image_size[1], size[0] / instances.image_size[0])
    boxes.clip(size)
    out.pred_boxes = boxes
    return out
