"""sgg_d2: scene graph generation as a Detectron2 extension.

Importing this package first installs a stand-in for Detectron2's compiled extension
when (and only when) it is absent, and imports the third-party modules that script
functions at import time without their ``torch.jit`` deprecation warnings (both in
:mod:`sgg_d2.utils.d2_compat`); then it imports the modules that only *register*
components into Detectron2's registries and catalogs.
"""

from .utils.d2_compat import has_compiled_ops, import_without_jit_warnings, install_stand_in

install_stand_in()
import_without_jit_warnings()  # before anything else imports those modules
HAS_COMPILED_D2_OPS = has_compiled_ops()

# Modules that only register: models (meta-architecture, ROI heads, backbone, context
# models) and the standard dataset names.
from . import modeling  # noqa: E402,F401
from .config import add_sgg_config  # noqa: E402
from .data import builtin  # noqa: E402,F401

__all__ = ["add_sgg_config", "HAS_COMPILED_D2_OPS"]
__version__ = "0.1.0"
