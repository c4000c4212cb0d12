"""Test setup: import sgg_d2 first so Detectron2 gets its ``_C`` stand-in if needed."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import sgg_d2  # noqa: E402,F401
