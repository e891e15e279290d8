"""Within one machine a result is bit-reproducible (issue #28): the same base built twice has the same weights
hash, and the same adapter trained twice (seq2seq t2t-tiny, the tiny causal Llama) is the same file, which
its run's provenance.json records with the base's hash. Across machines it is not (docs/reliability.md)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from t2t.modeling.cache import WEIGHTS_NOTE, weights_hash
from t2t.modeling.tiny import ensure_tiny_model
from t2t.training.config import build_config
from t2t.training.recipe import train
from tests.causal_tiny import save_model_folder

MIXTURE = """\
description: a small mixture for tests
include: {tasks: [sentiment_movie, arith_sum]}
heldout: {tasks: [sentiment_product]}
rate: {strategy: proportional, cap: 3000}
"""
CORPUS = ["Is this review positive? OPTIONS: yes, no", "yes", "no", "What is 3 + 4?", "7"] * 3


@pytest.fixture(scope="module")
def mixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mixtures")
    (folder / "small.yaml").write_text(MIXTURE)
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_base_built_twice_has_the_same_weights_hash_recorded_beside_it(tmp_path: Path) -> None:
    shape = {"vocab_size": 400, "d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 2, "num_layers": 1,
             "num_decoder_layers": 1}
    first = ensure_tiny_model(lambda: CORPUS, cache_dir=tmp_path / "a", **shape)
    second = ensure_tiny_model(lambda: CORPUS, cache_dir=tmp_path / "b", **shape)
    notes = [json.loads((f / WEIGHTS_NOTE).read_text()) for f in (first, second)]
    # written in the build: the sha256sum listing of the weights, hashed
    listing = f"{_sha(first / 'model.safetensors')}  model.safetensors\n"
    assert notes[0]["weights_sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    assert notes[0]["weights_sha256"] == notes[1]["weights_sha256"]
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()


def _train(model: str, mixture_dir: Path, out: Path, **extra: object) -> Path:
    values = {"model": model, "mixture": "small", "mixture_dir": [str(mixture_dir)], "output_dir": str(out),
              "max_steps": 2, "batch_size": 4, "lora_dropout": 0.1, "eval_steps": 0, "save_steps": 0,
              "progress": False, "warmup_steps": 0, "max_input_len": 48, "max_target_len": 12, "lr": 1e-2,
              **extra}
    return Path(train(build_config(values))["tuned_dir"])


@pytest.mark.parametrize("family", ["seq2seq", "causal"])
def test_the_same_adapter_trained_twice_is_the_same_file(family: str, mixture_dir: Path, tmp_path: Path) -> None:
    # lora_dropout > 0: the dropout masks come from the seeded generator too
    model = "t2t-tiny" if family == "seq2seq" else str(save_model_folder(tmp_path / "llama"))
    extra = {} if family == "seq2seq" else {"attn_implementation": "sdpa"}
    a = _train(model, mixture_dir, tmp_path / "one", **extra)
    b = _train(model, mixture_dir, tmp_path / "two", **extra)
    assert (a / "adapter_model.safetensors").read_bytes() == (b / "adapter_model.safetensors").read_bytes()
    if family == "causal":  # the comparison can fail: another seed gives another adapter (cheap on this model)
        c = _train(model, mixture_dir, tmp_path / "seed1", seed=1, **extra)
        assert (c / "adapter_model.safetensors").read_bytes() != (a / "adapter_model.safetensors").read_bytes()
    # the run records what the adapter depends on: the base's weights hash, the adapter's, the machine
    prov = json.loads((a.parent / "provenance.json").read_text())
    resolved = json.loads((a.parent / "config.json").read_text())["resolved_model"]
    assert prov["base"]["weights_sha256"] == weights_hash(resolved)["weights_sha256"]
    assert prov["adapters"]["adapter"]["sha256"] == _sha(a / "adapter_model.safetensors")
    assert prov["machine"]["torch_threads"] >= 1 and prov["versions"]["peft"]
