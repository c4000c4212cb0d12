"""Config: :func:`add_sgg_config` adds sgg_d2's keys, :func:`validate_sgg_config` checks them,
:func:`load_config` builds a run's frozen config from a file and overrides."""

from .defaults import SGG_MODES, add_sgg_config, check_choice, validate_sgg_config
from .load import build_config, load_config

__all__ = [
    "SGG_MODES",
    "add_sgg_config",
    "build_config",
    "check_choice",
    "load_config",
    "validate_sgg_config",
]
