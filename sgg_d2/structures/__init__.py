"""Structures of sgg_d2's model outputs (see :class:`Relations`)."""

from .relations import Relations, all_ordered_pairs

__all__ = ["Relations", "all_ordered_pairs"]
