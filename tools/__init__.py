"""Command-line tools, run as scripts from the repository root (``python tools/ablate.py``).

A package only so that tests can import them (``from tools import ablate``); run from the
repository root, it takes precedence over the ``tools`` folder that Detectron2's wheel
installs. Research diagnostics of the studies live in :mod:`tools.research`.
"""
