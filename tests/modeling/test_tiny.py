"""t2t-tiny: offline build, loads with Auto classes, cached once, atomic, deterministic."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import torch

from t2t.errors import T2TError
from t2t.modeling import tiny as tinymodel
from t2t.modeling.tiny import build_tiny_model, ensure_tiny_model, train_tokenizer

SMALL = dict(vocab_size=400, d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=1, num_decoder_layers=1)


def corpus(n: int = 300, seed: int = 0) -> list[str]:
    """Template-like text from a closed vocabulary, with numbers, as the offline suite produces."""
    rng = random.Random(seed)
    nouns = "cat dog bird fish horse apple river movie review answer".split()
    verbs = "sees likes finds eats watches counts".split()
    out = []
    for _ in range(n):
        a, b = rng.randrange(100), rng.randrange(1000)
        out.append(f"The {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)}. What is {a} + {b}?")
        out.append(f"Is this review positive?\nOPTIONS:\n- yes\n- no\n{rng.choice(nouns)} {a + b}")
    return out


def test_tokenizer_round_trip_and_t5_conventions(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    train_tokenizer(corpus(), tmp_path, vocab_size=400)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == len(tok) - 1
    assert tok.convert_tokens_to_ids("<extra_id_99>") == len(tok) - 100
    for text in ["The cat sees the dog. What is 12 + 345?", "OPTIONS:\n- yes\n- no",
                 "  odd  spacing ", "unseen: é ☃ 日本 {x}\t!"]:
        ids = tok(text)["input_ids"]
        assert ids[-1] == 1 and 2 not in ids  # EOS appended; byte fallback, never <unk>
        assert tok.decode(ids, skip_special_tokens=True) == text
    pieces = tok.convert_ids_to_tokens(tok("12345", add_special_tokens=False)["input_ids"])
    assert [p for p in pieces if p != "▁"] == ["1", "2", "3", "4", "5"]  # split_digits
    # Words of the corpus are pieces, not letters (see _training_stream).
    words = tok("The cat", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(words) == ["▁The", "▁cat"]


def test_build_loads_offline_and_generates(tmp_path: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    out = build_tiny_model(corpus(), tmp_path / "m", seed=0, **SMALL)
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "t2t_tiny.json"):
        assert (out / name).is_file(), name
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    assert model.config.model_type == "t5" and model.config.vocab_size == len(tok)
    assert model.config.is_gated_act and model.config.decoder_start_token_id == 0
    linear = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert {"q", "k", "v", "o", "wi_0", "wi_1", "wo"} <= linear
    x = tok(["What is 1 + 2?"], return_tensors="pt")
    with torch.no_grad():
        out_ids = model.generate(**x, max_new_tokens=3, do_sample=False)
        loss = model(**x, labels=tok(["3"], return_tensors="pt")["input_ids"]).loss
    assert out_ids.shape[1] <= 4
    # Scaled tied head: a random model starts near log(vocab), not at a huge loss.
    assert loss < 2 * torch.log(torch.tensor(float(len(tok))))


def test_build_is_deterministic(tmp_path: Path) -> None:
    a = build_tiny_model(corpus(), tmp_path / "a", seed=3, **SMALL)
    b = build_tiny_model(corpus(), tmp_path / "b", seed=3, **SMALL)
    for name in ("spiece.model", "tokenizer.json", "model.safetensors", "config.json", "t2t_tiny.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    c = build_tiny_model(corpus(), tmp_path / "c", seed=4, **SMALL)
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()


def test_ensure_caches_by_corpus_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = corpus(100)
    first = ensure_tiny_model(lambda: iter(texts), cache_dir=tmp_path, **SMALL)
    assert first.parent == tmp_path / "models" and first.name.startswith("t2t-tiny-")

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(tinymodel, "build_tiny_model", no_rebuild)
    assert ensure_tiny_model(lambda: iter(texts), cache_dir=tmp_path, **SMALL) == first
    monkeypatch.undo()
    other = ensure_tiny_model(lambda: iter(texts[:-1]), cache_dir=tmp_path, **SMALL)
    assert other != first
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted([first.name, other.name])


def test_recipe_finds_the_cached_model_without_reading_the_corpus(tmp_path: Path) -> None:
    texts = corpus(100)
    reads = []

    def texts_fn():
        reads.append(1)
        return iter(texts)

    first = ensure_tiny_model(texts_fn, cache_dir=tmp_path, recipe="r1", **SMALL)
    assert ensure_tiny_model(texts_fn, cache_dir=tmp_path, recipe="r1", **SMALL) == first
    assert len(reads) == 1
    # Another recipe (changed task files or code) reads the corpus again; the same corpus keeps the model.
    assert ensure_tiny_model(texts_fn, cache_dir=tmp_path, recipe="r2", **SMALL) == first
    assert len(reads) == 2
    # A note whose model folder was deleted is not trusted: the model is rebuilt under its corpus hash.
    shutil.rmtree(first)
    assert ensure_tiny_model(texts_fn, cache_dir=tmp_path, recipe="r1", **SMALL) == first
    assert len(reads) == 3 and (first / "config.json").is_file()


def test_corpus_recipe_follows_the_task_files(tmp_path: Path) -> None:
    from t2t.modeling.loading import corpus_recipe

    (tmp_path / "extra.jinja").write_text("---\ncluster: c\nsource: {generator: arith_sum}\n---\n")
    before = corpus_recipe([str(tmp_path)])
    assert corpus_recipe([str(tmp_path)]) == before and corpus_recipe() != before
    (tmp_path / "extra.jinja").write_text("---\ncluster: d\nsource: {generator: arith_sum}\n---\n")
    assert corpus_recipe([str(tmp_path)]) != before


def test_default_cache_is_t2t_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T2T_CACHE", str(tmp_path))
    path = ensure_tiny_model(lambda: corpus(50), **SMALL)
    assert path.parent == tmp_path / "models"


def test_crash_leaves_no_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tinymodel.build_tiny_model

    def crash(texts, out_dir, **kwargs):
        real(texts, out_dir, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(tinymodel, "build_tiny_model", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_tiny_model(lambda: corpus(50), cache_dir=tmp_path, **SMALL)
    assert list((tmp_path / "models").iterdir()) == []


def test_user_errors(tmp_path: Path) -> None:
    with pytest.raises(T2TError, match="corpus is empty"):
        train_tokenizer(["", "  "], tmp_path)
    with pytest.raises(T2TError, match="d_model"):
        ensure_tiny_model(lambda: corpus(10), cache_dir=tmp_path, hidden=3)
