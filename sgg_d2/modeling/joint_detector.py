"""Joint detector pretraining for segmentation grounding (stage 1 of seed paper 004).

One backbone and one RPN see the images of both datasets; the box head is shared
(``MODEL.SGG.GROUNDING.AUX_BOX_HEAD: shared``) or the auxiliary images have their own
(``separate``, ``roi_heads.aux_box_head``); a box predictor over the target classes
(``MODEL.ROI_HEADS.NUM_CLASSES``) is trained only on target images and one over the
auxiliary classes (``MODEL.SGG.GROUNDING.AUX_NUM_CLASSES``) only on auxiliary images; the
mask head (auxiliary classes) is trained only on auxiliary images. Which dataset an input
comes from is its ``"source"`` (``sgg_d2.structures.sources``, set by
``sgg_d2.data.joint_loader``). The auxiliary losses are scaled by
``MODEL.SGG.GROUNDING.AUX_LOSS_WEIGHT``.

Losses: ``loss_rpn_*`` (both), ``loss_cls`` / ``loss_box_reg`` (target images),
``loss_cls_aux`` / ``loss_box_reg_aux`` / ``loss_mask`` (auxiliary images). A batch without
images of one dataset gives that dataset's losses as zeros (same keys every iteration).

Parameter names match the grounded relation model (``roi_heads.aux_box_predictor``,
``roi_heads.aux_box_head``, ``roi_heads.mask_head``), so ``MODEL.SGG.DETECTOR_WEIGHTS``
hands everything over.
"""

from typing import Dict, List, Optional, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, ROI_HEADS_REGISTRY, GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import StandardROIHeads, select_foreground_proposals
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Instances, pairwise_iou

from ..structures.sources import AUX, TARGET, input_source
from .grounding.build import build_aux_box_heads, with_num_classes

__all__ = ["JointRCNN", "JointROIHeads"]


@ROI_HEADS_REGISTRY.register()
class JointROIHeads(StandardROIHeads):
    """Shared (or per-dataset) box head; target and auxiliary box predictors; auxiliary mask
    head."""

    @configurable
    def __init__(
        self,
        *,
        aux_box_predictor: torch.nn.Module,
        num_aux_classes: int,
        aux_box_head: Optional[torch.nn.Module] = None,
        aux_loss_weight: float = 1.0,
        **kwargs,
    ):
        """
        Args:
            aux_box_predictor: ``FastRCNNOutputLayers`` over the auxiliary classes.
            num_aux_classes: d_m.
            aux_box_head: the auxiliary images' own box head, or None (``box_head`` shared).
            aux_loss_weight: factor on ``loss_cls_aux``, ``loss_box_reg_aux``, ``loss_mask``.
            kwargs: ``StandardROIHeads`` arguments (the mask head must be present).
        """
        super().__init__(**kwargs)
        if not self.mask_on:
            raise ValueError("JointROIHeads needs MODEL.MASK_ON: True (auxiliary mask head)")
        self.aux_box_predictor, self.aux_box_head = aux_box_predictor, aux_box_head
        self.num_aux_classes, self.aux_loss_weight = num_aux_classes, aux_loss_weight

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        g = cfg.MODEL.SGG.GROUNDING
        ret.update(build_aux_box_heads(cfg, input_shape, ret))
        ret.update(num_aux_classes=g.AUX_NUM_CLASSES, aux_loss_weight=g.AUX_LOSS_WEIGHT)
        return ret

    @classmethod
    def _init_mask_head(cls, cfg, input_shape):
        # The mask head predicts the auxiliary classes only.
        aux = cfg.MODEL.SGG.GROUNDING.AUX_NUM_CLASSES
        return super()._init_mask_head(with_num_classes(cfg, aux), input_shape)

    def _head(self, source: str):
        """(box head, box predictor, number of classes, loss-name suffix) of a dataset."""
        if source == AUX:
            head = self.aux_box_head if self.aux_box_head is not None else self.box_head
            return head, self.aux_box_predictor, self.num_aux_classes, "_aux"
        return self.box_head, self.box_predictor, self.num_classes, ""

    @torch.no_grad()
    def sample_proposals(
        self, proposals: List[Instances], targets: List[Instances], num_classes: int
    ) -> List[Instances]:
        """Detectron2's proposal labelling and sampling with background = ``num_classes``
        (the two datasets have different class counts)."""
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        out = []
        for props, gt in zip(proposals, targets):
            matched, match_labels = self.proposal_matcher(
                pairwise_iou(gt.gt_boxes, props.proposal_boxes)
            )
            if len(gt):
                classes = gt.gt_classes[matched]
                classes[match_labels == 0] = num_classes
                classes[match_labels == -1] = -1
            else:
                classes = torch.full_like(matched, num_classes)
            fg, bg = subsample_labels(
                classes, self.batch_size_per_image, self.positive_fraction, num_classes
            )
            keep = torch.cat([fg, bg])
            sampled = props[keep]
            sampled.gt_classes = classes[keep]
            if len(gt):
                for name, value in gt.get_fields().items():
                    if name.startswith("gt_") and not sampled.has(name):
                        sampled.set(name, value[matched[keep]])
            out.append(sampled)
        return out

    def _box_features(self, features, boxes, head):
        return head(self.box_pooler([features[f] for f in self.box_in_features], boxes))

    def _zero_losses(self, source: str) -> Dict[str, torch.Tensor]:
        """This dataset's losses as zeros in the graph (no image of it in the batch)."""
        head, predictor, _, suffix = self._head(source)
        modules = [head, predictor] + ([self.mask_head] if source == AUX else [])
        zero = sum(p.sum() for m in modules for p in m.parameters()) * 0.0
        names = ["loss_cls" + suffix, "loss_box_reg" + suffix]
        return {k: zero for k in names + (["loss_mask"] if source == AUX else [])}

    def _group_losses(self, source, features, proposals, targets) -> Dict[str, torch.Tensor]:
        head, predictor, num_classes, suffix = self._head(source)
        sampled = self.sample_proposals(proposals, targets, num_classes)
        feats = self._box_features(features, [p.proposal_boxes for p in sampled], head)
        losses = predictor.losses(predictor(feats), sampled)
        losses = {k + suffix: v for k, v in losses.items()}
        if source == AUX:
            fg, _ = select_foreground_proposals(sampled, num_classes)
            maps = [features[f] for f in self.mask_in_features]
            pooled = self.mask_pooler(maps, [p.proposal_boxes for p in fg])
            losses.update(self.mask_head(pooled, fg))
            losses = {k: v * self.aux_loss_weight for k, v in losses.items()}
        return losses

    def _group_inference(self, source, features, proposals) -> List[Instances]:
        head, predictor, _, _ = self._head(source)
        feats = self._box_features(features, [p.proposal_boxes for p in proposals], head)
        detections, _ = predictor.inference(predictor(feats), proposals)
        if source == AUX:
            detections = self._forward_mask(features, detections)
        return detections

    def forward(
        self,
        images,
        features: Dict[str, torch.Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
        sources: Optional[Sequence[str]] = None,
    ):
        """
        Args:
            images, features, proposals, targets: as ``StandardROIHeads.forward``.
            sources: per image ``"target"`` or ``"aux"``; None = all target.

        Returns:
            Training: ``(proposals, losses)``. Inference: ``(detections, {})``; auxiliary
            images' detections (auxiliary classes) carry ``pred_masks``.
        """
        del images
        sources = list(sources or [TARGET] * len(proposals))
        if self.training and targets is None:
            raise ValueError("JointROIHeads needs targets in training")
        losses, results = {}, [None] * len(proposals)
        for source in (TARGET, AUX):
            idx = [i for i, s in enumerate(sources) if s == source]
            if not idx:
                if self.training:
                    losses.update(self._zero_losses(source))
                continue
            sub = {k: v[idx] for k, v in features.items()}
            props = [proposals[i] for i in idx]
            if self.training:
                losses.update(self._group_losses(source, sub, props, [targets[i] for i in idx]))
            else:
                for i, det in zip(idx, self._group_inference(source, sub, props)):
                    results[i] = det
        return (proposals, losses) if self.training else (results, {})


@META_ARCH_REGISTRY.register()
class JointRCNN(GeneralizedRCNN):
    """``GeneralizedRCNN`` whose ROI heads (``JointROIHeads``) also get each input's source.

    Output per image: ``{"instances"}`` (Detectron2's), target classes for target inputs,
    auxiliary classes and masks for auxiliary inputs.
    """

    def _features(self, batched_inputs, gt_instances):
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        sources = [input_source(x) for x in batched_inputs]
        return images, features, proposals, proposal_losses, sources

    def forward(self, batched_inputs: List[Dict]):
        """Training: dict of losses. Inference: list of ``{"instances"}``."""
        if not self.training:
            return self.inference(batched_inputs)
        gt = [x["instances"].to(self.device) for x in batched_inputs]
        images, features, proposals, proposal_losses, sources = self._features(batched_inputs, gt)
        _, losses = self.roi_heads(images, features, proposals, gt, sources)
        losses.update(proposal_losses)
        return losses

    def inference(self, batched_inputs, detected_instances=None, do_postprocess: bool = True):
        """Detections of each input (given boxes are not supported)."""
        if detected_instances is not None:
            raise ValueError("JointRCNN.inference does not take detected_instances")
        images, features, proposals, _, sources = self._features(batched_inputs, None)
        results, _ = self.roi_heads(images, features, proposals, None, sources)
        if not do_postprocess:
            return results
        out = []
        for r, x, size in zip(results, batched_inputs, images.image_sizes):
            height, width = x.get("height", size[0]), x.get("width", size[1])
            out.append({"instances": detector_postprocess(r, height, width)})
        return out
