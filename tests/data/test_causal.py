"""t2t.data.causal: the prompt/target boundary, labels, EOS, BOS, truncation, chat template, packed rows."""

from __future__ import annotations

import pytest
import torch

from t2t.data.batches import Batcher
from t2t.data.causal import (
    IGNORE_INDEX,
    collate_causal_packed,
    collate_causal_padded,
    encode_pair,
    encode_prompt,
    tokenize_causal,
)
from t2t.data.chat import chat_prompt
from t2t.errors import T2TError
from t2t.tasks.task import Example
from t2t.training.config import build_config
from tests.causal_tiny import make_tokenizer


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer("llama_style")


def one(tokenizer, input_text: str, target: str, max_in: int = 64, max_out: int = 16, **kw) -> dict:
    return tokenize_causal(tokenizer, [input_text], [target], max_in, max_out, **kw)[0]


def test_worked_example_layout_and_boundary(tok) -> None:
    """ids = prompt + target + EOS; labels -100 on the prompt; the whitespace of the input moves to the target;
    the target's tokens are those of the joint encoding (lm-eval's _encode_pair)."""
    ex = one(tok, "Review: the film was great.\n", "positive")
    prompt = tok("Review: the film was great.")["input_ids"]  # the trailing "\n" is not in the prompt
    whole = tok("Review: the film was great.\n positive")["input_ids"]
    assert whole[:len(prompt)] == prompt
    assert ex["input_ids"] == whole + [tok.eos_token_id]
    assert ex["labels"] == [IGNORE_INDEX] * len(prompt) + whole[len(prompt):] + [tok.eos_token_id]
    assert tok.decode(ex["input_ids"][len(prompt):-1]) == "\n positive"
    assert ex["input_ids"].count(tok.bos_token_id) == 1 and ex["input_ids"][0] == tok.bos_token_id


def test_target_delimiter_and_gpt2_style_tokenizer_without_bos() -> None:
    tok = make_tokenizer("gpt2_style")
    ex = one(tok, "Question: sum of 3 and 4?", "7", target_delimiter="\nAnswer: ")
    prompt = tok("Question: sum of 3 and 4?")["input_ids"]
    assert tok.bos_token_id not in ex["input_ids"]
    assert ex["input_ids"][:len(prompt)] == prompt
    assert tok.decode(ex["input_ids"][len(prompt):]) == "\nAnswer: 7" + tok.eos_token


def test_eos_is_labelled_when_pad_is_eos() -> None:
    tok = make_tokenizer("llama_style", pad_is_eos=True)
    assert tok.pad_token_id == tok.eos_token_id
    examples = tokenize_causal(tok, ["Review: good.", "Topic: the film was great fun"], ["positive", "sports"], 64, 16)
    batch = collate_causal_padded(examples, tok.pad_token_id)
    for row, ex in enumerate(examples):
        n = len(ex["input_ids"])
        assert batch["labels"][row, n - 1].item() == tok.eos_token_id  # the EOS label survives
        assert batch["labels"][row, n:].eq(IGNORE_INDEX).all()  # padding is -100 by length
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
    assert (batch["input_ids"] == tok.eos_token_id).sum() > (batch["labels"] == tok.eos_token_id).sum()


def test_loss_on_all_labels_every_token_but_the_first(tok) -> None:
    ex = one(tok, "Review: good.", "positive", loss_on="all")
    assert ex["labels"] == [IGNORE_INDEX] + ex["input_ids"][1:]
    with pytest.raises(T2TError, match="loss-on"):
        one(tok, "a", "b", loss_on="prompt")


def test_truncation_cuts_the_prompt_from_the_left_and_keeps_bos_and_eos(tok) -> None:
    long_input = "Question: what is the sum of 3 and 4? " * 10
    full = one(tok, long_input, "7", max_in=1000)
    ex = one(tok, long_input, "7", max_in=12, max_out=4)
    target = [t for t, label in zip(ex["input_ids"], ex["labels"], strict=True) if label != IGNORE_INDEX]
    assert len(target) == 3 and len(ex["input_ids"]) == 12 + 4  # the prompt takes what the target leaves
    assert ex["input_ids"][0] == tok.bos_token_id and ex["input_ids"][-1] == tok.eos_token_id
    assert ex["input_ids"][1:] == full["input_ids"][-(len(ex["input_ids"]) - 1):]  # the end of the input kept
    long_target = one(tok, "Review: good.", "the film was great fun and the actors were good " * 3, max_out=6)
    labels = [x for x in long_target["labels"] if x != IGNORE_INDEX]
    assert len(labels) == 6 and labels[-1] == tok.eos_token_id


def test_empty_input_uses_bos_as_the_context(tok) -> None:
    ex = one(tok, "", "yes")
    assert ex["input_ids"] == [tok.bos_token_id] + tok(" yes", add_special_tokens=False)["input_ids"] + \
        [tok.eos_token_id]
    assert ex["labels"][0] == IGNORE_INDEX and ex["labels"][1:] == ex["input_ids"][1:]


def test_a_token_spanning_the_join_falls_back_to_encoding_the_target_alone(tok) -> None:
    context, continuation = "The person is Ali", "ce"
    assert tok(context + continuation)["input_ids"][:-1] != encode_prompt(tok, context)  # "Alice" is one token
    assert encode_pair(tok, context, continuation, fallback=False)[1] == []  # lm-eval's split: nothing left
    ctx_ids, cont_ids = encode_pair(tok, context, continuation)
    assert ctx_ids == encode_prompt(tok, context) and tok.decode(cont_ids) == "ce"
    ex = one(tok, context, continuation, target_delimiter="")
    assert tok.decode([x for x in ex["labels"] if x != IGNORE_INDEX]) == "ce" + tok.eos_token


def test_a_text_starting_with_bos_gets_no_second_bos(tok) -> None:
    assert encode_prompt(tok, "<s>Review: good.") == encode_prompt(tok, "Review: good.")


def test_chat_template_prompt_completion_and_eos_once() -> None:
    tok = make_tokenizer("llama_style", chat=True)
    ex = one(tok, "Review: good.", "positive", chat_template=True)
    prompt_text = chat_prompt(tok, "Review: good.")  # ends with "<|im_start|>assistant\n"
    prompt = tok(prompt_text.rstrip(), add_special_tokens=False)["input_ids"]
    assert ex["input_ids"][:len(prompt)] == prompt and tok.bos_token_id not in ex["input_ids"]
    target = [x for x in ex["labels"] if x != IGNORE_INDEX]
    assert tok.decode(target) == "\npositive<|im_end|>\n"  # the assistant turn, its end-of-turn (= EOS) once
    assert target.count(tok.eos_token_id) == 1 and len(ex["input_ids"]) == len(prompt) + len(target)


def test_chat_template_with_bos_in_the_template_gives_one_bos() -> None:
    tok = make_tokenizer("llama_style", chat=True)
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    ex = one(tok, "Review: good.", "positive", chat_template=True)
    assert ex["input_ids"].count(tok.bos_token_id) == 1 and ex["input_ids"][0] == tok.bos_token_id


def test_chat_template_missing_is_one_line_error(tok) -> None:
    with pytest.raises(T2TError, match="no chat template"):
        one(tok, "a", "b", chat_template=True)


def test_collate_packed_worked_example() -> None:
    examples = [{"input_ids": [1, 5, 6, 2], "labels": [-100, -100, 6, 2]},
                {"input_ids": [1, 7, 2], "labels": [-100, 7, 2]}]
    batch = collate_causal_packed([examples, examples[1:]], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 5, 6, 2, 1, 7, 2], [1, 7, 2, 0, 0, 0, 0]]
    assert batch["segment_ids"].tolist() == [[1, 1, 1, 1, 2, 2, 2], [1, 1, 1, 0, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 2, 0, 1, 2, 3]]
    assert batch["labels"].tolist() == [[-100, -100, 6, 2, -100, 7, 2], [-100, 7, 2, -100, -100, -100, -100]]


def test_no_label_is_predicted_across_examples() -> None:
    """Even with loss on the whole sequence, the first label of every packed example is -100."""
    examples = [{"input_ids": [1, 5, 2], "labels": [1, 5, 2]}, {"input_ids": [1, 7, 2], "labels": [1, 7, 2]}]
    batch = collate_causal_packed([examples], pad_id=0)
    starts = batch["position_ids"][0] == 0
    assert batch["labels"][0][starts].eq(IGNORE_INDEX).all()
    assert collate_causal_padded(examples, 0)["labels"][:, 0].eq(IGNORE_INDEX).all()


@pytest.mark.parametrize("packing", [True, False])
def test_batcher_causal_rows_and_token_counts(tok, packing: bool) -> None:
    cfg = build_config({"packing": packing, "pack_input_len": 24, "pack_target_len": 8, "max_input_len": 20,
                        "max_target_len": 6, "micro_batch_tokens": 64}).data
    batcher = Batcher(tok, cfg, 0, family="causal")
    texts = [("Review: the film was great fun.", "positive"), ("Question: sum of 3 and 4?", "7"),
             ("Topic: sports", "sports"), ("Who is mentioned? The person is Alice.", "Alice"), ("", "yes")] * 3
    tokens = batcher.tokenize([Example(input=i, target=t, task="t", template="x") for i, t in texts])
    labelled = sum(sum(1 for x in t["labels"] if x != IGNORE_INDEX) for t in tokens)
    step = batcher.step_batches(tokens, 0, 1, 1)
    assert step.global_tokens == labelled
    assert sum(int(b["labels"].ne(IGNORE_INDEX).sum()) for b in step.batches) == labelled
    seen = sorted(tuple(b["input_ids"][r][b["input_ids"][r] != tok.pad_token_id].tolist())
                  for b in step.batches for r in range(len(b["input_ids"]))) if not packing else None
    if packing:
        for b in step.batches:
            assert b["input_ids"].shape[1] <= 32 and set(b) == {"input_ids", "segment_ids", "position_ids",
                                                                "labels"}
            assert b["input_ids"].numel() <= 64 or b["input_ids"].shape[0] == 1
        rows = batcher.rows(tokens)
        assert sorted(map(id, (ex for row in rows for ex in row))) == sorted(map(id, tokens))
        assert any(len(row) > 1 for row in rows)
    else:
        assert seen is not None and len(seen) == len(tokens)
        assert all(set(b) == {"input_ids", "attention_mask", "labels"} for b in step.batches)


def test_batcher_refuses_unknown_family(tok) -> None:
    with pytest.raises(T2TError, match="family"):
        Batcher(tok, build_config({}).data, 0, family="encoder")


def test_tensors_are_int64(tok) -> None:
    batch = collate_causal_packed([tokenize_causal(tok, ["a"], ["b"], 8, 4)], 0)
    assert all(v.dtype == torch.long for v in batch.values())
