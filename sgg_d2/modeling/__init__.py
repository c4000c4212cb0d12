"""Models. Importing this package registers (only registers) its components:

- ``SceneGraphRCNN`` in ``META_ARCH_REGISTRY``;
- ``build_vgg16_backbone`` in ``BACKBONE_REGISTRY``;
- ``SceneGraphROIHeads`` in ``ROI_HEADS_REGISTRY``;
- context models in ``CONTEXT_REGISTRY`` (one file per paper under ``context/``);
- segmentation grounding: ``MaskTransferHead`` in ``ROI_MASK_HEAD_REGISTRY``
  (``grounding/``), ``JointRCNN`` / ``JointROIHeads`` (joint detector pretraining).
"""

from . import backbone, context, grounding, joint_detector  # noqa: F401  (registration)
from .context.build import CONTEXT_REGISTRY, ContextInputs, ContextOutputs, build_context_model
from .meta_arch import SceneGraphRCNN
from .roi_heads import SceneGraphROIHeads

__all__ = [
    "CONTEXT_REGISTRY",
    "ContextInputs",
    "ContextOutputs",
    "SceneGraphRCNN",
    "SceneGraphROIHeads",
    "build_context_model",
]
