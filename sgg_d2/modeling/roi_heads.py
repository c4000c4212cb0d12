"""``SceneGraphROIHeads``: Detectron2's box heads plus the relation stage.

The mode (``MODEL.SGG.MODE``) is resolved here, once (``__init__``):

- ``predcls``: objects are the GT boxes with their GT labels;
- ``sgcls``: objects are the GT boxes; labels are predicted (refined by the context);
- ``sgdet``: objects are the detector's post-NMS detections with the detector's own
  classes, scores and class logits; a context model that re-classifies gives the final
  class (``sgdet_objects``: :class:`SGDetObjects`).

Nothing below the heads reads the mode: they resolve it into ``detects_objects`` and
``knows_labels``, the context model sees ``ContextInputs.gt_labels`` (PredCls only), and
the meta-architecture asks :meth:`SceneGraphROIHeads.needs_proposals`.

With ``MODEL.SGG.GROUNDING.ENABLED`` (segmentation grounding, ``grounding/``) the mask head
(``MaskTransferHead``, auxiliary classes) gives every object a mask; the hook ``_ground``
grounds the context's inputs, ``_run_context`` (the plain context pass) hands them to
``_grounded_context``, outputs get ``pred_masks``, and ``forward_aux`` handles images of
the auxiliary mask dataset (``roi_heads_grounding``: :class:`GroundingHooksMixin`).
Without it the behaviour is exactly the plain relation stage.
"""

from dataclasses import replace
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Boxes, Instances

from ..config import SGG_MODES
from ..structures import all_ordered_pairs
from .context.build import ContextInputs, ContextOutputs, build_context_model
from .grounding import SegmentationGrounding, build_grounding
from .relation.build_predictor import build_relation_predictor
from .relation.causal import CausalPredictor
from .relation.debias import debiasing_from_config, logit_adjustment
from .relation.geometry import box_layout
from .relation.loss_registry import apply_relation_losses, build_relation_losses
from .relation.losses import object_loss, relation_loss
from .relation.postprocess import (
    object_predictions,
    scene_graph_outputs,
    suppress_duplicate_triplets,
)
from .relation.predictor import RelationPredictor
from .relation.sampling import pair_targets, training_pairs
from .relation.union_features import UnionFeatureExtractor, build_relation_backbone
from .roi_heads_grounding import GroundingHooksMixin
from .sgdet_objects import SGDetObjects
from .training_targets import block_offsets, training_targets

__all__ = ["SceneGraphROIHeads"]


@ROI_HEADS_REGISTRY.register()
class SceneGraphROIHeads(GroundingHooksMixin, StandardROIHeads):
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
        sgdet: Optional[SGDetObjects] = None,
        obj_loss_weight: float = 1.0,
        rel_loss_weight: float = 1.0,
        triplet_nms_thresh: float = 0.0,
        extra_losses=(),
        grounding: Optional[SegmentationGrounding] = None,
        aux_box_predictor: Optional[torch.nn.Module] = None,
        aux_box_head: Optional[torch.nn.Module] = None,
        logit_adjustment_tau: float = 0.0,
        predicate_counts: Optional[torch.Tensor] = None,
        predicate_loss_weights: Optional[torch.Tensor] = None,
        **kwargs,
    ):
        """
        Args:
            mode: "predcls", "sgcls" or "sgdet".
            context: a model from ``CONTEXT_REGISTRY``.
            union_features: extractor of union-box features.
            relation_predictor: pair features -> (R, P + 1) logits.
            sgdet: SGDet's settings and object steps (default ``SGDetObjects()``).
            extra_losses: modules of ``RELATION_LOSS_REGISTRY`` added in training.
            grounding: segmentation grounding (needs the ``MaskTransferHead``), or None.
            aux_box_predictor: box predictor over the auxiliary classes (grounding: SGCls /
                SGDet masks on auxiliary images), or None.
            aux_box_head: the auxiliary images' own box head (``GROUNDING.AUX_BOX_HEAD:
                separate``), or None (``box_head`` serves both datasets).
            logit_adjustment_tau, predicate_counts: post-hoc logit adjustment at inference
                (``relation/debias.py``): tau (0 = off) and the (P,) training counts.
            predicate_loss_weights: (P + 1,) class weights of the relation loss, or None.
            kwargs: ``StandardROIHeads`` arguments (the detector's heads).
        """
        super().__init__(**kwargs)
        if mode not in SGG_MODES:
            raise ValueError(f"mode is {mode!r}; valid values are {', '.join(SGG_MODES)}")
        self.mode = mode  # for messages; what follows from it is resolved here, once:
        self.detects_objects = mode == "sgdet"  # objects: detections (else the GT boxes)
        self.knows_labels = mode == "predcls"  # the GT labels are given
        self.context = context
        self.union_features = union_features
        self.relation_predictor = relation_predictor
        self.rel_batch_size_per_image = rel_batch_size_per_image
        self.rel_positive_fraction = rel_positive_fraction
        self.sgdet = sgdet if sgdet is not None else SGDetObjects()
        self.obj_loss_weight = obj_loss_weight
        self.rel_loss_weight = rel_loss_weight
        self.triplet_nms_thresh = triplet_nms_thresh
        self.extra_losses = torch.nn.ModuleList(extra_losses)
        # contrastive anchors drawn per image and side (0: none), asked for by an extra loss
        self.anchors_per_image = max(
            [int(getattr(loss, "anchors_per_image", 0)) for loss in extra_losses] + [0]
        )
        # every GT predicate of each candidate pair, asked for by an extra loss (RelDN's L3)
        self.needs_pair_predicates = any(
            getattr(loss, "needs_pair_predicates", False) for loss in extra_losses
        )
        self._init_grounding(grounding, aux_box_predictor, aux_box_head)
        self.logit_adjustment_tau = float(logit_adjustment_tau)
        # from the training statistics at build time, like the frequency bias (not saved)
        self.register_buffer("predicate_counts", predicate_counts, persistent=False)
        self.register_buffer("predicate_loss_weights", predicate_loss_weights, persistent=False)

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
        ret.update(
            mode=sgg.MODE,
            context=context,
            union_features=union,
            # RelationPredictor, or TDE's CausalPredictor (MODEL.SGG.CAUSAL.ENABLED)
            relation_predictor=build_relation_predictor(cfg, context),
            rel_batch_size_per_image=sgg.BATCH_SIZE_PER_IMAGE,
            rel_positive_fraction=sgg.POSITIVE_FRACTION,
            sgdet=SGDetObjects.from_config(cfg),
            obj_loss_weight=sgg.OBJ_LOSS_WEIGHT,
            rel_loss_weight=sgg.REL_LOSS_WEIGHT,
            # SGDet only: the authors' code skips triplet NMS with GT boxes
            triplet_nms_thresh=cfg.TEST.SGG.TRIPLET_NMS_THRESH if sgg.MODE == "sgdet" else 0.0,
            extra_losses=build_relation_losses(cfg),
            **debiasing_from_config(cfg),
        )
        if sgg.GROUNDING.ENABLED:
            ret.update(build_grounding(cfg, ret, context, sgg.UNION_DIM, input_shape))
        return ret

    # ---------------------------------------------------------------- objects
    def _detect(
        self, features, proposals: List[Instances], predictor=None, head=None
    ) -> List[Instances]:
        """SGDet objects: the frozen detector's post-NMS detections (``predictor`` and
        ``head``: another box predictor and box head, e.g. the auxiliary ones)."""
        predictor = predictor or self.box_predictor
        with torch.no_grad():
            feats = self._box_features(features, [p.proposal_boxes for p in proposals], head)
            predictions = predictor(feats)
            detections, kept = predictor.inference(predictions, proposals)
            logits = predictions[0].split([len(p) for p in proposals])
            for det, k, lg in zip(detections, kept, logits):
                # (N_i, C + 1) class logits of each detection's proposal, background last:
                # the distribution the detector's class and score come from
                det.det_logits = lg[k]
        if self.training:
            detections = self.sgdet.for_training(detections)
        return detections

    def _box_features(self, features, boxes: List[Boxes], head=None) -> torch.Tensor:
        """(N, D) features of ``boxes`` (per image) from ``head`` (default ``box_head``),
        images concatenated."""
        head = head if head is not None else self.box_head
        return head(self.box_pooler([features[f] for f in self.box_in_features], boxes))

    def _objects(self, features, proposals, targets):
        """Boxes (list of (N_i, 4)), GT labels to condition on, GT index per object (training)
        and, in SGDet, the detections (``Instances`` with ``pred_classes``, ``scores``,
        ``det_logits``; else None)."""
        if self.detects_objects:
            dets = self._detect(features, proposals)
            obj_to_gt = self.sgdet.match(dets, targets) if self.training else None
            return [d.pred_boxes.tensor for d in dets], None, obj_to_gt, dets
        boxes = [t.gt_boxes.tensor for t in targets]
        obj_to_gt = [torch.arange(len(b), device=b.device) for b in boxes]
        gt_labels = torch.cat([t.gt_classes for t in targets]) if self.knows_labels else None
        return boxes, gt_labels, obj_to_gt, None

    def _object_features(self, features, boxes):
        """(N, D) RoI features and (N, C) detector logits over the real classes."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._detector_trainable()):
            feats = self._box_features(features, [Boxes(b) for b in boxes])
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
    def needs_proposals(self, aux: bool = False) -> bool:
        """Whether a batch's objects come from RPN proposals: in SGDet, except auxiliary
        images (``aux``) in training, whose objects are their GT boxes."""
        return self.detects_objects and not (aux and self.training)

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
        if not self.detects_objects and targets is None:
            raise ValueError(f"mode {self.mode!r} needs GT boxes: pass the images' instances")
        boxes, gt_labels, obj_to_gt, dets = self._objects(features, proposals, targets)
        pairs, pair_labels, sampling = self._pairs(boxes, obj_to_gt, targets, relations)
        training = None
        if self.training:
            training = training_targets(
                boxes, obj_to_gt, targets, sampling, relations,
                anchors=self.anchors_per_image > 0, predicates=self.needs_pair_predicates,
            )  # fmt: skip
        inputs = self._context_inputs(features, boxes, pairs, images, gt_labels, dets, training)
        state = self._ground(features, boxes, inputs)
        inputs, out = self._run_context(features, boxes, pairs, inputs, state)
        if dets is None:
            labels, scores = object_predictions(out.obj_logits, inputs.gt_labels)
        else:
            refined = out.obj_logits is not inputs.obj_logits
            labels, scores = self.sgdet.final_objects(out.obj_logits, dets, refined)
        inputs, rel_logits = self._relation_logits(features, boxes, pairs, inputs, out, labels)
        if self.training:
            return {}, self._losses(inputs, out, rel_logits, pair_labels, labels)
        rel_logits = logit_adjustment(rel_logits, self.predicate_counts, self.logit_adjustment_tau)
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
            self.grounding.attach_target_masks(results, state, out.obj_repr, labels, self.mask_head)
        if dets is not None:
            results = self.sgdet.suppress_duplicates(results)
        return suppress_duplicate_triplets(results, self.triplet_nms_thresh), {}

    def _context_inputs(
        self, features, boxes, pairs, images, gt_labels=None, dets=None, training=None
    ) -> ContextInputs:
        """The batch's ``ContextInputs``, built once: per image ``boxes`` (N_i, 4) and local
        ``pairs`` (R_i, 2) made global; in SGDet (``dets``) the detector's own class logits,
        not re-derived ones; ``training``: ``training_targets.training_targets`` or None."""
        obj_feats, obj_logits = self._object_features(features, boxes)
        if dets is not None:
            obj_logits = self.sgdet.context_logits(dets, self.num_classes)
        image_sizes = list(images.image_sizes)
        offsets = block_offsets([len(b) for b in boxes], obj_feats.device)
        return ContextInputs(
            obj_features=obj_feats,
            obj_logits=obj_logits,
            box_layout=torch.cat([box_layout(b, s) for b, s in zip(boxes, image_sizes)]),
            boxes=torch.cat(boxes),
            num_objs=[len(b) for b in boxes],
            pairs=torch.cat([p + o for p, o in zip(pairs, offsets)]),
            num_pairs=[len(p) for p in pairs],
            gt_labels=gt_labels,
            features=features,
            image_sizes=image_sizes,
            images=images.tensor,
            training=training,
        )

    def _run_context(
        self, features, boxes, pairs, inputs: ContextInputs, state=None, refine_inputs=True
    ) -> Tuple[ContextInputs, ContextOutputs]:
        """The context pass: union-box features when the context reads them, then the
        context model; with grounding (``state``) on grounded nodes and edges
        (:meth:`_grounded_context`, ``refine_inputs`` passed on).

        Returns:
            ``(inputs as the context model saw them, its outputs)``.
        """
        if self.context.needs_union_features:
            union = self.union_features(
                features, boxes, pairs, inputs.image_sizes, images=inputs.images
            )
            inputs = replace(inputs, union_features=union)
        if state is not None:
            return self._grounded_context(inputs, state, refine_inputs)
        return inputs, self.context(inputs)

    def _relation_logits(self, features, boxes, pairs, inputs: ContextInputs, out, labels):
        """``(inputs, (R, P + 1) logits)``: the shared predictor on the pair features and
        ``labels`` (N,); or TDE's (``relation/causal.py``), which also reads union-box
        features (computed here when the context reads none) and runs the context again
        for its counterfactual at inference."""
        subj, obj = labels[inputs.pairs[:, 0]], labels[inputs.pairs[:, 1]]
        if not isinstance(self.relation_predictor, CausalPredictor):
            return inputs, self.relation_predictor(out.pair_features, subj, obj)
        if inputs.union_features is None:
            union = self.union_features(
                features, boxes, pairs, inputs.image_sizes, images=inputs.images
            )
            inputs = replace(inputs, union_features=union)
        return inputs, self.relation_predictor.predict(inputs, out, labels, self.context)

    def _losses(self, inputs: ContextInputs, out, rel_logits, pair_labels, labels):
        targets = inputs.training
        ce = targets.ce_mask if targets.ce_mask is not None else slice(None)  # the L0 sample
        losses = {
            "loss_relation": self.rel_loss_weight
            * relation_loss(rel_logits[ce], pair_labels[ce], self.predicate_loss_weights)
        }
        if inputs.gt_labels is None and out.obj_logits.requires_grad:
            losses["loss_refine_obj"] = self.obj_loss_weight * object_loss(
                out.obj_logits, targets.obj_gt_classes
            )
        predictor = self.relation_predictor
        if isinstance(predictor, CausalPredictor):  # TDE: each branch's own loss
            losses.update(predictor.losses(inputs, out, labels, pair_labels, ce))
            predictor = predictor.scorer(inputs)
        losses.update(self.context.losses(inputs, out, pair_labels, predictor))
        losses.update(apply_relation_losses(self.extra_losses, rel_logits, pair_labels, inputs))
        return losses
