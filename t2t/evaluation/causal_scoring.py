"""Scoring a causal (decoder-only) LM: rank classification over answer choices, and generation.

:mod:`t2t.evaluation.scoring` dispatches here when :func:`t2t.modeling.family.model_family` says
``"causal"``; the seq2seq path there is untouched. A causal model reads the context and the answer as
one sequence, so a choice's score is the log-probability of its tokens after the context's::

    log p(choice | context) = sum over continuation tokens t_i of log p(t_i | context, t_<i)

Two conventions decide what the context and the continuation are (``convention``):

* ``"lm-eval"``: lm-evaluation-harness 0.4's ``HFLM`` loglikelihood (``backend="causal"``), step for
  step. The request is ``(context, target_delimiter + choice)``; trailing whitespace of the context moves
  to the front of the continuation; ``whole = tok_encode(context + continuation)``, ``ctx =
  tok_encode(context)``, ``cont = whole[len(ctx):]`` (``TemplateLM._encode_pair``), where ``tok_encode``
  is ``tokenizer.encode`` with the tokenizer's own special tokens unless the text already starts with the
  text of ``prefix_token_id`` (BOS, else EOS); an empty context is ``[prefix_token_id]``. The model reads
  ``(ctx + cont)[-(max_input_len + 1):][:-1]`` (cut from the left, last token dropped), rows are padded on
  the right and called with no attention mask, and the score is the sum of log-softmax at the
  continuation's positions; ``is_greedy`` says whether argmax reproduces every continuation token. No
  EOS is scored. With ``--chat-template`` the context is the chat prompt and the delimiter is ``""``,
  as lm-eval's ``apply_chat_template`` makes it. Worked example (a BPE without BOS, delimiter ``" "``)::

      context "Is it true? "  choice "yes"
      request ("Is it true? ", " yes") -> moved ("Is it true?", "  yes")
      whole = [Is, Ġit, Ġtrue, ?, Ġ, Ġyes]   ctx = [Is, Ġit, Ġtrue, ?]   cont = [Ġ, Ġyes]
      model input [Is, Ġit, Ġtrue, ?, Ġ]: logits at positions 3 and 4 score Ġ and Ġyes

* ``"t2t"`` (the default): the choice as training made the target (:func:`t2t.data.causal.tokenize_causal`,
  the one rule both use): the same boundary (lm-eval's split, but the continuation encoded alone when the
  context's tokens are not a prefix of the whole, lm-eval #1053/#4055), the run's ``target_delimiter``,
  and **EOS appended and scored**, as t2t's seq2seq convention scores it (a choice that is a prefix of
  another no longer collects its probability). With ``--chat-template`` the context is the chat prompt
  and the continuation the assistant turn as the template closes it (its EOS, e.g. SmolLM2's
  ``<|im_end|>``, not added twice). A prompt longer than ``max_input_len`` tokens keeps its last ones
  (and a leading BOS), as training cuts it; choices are never cut.

Efficiency: one forward per distinct model input, rows batched ``batch_size`` at a time, longest first
(padding stays small and an out-of-memory error shows at once), results restored to input order.
Rows with the same input share one forward (lm-eval's logits cache for one-token continuations is the
common case: all single-token choices of an input read the same logits). The LM head runs only at the
positions that predict a continuation token (``logits_to_keep``; lm-eval computes the logits of every
position, which for a 262k-token vocabulary is most of the work and memory), and log-probabilities are
taken there in float32 (lm-eval's default takes log-softmax in the model's dtype, so parity is exact in
fp32).

Generation (:func:`generate`): the prompt is the context as training encodes it (trailing whitespace
moved off it, even a chat prompt's last newline: the model writes it, as it learnt to), cut from the
left to ``max_input_len``; prompts are padded on the LEFT with an attention mask (a causal LM continues
from the last real token), greedy or beam, at most ``max_new_tokens``; a row stops at EOS or when a
stop string appears in the decoded generated tail (lm-eval's ``MultiTokenEOSCriteria``: the last
len(stop tokens) + 2 tokens, so a ``"\\n\\n"`` written as two ``"\\n"`` tokens still stops it). The output
is the generated tokens only, up to the one that stopped the row (a stopped row is padded while the
rest of its batch goes on: that padding is cut, so a row reads the same batched or alone), cut at EOS,
decoded, cut at the first stop string and stripped. Default stop: ``"\\n\\n"``, lm-eval's default
``until`` (its few-shot delimiter, and t2t's few-shot x/y delimiter).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from t2t.data.causal import encode_pair, move_trailing_whitespace, prefix_token_id, tokenize_causal
from t2t.data.chat import chat_prompt
from t2t.errors import T2TError
from t2t.evaluation.scoring_common import (
    ChoiceScore,
    _batches_by_length,
    _check_choices,
    _check_model,
    _device_of,
    _eval_mode,
    check_convention,
)
from t2t.modeling.architecture import wrapper_chain

DEFAULT_STOP: tuple[str, ...] = ("\n\n",)
_UNLIMITED = 10**9  # tokenize_causal's length budget when evaluation cuts the prompt itself

Pair = tuple[list[int], list[int]]  # (context ids, continuation ids)


# --- requests -------------------------------------------------------------------------------------------


def context_text(tokenizer: Any, text: str, chat_template: bool = False) -> str:
    """The context a causal model is scored on for one rendered input (what ``--log-samples`` logs)."""
    return chat_prompt(tokenizer, text) if chat_template else text


def lm_eval_tok_encode(tokenizer: Any, text: str) -> list[int]:
    """lm-eval 0.4 ``HFLM.tok_encode`` with ``add_bos_token=None``: the tokenizer's own special tokens,
    none if ``text`` already starts with the text of ``prefix_token_id`` (``has_bos_prefix``)."""
    prefix = tokenizer.decode(prefix_token_id(tokenizer))
    if text.startswith(prefix):
        return list(tokenizer.encode(text, add_special_tokens=False))
    return list(tokenizer.encode(text))


def lm_eval_pair(tokenizer: Any, context: str, continuation: str) -> Pair:
    """lm-eval 0.4 ``TemplateLM.loglikelihood`` + ``_encode_pair`` for a causal model, one request."""
    if context == "":
        cont = list(tokenizer.encode(continuation, add_special_tokens=False))
        prefix = prefix_token_id(tokenizer)
        return ([prefix], cont) if not cont or cont[0] != prefix else (cont[:1], cont[1:])
    context, continuation = move_trailing_whitespace(context, continuation)
    whole = lm_eval_tok_encode(tokenizer, context + continuation)
    ctx = lm_eval_tok_encode(tokenizer, context)
    return ctx, whole[len(ctx):]


def _cut_prompt(prompt: list[int], max_len: int | None, bos: int | None) -> list[int]:
    """The last ``max_len`` prompt tokens, a leading BOS kept (training's cut, t2t.data.causal)."""
    if not max_len or len(prompt) <= max_len:
        return prompt
    keep_bos = bos is not None and prompt[0] == bos
    return ([bos] if keep_bos else []) + prompt[len(prompt) - max_len + keep_bos:]


def encode_requests(tokenizer: Any, inputs: Sequence[str], choices: Sequence[Sequence[str]], convention: str,
                    target_delimiter: str = " ", chat_template: bool = False,
                    max_input_len: int | None = None) -> list[list[Pair]]:
    """``(context ids, continuation ids)`` per choice of every input, by ``convention`` (module docstring).

    Under ``"t2t"`` the context is already cut to ``max_input_len``; under ``"lm-eval"`` the window is cut
    at scoring time, as lm-eval cuts it.
    """
    check_convention(convention)
    out: list[list[Pair]] = []
    if convention == "lm-eval":
        delimiter = "" if chat_template else target_delimiter
        for i, (text, row) in enumerate(zip(inputs, choices, strict=True)):
            context = context_text(tokenizer, text, chat_template)
            pairs = [lm_eval_pair(tokenizer, context, delimiter + c) for c in row]
            for c, (_, cont) in zip(row, pairs, strict=True):
                if not cont:  # lm-eval asserts a non-empty continuation
                    raise T2TError(f"--choice-scoring lm-eval: choice {c!r} of input {i} with target_delimiter "
                                   f"{delimiter!r} adds no token after the context; lm-eval cannot score it "
                                   "either; use --choice-scoring t2t")
            out.append(pairs)
        return out
    flat_inputs = [text for text, row in zip(inputs, choices, strict=True) for _ in row]
    flat_choices = [c for row in choices for c in row]
    examples = tokenize_causal(tokenizer, flat_inputs, flat_choices, _UNLIMITED, _UNLIMITED, loss_on="target",
                               chat_template=chat_template, target_delimiter=target_delimiter)
    pairs = []
    for ex in examples:
        # loss_on="target" labels the prompt -100 and the target (its EOS included) with its ids
        n = next((k for k, label in enumerate(ex["labels"]) if label != -100), len(ex["labels"]))
        n = max(n, 1)  # labels[0] is always -100: a context of at least one token
        prompt = _cut_prompt(ex["input_ids"][:n], max_input_len, tokenizer.bos_token_id)
        pairs.append((prompt, ex["input_ids"][n:]))
    start = 0
    for row in choices:
        out.append(pairs[start:start + len(row)])
        start += len(row)
    return out


def _window(ctx: list[int], cont: list[int], max_len: int | None) -> list[int]:
    """The model input of one request: ``(ctx + cont)[-(max_len + 1):][:-1]`` (lm-eval's causal cut)."""
    whole = ctx + cont
    if max_len and len(cont) > max_len:
        raise T2TError(f"a choice of {len(cont)} tokens does not fit --max-input-len {max_len}; raise it")
    return (whole[-(max_len + 1):] if max_len else whole)[:-1]


# --- rank classification --------------------------------------------------------------------------------


def _logits_at(model: torch.nn.Module, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Logits ``[number of True in keep, vocab]`` at the ``keep`` positions, in row-major order.

    transformers 5 causal LMs take ``logits_to_keep`` as a boolean ``[B, L]`` mask and apply the LM head only
    there (the head is the largest matmul of a small model with a big vocabulary: Gemma 3's 262k tokens);
    the hidden states, and so the logits, are those of the full forward. The peft wrapper is stepped over
    (LoRA layers are injected into the inner model), as :func:`t2t.modeling.loss.causal_loss_sum` does.
    """
    inner = wrapper_chain(model)[-1]
    if "logits_to_keep" in inspect.signature(inner.forward).parameters:
        logits = inner(input_ids=ids, use_cache=False, logits_to_keep=keep).logits
        if logits.dim() == 2:
            return logits
    return model(input_ids=ids, use_cache=False).logits[keep]  # a model that slices differently: all logits


def score_pairs(model: torch.nn.Module, pairs: Sequence[Pair], batch_size: int = 32,
                max_len: int | None = None, pad_id: int = 0,
                device: torch.device | str | None = None) -> list[tuple[float, bool]]:
    """``(sum of log-probabilities, is_greedy)`` of each continuation after its context, in order.

    One forward per distinct model input (requests whose input is the same share it), ``batch_size``
    inputs per forward, longest first, right-padded without an attention mask (causal attention never
    looks right, so padding changes no real position; lm-eval does the same). Logits are computed only at
    the positions that predict a continuation token and reduced per batch, so memory is bounded by the batch.
    """
    device = _device_of(model, device)
    windows = [_window(list(ctx), list(cont), max_len) for ctx, cont in pairs]
    served: dict[tuple[int, ...], list[int]] = {}  # distinct model input -> the requests it serves
    for r, w in enumerate(windows):
        served.setdefault(tuple(w), []).append(r)
    inputs = list(served)
    need = [max(len(pairs[r][1]) for r in served[x]) for x in inputs]  # positions to score, per input
    out: list[tuple[float, bool] | None] = [None] * len(pairs)
    with _eval_mode(model):
        for batch in _batches_by_length([len(x) for x in inputs], batch_size):
            width = len(inputs[batch[0]])
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            keep = torch.zeros((len(batch), width), dtype=torch.bool)
            for b, u in enumerate(batch):
                n = len(inputs[u])
                ids[b, :n] = torch.tensor(inputs[u], dtype=torch.long)
                keep[b, n - need[u]:n] = True  # position p predicts token p + 1 of context + continuation
            logits = _logits_at(model, ids.to(device), keep.to(device))
            start = 0
            for u in batch:
                logp = logits[start:start + need[u]].float().log_softmax(-1)
                start += need[u]
                for r in served[inputs[u]]:
                    cont = pairs[r][1]
                    rows = logp[len(logp) - len(cont):]
                    target = torch.tensor(cont, device=rows.device)
                    out[r] = (rows.gather(-1, target[:, None]).sum().item(),
                              bool((rows.argmax(-1) == target).all()))
    return out  # type: ignore[return-value]


def score_choices(model: torch.nn.Module, tokenizer: Any, inputs: Sequence[str], choices: Sequence[Sequence[str]],
                  batch_size: int = 32, max_input_len: int | None = None, device: torch.device | str | None = None,
                  convention: str = "t2t", target_delimiter: str = " ",
                  chat_template: bool = False) -> list[list[ChoiceScore]]:
    """Every choice of every input scored (``result[i][j]`` is ``choices[i][j]``), with ``is_greedy``.

    ``batch_size`` counts (input, choice) rows per forward, as lm-eval's batch size counts requests.
    """
    _check_choices(inputs, choices)
    _check_model(model)
    requests = encode_requests(tokenizer, inputs, choices, convention, target_delimiter, chat_template,
                               max_input_len)
    flat = [pair for row in requests for pair in row]
    window = max_input_len if convention == "lm-eval" else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scored = score_pairs(model, flat, batch_size, window, pad_id, device)
    out, k = [], 0
    for row, pairs in zip(choices, requests, strict=True):
        out.append([ChoiceScore(total, len(cont), len(text), greedy)
                    for text, (_, cont), (total, greedy) in zip(row, pairs, scored[k:k + len(row)], strict=True)])
        k += len(row)
    return out


def score_choices_naive(model: torch.nn.Module, tokenizer: Any, inputs: Sequence[str],
                        choices: Sequence[Sequence[str]], max_input_len: int | None = None,
                        device: torch.device | str | None = None, convention: str = "t2t",
                        target_delimiter: str = " ", chat_template: bool = False) -> list[list[ChoiceScore]]:
    """Reference: one ``model(context + choice, labels=...)`` per (input, choice), the model's own shift and
    mean loss times the token count; shares only the request encoding with :func:`score_choices`."""
    _check_choices(inputs, choices)
    _check_model(model)
    device = _device_of(model, device)
    requests = encode_requests(tokenizer, inputs, choices, convention, target_delimiter, chat_template,
                               max_input_len)
    results = []
    with _eval_mode(model):
        for row, pairs in zip(choices, requests, strict=True):
            scored = []
            for text, (ctx, cont) in zip(row, pairs, strict=True):
                whole = ctx + cont
                if convention == "lm-eval" and max_input_len:
                    whole = whole[-(max_input_len + 1):]
                labels = [-100] * (len(whole) - len(cont)) + cont
                ids = torch.tensor([whole], device=device)
                loss = model(input_ids=ids, labels=torch.tensor([labels], device=device), use_cache=False).loss
                scored.append(ChoiceScore(-loss.item() * len(cont), len(cont), len(text)))
            results.append(scored)
    return results


# --- generation -----------------------------------------------------------------------------------------


class StopOnStrings(StoppingCriteria):
    """A row is done once a stop string appears in the decoded tail of its generated tokens (lm-eval's
    ``MultiTokenEOSCriteria``: the last len(tokens of the stop) + 2 tokens, never the prompt's)."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_width: int) -> None:
        self.tokenizer, self.prompt_width = tokenizer, prompt_width
        self.stops = [(s, len(tokenizer.encode(s, add_special_tokens=False)) + 2) for s in stops if s]

    def hits(self, generated: Sequence[Sequence[int]]) -> list[bool]:
        """Per row of generated ids: does a stop string show in its decoded tail?"""
        done = [False] * len(generated)
        for stop, look in self.stops:
            tails = self.tokenizer.batch_decode([list(row)[-look:] for row in generated])
            done = [d or stop in t for d, t in zip(done, tails, strict=True)]
        return done

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        done = self.hits(input_ids[:, self.prompt_width:].tolist())
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def cut(self, generated: list[int]) -> list[int]:
        """The tokens up to the step at which the criterion stopped the row. In a batch a stopped row is
        padded while the others go on; the padding goes here, so a row is the same batched or alone."""
        for k in range(1, len(generated) + 1):
            if self.hits([generated[:k]])[0]:
                return generated[:k]
        return generated


def prompt_ids(tokenizer: Any, text: str, chat_template: bool = False, max_input_len: int | None = None) -> list[int]:
    """A generation prompt's ids: the context exactly as training encodes it (:func:`t2t.data.causal.encode_pair`:
    trailing whitespace goes to the continuation, so the model writes the delimiter, or the chat prompt's final
    newline), cut from the left to ``max_input_len`` with a leading BOS kept."""
    context = chat_prompt(tokenizer, text) if chat_template else text
    ids, _ = encode_pair(tokenizer, context, "", add_special_tokens=not chat_template)
    return _cut_prompt(ids, max_input_len, tokenizer.bos_token_id)


def generate_ids(model: torch.nn.Module, tokenizer: Any, inputs: Sequence[str], max_new_tokens: int,
                 num_beams: int = 1, batch_size: int = 32, max_input_len: int | None = None,
                 device: torch.device | str | None = None, chat_template: bool = False,
                 stop: Sequence[str] = DEFAULT_STOP, sampling: Mapping[str, Any] | None = None) -> list[list[int]]:
    """Generated token ids per input, in input order: prompt and padding removed, cut before EOS or after
    the token that completed a stop string (the stop string itself is cut from the text by :func:`generate`).
    ``sampling``: further ``model.generate`` options (:func:`t2t.evaluation.scoring.generate_ids`); with
    ``num_return_sequences`` n, n rows per input, one input's after another."""
    if max_new_tokens < 1:
        raise T2TError(f"max_new_tokens must be at least 1, got {max_new_tokens}; set --max-new-tokens.")
    _check_model(model)
    device = _device_of(model, device)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    prompts = [prompt_ids(tokenizer, text, chat_template, max_input_len) for text in inputs]
    options = dict(sampling or {})
    n = int(options.get("num_return_sequences", 1))
    results: list[list[int] | None] = [None] * (len(inputs) * n)
    with _eval_mode(model):
        for batch in _batches_by_length([len(p) for p in prompts], batch_size):
            width = len(prompts[batch[0]])
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):  # left padding: every row's last real token is at the end
                ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i], dtype=torch.long)
                mask[r, width - len(prompts[i]):] = 1
            stopper = StopOnStrings(tokenizer, stop, width)
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, num_beams=num_beams, **{"do_sample": False, **options},
                                 pad_token_id=pad, eos_token_id=eos, stopping_criteria=StoppingCriteriaList([stopper]))
            for r, seq in enumerate(out[:, width:].tolist()):  # generate's rows: each input's n together
                seq = seq[:seq.index(eos)] if eos in seq else seq
                results[batch[r // n] * n + r % n] = stopper.cut(seq) if stopper.stops else seq
    return results  # type: ignore[return-value]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first stop string (lm-eval's ``postprocess_generated_text``)."""
    for s in stop:
        if s:
            text = text.split(s)[0]
    return text


def generate(model: torch.nn.Module, tokenizer: Any, inputs: Sequence[str], max_new_tokens: int,
             num_beams: int = 1, batch_size: int = 32, max_input_len: int | None = None,
             device: torch.device | str | None = None, chat_template: bool = False,
             stop: Sequence[str] = DEFAULT_STOP, sampling: Mapping[str, Any] | None = None) -> list[str]:
    """Generated text per input, in input order: :func:`generate_ids` decoded (special tokens skipped),
    cut at the first stop string, surrounding whitespace stripped."""
    ids = generate_ids(model, tokenizer, inputs, max_new_tokens, num_beams, batch_size, max_input_len, device,
                       chat_template, stop, sampling)
    return [cut_at_stop(text, stop).strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]
