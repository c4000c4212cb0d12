"""Config: :func:`add_sgg_config` adds sgg_d2's keys, :func:`validate_sgg_config` checks them."""

from .defaults import SGG_MODES, add_sgg_config, validate_sgg_config

__all__ = ["SGG_MODES", "add_sgg_config", "validate_sgg_config"]
