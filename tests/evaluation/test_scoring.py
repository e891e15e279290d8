"""Rank classification and generation on a tiny random T5 with an offline SentencePiece tokenizer."""

from __future__ import annotations

import copy
import io
import random

import pytest
import torch

from t2t.errors import T2TError
from t2t.evaluation.scoring import ChoiceScore, generate, generate_ids, predict, score_choices, score_choices_naive
from tests.conftest import require

WORDS = (
    "the a an cat dog bird sat ran flew on under over mat tree house yes no maybe true false "
    "premise hypothesis question answer entailment contradiction neutral positive negative "
    "sentence review movie great terrible because however therefore which what who"
).split()


@pytest.fixture(scope="module")
def tokenizer():
    import sentencepiece
    from transformers import T5Tokenizer

    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = WORDS + ["".join(rng.choice(letters) for _ in range(rng.randint(2, 8))) for _ in range(300)]
    sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) for _ in range(500)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=300,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    sp = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    # transformers 5 builds T5Tokenizer from (piece, score) pairs; ids match the SentencePiece model.
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = T5Tokenizer(vocab=vocab, extra_ids=0)
    assert (tok.pad_token_id, tok.eos_token_id) == (0, 1)
    return tok


def tiny_t5(vocab_size: int, seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.1,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5ForConditionalGeneration(config).float()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_t5(len(tokenizer)).eval()


def make_data(n: int = 24, seed: int = 1) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    choice_pool = [
        "yes",
        "no",
        "maybe",
        "entailment",
        "neutral contradiction",
        "the cat sat on the mat",
        "great movie",
        "",
        "terrible",
    ]
    inputs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) for _ in range(n)]
    choices = [rng.sample(choice_pool, rng.randint(1, 5)) for _ in range(n)]
    return inputs, choices


def flat(scores: list[list[ChoiceScore]]) -> list[float]:
    return [s.logprob for row in scores for s in row]


def test_fast_path_equals_naive_full_forward(model, tokenizer):
    inputs, choices = make_data()
    fast = score_choices(model, tokenizer, inputs, choices, batch_size=8)
    naive = score_choices_naive(model, tokenizer, inputs, choices)
    assert [len(r) for r in fast] == [len(c) for c in choices]
    assert flat(fast) == pytest.approx(flat(naive), abs=1e-4)
    assert [[(s.num_tokens, s.num_chars) for s in r] for r in fast] == [
        [(s.num_tokens, s.num_chars) for s in r] for r in naive
    ]
    for norm in ("sum", "chars", "tokens"):
        assert predict(fast, norm) == predict(naive, norm)


def test_batch_size_does_not_change_scores(model, tokenizer):
    inputs, choices = make_data(n=40, seed=2)
    one = score_choices(model, tokenizer, inputs, choices, batch_size=1)
    many = score_choices(model, tokenizer, inputs, choices, batch_size=32)
    assert flat(one) == pytest.approx(flat(many), abs=1e-4)


def test_choice_tokens_include_eos_and_lengths_differ(model, tokenizer):
    choices = [["yes", "the cat sat on the mat", ""]]
    (row,) = score_choices(model, tokenizer, ["is the cat on the mat"], choices)
    pieces = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in choices[0]]
    assert [s.num_tokens for s in row] == [n + 1 for n in pieces]  # + EOS
    assert len({s.num_tokens for s in row}) == 3
    assert [s.num_chars for s in row] == [3, 22, 0]
    assert all(s.logprob < 0 for s in row)


def test_truncation_keeps_scores_consistent(model, tokenizer):
    inputs, choices = make_data(n=6, seed=3)
    fast = score_choices(model, tokenizer, inputs, choices, max_input_len=5)
    naive = score_choices_naive(model, tokenizer, inputs, choices, max_input_len=5)
    assert flat(fast) == pytest.approx(flat(naive), abs=1e-4)


def test_train_mode_model_is_scored_without_dropout_and_restored(tokenizer, model):
    inputs, choices = make_data(n=5, seed=4)
    reference = score_choices(model, tokenizer, inputs, choices)
    training = copy.deepcopy(model).train()
    again = score_choices(training, tokenizer, inputs, choices)
    assert training.training
    assert flat(again) == pytest.approx(flat(reference), abs=1e-6)


def test_peft_lora_model(model, tokenizer):
    import peft
    config = peft.LoraConfig(
        task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8, target_modules=["q", "v", "wo"], init_lora_weights=False
    )  # random B so the adapter changes the scores
    torch.manual_seed(5)
    lora = peft.get_peft_model(copy.deepcopy(model), config)
    assert isinstance(lora, peft.PeftModelForSeq2SeqLM)
    inputs, choices = make_data(n=10, seed=5)
    fast = score_choices(lora, tokenizer, inputs, choices, batch_size=4)
    naive = score_choices_naive(lora, tokenizer, inputs, choices)
    base = score_choices(model, tokenizer, inputs, choices)
    assert flat(fast) == pytest.approx(flat(naive), abs=1e-4)
    assert flat(fast) != pytest.approx(flat(base), abs=1e-3)
    texts = generate(lora, tokenizer, inputs[:4], max_new_tokens=4, batch_size=2)
    assert texts == generate(lora, tokenizer, inputs[:4], max_new_tokens=4, batch_size=4)


def test_predict_sum_vs_per_char():
    row = [ChoiceScore(-2.0, 2, 2), ChoiceScore(-3.0, 3, 10)]
    assert predict([row], "sum") == [0]  # -2 > -3
    assert predict([row], "chars") == [1]  # -0.3 > -1.0
    assert predict([[ChoiceScore(-1.0, 1, 1), ChoiceScore(-1.0, 1, 1)]]) == [0]  # ties: first
    with pytest.raises(T2TError, match="norm"):
        predict([row], "length")


def test_user_errors(model, tokenizer):
    with pytest.raises(T2TError, match="choice lists"):
        score_choices(model, tokenizer, ["a", "b"], [["x"]])
    with pytest.raises(T2TError, match=r"choices\[0\]"):
        score_choices(model, tokenizer, ["a"], [[]])
    with pytest.raises(T2TError, match="batch_size"):
        score_choices(model, tokenizer, ["a"], [["x"]], batch_size=0)
    with pytest.raises(T2TError, match="max_new_tokens"):
        generate(model, tokenizer, ["a"], max_new_tokens=0)
    assert score_choices(model, tokenizer, [], []) == []
    assert generate(model, tokenizer, [], max_new_tokens=3) == []


def test_generation_is_batch_invariant(model, tokenizer):
    inputs, _ = make_data(n=20, seed=6)
    for beams in (3, 1):
        one = generate_ids(model, tokenizer, inputs, max_new_tokens=8, num_beams=beams, batch_size=1)
        many = generate_ids(model, tokenizer, inputs, max_new_tokens=8, num_beams=beams, batch_size=32)
        assert one == many
    texts = generate(model, tokenizer, inputs, max_new_tokens=8, batch_size=7)
    assert texts == [t.strip() for t in tokenizer.batch_decode(one, skip_special_tokens=True)]


def test_generation_respects_max_new_tokens_beyond_default_max_length(tokenizer):
    model = tiny_t5(len(tokenizer), seed=7).eval()
    with torch.no_grad():  # EOS logit 0 while the others are random: EOS is (almost surely) never argmax
        model.lm_head.weight[tokenizer.eos_token_id] = 0.0
    inputs, _ = make_data(n=4, seed=8)
    long = generate_ids(model, tokenizer, inputs, max_new_tokens=25)
    assert [len(x) for x in long] == [25] * 4  # > GenerationConfig's default max_length=20
    short = generate_ids(model, tokenizer, inputs, max_new_tokens=3)
    assert all(len(x) <= 3 for x in short)
    assert [x[:3] for x in long] == short  # greedy: a shorter budget is a prefix


def test_packed_choices_path_is_used_for_t5_and_matches_per_choice_rows(model, tokenizer, monkeypatch):
    from t2t.evaluation import scoring

    assert scoring._packs_choices(model)  # T5: all choices of an input share one decoder row
    inputs, choices = make_data(n=12, seed=5)
    packed = score_choices(model, tokenizer, inputs, choices, batch_size=4)
    monkeypatch.setattr(scoring, "_packs_choices", lambda m: False)  # the path any seq2seq model takes
    per_choice = score_choices(model, tokenizer, inputs, choices, batch_size=4)
    naive = score_choices_naive(model, tokenizer, inputs, choices)
    assert flat(packed) == pytest.approx(flat(per_choice), abs=1e-4)
    assert flat(packed) == pytest.approx(flat(naive), abs=1e-4)


# --- lm-eval's convention (--choice-scoring lm-eval) ----------------------------------------------


def lm_eval_data(n: int = 16, seed: int = 9) -> tuple[list[str], list[list[str]]]:
    """make_data without the empty choice (lm-eval cannot score an empty continuation), and some inputs
    ending in spaces (lm-eval moves them to the continuation)."""
    inputs, choices = make_data(n, seed)
    choices = [[c for c in row if c] or ["yes"] for row in choices]
    return [x + " " * (i % 3) for i, x in enumerate(inputs)], choices


def test_lm_eval_convention_scores_delimiter_and_choice_without_eos(model, tokenizer):
    inputs, choices = ["is the cat on the mat", "is the cat on the mat  "], [["yes", "the cat sat"]] * 2
    t2t = score_choices(model, tokenizer, inputs, choices, convention="t2t")
    lm = score_choices(model, tokenizer, inputs, choices, convention="lm-eval")
    for c, s in zip(choices[0], lm[0], strict=True):
        ids = tokenizer.encode(" " + c, add_special_tokens=False)
        assert tokenizer.eos_token_id not in ids and s.num_tokens == len(ids) and s.num_chars == len(c)
    assert [s.num_tokens for s in t2t[0]] != [s.num_tokens for s in lm[0]] or flat(t2t) != flat(lm)
    moved = [len(tokenizer.encode("  " + " " + c, add_special_tokens=False)) for c in choices[0]]
    assert [s.num_tokens for s in lm[1]] == moved  # the input's trailing spaces went to the continuation


def test_lm_eval_convention_fast_path_equals_naive_and_batches(model, tokenizer):
    inputs, choices = lm_eval_data()
    kw = {"convention": "lm-eval", "target_delimiter": " "}
    fast = score_choices(model, tokenizer, inputs, choices, batch_size=5, **kw)
    one = score_choices(model, tokenizer, inputs, choices, batch_size=1, **kw)
    naive = score_choices_naive(model, tokenizer, inputs, choices, **kw)
    assert flat(fast) == pytest.approx(flat(naive), abs=1e-4)
    assert flat(fast) == pytest.approx(flat(one), abs=1e-4)


def test_lm_eval_convention_reproduces_lm_eval_hflm_loglikelihoods(model, tokenizer):
    """Parity with lm-evaluation-harness itself: HFLM(backend="seq2seq").loglikelihood on the same
    (context, target_delimiter + choice) requests gives t2t's per-choice scores."""
    require("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    inputs, choices = lm_eval_data(n=12, seed=10)
    for delimiter in (" ", "\n"):
        ours = score_choices(model, tokenizer, inputs, choices, batch_size=4, convention="lm-eval",
                             target_delimiter=delimiter)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="seq2seq", batch_size=3, device="cpu")
        requests = [Instance("loglikelihood", {}, (x, delimiter + c), j)
                    for x, row in zip(inputs, choices, strict=True) for j, c in enumerate(row)]
        theirs = [ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)]
        assert flat(ours) == pytest.approx(theirs, abs=1e-4)
        t2t = score_choices(model, tokenizer, inputs, choices, batch_size=4)
        assert flat(t2t) != pytest.approx(theirs, abs=1e-3)  # t2t's default is a different quantity


def test_lm_eval_convention_errors(model, tokenizer):
    with pytest.raises(T2TError, match="choice-scoring"):
        score_choices(model, tokenizer, ["a"], [["x"]], convention="lm_eval")
    with pytest.raises(T2TError, match="no token"):
        score_choices(model, tokenizer, ["a"], [[""]], convention="lm-eval", target_delimiter="")
