"""Building blocks of the relation stage shared by every context model."""
