"""``SceneGraphRCNN``: a (frozen) Faster/Mask R-CNN plus the relation stage."""

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.layers import paste_masks_in_image
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import Instances

from ..structures import Relations
from ..structures.sources import AUX, TARGET, split_by_source
from .feature_cache import FrozenFeatureCache
from .relation.debias import predicate_counts_from_freq
from .statistics import training_statistics

__all__ = ["SceneGraphRCNN", "NAME_BYTES"]

# Each class / predicate name is stored as this many UTF-8 bytes (zero-padded): fixed
# shapes, so Detectron2's checkpointer loads them like any other buffer.
NAME_BYTES = 128


@META_ARCH_REGISTRY.register()
class SceneGraphRCNN(GeneralizedRCNN):
    """Backbone + RPN + ``SceneGraphROIHeads``.

    Inputs (per image, from ``SceneGraphDatasetMapper``): ``image``, ``instances`` (GT
    boxes/classes: needed in training, and in PredCls/SGCls inference), ``relations``
    ((G, 3) int64, training), ``height``/``width`` (output resolution).

    Output per image: ``{"instances": Instances, "relations": Relations}`` with boxes in
    the original image's coordinates (the output contract of ``sgg_d2.evaluation``).

    With segmentation grounding, instances also hold ``pred_masks`` (pasted at the original
    resolution), and inputs whose ``"source"`` is ``"aux"`` (auxiliary mask dataset, see
    ``sgg_d2.structures.sources``) go to ``roi_heads.forward_aux``: they only add the mask
    refinement loss in training and give ``{"instances"}`` (auxiliary classes, masks) at
    inference. The mode is the ROI heads' alone: they say whether a batch needs proposals
    (:meth:`SceneGraphROIHeads.needs_proposals`).

    With ``freeze_detector`` the backbone, RPN and box head get no gradient and stay in
    eval mode (normalisation statistics and proposal settings of inference); with
    ``feature_cache_mb`` > 0 or a ``feature_cache_dir`` too, each image's backbone maps are
    computed once and reused (:class:`~sgg_d2.modeling.feature_cache.FrozenFeatureCache`).

    Self-contained for inference: the state dict holds the training data's class and
    predicate names and frequency counts (buffers ``sgg_thing_names`` (C, NAME_BYTES) and
    ``sgg_predicate_names`` (P, NAME_BYTES) uint8, ``sgg_freq_counts`` (C, C, P + 1) int32,
    ``sgg_metadata_complete`` () uint8), read back by :meth:`sgg_metadata`. Built without
    the training dataset registered, they are placeholders until weights are loaded, and
    training refuses to start.
    """

    @configurable
    def __init__(
        self,
        *,
        freeze_detector: bool = True,
        feature_cache_mb: float = 0,
        feature_cache_dir: str = "",
        num_predicates: int = 0,
        training_metadata: Optional[dict] = None,
        **kwargs,
    ):
        """
        Args:
            freeze_detector: keep the detector stage frozen.
            feature_cache_mb: MB of per-image backbone maps kept in memory (0: none);
                needs ``freeze_detector``.
            feature_cache_dir: folder of per-image backbone maps on disk ("": none).
            num_predicates: P (size of the stored predicate names).
            training_metadata: ``training_statistics`` output (``thing_classes``,
                ``predicate_classes``, ``freq_tensor``, ``complete``) or None (placeholders).
            kwargs: ``GeneralizedRCNN`` arguments.
        """
        super().__init__(**kwargs)
        self.freeze_detector = freeze_detector
        self.feature_cache = None
        if feature_cache_mb or feature_cache_dir:
            if not freeze_detector:
                raise ValueError(
                    "MODEL.SGG.FEATURE_CACHE_MB / FEATURE_CACHE_DIR cache a frozen backbone's "
                    "maps; they need MODEL.SGG.FREEZE_DETECTOR True (or 0 and '')"
                )
            self.feature_cache = FrozenFeatureCache(feature_cache_mb, feature_cache_dir)
        if freeze_detector:
            for module in self.detector_modules():
                module.requires_grad_(False)
        num_classes = self.roi_heads.num_classes
        meta = training_metadata or {}
        complete = bool(meta.get("complete", False))
        freq = meta.get("freq_tensor")
        if freq is None:
            freq = np.zeros((num_classes, num_classes, num_predicates + 1))
        self.register_buffer(
            "sgg_thing_names", _encode_names(meta.get("thing_classes"), num_classes)
        )
        self.register_buffer(
            "sgg_predicate_names", _encode_names(meta.get("predicate_classes"), num_predicates)
        )
        self.register_buffer(
            "sgg_freq_counts", torch.as_tensor(np.asarray(freq), dtype=torch.int32)
        )
        self.register_buffer(
            "sgg_metadata_complete", torch.tensor(int(complete), dtype=torch.uint8)
        )

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["freeze_detector"] = cfg.MODEL.SGG.FREEZE_DETECTOR
        ret["feature_cache_mb"] = cfg.MODEL.SGG.FEATURE_CACHE_MB
        ret["feature_cache_dir"] = cfg.MODEL.SGG.FEATURE_CACHE_DIR
        ret["num_predicates"] = cfg.MODEL.SGG.NUM_PREDICATES
        ret["training_metadata"] = training_statistics(cfg) if cfg.DATASETS.TRAIN else None
        return ret

    def sgg_metadata(self) -> Optional[dict]:
        """What the model was trained on, as stored in its state dict, or None when the
        model holds placeholders (built without its dataset, no weights with metadata).

        Returns:
            dict with ``thing_classes`` (C names), ``predicate_classes`` (P names) and
            ``freq_tensor`` ((C, C, P + 1) int64 numpy counts, background at index 0).
        """
        if not int(self.sgg_metadata_complete):
            return None
        return {
            "thing_classes": _decode_names(self.sgg_thing_names),
            "predicate_classes": _decode_names(self.sgg_predicate_names),
            "freq_tensor": self.sgg_freq_counts.cpu().numpy().astype(np.int64),
        }

    def detector_modules(self) -> List[torch.nn.Module]:
        """The modules of the detector stage (frozen when ``freeze_detector``)."""
        heads = self.roi_heads
        mods = [self.backbone, self.proposal_generator, heads.box_head, heads.box_predictor]
        if heads.mask_on:
            mods.append(heads.mask_head)
        for name in ("aux_box_predictor", "aux_box_head"):
            if getattr(heads, name, None) is not None:
                mods.append(getattr(heads, name))
        return mods

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_detector:
            for module in self.detector_modules():
                module.train(False)
        return self

    def _run(self, batched_inputs: List[Dict], source: str = TARGET):
        images = self.preprocess_image(batched_inputs)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_detector):
            if self.feature_cache is not None:
                features = self.feature_cache.backbone_features(self, batched_inputs)
            else:
                features = self.backbone(images.tensor)
            proposals = None
            if self.roi_heads.needs_proposals(aux=source == AUX):
                was_training = self.proposal_generator.training
                self.proposal_generator.train(False)  # proposals only, no RPN loss
                proposals, _ = self.proposal_generator(images, features, None)
                self.proposal_generator.train(was_training)
        targets = relations = None
        if "instances" in batched_inputs[0]:
            targets = [x["instances"].to(self.device) for x in batched_inputs]
        if source == AUX:
            return self.roi_heads.forward_aux(images, features, proposals, targets), images
        if "relations" in batched_inputs[0]:
            relations = [x["relations"].to(self.device) for x in batched_inputs]
        if self.roi_heads.logit_adjustment_tau and int(self.sgg_metadata_complete):
            # the training counts the weights carry: inference needs no dataset
            counts = predicate_counts_from_freq(self.sgg_freq_counts.cpu())
            self.roi_heads.predicate_counts = counts.float().to(self.device)
        return self.roi_heads(images, features, proposals, targets, relations), images

    def forward(self, batched_inputs: List[Dict]):
        """Training: dict of losses. Inference: list of per-image output dicts."""
        if not self.training:
            return self.inference(batched_inputs)
        if not int(self.sgg_metadata_complete):
            raise RuntimeError(
                "SceneGraphRCNN was built without its training statistics (DATASETS.TRAIN was "
                "not registered when the model was built); register the training dataset "
                "(builtin names under $SGG_DATASETS, or DATASETS.SGG.JSON) before training"
            )
        groups = split_by_source(batched_inputs)
        losses = {}
        for source, idx in groups.items():
            if idx:
                (_, group_losses), _ = self._run([batched_inputs[i] for i in idx], source)
                losses.update(group_losses)
        grounding = getattr(self.roi_heads, "grounding", None)
        if not groups[AUX] and grounding is not None and grounding.refines:
            # same loss keys in every iteration (and every worker), refinement in the graph
            losses["loss_mask_refine"] = sum(p.sum() for p in grounding.refiner.parameters()) * 0
        return losses

    def inference(self, batched_inputs: List[Dict], do_postprocess: bool = True):
        """Per image ``{"instances", "relations"}`` (auxiliary inputs: ``{"instances"}``);
        boxes (and masks) rescaled to the original size."""
        assert not self.training
        results: List[Dict] = [{} for _ in batched_inputs]
        for source, idx in split_by_source(batched_inputs).items():
            if idx:
                (group, _), _ = self._run([batched_inputs[i] for i in idx], source)
                for i, result in zip(idx, group):
                    results[i] = result
        if not do_postprocess:
            return results
        for result, inputs in zip(results, batched_inputs):
            inst = result["instances"]
            size = (
                inputs.get("height", inst.image_size[0]),
                inputs.get("width", inst.image_size[1]),
            )
            result["instances"] = rescale_instances(inst, size)
            if "relations" in result:
                result["relations"] = Relations(size, **result["relations"].get_fields())
        return results


def rescale_instances(instances: Instances, size) -> Instances:
    """Boxes from the network's input frame to an image of ``size`` (height, width).

    Unlike Detectron2's ``detector_postprocess`` no instance is dropped (relations index
    them), boxes are only clipped. Box-frame ``pred_masks`` (N, 1, M, M) are pasted into
    the image with Detectron2's ``paste_masks_in_image`` (threshold 0.5): (N, H, W) bool.
    """
    out = Instances(size, **instances.get_fields())
    boxes = out.pred_boxes.clone()
    boxes.scale(size[1] / instances.image_size[1], size[0] / instances.image_size[0])
    if out.has("pred_masks"):
        # paste with the unclipped boxes: the mask grid spans the whole predicted box
        out.pred_masks = paste_masks_in_image(out.pred_masks[:, 0, :, :], boxes, size)
    boxes.clip(size)
    out.pred_boxes = boxes
    return out


def _encode_names(names: Optional[Sequence[str]], count: int) -> torch.Tensor:
    """(count, NAME_BYTES) uint8 zero-padded UTF-8; zeros when ``names`` is empty."""
    out = torch.zeros((count, NAME_BYTES), dtype=torch.uint8)
    if not names:
        return out
    if len(names) != count:
        raise ValueError(f"expected {count} names, got {len(names)}: {list(names)[:5]}...")
    for i, name in enumerate(names):
        data = str(name).encode("utf-8")
        if len(data) > NAME_BYTES:
            raise ValueError(f"name {name!r} is longer than {NAME_BYTES} UTF-8 bytes")
        out[i, : len(data)] = torch.tensor(list(data), dtype=torch.uint8)
    return out


def _decode_names(table: torch.Tensor) -> List[str]:
    """Inverse of :func:`_encode_names`."""
    return [bytes(row.tolist()).rstrip(b"\x00").decode("utf-8") for row in table.cpu()]
