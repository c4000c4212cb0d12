"""Research diagnostics: one-off analyses behind figures of the README and docs/, run as
scripts from the repository root (``python tools/research/sgdet_top_triplets.py``)."""
