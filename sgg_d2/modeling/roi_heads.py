"""``SceneGraphROIHeads``: Detectron2's box heads plus the relation stage.

The mode (``MODEL.SGG.MODE``) is resolved here, once, in ``from_config``:

- ``predcls``: objects are the GT boxes with their GT labels;
- ``sgcls``: objects are the GT boxes; labels are predicted (refined by the context);
- ``sgdet``: objects are the detector's post-NMS detections (at most
  ``TEST.DETECTIONS_PER_IMAGE``, or ``MODEL.SGG.TRAIN_DETECTIONS_PER_IMAGE`` in training)
  with the detector's own classes, scores (softmax including background) and class logits
  (the context's input). A context model that re-classifies gives the final class; the
  score stays the detector's probability of that class, and per-class NMS on the final
  classes (``TEST.SGG.OBJECT_NMS_THRESH``) removes the copies a re-labelling creates. In
  training, detections are assigned to GT objects by IoU >= ``MODEL.SGG.MATCH_IOU_THRESHOLD``
  whatever their class, so the re-classification learns to correct the detector, as the
  class it predicts is what test-time matching compares.

With ``MODEL.SGG.GROUNDING.ENABLED`` (segmentation grounding, ``grounding/``) the mask head
(``MaskTransferHead``, auxiliary classes) gives every object a mask; the hooks
:meth:`_ground` / :meth:`_run_context` ground the context's inputs, outputs get
``pred_masks``, and :meth:`forward_aux` handles images of the auxiliary mask dataset.
Without it the behaviour is exactly the plain relation stage.
"""

from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Boxes, Instances

from ..config import SGG_MODES
from ..structures import all_ordered_pairs
from .context.build import ContextInputs, ContextOutputs, build_context_model
from .grounding import SegmentationGrounding, build_grounding, mask_instances
from .relation.geometry import box_layout
from .relation.loss_registry import apply_relation_losses, build_relation_losses
from .relation.losses import object_loss, relation_loss
from .relation.postprocess import (
    object_predictions,
    scene_graph_outputs,
    suppress_duplicate_objects,
    suppress_duplicate_triplets,
)
from .relation.predictor import RelationPredictor, use_frequency_bias
from .relation.sampling import match_to_gt, pair_targets, training_pairs
from .relation.union_features import UnionFeatureExtractor, build_relation_backbone
from .statistics import training_statistics

__all__ = ["SceneGraphROIHeads"]


@ROI_HEADS_REGISTRY.register()
class SceneGraphROIHeads(StandardROIHeads):
    """Standard box heads (the detector) + context model + relation predictor."""

    @configurable
    def __init__(
        self,
        *,
        mode: str,
        context: torch.nn.Module,
        union_features: UnionFeatureExtractor,
        relation_predictor: RelationPredictor,
        rel_batch_size_per_image: int = 256,
        rel_positive_fraction: float = 0.25,
        train_detections_per_image: int = 64,
        match_iou_threshold: float = 0.5,
        obj_loss_weight: float = 1.0,
        rel_loss_weight: float = 1.0,
        triplet_nms_thresh: float = 0.0,
        object_nms_thresh: float = 0.5,
        extra_losses=(),
        grounding: Optional[SegmentationGrounding] = None,
        aux_box_predictor: Optional[torch.nn.Module] = None,
        **kwargs,
    ):
        """
        Args:
            mode: "predcls", "sgcls" or "sgdet".
            context: a model from ``CONTEXT_REGISTRY``.
            union_features: extractor of union-box features.
            relation_predictor: pair features -> (R, P + 1) logits.
            extra_losses: modules of ``RELATION_LOSS_REGISTRY`` added in training.
            grounding: segmentation grounding (needs the ``MaskTransferHead``), or None.
            aux_box_predictor: box predictor over the auxiliary classes (grounding: SGCls /
                SGDet masks on auxiliary images), or None.
            object_nms_thresh: SGDet: IoU of the per-class NMS on the final classes (<= 0: off).
            kwargs: ``StandardROIHeads`` arguments (the detector's heads).
        """
        super().__init__(**kwargs)
        if mode not in SGG_MODES:
            raise ValueError(f"mode is {mode!r}; valid values are {', '.join(SGG_MODES)}")
        self.mode = mode
        self.context = context
        self.union_features = union_features
        self.relation_predictor = relation_predictor
        self.rel_batch_size_per_image = rel_batch_size_per_image
        self.rel_positive_fraction = rel_positive_fraction
        self.train_detections_per_image = train_detections_per_image
        self.match_iou_threshold = match_iou_threshold
        self.obj_loss_weight = obj_loss_weight
        self.rel_loss_weight = rel_loss_weight
        self.triplet_nms_thresh = triplet_nms_thresh
        self.object_nms_thresh = object_nms_thresh
        self.extra_losses = torch.nn.ModuleList(extra_losses)
        # contrastive anchors drawn per image and side (0: none), asked for by an extra loss
        self.anchors_per_image = max(
            [int(getattr(loss, "anchors_per_image", 0)) for loss in extra_losses] + [0]
        )
        self.grounding = grounding
        self.aux_box_predictor = aux_box_predictor

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        sgg = cfg.MODEL.SGG
        in_features = ret["box_in_features"]
        union = UnionFeatureExtractor(
            in_features=in_features,
            strides=[input_shape[f].stride for f in in_features],
            in_channels=input_shape[in_features[0]].channels,
            out_dim=sgg.UNION_DIM,
            pooler_resolution=cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION,
            sampling_ratio=cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
            pooler_type=cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
            chunk_size=sgg.UNION_CHUNK_SIZE,
            backbone=build_relation_backbone(cfg),
        )
        context = build_context_model(cfg, ret["box_head"].output_shape.channels, sgg.UNION_DIM)
        use_bias = use_frequency_bias(cfg, context)
        freq = training_statistics(cfg)["freq_tensor"] if use_bias else None
        ret.update(
            mode=sgg.MODE,
            context=context,
            union_features=union,
            relation_predictor=RelationPredictor(
                context.pair_dim,
                sgg.NUM_PREDICATES,
                None if freq is None else torch.as_tensor(freq),
            ),
            rel_batch_size_per_image=sgg.BATCH_SIZE_PER_IMAGE,
            rel_positive_fraction=sgg.POSITIVE_FRACTION,
            train_detections_per_image=sgg.TRAIN_DETECTIONS_PER_IMAGE,
            match_iou_threshold=sgg.MATCH_IOU_THRESHOLD,
            obj_loss_weight=sgg.OBJ_LOSS_WEIGHT,
            rel_loss_weight=sgg.REL_LOSS_WEIGHT,
            # SGDet only: the authors' code skips triplet NMS with GT boxes
            triplet_nms_thresh=cfg.TEST.SGG.TRIPLET_NMS_THRESH if sgg.MODE == "sgdet" else 0.0,
            object_nms_thresh=cfg.TEST.SGG.OBJECT_NMS_THRESH,
            extra_losses=build_relation_losses(cfg),
        )
        if sgg.GROUNDING.ENABLED:
            ret.update(build_grounding(cfg, ret, context, sgg.UNION_DIM, input_shape))
        return ret

    # ---------------------------------------------------------------- objects
    def _detect(self, features, proposals: List[Instances], predictor=None) -> List[Instances]:
        """SGDet objects: the frozen detector's post-NMS detections (``predictor``: another
        box predictor on the same box head, e.g. the auxiliary one)."""
        predictor = predictor or self.box_predictor
        with torch.no_grad():
            maps = [features[f] for f in self.box_in_features]
            feats = self.box_head(self.box_pooler(maps, [p.proposal_boxes for p in proposals]))
            predictions = predictor(feats)
            detections, kept = predictor.inference(predictions, proposals)
            logits = predictions[0].split([len(p) for p in proposals])
            for det, k, lg in zip(detections, kept, logits):
                # (N_i, C + 1) class logits of each detection's proposal, background last:
                # the distribution the detector's class and score come from
                det.det_logits = lg[k]
        if self.training:
            detections = [d[: self.train_detections_per_image] for d in detections]
        return detections

    def _objects(self, features, proposals, targets):
        """Boxes (list of (N_i, 4)), GT labels to condition on, GT index per object (training)
        and, in SGDet, the detections (``Instances`` with ``pred_classes``, ``scores``,
        ``det_logits``; else None)."""
        if self.mode == "sgdet":
            dets = self._detect(features, proposals)
            boxes = [d.pred_boxes.tensor for d in dets]
            if not self.training:
                return boxes, None, None, dets
            # class-agnostic: the label is the context's to predict (consistent with test)
            obj_to_gt = [
                match_to_gt(
                    d.pred_boxes.tensor,
                    torch.zeros_like(d.pred_classes),
                    t.gt_boxes.tensor,
                    torch.zeros_like(t.gt_classes),
                    self.match_iou_threshold,
                )
                for d, t in zip(dets, targets)
            ]
            return boxes, None, obj_to_gt, dets
        boxes = [t.gt_boxes.tensor for t in targets]
        obj_to_gt = [torch.arange(len(b), device=b.device) for b in boxes]
        gt_labels = torch.cat([t.gt_classes for t in targets]) if self.mode == "predcls" else None
        return boxes, gt_labels, obj_to_gt, None

    def _final_objects(self, inputs: ContextInputs, out: ContextOutputs, dets):
        """(N,) final labels and scores (``object_predictions``); in SGDet the detector's
        scores, and its classes where the context does not re-classify."""
        if dets is None:
            return object_predictions(out.obj_logits, inputs.gt_labels)
        return object_predictions(
            out.obj_logits,
            None,
            torch.cat([d.det_logits for d in dets]).softmax(dim=1),
            torch.cat([d.pred_classes for d in dets]),
            refined=out.obj_logits is not inputs.obj_logits,
        )

    def _object_features(self, features, boxes):
        """(N, D) RoI features and (N, C) detector logits over the real classes."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._detector_trainable()):
            maps = [features[f] for f in self.box_in_features]
            feats = self.box_head(self.box_pooler(maps, [Boxes(b) for b in boxes]))
            # Detectron2 puts background last: keep the C real classes.
            logits = self.box_predictor(feats)[0][:, : self.num_classes]
        return feats, logits

    def _detector_trainable(self) -> bool:
        return any(p.requires_grad for p in self.box_head.parameters())

    # ------------------------------------------------------------------ pairs
    def _pairs(self, boxes, obj_to_gt, targets, relations):
        """Per image local pairs and (training) their labels, sampled.

        Returns ``(pairs, labels, sampling)``; in training ``sampling`` holds per image
        every candidate pair (``all_pairs``) with its labels, the rows of the run pairs in
        them (``pair_index``), the L0 mask (``ce_mask``) and the contrastive anchors
        (``anchors``), see ``training_pairs``; None at inference (all pairs are run).
        """
        pairs, labels = [], []
        sampling = {k: [] for k in ("all_pairs", "all_labels", "pair_index", "ce_mask", "anchors")}
        for i, b in enumerate(boxes):
            p = all_ordered_pairs(len(b), device=b.device)
            if self.training:
                y = pair_targets(p, obj_to_gt[i], relations[i], len(targets[i]))
                keep, ce_mask, anchors = training_pairs(
                    y,
                    p,
                    obj_to_gt[i],
                    self.rel_batch_size_per_image,
                    self.rel_positive_fraction,
                    self.anchors_per_image,
                )
                for k, v in zip(sampling, (p, y, keep, ce_mask, anchors)):
                    sampling[k].append(v)
                p = p[keep]
                labels.append(y[keep])
            pairs.append(p)
        if not self.training:
            return pairs, None, None
        return pairs, torch.cat(labels), sampling

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        images,
        features: Dict[str, torch.Tensor],
        proposals: Optional[List[Instances]],
        targets: Optional[List[Instances]] = None,
        relations: Optional[List[torch.Tensor]] = None,
    ):
        """
        Args:
            images: ``ImageList`` of the batch.
            features: backbone maps.
            proposals: RPN proposals (SGDet), else None.
            targets: per image GT ``Instances`` (``gt_boxes``, ``gt_classes``); needed in
                training, and in PredCls/SGCls inference.
            relations: per image (G_i, 3) int64 GT relations (training).

        Returns:
            Training: ``({}, losses)``. Inference: ``(list of {"instances", "relations"},
            {})``, boxes in the network's input frame.
        """
        if self.training and (targets is None or relations is None):
            raise ValueError("SceneGraphROIHeads needs targets and relations in training")
        if self.mode != "sgdet" and targets is None:
            raise ValueError(f"mode {self.mode!r} needs GT boxes: pass the images' instances")
        boxes, gt_labels, obj_to_gt, dets = self._objects(features, proposals, targets)
        pairs, pair_labels, sampling = self._pairs(boxes, obj_to_gt, targets, relations)
        inputs = self._context_inputs(
            features, boxes, pairs, list(images.image_sizes), gt_labels, images.tensor, sampling
        )
        if dets is not None:  # SGDet: the detector's own class logits, not re-derived ones
            inputs.obj_logits = torch.cat([d.det_logits for d in dets])[:, : self.num_classes]
        if self.training:
            inputs.gt_instances = targets
            inputs.relation_predictor = self.relation_predictor
            inputs.obj_gt_classes = self._object_targets(obj_to_gt, targets)
            inputs.obj_gt_index = _global_gt_index(obj_to_gt, targets)
        state = self._ground(features, boxes, inputs)
        out = self._run_context(features, boxes, pairs, inputs, state)
        labels, scores = self._final_objects(inputs, out, dets)
        rel_logits = self.relation_predictor(
            out.pair_features, labels[inputs.pairs[:, 0]], labels[inputs.pairs[:, 1]]
        )
        if not self.training:
            results = scene_graph_outputs(
                boxes,
                inputs.image_sizes,
                out.obj_logits,
                gt_labels,
                pairs,
                rel_logits,
                objects=(labels, scores),
            )
            if state is not None:
                self.grounding.attach_target_masks(
                    results, state, out.obj_repr, labels, self.mask_head
                )
            if dets is not None:
                results = suppress_duplicate_objects(results, self.object_nms_thresh)
            return suppress_duplicate_triplets(results, self.triplet_nms_thresh), {}
        return {}, self._losses(inputs, out, rel_logits, pair_labels)

    # -------------------------------------------------------------- grounding
    def _ground(self, features, boxes, inputs: ContextInputs):
        """Grounding hook: auxiliary mask logits and transferred masks (None when off)."""
        if self.grounding is None:
            return None
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._detector_trainable()):
            maps = [features[f] for f in self.mask_in_features]
            aux = self.mask_head.layers(self.mask_pooler(maps, [Boxes(b) for b in boxes]))
        return self.grounding.objects(aux, self.mask_head, inputs.obj_logits, inputs.gt_labels)

    def _run_context(
        self, features, boxes, pairs, inputs, state, refine_inputs: bool = True
    ) -> ContextOutputs:
        """Union features when needed, grounded nodes/edges when ``state``, the context.

        With the paper's final model (``GROUNDING.USE_REFINED_MASKS`` and refinement on;
        ``refine_inputs``), two context passes with the same weights: pass 1 on nodes/edges
        grounded in the transferred masks gives ``obj_repr``, which refines the masks
        (``state`` is updated in place); pass 2 on nodes/edges grounded in the refined
        masks gives the returned outputs (relations, object classes). The relation loss
        reaches the refinement head and, through ``obj_repr``, pass 1.
        """
        obj_features, union = inputs.obj_features, None
        if self.context.needs_union_features:
            union = self.union_features(
                features, boxes, pairs, inputs.image_sizes, images=inputs.images
            )

        def context_pass():
            inputs.obj_features = obj_features
            if union is not None:
                inputs.union_features = union
            if state is not None:
                inputs.obj_features = self.grounding.node_features(obj_features, state)
                if union is not None:
                    inputs.union_features = self.grounding.edge_features(
                        union, state, inputs.boxes, inputs.pairs
                    )
            return self.context(inputs)

        out = context_pass()
        if state is not None and refine_inputs and self.grounding.grounds_in_refined_masks():
            self.grounding.apply_refinement(state, out.obj_repr, self.mask_head)
            out = context_pass()
        return out

    def forward_aux(self, images, features, proposals, targets):
        """Images of the auxiliary mask dataset (segmentation grounding only).

        Training: objects are the GT boxes, and the only loss is the refinement pixel loss
        ``loss_mask_refine``. Inference: objects by mode (PredCls: GT boxes and classes;
        SGCls: GT boxes, auxiliary box classifier; SGDet: auxiliary detections), each with
        its (refined, if enabled) mask of its auxiliary class.

        Returns:
            Like :meth:`forward`: ``({}, losses)`` or ``(list of {"instances"}, {})``.
        """
        if self.grounding is None:
            raise ValueError("auxiliary-dataset inputs need MODEL.SGG.GROUNDING.ENABLED")
        if self.training and not self.grounding.refines:
            raise ValueError("auxiliary images in training need MODEL.SGG.GROUNDING.REFINE")
        boxes, classes, scores = self._aux_objects(features, proposals, targets)
        pairs = [self._aux_pairs(len(b), b.device) for b in boxes]
        inputs = self._context_inputs(
            features, boxes, pairs, list(images.image_sizes), None, images.tensor
        )
        state = self._ground(features, boxes, inputs)
        logits = state.aux_logits
        if self.training or (self.grounding.refines and self.grounding.refine_at_test):
            out = self._run_context(features, boxes, pairs, inputs, state, refine_inputs=False)
            logits = self.grounding.refine(logits, out.obj_repr)
        if not self.training:
            return mask_instances(boxes, classes, scores, logits, inputs.image_sizes), {}
        size = logits.shape[-1]
        gt = [t.gt_masks.crop_and_resize(t.gt_boxes.tensor, size) for t in targets]
        return {}, self.grounding.refine_loss(logits, classes, torch.cat(gt).to(logits.dtype))

    def _aux_objects(self, features, proposals, targets):
        """Auxiliary images: per image boxes, and (N,) auxiliary classes and scores."""
        if self.mode == "sgdet" and not self.training:
            dets = self._detect(features, proposals, self.aux_box_predictor)
            classes = torch.cat([d.pred_classes for d in dets])
            return [d.pred_boxes.tensor for d in dets], classes, torch.cat([d.scores for d in dets])
        if targets is None:
            raise ValueError(f"mode {self.mode!r} needs GT boxes: pass the images' instances")
        boxes = [t.gt_boxes.tensor for t in targets]
        classes = torch.cat([t.gt_classes for t in targets])
        scores = torch.ones(len(classes), device=classes.device)
        if self.mode == "sgcls" and not self.training:
            with torch.no_grad():
                maps = [features[f] for f in self.box_in_features]
                feats = self.box_head(self.box_pooler(maps, [Boxes(b) for b in boxes]))
                probs = self.aux_box_predictor(feats)[0].softmax(dim=1)[:, :-1]
            scores, classes = probs.max(dim=1)
        return boxes, classes, scores

    def _aux_pairs(self, num_objects: int, device) -> torch.Tensor:
        """All ordered pairs; at most ``aux_pairs_per_image`` random ones in training."""
        pairs = all_ordered_pairs(num_objects, device=device)
        cap = self.grounding.aux_pairs_per_image
        if self.training and len(pairs) > cap:
            pairs = pairs[torch.randperm(len(pairs), device=device)[:cap]]
        return pairs

    def _context_inputs(
        self, features, boxes, pairs, image_sizes, gt_labels, images=None, sampling=None
    ) -> ContextInputs:
        """``ContextInputs`` of the batch; ``sampling`` (training, from :meth:`_pairs`) adds
        every candidate pair (``all_pairs``), the L0 mask and the contrastive anchors."""
        obj_feats, det_logits = self._object_features(features, boxes)
        offsets = torch.tensor([0] + [len(b) for b in boxes[:-1]], device=obj_feats.device)
        offsets = offsets.cumsum(0)
        inputs = ContextInputs(
            obj_features=obj_feats,
            obj_logits=det_logits,
            box_layout=torch.cat([box_layout(b, s) for b, s in zip(boxes, image_sizes)]),
            boxes=torch.cat(boxes),
            num_objs=[len(b) for b in boxes],
            pairs=torch.cat([p + o for p, o in zip(pairs, offsets)]),
            num_pairs=[len(p) for p in pairs],
            gt_labels=gt_labels,
            features=features,
            image_sizes=image_sizes,
            images=images,
        )
        if sampling is not None:
            all_pairs = sampling["all_pairs"]
            starts = [0] + [len(p) for p in all_pairs[:-1]]
            starts = torch.tensor(starts, device=obj_feats.device).cumsum(0)
            inputs.all_pairs = torch.cat([p + o for p, o in zip(all_pairs, offsets)])
            inputs.all_pair_labels = torch.cat(sampling["all_labels"])
            inputs.num_all_pairs = [len(p) for p in all_pairs]
            inputs.pair_index = torch.cat([k + s for k, s in zip(sampling["pair_index"], starts)])
            inputs.ce_mask = torch.cat(sampling["ce_mask"])
            if self.anchors_per_image > 0:
                inputs.contrastive_anchors = torch.cat(sampling["anchors"])
        return inputs

    def _losses(self, inputs: ContextInputs, out, rel_logits, pair_labels):
        ce = inputs.ce_mask if inputs.ce_mask is not None else slice(None)  # the L0 sample
        losses = {
            "loss_relation": self.rel_loss_weight * relation_loss(rel_logits[ce], pair_labels[ce])
        }
        if inputs.gt_labels is None and out.obj_logits.requires_grad:
            losses["loss_refine_obj"] = self.obj_loss_weight * object_loss(
                out.obj_logits, inputs.obj_gt_classes
            )
        if hasattr(self.context, "losses"):
            losses.update(self.context.losses(inputs, out, pair_labels))
        losses.update(apply_relation_losses(self.extra_losses, rel_logits, pair_labels, inputs))
        return losses

    @staticmethod
    def _object_targets(obj_to_gt, targets) -> torch.Tensor:
        """(N,) GT class of each object, -1 where unmatched (SGDet)."""
        out = []
        for m, t in zip(obj_to_gt, targets):
            y = t.gt_classes[m.clamp(min=0)]
            out.append(torch.where(m >= 0, y, torch.full_like(y, -1)))
        return torch.cat(out)


def _global_gt_index(obj_to_gt, targets) -> torch.Tensor:
    """(N,) GT index of each object made unique across the batch (-1 stays -1)."""
    out, offset = [], 0
    for m, t in zip(obj_to_gt, targets):
        out.append(torch.where(m >= 0, m + offset, m))
        offset += len(t)
    return torch.cat(out)
