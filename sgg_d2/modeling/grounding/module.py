"""``SegmentationGrounding``: the trainable parts of segmentation grounding (seed 004).

Used by ``SceneGraphROIHeads`` for any context model (configuration, not subclassing):

1. :meth:`objects`: each object's auxiliary mask logits (from the frozen mask head) are
   transferred to its target class (``MaskTransferHead.transfer``);
2. :meth:`node_features`: ``f_N(z, m)`` replaces ``ContextInputs.obj_features``; ``m`` is
   the node mask (``NODE_MASK``): by default Eq. 5's masks over classes, the class-
   probability-weighted mask ``sum_c p(c) m_c`` (PredCls: p is one-hot, so the GT class's
   mask), or (``"argmax"``, the earlier form) the mask of the GT / arg-max class only;
3. :meth:`edge_features`: relation masks fused with ``ContextInputs.union_features``; each
   object's mask there is its GT / arg-max class's (Eq. 6 multiplies the two objects'
   masks; the kernels already take the class distribution);
4. :meth:`refine`: residual on the auxiliary logits from ``ContextOutputs.obj_repr``,
   trained with :meth:`refine_loss` on auxiliary images; :meth:`output_logits` picks the
   refined or plain logits at inference.
5. The paper's final model (``USE_REFINED_MASKS``, :meth:`apply_refinement`): context pass
   1 on nodes/edges grounded in the transferred masks -> ``obj_repr`` -> refined masks ->
   nodes/edges grounded in the refined masks -> context pass 2 (same weights) -> relations.
"""

import logging
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.structures import Boxes, Instances
from torch import nn

from ...config import check_choice
from .edges import EdgeGrounding
from .nodes import NodeGrounding
from .refinement import MaskRefinementHead, context_repr_dim, mask_pixel_loss

__all__ = [
    "NODE_MASKS",
    "GroundingState",
    "SegmentationGrounding",
    "expected_masks",
    "mask_instances",
]

NODE_MASKS = ("expected", "argmax")

logger = logging.getLogger(__name__)


@dataclass
class GroundingState:
    """Per-object grounding tensors of a batch (images concatenated).

    Attributes:
        aux_logits: (N, d_m, M, M) auxiliary mask logits in each object's box.
        masks: (N, M, M) transferred mask probabilities of each object's target class.
        class_probs: (N, C) target class distribution (one-hot for known labels).
        labels: (N,) target class each mask was transferred to (known label, else arg-max).
        node_masks: (N, M, M) the class-probability-weighted masks that ground the nodes
            (``NODE_MASK: "expected"``); None: the nodes use ``masks``.
        refined_logits: (N, d_m, M, M) refined auxiliary logits once
            :meth:`SegmentationGrounding.apply_refinement` ran (``masks`` are then theirs).
    """

    aux_logits: torch.Tensor
    masks: torch.Tensor
    class_probs: torch.Tensor
    labels: Optional[torch.Tensor] = None
    node_masks: Optional[torch.Tensor] = None
    refined_logits: Optional[torch.Tensor] = None


class SegmentationGrounding(nn.Module):
    """Grounded nodes, grounded edges and mask refinement (each optional)."""

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        obj_dim: int,
        union_dim: int,
        num_aux_classes: int,
        nodes: bool = True,
        edges: bool = True,
        refine_dim: Optional[int] = None,
        refine_resolution: int = 14,
        edge_combine: str = "product",
        union_mask_size: int = 32,
        kernel_size: int = 9,
        mask_dim: int = 128,
        refine_loss_weight: float = 1.0,
        refine_at_test: bool = True,
        aux_pairs_per_image: int = 64,
        use_refined_masks: bool = True,
        fusion: str = "residual",
        node_mask: str = "expected",
    ):
        """
        Args:
            num_classes: C, target classes; num_aux_classes: d_m.
            obj_dim, union_dim: widths of RoI and union-box features (kept unchanged).
            nodes, edges: ground the nodes / the edges.
            refine_dim: width of the context's ``obj_repr``; None = no refinement.
            refine_resolution: side of the refinement residual.
            edge_combine, union_mask_size, kernel_size: see :class:`EdgeGrounding`.
            mask_dim: width of the mask encodings.
            refine_loss_weight: weight of ``loss_mask_refine``.
            refine_at_test: use refined masks at inference.
            aux_pairs_per_image: context pairs sampled per auxiliary image in training.
            use_refined_masks: the refined masks ground the nodes and edges of a second
                context pass (the paper's final model; needs ``refine_dim``).
            fusion: f_N / f_E fusion, ``"residual"`` or ``"concat"`` (``nodes.MaskFusion``).
            node_mask: one of :data:`NODE_MASKS` (see the module docstring).
        """
        super().__init__()
        check_choice("MODEL.SGG.GROUNDING.NODE_MASK", node_mask, NODE_MASKS)
        self.node_mask = node_mask
        self.node = NodeGrounding(obj_dim, mask_dim, fusion) if nodes else None
        self.edge = (
            EdgeGrounding(
                num_classes,
                union_dim,
                union_mask_size,
                kernel_size,
                edge_combine,
                mask_dim,
                fusion,
            )
            if edges
            else None
        )
        self.refiner = (
            MaskRefinementHead(refine_dim, num_aux_classes, refine_resolution)
            if refine_dim is not None
            else None
        )
        self.num_classes = num_classes
        self.refine_loss_weight = refine_loss_weight
        self.refine_at_test = refine_at_test
        self.aux_pairs_per_image = aux_pairs_per_image
        self.use_refined_masks = use_refined_masks

    @classmethod
    def from_config(
        cls, cfg, obj_dim: int, union_dim: int, context: nn.Module, feature_shapes=None
    ):
        g = cfg.MODEL.SGG.GROUNDING
        num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
        edges = g.EDGES
        if edges and not context.needs_union_features:
            logger.warning(
                "%s uses no union-box features: MODEL.SGG.GROUNDING.EDGES has no effect",
                type(context).__name__,
            )
            edges = False
        refine_dim = (
            context_repr_dim(context, obj_dim, union_dim, num_classes, feature_shapes)
            if g.REFINE
            else None
        )
        return {
            "num_classes": num_classes,
            "obj_dim": obj_dim,
            "union_dim": union_dim,
            "num_aux_classes": g.AUX_NUM_CLASSES,
            "nodes": g.NODES,
            "edges": edges,
            "refine_dim": refine_dim,
            "refine_resolution": g.REFINE_RESOLUTION,
            "edge_combine": g.EDGE_COMBINE,
            "union_mask_size": g.UNION_MASK_SIZE,
            "kernel_size": g.KERNEL_SIZE,
            "mask_dim": g.MASK_FEATURE_DIM,
            "refine_loss_weight": g.REFINE_LOSS_WEIGHT,
            "refine_at_test": g.REFINE_AT_TEST,
            "aux_pairs_per_image": g.AUX_PAIRS_PER_IMAGE,
            "use_refined_masks": g.USE_REFINED_MASKS,
            "fusion": g.FUSION,
            "node_mask": g.NODE_MASK,
        }

    @property
    def refines(self) -> bool:
        return self.refiner is not None

    def grounds_in_refined_masks(self) -> bool:
        """Whether the next target forward runs the two-pass final model: refinement on,
        ``use_refined_masks``, and (at inference) ``refine_at_test``."""
        return (
            self.refiner is not None
            and self.use_refined_masks
            and (self.training or self.refine_at_test)
        )

    def objects(self, aux_logits, mask_head, obj_logits, gt_labels=None) -> GroundingState:
        """Transferred masks of each object's class.

        Args:
            aux_logits: (N, d_m, M, M); mask_head: a ``MaskTransferHead``.
            obj_logits: (N, C) detector logits; gt_labels: (N,) known labels (PredCls).
                The class is the known label, else the detector's arg-max.
        """
        if gt_labels is not None:
            labels = gt_labels
            probs = F.one_hot(gt_labels, self.num_classes).to(aux_logits.dtype)
        else:
            probs = obj_logits.softmax(dim=1)
            labels = probs.argmax(dim=1)
        masks = mask_head.transfer_masks(aux_logits, labels)
        state = GroundingState(aux_logits=aux_logits, masks=masks, class_probs=probs, labels=labels)
        state.node_masks = self._node_masks(aux_logits, mask_head, state, gt_labels is not None)
        return state

    def _node_masks(self, logits, mask_head, state: GroundingState, known: bool):
        """(N, M, M) expected masks of ``state``'s class distribution, or None where the
        nodes use ``state.masks`` (``"argmax"``, no node grounding, or known labels: the
        expectation over a one-hot distribution is the GT class's mask)."""
        if self.node is None or self.node_mask == "argmax" or known:
            return None
        return expected_masks(mask_head.transfer_masks(logits), state.class_probs)

    def apply_refinement(self, state: GroundingState, obj_repr, mask_head) -> GroundingState:
        """Refine ``state`` in place from a context pass's ``obj_repr`` (N, D).

        Sets ``state.refined_logits`` (N, d_m, M, M) and replaces ``state.masks`` by the
        transfer of the refined logits to ``state.labels``, so that the next
        :meth:`node_features` / :meth:`edge_features` use the refined masks. Gradients of
        whatever uses the new masks flow into the refinement head and, through
        ``obj_repr``, into the context pass that produced it (not into the frozen mask
        head, whose logits carry no gradient).
        """
        state.refined_logits = self.refine(state.aux_logits, obj_repr)
        state.masks = mask_head.transfer_masks(state.refined_logits, state.labels)
        if state.node_masks is not None:
            state.node_masks = expected_masks(
                mask_head.transfer_masks(state.refined_logits), state.class_probs
            )
        return state

    def node_features(self, obj_features: torch.Tensor, state: GroundingState) -> torch.Tensor:
        """(N, D) -> (N, D): grounded when nodes are on, else unchanged."""
        if self.node is None:
            return obj_features
        masks = state.masks if state.node_masks is None else state.node_masks
        return self.node(obj_features, masks)

    def edge_features(self, union_features, state: GroundingState, boxes, pairs):
        """(R, U) union features -> (R, U): grounded when edges are on, else unchanged.

        Args:
            boxes: (N, 4) object boxes; pairs: (R, 2) global (subject, object) indices.
        """
        if self.edge is None or union_features is None:
            return union_features
        return self.edge(union_features, state.masks, boxes, state.class_probs, pairs)

    def refine(self, aux_logits: torch.Tensor, obj_repr: Optional[torch.Tensor]):
        """(N, d_m, M, M) refined logits (unchanged without a refinement head)."""
        if self.refiner is None:
            return aux_logits
        if obj_repr is None:
            raise ValueError("mask refinement needs ContextOutputs.obj_repr; the context gave None")
        return self.refiner(obj_repr, aux_logits)

    def output_logits(self, aux_logits, obj_repr) -> torch.Tensor:
        """Auxiliary logits used for the output masks (refined iff ``refine_at_test``)."""
        return self.refine(aux_logits, obj_repr) if self.refine_at_test else aux_logits

    def refine_loss(self, refined_logits, classes, gt_masks) -> dict:
        """``{"loss_mask_refine": w * pixel BCE}`` (see ``mask_pixel_loss``)."""
        loss = mask_pixel_loss(refined_logits, classes, gt_masks)
        return {"loss_mask_refine": self.refine_loss_weight * loss}

    def attach_target_masks(self, results: List[dict], state, obj_repr, labels, mask_head):
        """Set ``pred_masks`` (N_i, 1, M, M) of every output object (target classes).

        Args:
            results: per image ``{"instances", ...}``, objects in batch order.
            labels: (N,) final target class of each object.
        """
        if state.refined_logits is not None:  # the refined masks the relations used
            logits = state.refined_logits
        else:
            logits = self.output_logits(state.aux_logits, obj_repr)
        masks = mask_head.transfer_masks(logits, labels)[:, None]
        start = 0
        for r in results:
            n = len(r["instances"])
            r["instances"].pred_masks = masks[start : start + n]
            start += n


def expected_masks(class_masks: torch.Tensor, class_probs: torch.Tensor) -> torch.Tensor:
    """Eq. 5's mask over classes: ``sum_c p(c) m_c``.

    Args:
        class_masks: (N, C, M, M) transferred mask of every target class.
        class_probs: (N, C) class distribution of each object.

    Returns:
        (N, M, M).
    """
    return torch.einsum("nc,nchw->nhw", class_probs.to(class_masks.dtype), class_masks)


def mask_instances(boxes, classes, scores, mask_logits, image_sizes) -> List[dict]:
    """Per image ``{"instances"}`` with boxes, auxiliary classes, scores and ``pred_masks``.

    Args:
        boxes: per image (N_i, 4); classes, scores: (N,) concatenated.
        mask_logits: (N, d_m, M, M); each object's mask is that of its class.
        image_sizes: per image (height, width) of the network input.
    """
    idx = torch.arange(len(classes), device=classes.device)
    masks = torch.sigmoid(mask_logits[idx, classes])[:, None]
    out, start = [], 0
    for b, size in zip(boxes, image_sizes):
        n = len(b)
        inst = Instances(size)
        inst.pred_boxes = Boxes(b)
        inst.pred_classes = classes[start : start + n]
        inst.scores = scores[start : start + n]
        inst.pred_masks = masks[start : start + n]
        out.append({"instances": inst})
        start += n
    return out
