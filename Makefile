# Two commands for a new machine: `make demo` and `make test`. Both create .venv and
# install what is missing first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit bench clean

setup: $(STAMP)

# torch is pinned to the CPU wheel that lies on this machine's disk: an unpinned torch
# would pull several GB of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,gpu]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/chartagent demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

test: lint typecheck
	$(VENV)/bin/pytest

# Every benchmark of the project; each comparison ends with `bench <name>: <ratio>x (...)`.
# The MedGemma benchmark runs its tiny configuration on the CPU here; on a GPU machine run
# `python bench/bench_medgemma_gpu.py` (the real 4B architecture, random weights).
bench: setup
	$(PY) bench/bench_fhir_gather.py
	$(PY) bench/bench_fhir_write.py
	$(PY) bench/bench_medgemma_gpu.py --config tiny --device cpu --quick

clean:
	rm -rf $(VENV) .chartagent .pytest_cache .mypy_cache .ruff_cache
