"""Packing, collation, token-budget batching and tokenization (truncation keeps EOS)."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from t2t.data.packing import collate_packed, collate_padded, iter_packed_rows, pack, token_budget_batches
from t2t.data.tokens import special_affixes, tokenize_batch, tokenize_example
from t2t.errors import T2TError


def make_examples(n: int, seed: int = 0, max_in: int = 12, max_out: int = 6) -> list[dict[str, list[int]]]:
    rng = random.Random(seed)
    return [{"input_ids": [rng.randrange(3, 50) for _ in range(rng.randint(0, max_in - 1))] + [1],
             "labels": [rng.randrange(3, 50) for _ in range(rng.randint(0, max_out - 1))] + [1]}
            for _ in range(n)]


def test_docstring_worked_example() -> None:
    examples = [{"input_ids": [8, 3, 1], "labels": [4, 1]},
                {"input_ids": [5, 6, 7, 2, 1], "labels": [9, 9, 1]},
                {"input_ids": [3, 1], "labels": [7, 1]}]
    rows = pack(examples, max_input_len=8, max_target_len=5)
    assert rows == [[0, 1], [2]]
    batch = collate_packed([[examples[i] for i in row] for row in rows])
    assert batch["input_ids"].tolist() == [[8, 3, 1, 5, 6, 7, 2, 1], [3, 1, 0, 0, 0, 0, 0, 0]]
    assert batch["encoder_segment_ids"].tolist() == [[1, 1, 1, 2, 2, 2, 2, 2], [1, 1, 0, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[4, 1, 9, 9, 1], [7, 1, -100, -100, -100]]
    assert batch["decoder_input_ids"].tolist() == [[0, 4, 0, 9, 9], [0, 7, 0, 0, 0]]
    assert batch["decoder_segment_ids"].tolist() == [[1, 1, 2, 2, 2], [1, 1, 0, 0, 0]]


@pytest.mark.parametrize("strategy", ["first_fit_decreasing", "greedy"])
def test_pack_respects_both_bounds_and_loses_nothing(strategy: str) -> None:
    examples = make_examples(300)
    rows = pack(examples, max_input_len=20, max_target_len=8, strategy=strategy)
    assert sorted(i for row in rows for i in row) == list(range(len(examples)))
    for row in rows:
        assert sum(len(examples[i]["input_ids"]) for i in row) <= 20
        assert sum(len(examples[i]["labels"]) for i in row) <= 8
    assert rows == pack(examples, max_input_len=20, max_target_len=8, strategy=strategy)


def test_greedy_keeps_stream_order_and_ffd_packs_tighter() -> None:
    examples = make_examples(300, seed=1)
    greedy = pack(examples, 20, 8, strategy="greedy")
    assert [i for row in greedy for i in row] == list(range(len(examples)))
    assert len(pack(examples, 20, 8)) <= len(greedy)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 16), st.integers(1, 6)), max_size=40),
       st.integers(16, 40), st.integers(6, 12))
def test_pack_property(lengths: list[tuple[int, int]], max_in: int, max_out: int) -> None:
    examples = [{"input_ids": [5] * a, "labels": [6] * b} for a, b in lengths]
    rows = pack(examples, max_in, max_out)
    assert sorted(i for row in rows for i in row) == list(range(len(examples)))
    assert all(sum(lengths[i][0] for i in row) <= max_in and sum(lengths[i][1] for i in row) <= max_out
               for row in rows)
    assert all(row == sorted(row) and row for row in rows)


def test_pack_rejects_examples_longer_than_a_row() -> None:
    with pytest.raises(T2TError, match="max_input_len <= 4"):
        pack([{"input_ids": [1] * 5, "labels": [1]}], max_input_len=4, max_target_len=4)
    with pytest.raises(T2TError, match="strategy"):
        pack([], 4, 4, strategy="best_fit")


def test_decoder_inputs_restart_per_segment() -> None:
    examples = make_examples(40, seed=2)
    rows = [[examples[i] for i in row] for row in pack(examples, 24, 10)]
    batch = collate_packed(rows, decoder_start_id=0)
    for r, row in enumerate(rows):
        seg = batch["decoder_segment_ids"][r]
        for s, ex in enumerate(row, start=1):
            where = seg == s
            assert batch["labels"][r][where].tolist() == ex["labels"]
            assert batch["decoder_input_ids"][r][where].tolist() == [0] + ex["labels"][:-1]
            assert batch["input_ids"][r][batch["encoder_segment_ids"][r] == s].tolist() == ex["input_ids"]
        assert (batch["labels"][r][seg == 0] == -100).all()
        assert (batch["input_ids"][r][batch["encoder_segment_ids"][r] == 0] == 0).all()


def test_collate_pad_to_and_multiple_of() -> None:
    examples = make_examples(5, seed=3)
    batch = collate_packed([examples[:2], examples[2:], []], pad_to=(40, 16))
    assert batch["input_ids"].shape == (3, 40) and batch["labels"].shape == (3, 16)
    assert (batch["encoder_segment_ids"][2] == 0).all() and (batch["labels"][2] == -100).all()
    assert collate_padded(examples, multiple_of=8)["input_ids"].shape[1] % 8 == 0
    with pytest.raises(T2TError, match="pad_to"):
        collate_padded(examples, pad_to=(1, 1))


def test_collate_padded() -> None:
    examples = [{"input_ids": [5, 6, 1], "labels": [7, 1]}, {"input_ids": [5, 1], "labels": [8, 9, 1]}]
    batch = collate_padded(examples)
    assert batch["input_ids"].tolist() == [[5, 6, 1], [5, 1, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[7, 1, -100], [8, 9, 1]]
    assert batch["decoder_input_ids"].tolist() == [[0, 7, 0], [0, 8, 9]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_iter_packed_rows_streams_every_example() -> None:
    examples = make_examples(103, seed=4)
    rows = list(iter_packed_rows(iter(examples), 24, 10, buffer_size=16))
    flat = [ex for row in rows for ex in row]
    assert len(flat) == len(examples)
    assert sorted(map(id, flat)) == sorted(map(id, examples))


def test_token_budget_batches() -> None:
    examples = make_examples(200, seed=5, max_in=30)
    batches = token_budget_batches(examples, max_tokens=128, max_batch_size=16)
    assert sorted(i for b in batches for i in b) == list(range(len(examples)))
    for b in batches:
        longest_in = max(len(examples[i]["input_ids"]) for i in b)
        cost = len(b) * (longest_in + max(len(examples[i]["labels"]) for i in b))
        assert cost <= 128 and len(b) <= 16
    shuffled = token_budget_batches(examples, max_tokens=128, max_batch_size=16, seed=0)
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, batches))
    assert shuffled == token_budget_batches(examples, max_tokens=128, max_batch_size=16, seed=0)
    # An example over the budget still trains, alone.
    assert token_budget_batches([{"input_ids": [1] * 50, "labels": [1]}], max_tokens=10) == [[0]]


# -- tokenization ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from t2t.modeling.tiny import train_tokenizer

    corpus = [f"the cat sat on mat number {i} and answered yes or no" for i in range(200)]
    return train_tokenizer(corpus, tmp_path_factory.mktemp("tok"), vocab_size=300)


def test_truncation_keeps_eos(tokenizer) -> None:
    eos = tokenizer.eos_token_id
    long_text = " ".join(["the cat sat on mat"] * 20)
    ex = tokenize_example(tokenizer, long_text, long_text, max_input_len=10, max_target_len=4)
    assert len(ex["input_ids"]) == 10 and ex["input_ids"][-1] == eos
    assert len(ex["labels"]) == 4 and ex["labels"][-1] == eos
    assert ex["input_ids"][:-1] == tokenizer(long_text, add_special_tokens=False)["input_ids"][:9]
    short = tokenize_example(tokenizer, "the cat", "yes", 10, 4)
    assert short["input_ids"] == tokenizer("the cat")["input_ids"] and short["labels"][-1] == eos
    assert special_affixes(tokenizer) == ([], [eos])


def test_tokenize_batch_matches_single_and_checks_options(tokenizer) -> None:
    batch = {"input": ["the cat 123", "no", "yes " * 30], "target": ["yes", "the mat", "no " * 9]}
    out = tokenize_batch(batch, tokenizer, max_input_len=8, max_target_len=5)
    for i in range(3):
        single = tokenize_example(tokenizer, batch["input"][i], batch["target"][i], 8, 5)
        assert [out["input_ids"][i], out["labels"][i]] == [single["input_ids"], single["labels"]]
    with pytest.raises(T2TError, match="max_target_len"):
        tokenize_example(tokenizer, "a", "b", 8, 1)
    with pytest.raises(T2TError, match="column 'input'"):
        tokenize_batch({"text": ["a"], "target": ["b"]}, tokenizer, 8, 8)


def test_tokenize_batch_is_cacheable_by_datasets(tokenizer, tmp_path) -> None:
    """datasets.map reuses its cache only if the function and fn_kwargs hash the same in every run."""
    from datasets.fingerprint import Hasher
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    kwargs = dict(tokenizer=AutoTokenizer.from_pretrained(tmp_path), max_input_len=8, max_target_len=4)
    before = Hasher.hash(kwargs)
    tokenize_batch({"input": ["the cat"], "target": ["yes"]}, **kwargs)  # using it must not change the hash
    again = dict(kwargs, tokenizer=AutoTokenizer.from_pretrained(tmp_path))
    assert Hasher.hash(kwargs) == before == Hasher.hash(again)
    assert Hasher.hash(tokenize_batch) == Hasher.hash(tokenize_batch)
