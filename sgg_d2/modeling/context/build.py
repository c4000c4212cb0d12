"""Registry of context models (IMP, MOTIFS, VCTree, ...) and their call contract: the
inputs (:class:`ContextInputs`, with :class:`TrainingTargets` in training), the outputs
(:class:`ContextOutputs`) and the base every context model subclasses
(:class:`ContextModel`)."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.utils.registry import Registry
from torch import nn

__all__ = [
    "CONTEXT_REGISTRY",
    "ContextInputs",
    "ContextModel",
    "ContextOutputs",
    "TrainingTargets",
    "build_context_model",
]

CONTEXT_REGISTRY = Registry("SGG_CONTEXT")
CONTEXT_REGISTRY.__doc__ = """
Context models refine object classes and build pair features from every object of an
image (seed papers: IMP, MOTIFS, VCTree, ...). One registered class per paper, one file,
each a subclass of :class:`ContextModel` (the base that holds the call contract below).

Built as ``CONTEXT_REGISTRY.get(cfg.MODEL.SGG.CONTEXT)(cfg, obj_dim, union_dim)`` (classes
use ``@configurable``), where ``obj_dim`` is the size of the objects' RoI features and
``union_dim`` the size of the pairs' union-box features. Attributes:

- ``pair_dim`` (int | None): size of ``ContextOutputs.pair_features``; None when the
  model gives none (the predictor then uses the frequency bias alone);
- ``needs_union_features`` (bool): whether ``ContextInputs.union_features`` is used
  (it is expensive, so it is only computed when needed).

``forward(inputs: ContextInputs) -> ContextOutputs``; ``losses(inputs, outputs,
pair_labels, relation_predictor)`` returns a dict of the model's own auxiliary losses
(e.g. VCTree's tree scores; empty by default). The mode is not read from the config:
``inputs.gt_labels`` is set exactly in PredCls, ``inputs.training`` exactly in training.
"""


@dataclass(frozen=True)
class TrainingTargets:
    """What the ROI heads add to a batch's :class:`ContextInputs` in training only (they
    set every field; a loss that needs one refuses None with a message naming it).

    Attributes:
        obj_gt_classes: (N,) int64 GT class of each object, -1 if it matches no GT object
            (SGDet); for auxiliary losses and teacher forcing.
        obj_gt_index: (N,) int64 index of the matched GT object, unique across the batch
            (offset per image), -1 if none; identifies entity instances.
        gt_instances: per image the GT ``Instances`` (``gt_boxes``, ``gt_classes``), e.g. for
            image-level multi-label targets.
        all_pairs: (M, 2) int64 EVERY candidate (subject, object) pair of each image (global
            object indices, images in order), independent of the sample in
            ``ContextInputs.pairs`` (e.g. clustering on all pairs, contrastive anchors).
        all_pair_labels: (M,) int64 label of each of ``all_pairs`` (0 = background, p + 1 =
            predicate p).
        num_all_pairs: candidate pairs per image; sums to M.
        pair_index: (R,) int64 row of ``all_pairs`` of each row of ``ContextInputs.pairs``.
        ce_mask: (R,) bool, rows of ``pairs`` in the cross-entropy (L0) sample; None means all
            of them. Rows outside it are there for another loss (the contrastive anchors').
        contrastive_anchors: (N, 2) bool, whether each object is a sampled contrastive anchor
            as subject (column 0) / as object (column 1); every candidate pair of an anchor
            is in ``pairs``. None: no anchor sampling.
        all_pair_predicates: (K, 2) int64 rows ``[row of all_pairs, p + 1]``: every GT
            predicate p of each candidate pair (a pair with several GT predicates has several
            rows, background pairs none; ``sampling.pair_predicates``), for the predicate-
            class-aware contrastive loss.
    """

    obj_gt_classes: Optional[torch.Tensor] = None
    obj_gt_index: Optional[torch.Tensor] = None
    gt_instances: Optional[list] = None
    all_pairs: Optional[torch.Tensor] = None
    all_pair_labels: Optional[torch.Tensor] = None
    num_all_pairs: Optional[List[int]] = None
    pair_index: Optional[torch.Tensor] = None
    ce_mask: Optional[torch.Tensor] = None
    contrastive_anchors: Optional[torch.Tensor] = None
    all_pair_predicates: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class ContextInputs:
    """Objects and candidate pairs of a batch, images concatenated (immutable: derive a
    changed copy with ``dataclasses.replace``).

    Attributes:
        obj_features: (N, D_obj) RoI features of the objects.
        obj_logits: (N, C) class logits over the C real classes (SGDet: the detector's own).
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
        images: (B, 3, H, W) the normalised, padded network input (e.g. for a relation
            backbone); None where the caller has no images.
        training: the training-only targets (:class:`TrainingTargets`); None at inference.
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
    images: Optional[torch.Tensor] = None
    training: Optional[TrainingTargets] = None


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


class ContextModel(nn.Module, ABC):
    """Base of every context model: the registry's call contract and the shared widths.

    A subclass (registered with ``@CONTEXT_REGISTRY.register()``):

    - decorates its ``__init__`` with ``@configurable``, takes its own keyword arguments and
      passes ``**shared`` on to this ``__init__`` (the widths below);
    - names its own config keys in ``config_keys`` (constructor argument -> key of
      ``MODEL.SGG.<config_section>``), or overrides :meth:`model_config`; the one
      ``from_config`` here reads the shared widths and then those;
    - sets ``pair_dim`` (class attribute or in ``__init__``), ``needs_union_features``,
      ``paper_frequency_bias``;
    - implements :meth:`forward` and, for its own auxiliary losses, :meth:`losses`.

    Class attributes:

    - ``pair_dim`` (int | None): size of ``ContextOutputs.pair_features``; None: no pair
      features (the predictor uses the frequency bias alone);
    - ``needs_union_features`` (bool): whether ``ContextInputs.union_features`` is read;
    - ``paper_frequency_bias`` (bool): whether the model's paper adds the frequency bias
      log p(predicate | subject class, object class) to the predicate logits; the default
      of ``MODEL.SGG.USE_FREQUENCY_BIAS`` (None) follows it.
    """

    pair_dim: Optional[int] = None
    needs_union_features = True
    paper_frequency_bias: Optional[bool] = None
    config_section: Optional[str] = None
    config_keys: Dict[str, str] = {}

    def __init__(
        self,
        *,
        obj_dim: int,
        union_dim: int,
        num_classes: int,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        dropout: float = 0.0,
    ):
        """
        Args:
            obj_dim: size of the RoI features; union_dim: size of the union-box features.
            num_classes: C, real object classes.
            embed_dim: class (and box-layout) embedding size (``MODEL.SGG.EMBED_DIM``).
            hidden_dim: the model's main hidden width (``MODEL.SGG.CONTEXT_HIDDEN_DIM``).
            dropout: the model's dropout (``MODEL.SGG.CONTEXT_DROPOUT``).
        """
        super().__init__()
        self.obj_dim, self.union_dim, self.num_classes = obj_dim, union_dim, num_classes
        self.embed_dim, self.hidden_dim, self.dropout_p = embed_dim, hidden_dim, dropout

    @classmethod
    def from_config(cls, cfg, obj_dim: int, union_dim: int) -> dict:
        m = cfg.MODEL.SGG
        shared = {
            "obj_dim": obj_dim,
            "union_dim": union_dim,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "embed_dim": m.EMBED_DIM,
            "hidden_dim": m.CONTEXT_HIDDEN_DIM,
            "dropout": m.CONTEXT_DROPOUT,
        }
        return {**shared, **cls.model_config(cfg)}

    @classmethod
    def model_config(cls, cfg) -> dict:
        """The model's own constructor arguments: ``config_keys`` read from its section."""
        if not cls.config_keys:
            return {}
        section = cfg.MODEL.SGG[cls.config_section]
        return {arg: section[key] for arg, key in cls.config_keys.items()}

    @abstractmethod
    def forward(self, inputs: ContextInputs) -> ContextOutputs:
        """Refined object logits (N, C) and pair features (R, pair_dim) of ``inputs``."""

    def losses(
        self,
        inputs: ContextInputs,
        outputs: ContextOutputs,
        pair_labels: torch.Tensor,
        relation_predictor: nn.Module,
    ) -> Dict[str, torch.Tensor]:
        """The model's own auxiliary losses (training only; none by default).

        Args:
            inputs: the batch the model ran on (``inputs.training`` is set).
            outputs: what :meth:`forward` returned for it.
            pair_labels: (R,) int64 label of each of ``inputs.pairs`` (0 = background,
                p + 1 = predicate p).
            relation_predictor: the shared predicate classifier, ``(pair_features (R,
                pair_dim), subject labels (R,), object labels (R,)) -> (R, P + 1)`` logits
                (e.g. to score other pair features, as VCTree's REINFORCE reward does).

        Returns:
            loss name -> weighted scalar.
        """
        return {}


def build_context_model(cfg, obj_dim: int, union_dim: int) -> torch.nn.Module:
    """Build the context model named by ``cfg.MODEL.SGG.CONTEXT``.

    Raises:
        KeyError: the name is not registered; the message lists the registered names.
        TypeError: the registered class is not a :class:`ContextModel`.
    """
    name = cfg.MODEL.SGG.CONTEXT
    if name not in CONTEXT_REGISTRY:
        registered = ", ".join(sorted(n for n, _ in CONTEXT_REGISTRY))
        raise KeyError(
            f"MODEL.SGG.CONTEXT = {name!r} is not a registered context model; registered: "
            f"{registered} (a custom model must be registered with "
            "@CONTEXT_REGISTRY.register() before the model is built)"
        )
    model_class = CONTEXT_REGISTRY.get(name)
    if not issubclass(model_class, ContextModel):
        raise TypeError(
            f"MODEL.SGG.CONTEXT = {name!r}: {model_class.__name__} must subclass "
            "sgg_d2.modeling.context.ContextModel (the context models' base)"
        )
    return model_class(cfg, obj_dim, union_dim)
