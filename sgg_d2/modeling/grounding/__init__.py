"""Segmentation grounding (Khandelwal, Suhail, Sigal, ICCV 2021; seed paper 004).

Importing this package registers ``MaskTransferHead`` in Detectron2's
``ROI_MASK_HEAD_REGISTRY``. Pieces, one responsibility per file:

- ``word_vectors``: class-name vectors from gensim ``KeyedVectors`` (cached);
- ``similarity``: the target x auxiliary similarity S and its normalisations;
- ``mask_transfer``: ``MaskTransferHead`` (auxiliary mask logits -> target classes via S);
- ``union_frame``: masks resampled into union-box frames;
- ``kernels``: learned 2-D Gaussian kernels;
- ``nodes`` / ``edges``: grounded node and edge features;
- ``refinement``: zero-initialised refinement head and pixel loss;
- ``module``: ``SegmentationGrounding``, what ``SceneGraphROIHeads`` calls;
- ``build``: construction helpers.

See docs/GROUNDING.md for the design choices.
"""

from .build import (
    build_aux_box_head,
    build_aux_box_heads,
    build_aux_box_predictor,
    build_grounding,
    with_num_classes,
)
from .mask_transfer import MaskTransferHead, similarity_from_config
from .module import GroundingState, SegmentationGrounding, mask_instances
from .similarity import SIMILARITIES, build_similarity, grounding_similarity, similarity_matrix
from .word_vectors import WordVectorSource

__all__ = [
    "SIMILARITIES",
    "GroundingState",
    "MaskTransferHead",
    "SegmentationGrounding",
    "WordVectorSource",
    "build_aux_box_head",
    "build_aux_box_heads",
    "build_aux_box_predictor",
    "build_grounding",
    "build_similarity",
    "grounding_similarity",
    "mask_instances",
    "similarity_from_config",
    "similarity_matrix",
    "with_num_classes",
]
