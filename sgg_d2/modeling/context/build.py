"""Registry of context models (IMP, MOTIFS, VCTree, ...) and their call contract."""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.utils.registry import Registry

__all__ = ["CONTEXT_REGISTRY", "ContextInputs", "ContextOutputs", "build_context_model"]

CONTEXT_REGISTRY = Registry("SGG_CONTEXT")
CONTEXT_REGISTRY.__doc__ = """
Context models refine object classes and build pair features from every object of an
image (seed papers: IMP, MOTIFS, VCTree, ...). One registered class per paper, one file.

Built as ``CONTEXT_REGISTRY.get(cfg.MODEL.SGG.CONTEXT)(cfg, obj_dim, union_dim)`` (classes
use ``@configurable``), where ``obj_dim`` is the size of the objects' RoI features and
``union_dim`` the size of the pairs' union-box features. Attributes:

- ``pair_dim`` (int | None): size of ``ContextOutputs.pair_features``; None when the
  model gives none (the predictor then uses the frequency bias alone);
- ``needs_union_features`` (bool): whether ``ContextInputs.union_features`` is used
  (it is expensive, so it is only computed when needed).

``forward(inputs: ContextInputs) -> ContextOutputs``; an optional ``losses(inputs,
outputs, pair_labels)`` returns a dict of auxiliary losses (e.g. VCTree's tree scores).
The mode is not read from the config: ``inputs.gt_labels`` is set exactly in PredCls.
"""


@dataclass
class ContextInputs:
    """Objects and candidate pairs of a batch, images concatenated.

    Attributes:
        obj_features: (N, D_obj) RoI features of the objects.
        obj_logits: (N, C) detector class logits over the C real classes.
        box_layout: (N, 9) normalised box position/size (``geometry.box_layout``).
        boxes: (N, 4) XYXY boxes in the network's input frame.
        num_objs: objects per image; sums to N.
        pairs: (R, 2) int64 (subject, object) indices into the N objects (global).
        num_pairs: pairs per image; sums to R.
        union_features: (R, union_dim) or None.
        gt_labels: (N,) int64 known classes (PredCls) or None.
        features: the backbone maps of the batch (name -> (B, C, H, W)), e.g. for image-level
            context or 2-D pair features.
        image_sizes: per image (height, width) of the network input.
        obj_gt_classes: training only: (N,) int64 GT class of each object, -1 if it matches
            no GT object (SGDet); for auxiliary losses.
        obj_gt_index: training only: (N,) int64 index of the matched GT object, unique across
            the batch (offset per image), -1 if none; identifies entity instances.
        gt_instances: training only: per image the GT ``Instances`` (``gt_boxes``,
            ``gt_classes``), e.g. for image-level multi-label targets.
        relation_predictor: training only: the shared predicate classifier, ``(pair_features
            (R, pair_dim), subject labels (R,), object labels (R,)) -> (R, P + 1)`` logits,
            for losses that score other pair features (VCTree's REINFORCE reward).
        images: (B, 3, H, W) the normalised, padded network input (e.g. for a relation
            backbone); None where the caller has no images.
        all_pairs: training only: (M, 2) int64 EVERY candidate (subject, object) pair of each
            image (global object indices, images in order), independent of the sample in
            ``pairs`` (e.g. clustering on all pairs, contrastive anchors).
        all_pair_labels: training only: (M,) int64 label of each of ``all_pairs`` (0 =
            background, p + 1 = predicate p).
        num_all_pairs: training only: candidate pairs per image; sums to M.
        pair_index: training only: (R,) int64 row of ``all_pairs`` of each row of ``pairs``.
        ce_mask: training only: (R,) bool, rows of ``pairs`` in the cross-entropy (L0)
            sample; None means all of them. Rows outside it are there for another loss
            (the contrastive anchors' pairs).
        contrastive_anchors: training only: (N, 2) bool, whether each object is a sampled
            contrastive anchor as subject (column 0) / as object (column 1); every candidate
            pair of an anchor is in ``pairs``. None: no anchor sampling.
        relation_predictor: training only: the shared predicate classifier, ``(pair_features
            (R, pair_dim), subject labels (R,), object labels (R,)) -> (R, P + 1)`` logits,
            for losses that score other pair features (VCTree's REINFORCE reward).
    """

    obj_features: torch.Tensor
    obj_logits: torch.Tensor
    box_layout: torch.Tensor
    boxes: torch.Tensor
    num_objs: List[int]
    pairs: torch.Tensor
    num_pairs: List[int]
    union_features: Optional[torch.Tensor] = None
    gt_labels: Optional[torch.Tensor] = None
    features: Optional[Dict[str, torch.Tensor]] = None
    image_sizes: Optional[List[Tuple[int, int]]] = None
    obj_gt_classes: Optional[torch.Tensor] = None
    obj_gt_index: Optional[torch.Tensor] = None
    gt_instances: Optional[list] = None
    relation_predictor: Optional[torch.nn.Module] = None
    images: Optional[torch.Tensor] = None
    all_pairs: Optional[torch.Tensor] = None
    all_pair_labels: Optional[torch.Tensor] = None
    num_all_pairs: Optional[List[int]] = None
    pair_index: Optional[torch.Tensor] = None
    ce_mask: Optional[torch.Tensor] = None
    contrastive_anchors: Optional[torch.Tensor] = None
    relation_predictor: Optional[torch.nn.Module] = None


@dataclass
class ContextOutputs:
    """
    Attributes:
        obj_logits: (N, C) refined class logits over the C real classes.
        pair_features: (R, pair_dim) or None.
        extras: model-specific tensors its ``losses`` needs (e.g. tree scores).
        obj_repr: (N, D) the model's contextual object representation (e.g. MOTIFS' object
            context), for heads that build on it (mask refinement); None if it has none.
    """

    obj_logits: torch.Tensor
    pair_features: Optional[torch.Tensor] = None
    extras: Optional[dict] = None
    obj_repr: Optional[torch.Tensor] = None


def build_context_model(cfg, obj_dim: int, union_dim: int) -> torch.nn.Module:
    """Build the context model named by ``cfg.MODEL.SGG.CONTEXT``.

    Raises:
        KeyError: the name is not registered; the message lists the registered names.
    """
    name = cfg.MODEL.SGG.CONTEXT
    if name not in CONTEXT_REGISTRY:
        registered = ", ".join(sorted(n for n, _ in CONTEXT_REGISTRY))
        raise KeyError(
            f"MODEL.SGG.CONTEXT = {name!r} is not a registered context model; registered: "
            f"{registered} (a custom model must be registered with "
            "@CONTEXT_REGISTRY.register() before the model is built)"
        )
    return CONTEXT_REGISTRY.get(name)(cfg, obj_dim, union_dim)
