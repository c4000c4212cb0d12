"""The ROI heads' segmentation-grounding hooks and auxiliary-image path (``grounding/``).

:class:`GroundingHooksMixin` is a part of ``SceneGraphROIHeads`` kept in its own file: the
grounded context pass (:meth:`_grounded_context`, which wraps the context calls of the
heads' plain ``_run_context`` when ``MODEL.SGG.GROUNDING.ENABLED``) and
:meth:`forward_aux`, the images of the auxiliary mask dataset. Without grounding,
:meth:`_ground` returns None and ``_run_context`` is the plain context pass.
"""

from dataclasses import replace
from typing import List, Tuple

import torch
from detectron2.structures import Boxes

from ..structures import all_ordered_pairs
from .context.build import ContextInputs, ContextOutputs
from .grounding import mask_instances

__all__ = ["GroundingHooksMixin"]


class GroundingHooksMixin:
    """Grounding hooks of ``SceneGraphROIHeads``.

    The host provides Detectron2's box and mask heads (``box_head``, ``box_pooler``,
    ``box_in_features``, ``mask_head``, ``mask_pooler``, ``mask_in_features``), the
    resolved mode (``detects_objects``, ``knows_labels``; ``mode`` for messages),
    ``context``, and the methods ``_detect``, ``_box_features``, ``_context_inputs``,
    ``_run_context`` and ``_detector_trainable``; :meth:`_init_grounding` sets
    ``grounding`` (a ``SegmentationGrounding`` or None), ``aux_box_predictor`` and
    ``aux_box_head`` (or None).
    """

    def _init_grounding(self, grounding, aux_box_predictor, aux_box_head) -> None:
        """Keep the grounding and the auxiliary box heads (each may be None)."""
        self.grounding = grounding
        self.aux_box_predictor = aux_box_predictor
        self.aux_box_head = aux_box_head

    def _ground(self, features, boxes: List[torch.Tensor], inputs: ContextInputs):
        """Grounding hook: auxiliary mask logits and transferred masks (None when off)."""
        if self.grounding is None:
            return None
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._detector_trainable()):
            maps = [features[f] for f in self.mask_in_features]
            aux = self.mask_head.layers(self.mask_pooler(maps, [Boxes(b) for b in boxes]))
        return self.grounding.objects(aux, self.mask_head, inputs.obj_logits, inputs.gt_labels)

    def _grounded_context(
        self, inputs: ContextInputs, state, refine_inputs: bool = True
    ) -> Tuple[ContextInputs, ContextOutputs]:
        """The context on nodes (and edges, with union features) grounded in ``state``'s
        masks: wraps the plain pass of ``_run_context``.

        With the paper's final model (``GROUNDING.USE_REFINED_MASKS`` and refinement on;
        ``refine_inputs``), two context passes with the same weights: pass 1 on nodes/edges
        grounded in the transferred masks gives ``obj_repr``, which refines the masks
        (``state`` is updated in place); pass 2 on nodes/edges grounded in the refined
        masks gives the returned outputs (relations, object classes). The relation loss
        reaches the refinement head and, through ``obj_repr``, pass 1.

        Returns:
            ``(grounded inputs of the last pass, the context's outputs)``.
        """

        def context_pass():
            nodes = self.grounding.node_features(inputs.obj_features, state)
            edges = inputs.union_features
            if edges is not None:
                edges = self.grounding.edge_features(edges, state, inputs.boxes, inputs.pairs)
            grounded = replace(inputs, obj_features=nodes, union_features=edges)
            return grounded, self.context(grounded)

        grounded, out = context_pass()
        if refine_inputs and self.grounding.grounds_in_refined_masks():
            self.grounding.apply_refinement(state, out.obj_repr, self.mask_head)
            grounded, out = context_pass()
        return grounded, out

    def forward_aux(self, images, features, proposals, targets):
        """Images of the auxiliary mask dataset (segmentation grounding only).

        Training: objects are the GT boxes, and the only loss is the refinement pixel loss
        ``loss_mask_refine``. Inference: objects by mode (PredCls: GT boxes and classes;
        SGCls: GT boxes, auxiliary box classifier; SGDet: auxiliary detections), each with
        its (refined, if enabled) mask of its auxiliary class.

        Returns:
            Like ``forward``: ``({}, losses)`` or ``(list of {"instances"}, {})``.
        """
        if self.grounding is None:
            raise ValueError("auxiliary-dataset inputs need MODEL.SGG.GROUNDING.ENABLED")
        if self.training and not self.grounding.refines:
            raise ValueError("auxiliary images in training need MODEL.SGG.GROUNDING.REFINE")
        boxes, classes, scores = self._aux_objects(features, proposals, targets)
        pairs = [self._aux_pairs(len(b), b.device) for b in boxes]
        inputs = self._context_inputs(features, boxes, pairs, images)
        state = self._ground(features, boxes, inputs)
        logits = state.aux_logits
        if self.training or (self.grounding.refines and self.grounding.refine_at_test):
            _, out = self._run_context(features, boxes, pairs, inputs, state, refine_inputs=False)
            logits = self.grounding.refine(logits, out.obj_repr)
        if not self.training:
            return mask_instances(boxes, classes, scores, logits, inputs.image_sizes), {}
        size = logits.shape[-1]
        gt = [t.gt_masks.crop_and_resize(t.gt_boxes.tensor, size) for t in targets]
        return {}, self.grounding.refine_loss(logits, classes, torch.cat(gt).to(logits.dtype))

    def _aux_objects(
        self, features, proposals, targets
    ) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Auxiliary images: per image (N_i, 4) boxes, and (N,) auxiliary classes and
        scores."""
        if self.detects_objects and not self.training:
            dets = self._detect(features, proposals, self.aux_box_predictor, self.aux_box_head)
            classes = torch.cat([d.pred_classes for d in dets])
            return [d.pred_boxes.tensor for d in dets], classes, torch.cat([d.scores for d in dets])
        if targets is None:
            raise ValueError(f"mode {self.mode!r} needs GT boxes: pass the images' instances")
        boxes = [t.gt_boxes.tensor for t in targets]
        classes = torch.cat([t.gt_classes for t in targets])
        scores = torch.ones(len(classes), device=classes.device)
        if not (self.detects_objects or self.knows_labels or self.training):  # SGCls
            with torch.no_grad():
                feats = self._box_features(features, [Boxes(b) for b in boxes], self.aux_box_head)
                probs = self.aux_box_predictor(feats)[0].softmax(dim=1)[:, :-1]
            scores, classes = probs.max(dim=1)
        return boxes, classes, scores

    def _aux_pairs(self, num_objects: int, device) -> torch.Tensor:
        """(R, 2) all ordered pairs; at most ``aux_pairs_per_image`` random ones in
        training."""
        pairs = all_ordered_pairs(num_objects, device=device)
        cap = self.grounding.aux_pairs_per_image
        if self.training and len(pairs) > cap:
            pairs = pairs[torch.randperm(len(pairs), device=device)[:cap]]
        return pairs
