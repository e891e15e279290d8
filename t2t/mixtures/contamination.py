"""Test-set contamination: which held-out rows share an n-gram with what a mixture trains on.

The method is GPT-3's benchmark overlap study (Brown et al. 2020, "Language Models are Few-Shot
Learners", appendix C, "Details of Test Set Contamination Studies"):

* a *gram* is "a lowercase, whitespace delimited word with no punctuation": text is lowercased, ASCII
  punctuation (``string.punctuation``) is deleted (``don't`` -> ``dont``) and the rest split on whitespace;
  lm-evaluation-harness 0.4's ``Janitor.normalize_string`` + ``word_ngrams``
  (``lm_eval/decontamination/janitor.py``) do the same, and ``tests/mixtures/test_contamination.py`` checks
  that the n-grams here equal theirs. (lm-eval lowercases ASCII letters only; here ``str.lower`` lowercases
  every letter, so the two differ only on non-ASCII capitals.)
* "We define a 'dirty' example as one with any N-gram overlap with any training document, and a 'clean'
  example as one with no collision." GPT-3 picked N per benchmark (the 5th percentile example length in
  words, at least 8 and at most 13); here N is one number, 13 by default (``--ngram``), GPT-3's maximum and
  the size its training-set filter and lm-eval's decontamination use.
* A row shorter than N words has no N-gram, so it can never be dirty: GPT-3 "ignored" examples shorter
  than its N in the same way. Such rows count as clean and are reported apart (``short``): a task made of
  short rows is *unchecked*, not shown clean.
* GPT-3's training-set filter also ignored 13-grams found in more than 10 training documents (common
  phrases); that rule belongs to filtering a web corpus, not to this report, and is not applied.

What is compared. Both sides are a row's *raw text*: every string value of the row, in field order (lists
and mappings flattened; numbers, booleans and nulls skipped: labels and ids, not text), joined by spaces.
GPT-3 and lm-eval check a benchmark example's own text, never the prompt it is evaluated with (lm-eval's
``doc_to_decontamination_query`` is a task's raw fields); the training side is also taken raw rather than
rendered through its templates, because template wording is written by hand, shared between tasks and
would collide with itself (every row of two tasks that share a 13-word instruction would be dirty), while
the rows are where held-out data can leak in. What this misses: text a template computes rather than
copies (``{{ a + b }}``); what it overcounts: fields of a training row that no template shows. A row is
dirty when one of its n-grams is in *any* training task's train split (after the task's ``limit`` and the
mixture's ``train_limit``: the rows the stream can draw).

Streaming and memory. Each n-gram is hashed to 64 bits (Python's ``hash`` of each word, combined by a
polynomial rolling hash in numpy; a false match needs a 64-bit collision: about 1e-5 for 1e6 held-out
against 1e8 training n-grams). The smaller side by rows (held-out rows of the split vs the mixture's
training rows) is indexed as a sorted ``uint64`` array (8 bytes per distinct n-gram, plus 8 for each
row that holds it), and the other side is read once, a batch of rows at a time, and probed with
``np.searchsorted``: memory is the smaller side's n-grams plus one batch. Usually the held-out side is
indexed and the training side streamed (``mode`` ``heldout-indexed``); otherwise the training n-grams are
the index (``train-indexed``, merged batch by batch) and the held-out rows are probed.

A task whose rows cannot be opened (a hub dataset offline, a missing file) is listed with the reason
under ``unavailable``; a training task that could not be read makes the held-out counts a lower bound,
and the report says so. ``python -m t2t.mixture check NAME`` prints this report; ``python -m t2t.evaluate
--contamination`` scores the clean and dirty rows apart (:mod:`t2t.evaluation.report`).
"""

from __future__ import annotations

import string
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from t2t.errors import T2TError
from t2t.mixtures.resolve import Mixture
from t2t.mixtures.spec import TRAIN_SPLIT
from t2t.tasks import sources
from t2t.tasks.task import SPLITS, Task

DEFAULT_N = 13
MODES = ("heldout-indexed", "train-indexed")
BATCH_ROWS = 2000  # rows hashed together: one numpy pass each, memory of one batch
_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)
_BASE = np.uint64(0x100000001B3)  # the FNV-1 64-bit prime: odd, so the rolling hash loses no bits


# -- text and n-grams -----------------------------------------------------------------------------

def words(text: str) -> list[str]:
    """GPT-3's grams: lowercased, ASCII punctuation deleted, split on whitespace."""
    return text.lower().translate(_DELETE_PUNCTUATION).split()


def ngrams(text: str, n: int = DEFAULT_N) -> list[str]:
    """The word n-grams of ``text`` as strings (what lm-eval's ``word_ngrams`` yields on normalised text)."""
    w = words(text)
    return [" ".join(w[i:i + n]) for i in range(len(w) - n + 1)]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def row_text(row: Mapping[str, Any]) -> str:
    """A row's raw text: its string values in field order (nested ones flattened), joined by spaces."""
    return " ".join(_strings(row))


def gram_hashes(texts: Sequence[str], n: int = DEFAULT_N) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit hash of every n-gram of each text (``uint64``) and the position in ``texts`` of the text
    each comes from (``int64``); a text of fewer than n words gives none. One numpy pass for the batch:
    word hashes are concatenated and windows that cross two texts are dropped."""
    per_text = [words(t) for t in texts]
    lengths = np.fromiter(map(len, per_text), dtype=np.int64, count=len(per_text))
    total = int(lengths.sum())
    m = total - n + 1
    if m <= 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    h = np.fromiter(map(hash, chain.from_iterable(per_text)), dtype=np.int64, count=total).view(np.uint64)
    acc = h[:m].copy()
    for k in range(1, n):  # acc = sum h[i + k] * B ** (n - 1 - k), wrapping at 2 ** 64
        acc *= _BASE
        acc += h[k:k + m]
    owner = np.repeat(np.arange(len(per_text), dtype=np.int64), lengths)
    inside = owner[:m] == owner[n - 1:]
    return acc[inside], owner[:m][inside]


# -- reading rows ---------------------------------------------------------------------------------

def eval_split(task: Task, wanted: str) -> str:
    """The split evaluate scores: ``wanted`` if the task has it, else validation, test, train (the rule of
    :func:`t2t.evaluation.prompts.pick_split`, which sits above this package)."""
    if wanted in task.splits:
        return wanted
    for split in SPLITS[1:] + SPLITS[:1]:
        if split in task.splits:
            return split
    raise T2TError(f"task '{task.name}' has no split to check (splits: {', '.join(task.splits)}); see the "
                   f"'splits' field of {task.path}")


def row_batches(task: Task, split: str, limit: int | None = None, size: int = BATCH_ROWS) -> Iterator[list[str]]:
    """The raw texts of a split's rows (after the task's ``limit`` and ``limit``), ``size`` rows at a time.
    Local JSON Lines files are read row by row; other sources through ``datasets`` (memory-mapped Arrow)."""
    lazy = sources.lazy_rows(task, split, limit)
    if lazy is not None:
        for start in range(0, len(lazy), size):
            yield [row_text(r) for r in lazy[start:start + size]]
        return
    ds = sources.load_rows(task, split)
    if limit is not None and len(ds) > limit:
        ds = ds.select(range(limit))
    for batch in ds.iter(batch_size=size):
        columns = list(batch.values())
        count = len(columns[0]) if columns else 0
        yield [" ".join(s for column in columns for s in _strings(column[i])) for i in range(count)]


# -- the index ------------------------------------------------------------------------------------

def sorted_unique(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted: a sort and a neighbour comparison (numpy 2's ``np.unique`` takes a hash
    table path on integers that measured several times slower here)."""
    out = np.sort(values)
    if len(out):
        out = out[np.concatenate(([True], out[1:] != out[:-1]))]
    return out


class GramIndex:
    """The distinct n-gram hashes of one side (sorted) and, per hash occurrence, the row that holds it."""

    def __init__(self, hashes: np.ndarray, owners: np.ndarray | None = None) -> None:
        """``owners[i]`` holds ``hashes[i]``; without owners, ``hashes`` must be distinct and sorted already
        (:func:`sorted_unique`) and only :meth:`positions` is asked."""
        if owners is None:
            self.grams, self._inverse, self._owners = hashes, np.empty(0, np.int64), np.empty(0, np.int64)
        else:
            self.grams, self._inverse = np.unique(hashes, return_inverse=True)
            self._owners = owners

    def __len__(self) -> int:
        return len(self.grams)

    @property
    def nbytes(self) -> int:
        return self.grams.nbytes + self._inverse.nbytes + self._owners.nbytes

    def positions(self, hashes: np.ndarray) -> np.ndarray:
        """Where each of ``hashes`` sits in :attr:`grams` (-1: not there)."""
        if not len(self.grams) or not len(hashes):
            return np.full(len(hashes), -1, np.int64)
        pos = np.searchsorted(self.grams, hashes)
        np.minimum(pos, len(self.grams) - 1, out=pos)
        return np.where(self.grams[pos] == hashes, pos, -1)

    def owners_of(self, hit: np.ndarray) -> np.ndarray:
        """The distinct owners of the grams marked in ``hit`` (a bool array over :attr:`grams`)."""
        return np.unique(self._owners[hit[self._inverse]])


# -- the report -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskOverlap:
    """One held-out task: its checked rows, the dirty ones (row indices of the split) and the short ones."""

    task: str
    split: str
    rows: int
    dirty: tuple[int, ...]
    short: int  # rows of fewer than n words: no n-gram, never dirty

    @property
    def percent(self) -> float:
        return 100.0 * len(self.dirty) / self.rows if self.rows else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "split": self.split, "rows": self.rows, "dirty": len(self.dirty),
                "clean": self.rows - len(self.dirty), "percent": round(self.percent, 2), "short": self.short,
                "dirty_rows": list(self.dirty)}


@dataclass(frozen=True)
class ContaminationReport:
    mixture: str
    n: int
    mode: str
    tasks: tuple[TaskOverlap, ...]
    train_tasks: tuple[str, ...]
    train_rows: int
    train_ngrams: int
    unavailable: dict[str, str] = field(default_factory=dict)  # "task (side)" -> why it could not be read
    index_bytes: int = 0
    seconds: float = 0.0

    def dirty(self) -> dict[str, frozenset[int]]:
        """held-out task -> its dirty row indices (of the checked split)."""
        return {t.task: frozenset(t.dirty) for t in self.tasks}

    @property
    def complete(self) -> bool:
        """False when a training task could not be read: the dirty counts are then a lower bound."""
        return not any(k.endswith("(train)") for k in self.unavailable)

    def as_dict(self) -> dict[str, Any]:
        return {"mixture": self.mixture, "n": self.n, "mode": self.mode, "complete": self.complete,
                "normalisation": "lowercase, ASCII punctuation deleted, whitespace words (GPT-3 appendix C)",
                "train_tasks": list(self.train_tasks), "train_rows": self.train_rows,
                "train_ngrams": self.train_ngrams, "tasks": [t.as_dict() for t in self.tasks],
                "unavailable": dict(self.unavailable), "index_bytes": self.index_bytes,
                "seconds": round(self.seconds, 3)}

    def text(self) -> str:
        """The report as the command prints it: one line per held-out task, dirty rows as k/n and %."""
        lines = [f"mixture {self.mixture}: {self.n}-gram overlap of held-out rows with "
                 f"{self.train_rows} training rows of {len(self.train_tasks)} tasks"]
        width = max([len(t.task) for t in self.tasks] + [4])
        lines.append(f"{'task':<{width}}  {'split':<10}  {'dirty':>13}  {'%':>6}  short (<{self.n} words)")
        for t in self.tasks:
            lines.append(f"{t.task:<{width}}  {t.split:<10}  {f'{len(t.dirty)}/{t.rows}':>13}  "
                         f"{t.percent:>5.1f}%  {t.short}")
        for name, why in self.unavailable.items():
            lines.append(f"not checked: {name}: {why}")
        if not self.complete:
            lines.append("some training tasks could not be read: the dirty counts are lower bounds")
        return "\n".join(lines)


# -- the check ------------------------------------------------------------------------------------

@dataclass
class _Side:
    """The rows of one side: per task, where to read them (task, split, limit)."""

    parts: list[tuple[Task, str, int | None]]
    rows: int


def _sides(mixture: Mixture, heldout: Sequence[Task], split: str, unavailable: dict[str, str]
           ) -> tuple[_Side, _Side]:
    held: list[tuple[Task, str, int | None]] = []
    held_rows = 0
    for task in heldout:
        try:
            s = eval_split(task, split)
            held_rows += sources.num_rows(task, s)
        except T2TError as exc:
            unavailable[f"{task.name} (held out)"] = str(exc)
            continue
        held.append((task, s, None))
    train = [(e.task, TRAIN_SPLIT, e.limit) for e in mixture.entries]
    return _Side(held, held_rows), _Side(train, sum(e.examples for e in mixture.entries))


def _batches(side: _Side, unavailable: dict[str, str], label: str
             ) -> Iterator[tuple[int, list[str]]]:
    """(part number, row texts) of every batch of a side; a task that cannot be read is noted and skipped."""
    for k, (task, split, limit) in enumerate(side.parts):
        try:
            for texts in row_batches(task, split, limit):
                yield k, texts
        except T2TError as exc:
            unavailable[f"{task.name} ({label})"] = str(exc)


def check(mixture: Mixture, heldout: Sequence[Task] | None = None, *, n: int = DEFAULT_N,
          split: str = "validation", mode: str | None = None) -> ContaminationReport:
    """Which rows of each held-out task (its ``split``, else the next one evaluate would score) share an
    n-gram with a training row of ``mixture``; ``heldout`` defaults to the mixture's held-out tasks.
    ``mode`` (one of :data:`MODES`) forces which side is indexed; by default the smaller one by rows."""
    if n < 1:
        raise T2TError(f"--ngram {n}: the n-gram size must be at least 1 (GPT-3 used 8 to 13)")
    if mode not in (None, *MODES):
        raise T2TError(f"contamination mode '{mode}': use one of {', '.join(MODES)}")
    start = time.perf_counter()
    heldout = list(mixture.heldout if heldout is None else heldout)
    unavailable: dict[str, str] = {}
    held, train = _sides(mixture, heldout, split, unavailable)
    mode = mode or (MODES[0] if held.rows <= train.rows else MODES[1])
    if mode == MODES[0]:
        dirty, counts, shorts, train_grams, nbytes = _stream_train(held, train, n, unavailable)
    else:
        dirty, counts, shorts, train_grams, nbytes = _stream_heldout(held, train, n, unavailable)
    tasks = tuple(TaskOverlap(task.name, s, counts[k], tuple(sorted(dirty[k])), shorts[k])
                  for k, (task, s, _) in enumerate(held.parts) if f"{task.name} (held out)" not in unavailable)
    return ContaminationReport(mixture.name, n, mode, tasks, tuple(e.name for e in mixture.entries), train.rows,
                               train_grams, unavailable, nbytes, time.perf_counter() - start)


def _read_heldout(held: _Side, n: int, unavailable: dict[str, str]) -> Iterator[tuple[int, int, np.ndarray,
                                                                                        np.ndarray, int]]:
    """(part, first row of the batch in its part, n-gram hashes, their row within the batch, batch rows)."""
    seen = [0] * len(held.parts)
    for k, texts in _batches(held, unavailable, "held out"):
        h, o = gram_hashes(texts, n)
        yield k, seen[k], h, o, len(texts)
        seen[k] += len(texts)


def _stream_train(held: _Side, train: _Side, n: int, unavailable: dict[str, str]
                  ) -> tuple[dict[int, set[int]], list[int], list[int], int, int]:
    """Index the held-out n-grams (owner: a global row id), stream the training rows once."""
    hashes, owners, where = [], [], []  # where: (part, row in part) of each global row id
    counts, shorts = [0] * len(held.parts), [0] * len(held.parts)
    for k, first, h, o, rows in _read_heldout(held, n, unavailable):
        hashes.append(h)
        owners.append(o + len(where))
        shorts[k] += int((np.bincount(o, minlength=rows) == 0).sum())
        where.extend((k, first + i) for i in range(rows))
        counts[k] += rows
    index = GramIndex(np.concatenate(hashes or [np.empty(0, np.uint64)]),
                      np.concatenate(owners or [np.empty(0, np.int64)]))
    hit = np.zeros(len(index), bool)
    train_grams = 0
    if len(index):
        for _, texts in _batches(train, unavailable, "train"):
            h, _ = gram_hashes(texts, n)
            train_grams += len(h)
            pos = index.positions(h)
            hit[pos[pos >= 0]] = True
    dirty: dict[int, set[int]] = {k: set() for k in range(len(held.parts))}
    for row in index.owners_of(hit).tolist():
        k, i = where[row]
        dirty[k].add(i)
    return dirty, counts, shorts, train_grams, index.nbytes


def _stream_heldout(held: _Side, train: _Side, n: int, unavailable: dict[str, str]
                    ) -> tuple[dict[int, set[int]], list[int], list[int], int, int]:
    """Index the training n-grams (a sorted set, merged batch by batch), stream the held-out rows once."""
    kept = np.empty(0, np.uint64)
    pending: list[np.ndarray] = []
    pending_size = train_grams = 0
    for _, texts in _batches(train, unavailable, "train"):
        h, _ = gram_hashes(texts, n)
        train_grams += len(h)
        pending.append(sorted_unique(h))
        pending_size += len(pending[-1])
        if pending_size > max(len(kept), 1 << 20):  # merge when the batches outgrow the set: memory ~2x the set
            kept = sorted_unique(np.concatenate([kept, *pending]))
            pending, pending_size = [], 0
    if pending:
        kept = sorted_unique(np.concatenate([kept, *pending]))
    index = GramIndex(kept)
    counts, shorts = [0] * len(held.parts), [0] * len(held.parts)
    dirty: dict[int, set[int]] = {k: set() for k in range(len(held.parts))}
    for k, first, h, o, rows in _read_heldout(held, n, unavailable):
        shorts[k] += int((np.bincount(o, minlength=rows) == 0).sum())
        counts[k] += rows
        dirty[k].update((first + o[index.positions(h) >= 0]).tolist())
    return dirty, counts, shorts, train_grams, kept.nbytes
