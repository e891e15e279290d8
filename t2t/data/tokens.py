"""Token ids for rendered (input, target) pairs: truncate the content, keep the end-of-sequence token.

Both sides become ``content[:budget] + [eos]`` (plus whatever the tokenizer puts around content, such as
BART's ``<s>``), so a truncated example still ends with EOS and the model still learns to stop::

    tokenize_example(tok, "a b c d e f", "yes", max_input_len=4, max_target_len=8)
    # -> {"input_ids": [▁a, ▁b, ▁c, </s>], "labels": [▁yes, </s>]}   (ids written as their tokens)

:func:`tokenize_batch` is the batched form for ``datasets.Dataset.map(batched=True)``. It is a plain
module-level function taking everything through ``fn_kwargs``, so ``datasets`` can hash it and reuse its
cache across runs::

    ds.map(tokenize_batch, batched=True, remove_columns=ds.column_names,
           fn_kwargs=dict(tokenizer=tok, max_input_len=512, max_target_len=128))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from t2t.errors import T2TError

__all__ = ["special_affixes", "tokenize_batch", "tokenize_example"]


def special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after content: ``([], [eos])`` for T5, ``([bos], [eos])``
    for BART. EOS is appended when the tokenizer adds nothing at the end, since a seq2seq target must end."""
    probe = "a b"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    prefix: list[int] = []
    suffix: list[int] = []
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            prefix, suffix = list(full[:start]), list(full[start + len(plain):])
            break
    eos = tokenizer.eos_token_id
    if not suffix or suffix[-1] != eos:
        if eos is None:
            raise T2TError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no EOS token; seq2seq "
                           "targets must end with one: choose a seq2seq model's tokenizer (T5, BART)")
        suffix = suffix + [eos]
    return prefix, suffix


def _content_budget(name: str, max_len: int, n_special: int) -> int:
    if max_len <= n_special:
        raise T2TError(f"{name}={max_len} leaves no room for text next to the {n_special} special token(s); "
                       f"set {name} to at least {n_special + 1}")
    return max_len - n_special


def tokenize_batch(
    batch: Mapping[str, Sequence[str]],
    tokenizer: Any,
    max_input_len: int,
    max_target_len: int,
    input_column: str = "input",
    target_column: str = "target",
) -> dict[str, list[list[int]]]:
    """``{input: [...], target: [...]}`` -> ``{input_ids: [...], labels: [...]}``, truncated, EOS kept."""
    for column in (input_column, target_column):
        if column not in batch:
            raise T2TError(f"tokenize: no column '{column}' in the examples (columns: {sorted(batch)}); "
                           "rendered examples need 'input' and 'target'")
    prefix, suffix = special_affixes(tokenizer)
    out: dict[str, list[list[int]]] = {}
    for key, column, name, max_len in (("input_ids", input_column, "max_input_len", max_input_len),
                                       ("labels", target_column, "max_target_len", max_target_len)):
        budget = _content_budget(name, max_len, len(prefix) + len(suffix))
        # Truncating inside the tokenizer avoids building (and warning about) over-long id lists.
        ids = tokenizer(list(batch[column]), add_special_tokens=False, truncation=True,
                        max_length=budget)["input_ids"]
        out[key] = [prefix + list(x[:budget]) + suffix for x in ids]
    return out


def tokenize_example(tokenizer: Any, input_text: str, target_text: str, max_input_len: int,
                     max_target_len: int) -> dict[str, list[int]]:
    """One pair: ``{"input_ids": [...], "labels": [...]}``, each at most its max length and ending in EOS."""
    out = tokenize_batch({"input": [input_text], "target": [target_text]}, tokenizer,
                         max_input_len, max_target_len)
    return {"input_ids": out["input_ids"][0], "labels": out["labels"][0]}
