"""Context models, one file per paper; importing this package registers them.

Exports the registry and its call contract (``build.__all__``: ``ContextModel``,
``ContextInputs``, ``TrainingTargets``, ``ContextOutputs``, ``CONTEXT_REGISTRY``,
``build_context_model``).
"""

from . import fnet, frequency, imp, linknet, motifs, reldn, vctree  # noqa: F401
from .build import *  # noqa: F403
from .build import __all__  # noqa: F401
