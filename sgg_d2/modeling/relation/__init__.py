"""Building blocks of the relation stage shared by every context model."""

from . import contrastive_losses  # noqa: F401
