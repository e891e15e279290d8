"""Tokenized examples -> batches: packed rows with segment ids, padded batches, token-budget batches.

An example is ``{"input_ids": [...], "labels": [...]}`` (see :mod:`t2t.data.tokens`). Packing puts several
examples side by side in one row, on both the encoder side and the decoder side, so that a row wastes
little on padding. Segment ids say which example each position belongs to (1, 2, ...; 0 is padding);
:func:`t2t.modeling.loss.seq2seq_loss_sum` turns them into block-diagonal attention masks, which makes a packed
row compute exactly what the examples would compute alone.

Worked example (seqio style). Three examples, rows bounded by 8 encoder and 5 decoder tokens::

    examples = [{"input_ids": [8, 3, 1],       "labels": [4, 1]},
                {"input_ids": [5, 6, 7, 2, 1], "labels": [9, 9, 1]},
                {"input_ids": [3, 1],          "labels": [7, 1]}]
    pack(examples, max_input_len=8, max_target_len=5)
    # -> [[0, 1], [2]]      first-fit decreasing: 1 opens row 0, 0 fits beside it, 2 does not (10 > 8)

    collate_packed([[examples[0], examples[1]], [examples[2]]])
    # input_ids           = [[8, 3, 1, 5, 6, 7, 2, 1], [3, 1, 0, 0, 0, 0, 0, 0]]
    # encoder_segment_ids = [[1, 1, 1, 2, 2, 2, 2, 2], [1, 1, 0, 0, 0, 0, 0, 0]]
    # labels              = [[4, 1, 9, 9, 1],          [7, 1, -100, -100, -100]]
    # decoder_input_ids   = [[0, 4, 0, 9, 9],          [0, 7, 0, 0, 0]]
    # decoder_segment_ids = [[1, 1, 2, 2, 2],          [1, 1, 0, 0, 0]]

Each segment's decoder input is its own labels shifted right behind the start token (0 for T5), so no
segment sees the previous segment's tokens. The padded form of the same examples (``collate_padded``)
is what ``packing=False`` trains on and what the parity tests compare against.

:func:`token_budget_batches` is the other way to waste little: sort by length, then cut batches so that
``batch size x (longest input + longest target)`` stays within a token budget.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch

from t2t.errors import T2TError

__all__ = [
    "STRATEGIES",
    "collate_packed",
    "collate_padded",
    "iter_packed_rows",
    "pack",
    "pack_lengths",
    "token_budget_batches",
]

Example = Mapping[str, Sequence[int]]
IGNORE_INDEX = -100
STRATEGIES = ("first_fit_decreasing", "greedy")


def _lengths(ex: Example) -> tuple[int, int]:
    return len(ex["input_ids"]), len(ex["labels"])


def pack(examples: Sequence[Example], max_input_len: int, max_target_len: int,
         strategy: str = "first_fit_decreasing") -> list[list[int]]:
    """Group example indices into rows whose inputs fit ``max_input_len`` and targets ``max_target_len``.

    ``first_fit_decreasing`` (default) places the longest examples first, each into the first row with
    room on both sides; ``greedy`` keeps stream order and starts a new row when the next one does not fit
    (seqio's behaviour). Both are deterministic; indices within a row are in ascending order.
    """
    if max_input_len < 1 or max_target_len < 1:
        raise T2TError(f"packed row lengths must be positive, got max_input_len={max_input_len}, "
                       f"max_target_len={max_target_len}")
    lengths = [_lengths(ex) for ex in examples]
    for i, (n_in, n_out) in enumerate(lengths):
        if n_in > max_input_len or n_out > max_target_len or n_in == 0 or n_out == 0:
            raise T2TError(f"example {i} has {n_in} input / {n_out} target tokens, which does not fit a "
                           f"packed row of {max_input_len} / {max_target_len}: tokenize with "
                           f"max_input_len <= {max_input_len} and max_target_len <= {max_target_len} "
                           "(and non-empty text)")
    return pack_lengths(lengths, (max_input_len, max_target_len), strategy)


def pack_lengths(lengths: Sequence[Sequence[int]], bounds: Sequence[int],
                 strategy: str = "first_fit_decreasing") -> list[list[int]]:
    """The bin-packing behind :func:`pack`, over any number of sides: ``lengths[i][k]`` tokens of example
    ``i`` on side ``k`` must fit ``bounds[k]``. Two sides for seq2seq (encoder, decoder), one for a causal
    LM's single sequence (:mod:`t2t.data.causal`). Lengths are assumed to fit (the callers check)."""
    if strategy not in STRATEGIES:
        raise T2TError(f"packing strategy '{strategy}' is unknown; choose one of {', '.join(STRATEGIES)}")
    rows: list[list[int]] = []
    room: list[list[int]] = []  # room left on each side, per row

    def fits(r: int, need: Sequence[int]) -> bool:
        return all(n <= left for n, left in zip(need, room[r], strict=True))

    def place(r: int, i: int) -> None:
        if r == len(rows):
            rows.append([])
            room.append(list(bounds))
        rows[r].append(i)
        room[r] = [left - n for left, n in zip(room[r], lengths[i], strict=True)]

    if strategy == "greedy":
        for i, need in enumerate(lengths):
            place(len(rows) - 1 if rows and fits(len(rows) - 1, need) else len(rows), i)
        return rows
    # Larger share of any bound first; index breaks ties so the result never depends on sort stability.
    order = sorted(range(len(lengths)),
                   key=lambda i: (-max(n / b for n, b in zip(lengths[i], bounds, strict=True)),
                                  *(-n for n in lengths[i]), i))
    for i in order:
        place(next((r for r in range(len(rows)) if fits(r, lengths[i])), len(rows)), i)
    return [sorted(row) for row in rows]


def iter_packed_rows(examples: Iterable[Example], max_input_len: int, max_target_len: int,
                     buffer_size: int = 1024,
                     strategy: str = "first_fit_decreasing") -> Iterator[list[Example]]:
    """Pack a stream: collect ``buffer_size`` examples, pack them, yield their rows (lists of examples)."""
    if buffer_size < 1:
        raise T2TError(f"packing buffer_size must be at least 1, got {buffer_size}")
    buffer: list[Example] = []
    for ex in examples:
        buffer.append(ex)
        if len(buffer) == buffer_size:
            for row in pack(buffer, max_input_len, max_target_len, strategy):
                yield [buffer[i] for i in row]
            buffer = []
    if buffer:
        for row in pack(buffer, max_input_len, max_target_len, strategy):
            yield [buffer[i] for i in row]


def _round_up(n: int, multiple: int) -> int:
    return -(-max(n, 1) // multiple) * multiple


def _target_len(longest: int, fixed: int | None, multiple_of: int, what: str) -> int:
    if fixed is None:
        return _round_up(longest, multiple_of)
    if fixed < longest:
        raise T2TError(f"collate: a row has {longest} {what} tokens but pad_to asks for {fixed}; "
                       "pack with bounds no larger than pad_to")
    return fixed


def collate_packed(rows: Sequence[Sequence[Example]], pad_id: int = 0, decoder_start_id: int = 0,
                   pad_to: tuple[int, int] | None = None, multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Packed rows (each a list of examples) -> tensors, padded to the longest row or to ``pad_to``.

    Keys: ``input_ids``, ``encoder_segment_ids``, ``decoder_input_ids``, ``decoder_segment_ids``,
    ``labels`` (all ``[rows, length]`` int64; labels are -100 on padding, segment ids 0).
    """
    enc_rows: list[list[int]] = []
    enc_segs: list[list[int]] = []
    dec_rows: list[list[int]] = []
    dec_segs: list[list[int]] = []
    lab_rows: list[list[int]] = []
    for row in rows:
        enc, eseg, dec, dseg, lab = [], [], [], [], []
        for seg, ex in enumerate(row, start=1):
            ids, labels = list(ex["input_ids"]), list(ex["labels"])
            enc += ids
            eseg += [seg] * len(ids)
            dec += [decoder_start_id] + labels[:-1]
            dseg += [seg] * len(labels)
            lab += labels
        enc_rows.append(enc)
        enc_segs.append(eseg)
        dec_rows.append(dec)
        dec_segs.append(dseg)
        lab_rows.append(lab)
    n_enc = _target_len(max(map(len, enc_rows), default=1), pad_to and pad_to[0], multiple_of, "input")
    n_dec = _target_len(max(map(len, dec_rows), default=1), pad_to and pad_to[1], multiple_of, "target")
    return {
        "input_ids": _pad(enc_rows, n_enc, pad_id),
        "encoder_segment_ids": _pad(enc_segs, n_enc, 0),
        "decoder_input_ids": _pad(dec_rows, n_dec, pad_id),
        "decoder_segment_ids": _pad(dec_segs, n_dec, 0),
        "labels": _pad(lab_rows, n_dec, IGNORE_INDEX),
    }


def collate_padded(examples: Sequence[Example], pad_id: int = 0, decoder_start_id: int = 0,
                   pad_to: tuple[int, int] | None = None, multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """One example per row, right-padded: ``input_ids``, ``attention_mask``, ``decoder_input_ids``,
    ``labels`` (-100 on padding). Works for any seq2seq model's ordinary forward."""
    inputs = [list(ex["input_ids"]) for ex in examples]
    labels = [list(ex["labels"]) for ex in examples]
    n_enc = _target_len(max(map(len, inputs), default=1), pad_to and pad_to[0], multiple_of, "input")
    n_dec = _target_len(max(map(len, labels), default=1), pad_to and pad_to[1], multiple_of, "target")
    return {
        "input_ids": _pad(inputs, n_enc, pad_id),
        "attention_mask": _pad([[1] * len(x) for x in inputs], n_enc, 0),
        "decoder_input_ids": _pad([[decoder_start_id] + y[:-1] for y in labels], n_dec, pad_id),
        "labels": _pad(labels, n_dec, IGNORE_INDEX),
    }


def _pad(rows: Sequence[Sequence[int]], length: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def token_budget_batches(examples: Sequence[Example], max_tokens: int, max_batch_size: int | None = None,
                         seed: int | None = None,
                         lengths: Sequence[Sequence[int]] | None = None) -> list[list[int]]:
    """Length-grouped batches of example indices, each costing at most ``max_tokens`` padded tokens.

    Examples are sorted by (input length, target length); a batch grows while
    ``len(batch) * (longest input + longest target) <= max_tokens`` (and ``max_batch_size``). An example
    longer than the budget gets a batch of its own. With ``seed`` the batch order is shuffled (the
    grouping is not), so training does not see lengths in sorted order. ``lengths`` replaces the
    (input, target) lengths, e.g. ``[(len(ids),) ...]`` for a causal LM's one sequence per example.
    """
    if max_tokens < 1:
        raise T2TError(f"token budget must be positive, got max_tokens={max_tokens}")
    if max_batch_size is not None and max_batch_size < 1:
        raise T2TError(f"max_batch_size must be at least 1, got {max_batch_size}")
    sizes = [tuple(n) for n in lengths] if lengths is not None else [_lengths(ex) for ex in examples]
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    batches: list[list[int]] = []
    batch: list[int] = []
    longest: tuple[int, ...] = ()
    for i in order:
        grown = tuple(max(a, b) for a, b in zip(longest, sizes[i], strict=True)) if batch else sizes[i]
        full = max_batch_size is not None and len(batch) >= max_batch_size
        if batch and (full or (len(batch) + 1) * sum(grown) > max_tokens):
            batches.append(batch)
            batch, grown = [], sizes[i]
        batch.append(i)
        longest = grown
    if batch:
        batches.append(batch)
    if seed is not None:
        random.Random(seed).shuffle(batches)
    return batches
