# sgg_d2: `make demo` runs the main job on the synthetic world, `make test` the tests.
# Both set everything up first (`make setup`, a no-op when nothing changed).
#
# Install tracks (README "Installation"): `make setup` installs the registry copy of
# Detectron2 v0.6 with sgg_d2's stand-in for its compiled ops; `D2_SOURCE=<folder |
# .tar.gz | git URL> make setup` builds Detectron2 from source with its compiled ops.
# `make test-upstream D2_SOURCE=...` runs the test suite on that track in a second venv.
VENV ?= .venv
UPSTREAM_VENV ?= .venv-upstream
D2_SOURCE ?=
PY := $(VENV)/bin/python
SGG_DATASETS ?= datasets
export SGG_DATASETS

.PHONY: setup test lint format demo synthetic setup-upstream test-upstream cuda-check-dry \
	clean-venv

setup:
	@VENV='$(VENV)' D2_SOURCE='$(D2_SOURCE)' bash tools/setup_env.sh

# The suite runs on every core (pytest-xdist), one thread per worker; --durations shows
# where the time goes.
PYTEST_ARGS ?= -n auto --durations=15

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(PYTEST_ARGS) tests

# The same suite against Detectron2 built from D2_SOURCE, in $(UPSTREAM_VENV).
setup-upstream:
	@test -n '$(D2_SOURCE)' || { echo "make: set D2_SOURCE=<folder | .tar.gz | git URL> \
	of Detectron2's source, e.g. D2_SOURCE=path/to/detectron2-main.tar.gz" >&2; exit 2; }
	@VENV='$(UPSTREAM_VENV)' D2_SOURCE='$(D2_SOURCE)' bash tools/setup_env.sh

test-upstream: setup-upstream
	OMP_NUM_THREADS=1 $(UPSTREAM_VENV)/bin/python -m pytest -q $(PYTEST_ARGS) tests

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

synthetic: setup
	$(PY) -m sgg_d2.data.synthetic --root $(SGG_DATASETS)/synthetic

demo: synthetic
	bash tools/demo.sh

# Checks locally that the wheel set for the GPU machine (tools/cuda_check.sh) is complete.
cuda-check-dry:
	bash tools/cuda_check.sh --dry-run

clean-venv:
	rm -rf $(VENV) $(UPSTREAM_VENV)
