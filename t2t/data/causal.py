"""Rendered (input, target) pairs -> token ids and batches for decoder-only (causal) language models.

Layout: seqio's ``PrefixLMFeatureConverter`` with the prefix mask ignored (a plain Hugging Face causal
LM is fully causal), i.e. "causal LM with a prompt-masked loss"::

    input_ids = prompt + target + [EOS]
    labels    = [-100] * len(prompt) + target + [EOS]        (loss_on="target", the default)
    labels    = [-100] + (prompt + target + [EOS])[1:]       (loss_on="all": the whole sequence)

The first label of every example is -100 whatever ``loss_on`` says: nothing before it in the example
predicts it, and in a packed row the token before it belongs to another example. Labels are built by
position, never by comparing ids with the pad id (SmolLM2's pad *is* its EOS: TRL #976). EOS is always
appended and labelled, so the model learns to stop (TRL #1623).

The prompt/target boundary (:func:`encode_pair`) is lm-evaluation-harness's ``_encode_pair``, so that
training and lm-eval-style scoring cut the same text at the same token:

1. the text is ``context = input`` and ``continuation = target_delimiter + target`` (lm-eval's
   ``target_delimiter``, default ``" "``); trailing whitespace of the context moves to the front of the
   continuation, so the context never ends in a space;
2. ``context_ids = tokenizer(context)`` with the tokenizer's own special tokens (BOS exactly once, as
   the tokenizer does it: Llama/Gemma add BOS, GPT-2/Qwen add none; a text that already starts with
   the BOS text is encoded without special tokens, lm-eval's ``has_bos_prefix``), via
   :func:`encode_prompt`, which evaluation uses for its contexts too;
3. ``whole = tokenizer(context + continuation)`` and ``target = whole[len(context_ids):]``.

Why joint encoding and not ``tokenizer(continuation, add_special_tokens=False)``: the target then gets
the tokens it has in running text, the ones the model saw in pre-training and that lm-eval scores.
Encoded alone, a SentencePiece tokenizer (Llama, Gemma) gives ``" yes"`` a dummy-prefix ``"▁"`` token
of its own, and a byte-level BPE (GPT-2) would tokenise the join differently from the whole string.
Only when the context's ids are not a prefix of ``whole`` (a token spanning the join, lm-eval
#1053/#4055) or the split leaves nothing, the continuation is encoded alone instead, so every example
keeps all of its target text. Worked example (a GPT-2-style tokenizer without BOS, delimiter " ")::

    input "Review: great film.\\n"  target "positive"
    context       "Review: great film."        -> [Review, :, Ġgreat, Ġfilm, .]
    continuation  "\\n positive"                -> whole[5:] = [Ċ, Ġpositive]
    input_ids = [Review, :, Ġgreat, Ġfilm, ., Ċ, Ġpositive, <eos>]
    labels    = [-100,  -100, -100, -100, -100, Ċ, Ġpositive, <eos>]

Empty context (an empty input with an empty delimiter): lm-eval's ``prefix_token_id``, BOS else EOS,
is the only context token, and the continuation is encoded alone.

With ``--chat-template`` the context is the conversation up to the assistant's turn and the
continuation the turn itself (:func:`t2t.data.chat.chat_pair`; the template separates the turns, so no
delimiter, as lm-eval's delimiter becomes ``""`` under ``apply_chat_template``). Both hold the
template's special tokens already and are encoded with ``add_special_tokens=False``; EOS is appended
only if the completion does not hold it already (SmolLM2's ``<|im_end|>`` is its EOS).

Truncation: one budget of ``max_input_len + max_target_len`` tokens per example (seqio's
``_concat_task_feature_lengths``). The target keeps at most ``max_target_len`` tokens including its EOS
(cut from the right, EOS kept); the prompt gets the rest of the budget and is cut from the left (the
end of the input, next to the answer, matters most), keeping a leading BOS.

Batches: :func:`collate_causal_padded` (right-padded, ``attention_mask`` and -100 labels by length) and
:func:`collate_causal_packed` (several examples per row, positions restarting at 0, segment ids that
:func:`t2t.modeling.loss.causal_loss_sum` turns into a block-diagonal causal mask)::

    examples = [{"input_ids": [1, 5, 6, 2], "labels": [-100, -100, 6, 2]},
                {"input_ids": [1, 7, 2],    "labels": [-100, 7, 2]}]
    collate_causal_packed([examples], pad_id=0)
    # input_ids    = [[1, 5, 6, 2, 1, 7, 2]]
    # segment_ids  = [[1, 1, 1, 1, 2, 2, 2]]
    # position_ids = [[0, 1, 2, 3, 0, 1, 2]]
    # labels       = [[-100, -100, 6, 2, -100, 7, 2]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from t2t.data.chat import chat_pair
from t2t.errors import T2TError

__all__ = ["IGNORE_INDEX", "LOSS_ON", "collate_causal_packed", "collate_causal_padded", "encode_pair",
           "encode_prompt", "move_trailing_whitespace", "prefix_token_id", "tokenize_causal"]

IGNORE_INDEX = -100
LOSS_ON = ("target", "all")

CausalExample = dict[str, list[int]]


def _encode(tokenizer: Any, texts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
    """Batched ids; a text that already starts with the BOS text gets no special tokens (BOS once)."""
    bos = getattr(tokenizer, "bos_token", None)
    plain = [add_special_tokens and not (bos and t.startswith(bos)) for t in texts]
    out: list[list[int]] = [[] for _ in texts]
    for flag in (True, False):
        index = [i for i, p in enumerate(plain) if p == flag]
        if index:
            ids = tokenizer([texts[i] for i in index], add_special_tokens=flag)["input_ids"]
            for i, x in zip(index, ids, strict=True):
                out[i] = list(x)
    return out


def encode_prompt(tokenizer: Any, text: str, add_special_tokens: bool = True) -> list[int]:
    """A context's ids, as training cuts them: the tokenizer's own special tokens (BOS exactly once; none if
    ``text`` already starts with the BOS text). ``add_special_tokens=False`` for chat-template text."""
    return _encode(tokenizer, [text], add_special_tokens)[0]


def move_trailing_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's ``_encode_pair`` first step: ``("Q: x \\n", " y") -> ("Q: x", " \\n y")``."""
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation


def prefix_token_id(tokenizer: Any) -> int:
    """The context of an empty context: BOS, else EOS (lm-eval's ``prefix_token_id``)."""
    for token in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token is not None:
            return int(token)
    raise T2TError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has neither BOS nor EOS; a causal LM "
                   "needs an end-of-sequence token to learn to stop")


def encode_pair(tokenizer: Any, context: str, continuation: str, add_special_tokens: bool = True,
                fallback: bool = True) -> tuple[list[int], list[int]]:
    """``(context_ids, continuation_ids)`` for one pair, cut as the module docstring says.

    ``fallback=False`` is lm-eval's rule exactly (the continuation is ``whole[len(context_ids):]`` even when
    the join token spans the cut, possibly empty); the default encodes the continuation alone then.
    """
    return _encode_pairs(tokenizer, [context], [continuation], add_special_tokens, fallback)[0]


def _encode_pairs(tokenizer: Any, contexts: Sequence[str], continuations: Sequence[str],
                  add_special_tokens: bool, fallback: bool = True) -> list[tuple[list[int], list[int]]]:
    moved = [move_trailing_whitespace(c, d) for c, d in zip(contexts, continuations, strict=True)]
    ctx_ids = _encode(tokenizer, [c for c, _ in moved], add_special_tokens)
    whole = _encode(tokenizer, [c + d for c, d in moved], add_special_tokens)
    alone_needed = []
    pairs: list[tuple[list[int], list[int]]] = []
    for i, ((ctx, _), c_ids, w_ids) in enumerate(zip(moved, ctx_ids, whole, strict=True)):
        if not ctx:  # lm-eval: the prefix token is the whole context
            pairs.append(([prefix_token_id(tokenizer)], []))
            alone_needed.append(i)
            continue
        cont = w_ids[len(c_ids):]
        if fallback and (w_ids[:len(c_ids)] != c_ids or not cont):
            alone_needed.append(i)
        pairs.append((c_ids, cont))
    if alone_needed:
        alone = tokenizer([moved[i][1] for i in alone_needed], add_special_tokens=False)["input_ids"]
        for i, ids in zip(alone_needed, alone, strict=True):
            pairs[i] = (pairs[i][0], list(ids))
    return pairs


def _texts(tokenizer: Any, inputs: Sequence[str], targets: Sequence[str], chat_template: bool,
           target_delimiter: str) -> tuple[list[str], list[str]]:
    if chat_template:
        pairs = [chat_pair(tokenizer, i, t) for i, t in zip(inputs, targets, strict=True)]
        return [p for p, _ in pairs], [c for _, c in pairs]
    return list(inputs), [target_delimiter + t for t in targets]


def tokenize_causal(tokenizer: Any, inputs: Sequence[str], targets: Sequence[str], max_input_len: int,
                    max_target_len: int, loss_on: str = "target", chat_template: bool = False,
                    target_delimiter: str = " ") -> list[CausalExample]:
    """Rendered pairs -> ``[{"input_ids": [...], "labels": [...]}, ...]`` (equal lengths), truncated to
    ``max_input_len + max_target_len`` tokens with the target's EOS kept."""
    if loss_on not in LOSS_ON:
        raise T2TError(f"--loss-on {loss_on!r} is unknown; choose 'target' (loss on the target and EOS) or "
                       "'all' (the whole sequence)")
    if max_target_len < 2 or max_input_len < 1:
        raise T2TError(f"--max-target-len {max_target_len} / --max-input-len {max_input_len}: a causal example "
                       "needs at least 1 input token and 2 target tokens (one for EOS)")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise T2TError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no EOS token; a causal LM "
                       "needs one to learn to stop: choose a model whose tokenizer defines eos_token")
    contexts, continuations = _texts(tokenizer, inputs, targets, chat_template, target_delimiter)
    bos = tokenizer.bos_token_id
    budget = max_input_len + max_target_len
    out: list[CausalExample] = []
    for prompt, target in _encode_pairs(tokenizer, contexts, continuations, add_special_tokens=not chat_template):
        if not (chat_template and eos in target):
            target = target + [eos]
        if len(target) > max_target_len:
            target = target[:max_target_len - 1] + [eos]
        room = budget - len(target)
        if len(prompt) > room:
            keep_bos = bos is not None and prompt[0] == bos
            prompt = ([bos] if keep_bos else []) + prompt[len(prompt) - room + keep_bos:]
        ids = prompt + target
        labels = list(ids) if loss_on == "all" else [IGNORE_INDEX] * len(prompt) + target
        labels[0] = IGNORE_INDEX
        out.append({"input_ids": ids, "labels": labels})
    return out


def _row_length(longest: int, fixed: int | None, multiple_of: int) -> int:
    if fixed is None:
        return -(-max(longest, 1) // multiple_of) * multiple_of
    if fixed < longest:
        raise T2TError(f"collate: a row has {longest} tokens but pad_to asks for {fixed}; pack with a row "
                       "length no larger than pad_to")
    return fixed


def _full(rows: Sequence[Sequence[int]], length: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def _labels(ex: CausalExample) -> list[int]:
    labels = list(ex["labels"])
    if len(labels) != len(ex["input_ids"]):
        raise T2TError(f"collate: a causal example has {len(ex['input_ids'])} ids but {len(labels)} labels; "
                       "tokenize it with t2t.data.causal.tokenize_causal")
    if labels:
        labels[0] = IGNORE_INDEX  # never predicted from inside the example (nor from the one before it)
    return labels


def collate_causal_padded(examples: Sequence[CausalExample], pad_id: int, pad_to: int | None = None,
                          multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """One example per row, right-padded: ``input_ids``, ``attention_mask`` (1 on real tokens), ``labels``
    (-100 on padding). Padding is placed by length, so ``pad_id`` may equal EOS."""
    ids = [list(ex["input_ids"]) for ex in examples]
    n = _row_length(max(map(len, ids), default=1), pad_to, multiple_of)
    return {"input_ids": _full(ids, n, pad_id), "attention_mask": _full([[1] * len(x) for x in ids], n, 0),
            "labels": _full([_labels(ex) for ex in examples], n, IGNORE_INDEX)}


def collate_causal_packed(rows: Sequence[Sequence[CausalExample]], pad_id: int, pad_to: int | None = None,
                          multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Packed rows (each a list of examples) -> ``input_ids``, ``segment_ids`` (1, 2, ...; 0 on padding),
    ``position_ids`` (from 0 in every example; padding counts on from 0 too) and ``labels``."""
    ids_rows, seg_rows, pos_rows, lab_rows = [], [], [], []
    for row in rows:
        ids, seg, pos, lab = [], [], [], []
        for k, ex in enumerate(row, start=1):
            ids += ex["input_ids"]
            seg += [k] * len(ex["input_ids"])
            pos += range(len(ex["input_ids"]))
            lab += _labels(ex)
        ids_rows.append(ids)
        seg_rows.append(seg)
        pos_rows.append(pos)
        lab_rows.append(lab)
    n = _row_length(max(map(len, ids_rows), default=1), pad_to, multiple_of)
    positions = [p + list(range(n - len(p))) for p in pos_rows]
    return {"input_ids": _full(ids_rows, n, pad_id), "segment_ids": _full(seg_rows, n, 0),
            "position_ids": _full(positions, n, 0), "labels": _full(lab_rows, n, IGNORE_INDEX)}
