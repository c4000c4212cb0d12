"""Context models, one file per paper; importing this package registers them."""

from . import fnet, frequency, imp, linknet, motifs, reldn, vctree  # noqa: F401
from .build import CONTEXT_REGISTRY, ContextInputs, ContextOutputs, build_context_model

__all__ = ["CONTEXT_REGISTRY", "ContextInputs", "ContextOutputs", "build_context_model"]
