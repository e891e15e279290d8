"""Scoring a seq2seq model: rank classification over answer choices, and generation.

Rank classification (T0, lm-eval). For an input x and answer choices c_1..c_k, the score of c_j is

    log p(c_j | x) = sum over the choice's target tokens t of log p(t | x, t_<)

where the target tokens are the tokenizer's pieces of c_j **followed by EOS**, exactly the target a T5
model is trained on. Keeping EOS is what T0 does with T5 targets, and it matters: without it a choice
that is a prefix of another ("yes" vs "yes it is") gets its probability mass from every continuation.
Two conventions for what a choice's target is (``convention``):

* ``"t2t"`` (the default): the choice's pieces followed by EOS, the input encoded as in training
  (EOS appended, cut on the right with EOS kept).
* ``"lm-eval"``: lm-evaluation-harness 0.4's seq2seq ``HFLM`` (``backend="seq2seq"``): the request is
  (context = input, continuation = ``target_delimiter`` + choice); trailing whitespace of the context
  moves to the front of the continuation (``LM._encode_pair``); the context is encoded with special
  tokens (EOS for T5) and cut on the left to its last ``max_input_len`` tokens; the continuation is
  encoded without special tokens, so no EOS is scored. Measured on t2t's base and demo adapter (600
  rows, docs/references.md): with lm-eval's defaults only 59-200 of 200 predictions per task agree with t2t's
  convention, so the convention is recorded with every result (``results.json``).

Predictions (see :func:`predict`): ``"sum"`` is the argmax of the sum (T0, lm-eval ``acc``);
``"chars"`` is the argmax of the sum divided by the choice's length in characters (lm-eval
``acc_norm``).

:func:`score_choices` encodes each input once, then scores all its choices in one decoder pass that
reads the encoder states gathered per choice row (no second encoder pass). Inputs are sorted by
length so that batches carry little padding, and results come back in input order. Padding is masked
in the encoder (attention mask) and is harmless in the decoder (causal, right-padded, masked out of the
sum), so scores do not depend on the batch size beyond float rounding (<1e-4 in fp32; tested).

:func:`score_choices_naive` is the reference: one full ``model(input_ids, labels=choice)`` forward per
(input, choice). Tests check the fast path against it; benchmarks time the two.

Both work on plain ``transformers`` seq2seq models and on peft models whose adapters are injected
layers (LoRA and friends). Prompt-learning adapters (prefix / prompt tuning) change the encoder call
and are refused.

Causal (decoder-only) models: every public function here hands them to
:mod:`t2t.evaluation.causal_scoring` (the model's family, :func:`t2t.modeling.family.model_family`,
decides), which scores them under the same two conventions, lm-eval's being ``HFLM``'s causal
loglikelihood. ``chat_template`` applies to causal models only; generation's ``stop`` strings default to
``"\\n\\n"`` for a causal model and to none for a seq2seq one (t2t.predict's ``--stop`` gives both).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import StoppingCriteriaList

from t2t.errors import T2TError
from t2t.evaluation import causal_scoring
from t2t.evaluation.scoring_common import (
    ChoiceScore,
    _batches_by_length,
    _check_choices,
    _check_model,
    _device_of,
    _eval_mode,
    check_convention,
)
from t2t.modeling.family import model_family
from t2t.modeling.loss import _PACKED_ATTENTION, PACKABLE_MODEL_TYPES, segment_mask

NORMS = ("sum", "chars", "tokens")


def predict(scores: Sequence[Sequence[ChoiceScore]], norm: str = "sum") -> list[int]:
    """Index of the best choice per input.

    ``norm="sum"``: argmax of the summed log-probability (T0 rank classification, lm-eval ``acc``).
    ``norm="chars"``: argmax of log-probability per character of the choice (lm-eval ``acc_norm``).
    ``norm="tokens"``: argmax of mean log-probability per token. Ties go to the first choice.
    """
    if norm not in NORMS:
        raise T2TError(f"unknown rank-classification norm '{norm}'; use one of {', '.join(NORMS)}.")
    key = {
        "sum": lambda s: s.logprob,
        "chars": lambda s: s.logprob_per_char,
        "tokens": lambda s: s.logprob_per_token,
    }[norm]
    return [max(range(len(row)), key=lambda j: key(row[j])) for row in scores]


# --- helpers shared by the fast and the naive path ---------------------------------------------


def _decoder_start_id(model: torch.nn.Module, tokenizer) -> int:
    start = getattr(model.config, "decoder_start_token_id", None)
    return int(start if start is not None else tokenizer.pad_token_id)


def _encode_inputs(tokenizer, inputs: Sequence[str], max_input_len: int | None) -> list[list[int]]:
    if not inputs:
        return []
    # The T5 tokenizer appends EOS after truncation, so a truncated input still ends with EOS.
    kwargs = {"truncation": True, "max_length": max_input_len} if max_input_len else {}
    return tokenizer(list(inputs), **kwargs)["input_ids"]


def _encode_choices(tokenizer, choices: Sequence[str]) -> list[list[int]]:
    # EOS is appended explicitly (not via add_special_tokens) so the rule holds for any tokenizer.
    ids = tokenizer(list(choices), add_special_tokens=False)["input_ids"] if choices else []
    return [list(seq) + [tokenizer.eos_token_id] for seq in ids]


def _encode_requests(tokenizer, inputs: Sequence[str], choices: Sequence[Sequence[str]],
                     max_input_len: int | None, convention: str,
                     target_delimiter: str) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Encoder ids per input and target ids per choice, by ``convention`` (see the module docstring)."""
    check_convention(convention)
    if convention == "t2t":
        return _encode_inputs(tokenizer, inputs, max_input_len), [_encode_choices(tokenizer, row) for row in choices]
    contexts, moved = [], []
    for text in inputs:
        n_spaces = len(text) - len(text.rstrip())
        contexts.append(text[:len(text) - n_spaces])
        moved.append(text[len(text) - n_spaces:])
    # lm-eval encodes one string at a time (tokenizer.encode) and cuts the context from the left.
    input_ids = [tokenizer.encode(c)[-max_input_len:] if max_input_len else tokenizer.encode(c) for c in contexts]
    choice_ids = []
    for i, row in enumerate(choices):
        conts = [tokenizer.encode(moved[i] + target_delimiter + c, add_special_tokens=False) for c in row]
        for c, ids in zip(row, conts, strict=True):
            if not ids:  # lm-eval asserts a non-empty continuation
                raise T2TError(f"--choice-scoring lm-eval: choice {c!r} of input {i} with target_delimiter "
                               f"{target_delimiter!r} encodes to no token; lm-eval cannot score it either; "
                               "use --choice-scoring t2t")
        choice_ids.append(conts)
    return input_ids, choice_ids


def _pad(
    rows: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


def _causal(model: torch.nn.Module):
    """:mod:`t2t.evaluation.causal_scoring` for a decoder-only model, else None."""
    return causal_scoring if model_family(model) == "causal" else None


# --- rank classification ------------------------------------------------------------------------


def score_choices(
    model: torch.nn.Module,
    tokenizer,
    inputs: Sequence[str],
    choices: Sequence[Sequence[str]],
    batch_size: int = 32,
    max_input_len: int | None = None,
    device: torch.device | str | None = None,
    convention: str = "t2t",
    target_delimiter: str = " ",
    chat_template: bool = False,
) -> list[list[ChoiceScore]]:
    """Score every answer choice of every input; ``result[i][j]`` belongs to ``choices[i][j]``.

    ``batch_size`` counts inputs per encoder pass; the decoder pass of that batch has one row per
    (input, choice). Inputs longer than ``max_input_len`` tokens are truncated (t2t: on the right, EOS
    kept; lm-eval: on the left); choices are never truncated. ``convention`` and ``target_delimiter``
    (used by ``"lm-eval"`` only): see the module docstring. ``device`` defaults to the model's device.
    A causal model is scored by :func:`t2t.evaluation.causal_scoring.score_choices`.
    """
    if (causal := _causal(model)) is not None:
        return causal.score_choices(model, tokenizer, inputs, choices, batch_size, max_input_len, device,
                                    convention, target_delimiter, chat_template)
    _check_choices(inputs, choices)
    _check_model(model)
    device = _device_of(model, device)
    pad_id, start_id = tokenizer.pad_token_id, _decoder_start_id(model, tokenizer)
    input_ids, choice_ids = _encode_requests(tokenizer, inputs, choices, max_input_len, convention, target_delimiter)
    results: list[list[ChoiceScore] | None] = [None] * len(inputs)

    with _eval_mode(model):
        encoder = model.get_encoder()
        for batch in _batches_by_length([len(x) for x in input_ids], batch_size):
            enc_ids, enc_mask = _pad([input_ids[i] for i in batch], pad_id, device)
            hidden = encoder(input_ids=enc_ids, attention_mask=enc_mask).last_hidden_state

            if _packs_choices(model):
                sums = _packed_choice_sums(model, hidden, enc_mask, [choice_ids[i] for i in batch], start_id,
                                           pad_id, device)
            else:
                sums = _per_choice_sums(model, hidden, enc_mask, [choice_ids[i] for i in batch], start_id,
                                        pad_id, device)
            for b, i in enumerate(batch):
                results[i] = [ChoiceScore(total, len(ids), len(text))
                              for text, ids, total in zip(choices[i], choice_ids[i], sums[b], strict=True)]
    return results  # type: ignore[return-value]


def _packs_choices(model: torch.nn.Module) -> bool:
    """T5-family decoders use relative positions only, so an input's choices can share one decoder row."""
    config = model.config
    return config.model_type in PACKABLE_MODEL_TYPES and config._attn_implementation in _PACKED_ATTENTION


def _token_logp(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # log_softmax gathered at the label without materialising a second vocab-sized tensor.
    logits = logits.float()
    return logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def _per_choice_sums(model: torch.nn.Module, hidden: torch.Tensor, enc_mask: torch.Tensor,
                     choice_ids: Sequence[Sequence[list[int]]], start_id: int, pad_id: int,
                     device: torch.device) -> list[list[float]]:
    """One decoder row per (input, choice), each reading its input's encoder states (any seq2seq model)."""
    owner = torch.tensor([b for b, row in enumerate(choice_ids) for _ in row], device=device)
    targets = [ids for row in choice_ids for ids in row]
    labels, dec_mask = _pad(targets, pad_id, device)
    dec_in, _ = _pad([[start_id] + t[:-1] for t in targets], pad_id, device)
    logits = model(encoder_outputs=(hidden[owner],), attention_mask=enc_mask[owner], decoder_input_ids=dec_in,
                   decoder_attention_mask=dec_mask, use_cache=False).logits
    flat = (_token_logp(logits, labels) * dec_mask).sum(-1).tolist()
    out, row = [], 0
    for choices in choice_ids:
        out.append(flat[row:row + len(choices)])
        row += len(choices)
    return out


def _packed_choice_sums(model: torch.nn.Module, hidden: torch.Tensor, enc_mask: torch.Tensor,
                        choice_ids: Sequence[Sequence[list[int]]], start_id: int, pad_id: int,
                        device: torch.device) -> list[list[float]]:
    """One decoder row per input holding all its choices back to back, each restarting at the start token
    and causal within itself (a segment mask). Cross-attention over the input is computed once per input
    instead of once per choice; relative positions make each choice score exactly what it scores alone
    (benchmarks/rank_classification.py measures the speed-up)."""
    width = max(sum(map(len, row)) for row in choice_ids)
    dec_in = torch.full((len(choice_ids), width), pad_id, dtype=torch.long)
    labels = torch.full((len(choice_ids), width), pad_id, dtype=torch.long)
    seg = torch.zeros((len(choice_ids), width), dtype=torch.long)
    for r, row in enumerate(choice_ids):
        pos = 0
        for k, target in enumerate(row, start=1):
            n = len(target)
            labels[r, pos:pos + n] = torch.tensor(target)
            dec_in[r, pos:pos + n] = torch.tensor([start_id] + target[:-1])
            seg[r, pos:pos + n] = k
            pos += n
    dec_in, labels, seg = dec_in.to(device), labels.to(device), seg.to(device)
    dtype = hidden.dtype
    cross = torch.zeros((len(choice_ids), 1, width, hidden.shape[1]), dtype=dtype, device=device)
    cross.masked_fill_(~enc_mask.bool()[:, None, None, :], torch.finfo(dtype).min)
    logits = model(encoder_outputs=(hidden,), attention_mask=cross, decoder_input_ids=dec_in,
                   decoder_attention_mask=segment_mask(seg, seg, True, dtype), use_cache=False).logits
    sums = torch.zeros((len(choice_ids), int(seg.max()) + 1), dtype=torch.float32, device=device)
    sums.scatter_add_(1, seg, _token_logp(logits, labels) * seg.ne(0))
    return [sums[r, 1:1 + len(row)].tolist() for r, row in enumerate(choice_ids)]


def score_choices_naive(
    model: torch.nn.Module,
    tokenizer,
    inputs: Sequence[str],
    choices: Sequence[Sequence[str]],
    max_input_len: int | None = None,
    device: torch.device | str | None = None,
    convention: str = "t2t",
    target_delimiter: str = " ",
    chat_template: bool = False,
) -> list[list[ChoiceScore]]:
    """Reference rank classification: one full ``model(input_ids, labels=choice)`` per (input, choice).

    Uses the model's own label shifting and loss (mean token cross-entropy, times the token count),
    so it shares no scoring code with :func:`score_choices` beyond the encoding of the requests.
    """
    if (causal := _causal(model)) is not None:
        return causal.score_choices_naive(model, tokenizer, inputs, choices, max_input_len, device, convention,
                                          target_delimiter, chat_template)
    _check_choices(inputs, choices)
    _check_model(model)
    device = _device_of(model, device)
    input_ids, choice_ids = _encode_requests(tokenizer, inputs, choices, max_input_len, convention, target_delimiter)
    results = []
    with _eval_mode(model):
        for ids, row, targets in zip(input_ids, choices, choice_ids, strict=True):
            enc = torch.tensor([ids], device=device)
            scored = []
            for text, target in zip(row, targets, strict=True):
                labels = torch.tensor([target], device=device)
                loss = model(input_ids=enc, attention_mask=torch.ones_like(enc), labels=labels).loss
                scored.append(ChoiceScore(-loss.item() * len(target), len(target), len(text)))
            results.append(scored)
    return results


# --- generation ---------------------------------------------------------------------------------


def generate_ids(
    model: torch.nn.Module,
    tokenizer,
    inputs: Sequence[str],
    max_new_tokens: int,
    num_beams: int = 1,
    batch_size: int = 32,
    max_input_len: int | None = None,
    device: torch.device | str | None = None,
    chat_template: bool = False,
    stop: Sequence[str] | None = None,
    sampling: Mapping[str, Any] | None = None,
) -> list[list[int]]:
    """Generated token ids per input, in input order, without the decoder start token, EOS or padding.

    Greedy (``num_beams=1``) or beam search; evaluation never samples. ``max_new_tokens`` is always passed
    because transformers' GenerationConfig otherwise stops at ``max_length=20``. A causal model generates
    with :func:`t2t.evaluation.causal_scoring.generate_ids` (``stop``: its stop strings, default ``"\\n\\n"``).
    A seq2seq model stops at a stop string only when ``stop`` names one, by the causal rule
    (:class:`~t2t.evaluation.causal_scoring.StopOnStrings`, the tokens up to the one that completed it).
    ``sampling``: further ``model.generate`` options (``do_sample``, ``temperature``, ``top_p``, ``top_k``,
    ``repetition_penalty``, ``num_return_sequences``: t2t.predict's); with ``num_return_sequences`` n the
    result holds n rows per input, one input's after another.
    """
    if (causal := _causal(model)) is not None:
        return causal.generate_ids(model, tokenizer, inputs, max_new_tokens, num_beams, batch_size, max_input_len,
                                   device, chat_template, causal.DEFAULT_STOP if stop is None else stop, sampling)
    if max_new_tokens < 1:
        raise T2TError(f"max_new_tokens must be at least 1, got {max_new_tokens}; set --max-new-tokens.")
    _check_model(model)
    device = _device_of(model, device)
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    input_ids = _encode_inputs(tokenizer, inputs, max_input_len)
    options = {"do_sample": False, **(sampling or {})}
    n = int(options.get("num_return_sequences", 1))
    stopper = causal_scoring.StopOnStrings(tokenizer, stop or (), 1)  # column 0 is the decoder start token
    if stopper.stops:
        options["stopping_criteria"] = StoppingCriteriaList([stopper])
    results: list[list[int] | None] = [None] * (len(inputs) * n)
    with _eval_mode(model):
        for batch in _batches_by_length([len(x) for x in input_ids], batch_size):
            enc_ids, enc_mask = _pad([input_ids[i] for i in batch], pad_id, device)
            out = model.generate(input_ids=enc_ids, attention_mask=enc_mask, max_new_tokens=max_new_tokens,
                                 num_beams=num_beams, pad_token_id=pad_id, eos_token_id=eos_id, **options)
            for r, seq in enumerate(out[:, 1:].tolist()):  # generate's rows: each input's n together
                # An unfinished sequence has no EOS and no padding: it used all max_new_tokens.
                seq = seq[: seq.index(eos_id)] if eos_id in seq else seq
                results[batch[r // n] * n + r % n] = stopper.cut(seq) if stopper.stops else seq
    return results  # type: ignore[return-value]


def generate(
    model: torch.nn.Module,
    tokenizer,
    inputs: Sequence[str],
    max_new_tokens: int,
    num_beams: int = 1,
    batch_size: int = 32,
    max_input_len: int | None = None,
    device: torch.device | str | None = None,
    chat_template: bool = False,
    stop: Sequence[str] | None = None,
    sampling: Mapping[str, Any] | None = None,
) -> list[str]:
    """Generated text per input, in input order: :func:`generate_ids` decoded, special tokens skipped,
    cut at the first stop string (a causal model's default: ``"\\n\\n"``; a seq2seq model's: none),
    surrounding whitespace stripped."""
    if (causal := _causal(model)) is not None:
        return causal.generate(model, tokenizer, inputs, max_new_tokens, num_beams, batch_size, max_input_len,
                               device, chat_template, causal.DEFAULT_STOP if stop is None else stop, sampling)
    ids = generate_ids(model, tokenizer, inputs, max_new_tokens, num_beams, batch_size, max_input_len, device,
                       stop=stop, sampling=sampling)
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [causal_scoring.cut_at_stop(text, stop or ()).strip() for text in texts]
