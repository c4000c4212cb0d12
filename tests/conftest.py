"""Test setup: import sgg_d2 first so Detectron2 gets its ``_C`` stand-in if needed.

Shared fixtures: ``sgg_cfg``, a fresh default config; and, for the engine tests, one tiny
synthetic world and one tiny trained detector per session (read-only: a test that changes
one copies it first). The engine fixtures live here, not in ``tests/engine/conftest.py``,
so that no second module named ``conftest`` shadows ``tests/modeling/conftest.py``, which
modeling tests import from.
"""

import logging
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import tiny_configs  # noqa: E402
from engine_support import CPU, DETECTOR, TINY_WORLD, schedule, train_net  # noqa: E402

import sgg_d2  # noqa: E402,F401
from sgg_d2.data.synthetic import generate_world  # noqa: E402


@pytest.fixture
def sgg_cfg():
    """A fresh config: Detectron2's defaults with the SGG keys."""
    return tiny_configs.sgg_cfg()


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The datasets root ($SGG_DATASETS) holding ``synthetic``: ``TINY_WORLD``."""
    root = tmp_path_factory.mktemp("datasets")
    generate_world(str(root / "synthetic"), TINY_WORLD, progress=False, log=lambda _: None)
    return root


@pytest.fixture(scope="session")
def trained_detector(world, tmp_path_factory):
    """The output folder of a 20-iteration detector run (``model_final.pth``, metrics)."""
    out = tmp_path_factory.mktemp("detector")
    train_net(world, "--config-file", DETECTOR, *CPU, *schedule(20, 5), "OUTPUT_DIR", str(out))
    return out


@pytest.fixture(autouse=True)
def _restore_log_handlers():
    """In-process runs of the scripts (``demo.main``, ``sgg_d2.evaluation.main``) attach
    Detectron2 stream handlers bound to that test's captured stdout/stderr; removed after
    the test so that a later test's log records do not go to a closed stream."""
    loggers = [logging.getLogger(name) for name in ("sgg_d2", "sgg_d2.evaluation", "detectron2")]
    before = [(lg, list(lg.handlers), lg.propagate) for lg in loggers]
    yield
    for lg, handlers, propagate in before:
        lg.handlers[:] = handlers
        lg.propagate = propagate
