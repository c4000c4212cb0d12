"""``MaskTransferHead``: an auxiliary-class mask head whose masks transfer to target classes.

The head is Detectron2's ``MaskRCNNConvUpsampleHead`` over the d_m auxiliary classes (same
layers and parameter names, so the joint detector's mask head loads into it) plus the
similarity ``S`` (d_g, d_m) as a non-persistent buffer (rebuilt from the word vectors,
never stored in checkpoints).

Orientation. For an object with auxiliary mask logits ``l`` (d_m, M, M), the target
class g's mask logits are ``t_g = sum_m S[g, m] l_m`` at every pixel; stacking the d_m
logits of a pixel as a column vector ``l~`` gives ``t = S l~`` (d_g), i.e. the paper's
``m_g = S^T m~`` with the paper's S being our S transposed (d_m x d_g).

Transfer space (``MODEL.SGG.GROUNDING.TRANSFER_SPACE``; the paper writes ``m = S^T m~``
without saying whether ``m~`` are logits or probabilities): ``"logits"``, target mask
``sigmoid(S l~)``; ``"probs"``, target mask ``clip(S sigmoid(l~), 0, 1)`` (a convex
combination of auxiliary masks when rows of S sum to 1, as with ``softmax``).
"""

import torch
from detectron2.config import configurable
from detectron2.modeling.roi_heads.mask_head import (
    ROI_MASK_HEAD_REGISTRY,
    MaskRCNNConvUpsampleHead,
)

from .similarity import dataset_class_names, default_cache_dir, grounding_similarity

__all__ = ["MaskTransferHead", "similarity_from_config", "aux_class_names", "TRANSFER_SPACES"]

TRANSFER_SPACES = ("logits", "probs")


def aux_class_names(cfg):
    """Auxiliary vocabulary: ``thing_classes`` of ``DATASETS.AUX_TRAIN[0]``, checked against
    ``MODEL.SGG.GROUNDING.AUX_NUM_CLASSES``."""
    if not cfg.DATASETS.AUX_TRAIN:
        raise ValueError(
            "segmentation grounding needs DATASETS.AUX_TRAIN: its thing_classes are the "
            "auxiliary classes of the mask head"
        )
    names = dataset_class_names(cfg.DATASETS.AUX_TRAIN[0])
    if len(names) != cfg.MODEL.SGG.GROUNDING.AUX_NUM_CLASSES:
        raise ValueError(
            f"DATASETS.AUX_TRAIN[0] = {cfg.DATASETS.AUX_TRAIN[0]!r} has {len(names)} classes "
            f"but MODEL.SGG.GROUNDING.AUX_NUM_CLASSES is {cfg.MODEL.SGG.GROUNDING.AUX_NUM_CLASSES}"
        )
    return names


def similarity_from_config(cfg) -> torch.Tensor:
    """S (d_g, d_m) for ``DATASETS.TRAIN[0]``'s classes x the auxiliary classes."""
    g = cfg.MODEL.SGG.GROUNDING
    if not cfg.DATASETS.TRAIN:
        raise ValueError("segmentation grounding needs DATASETS.TRAIN (the target classes)")
    target = dataset_class_names(cfg.DATASETS.TRAIN[0])
    if len(target) != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
        raise ValueError(
            f"DATASETS.TRAIN[0] has {len(target)} classes but MODEL.ROI_HEADS.NUM_CLASSES "
            f"is {cfg.MODEL.ROI_HEADS.NUM_CLASSES}"
        )
    cache_dir = default_cache_dir(cfg.OUTPUT_DIR, g.CACHE_DIR)
    return torch.as_tensor(grounding_similarity(g, target, aux_class_names(cfg), cache_dir))


@ROI_MASK_HEAD_REGISTRY.register()
class MaskTransferHead(MaskRCNNConvUpsampleHead):
    """Mask R-CNN head over auxiliary classes + transfer to target classes through S.

    ``forward(x, instances)`` is Detectron2's (auxiliary classes: loss in training,
    ``pred_masks`` in inference); :meth:`transfer` gives target-class mask logits.
    """

    @configurable
    def __init__(
        self, input_shape, *, num_classes, conv_dims, similarity, space="logits", **kwargs
    ):
        """
        Args:
            input_shape, conv_dims, kwargs: as ``MaskRCNNConvUpsampleHead``.
            num_classes: d_m, auxiliary classes.
            similarity: (d_g, d_m) tensor S.
            space: ``"logits"`` or ``"probs"``, where S acts (module docstring).
        """
        super().__init__(input_shape, num_classes=num_classes, conv_dims=conv_dims, **kwargs)
        if space not in TRANSFER_SPACES:
            raise ValueError(
                f"MODEL.SGG.GROUNDING.TRANSFER_SPACE is {space!r}; "
                f"expected one of {TRANSFER_SPACES}"
            )
        self.space = space
        similarity = torch.as_tensor(similarity, dtype=torch.float32)
        if similarity.dim() != 2 or similarity.shape[1] != num_classes:
            raise ValueError(
                f"similarity has shape {tuple(similarity.shape)}; expected (d_g, {num_classes})"
            )
        self.register_buffer("similarity", similarity, persistent=False)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        if cfg.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK:
            raise ValueError("MaskTransferHead needs class-specific masks (CLS_AGNOSTIC_MASK off)")
        ret["num_classes"] = cfg.MODEL.SGG.GROUNDING.AUX_NUM_CLASSES
        ret["similarity"] = similarity_from_config(cfg)
        ret["space"] = cfg.MODEL.SGG.GROUNDING.TRANSFER_SPACE
        return ret

    def transfer(self, aux_logits: torch.Tensor, labels: torch.Tensor = None) -> torch.Tensor:
        """Target-class mask logits.

        Args:
            aux_logits: (N, d_m, M, M) auxiliary mask logits.
            labels: (N,) int64 target classes, or None for every class.

        Returns:
            (N, M, M) the logits of each object's ``labels`` class, or (N, d_g, M, M).
        """
        S = self.similarity.to(aux_logits.dtype)
        if labels is None:
            return torch.einsum("gm,nmhw->nghw", S, aux_logits)
        return torch.einsum("nm,nmhw->nhw", S[labels], aux_logits)

    def transfer_masks(self, aux_logits: torch.Tensor, labels: torch.Tensor = None) -> torch.Tensor:
        """Target-class mask probabilities in the configured transfer space.

        Args:
            aux_logits: (N, d_m, M, M) auxiliary mask logits.
            labels: (N,) int64 target classes, or None for every class.

        Returns:
            (N, M, M) or (N, d_g, M, M) values in [0, 1].
        """
        if self.space == "logits":
            return torch.sigmoid(self.transfer(aux_logits, labels))
        return self.transfer(torch.sigmoid(aux_logits), labels).clamp(0.0, 1.0)
