# Quick start: `make demo` trains the offline demo adapter; `make test` runs the test suite.
# Both create .venv on first use. With no torch in the venv, the CPU build torch==2.13.0 goes in first,
# so that no multi-GB CUDA build is pulled by the other requirements.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test check lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m t2t.finetune

test: setup
	$(PY) -m t2t.tasks check
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest

lint: setup
	$(PY) -m pip install -q ruff && $(PY) -m ruff check t2t tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
