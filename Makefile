# sgg_d2: `make demo` runs the main job on the synthetic world, `make test` the tests.
# Both set everything up first (`make setup`, a no-op when nothing changed).
PY := .venv/bin/python
SGG_DATASETS ?= datasets
export SGG_DATASETS

.PHONY: setup test lint format demo synthetic clean-venv

setup:
	@bash tools/setup_env.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q tests

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

clean-venv:
	rm -rf .venv
