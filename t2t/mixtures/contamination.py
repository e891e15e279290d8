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

Where a dirty row came from: the training tasks that hold one of its n-grams, and its first such n-gram
(:class:`DirtyRow`). With the held-out side indexed, the training stream records each distinct (indexed n-gram,
training task) pair that collides (:class:`t2t.mixtures.contamination_index.HitTasks`: memory grows with the
overlap, not the stream) and the dirty held-out rows are read again for their n-gram's words; with the
training side indexed, the n-gram's words are taken as the held-out rows stream and the training rows (the
smaller side then) are read again against the dirty rows' n-grams only.

A task whose rows cannot be opened (a hub dataset offline, a missing file) is listed with the reason
under ``unavailable`` (hub tasks are not retried one by one once the hub is unreachable:
:mod:`t2t.mixtures.contamination_hub`); a training task that could not be read makes the held-out counts a lower bound,
and the report says so. ``python -m t2t.mixture check NAME`` prints this report; ``python -m t2t.evaluate
--contamination`` scores the clean and dirty rows apart (:mod:`t2t.evaluation.report`).
"""

from __future__ import annotations

import string
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from t2t.errors import T2TError
from t2t.mixtures.contamination_hub import HubGate
from t2t.mixtures.contamination_index import GramIndex, HitTasks, row_tasks, sorted_unique
from t2t.mixtures.contamination_report import ContaminationReport, DirtyRow, TaskOverlap
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


# -- the check ------------------------------------------------------------------------------------

@dataclass
class _Side:
    """The rows of one side: per task, where to read them (task, split, limit)."""

    parts: list[tuple[Task, str, int | None]]
    rows: int


class _Reader:
    """Reads the rows of both sides for one check: notes what cannot be read in ``unavailable`` (the first
    reason kept) and skips hub tasks once the hub is known to be unreachable (:class:`HubGate`)."""

    def __init__(self) -> None:
        self.unavailable: dict[str, str] = {}  # "task (side)" -> why
        self.gate = HubGate()

    def _note(self, task: Task, label: str, why: str) -> None:
        self.unavailable.setdefault(f"{task.name} ({label})", why)

    def count(self, task: Task, split: str, label: str) -> int | None:
        """Rows of a split (None: noted as unavailable)."""
        skip = self.gate.skip_reason(task)
        if skip is not None:
            self._note(task, label, skip)
            return None
        try:
            return sources.num_rows(task, split)
        except T2TError as exc:
            self._note(task, label, self.gate.failed(task, exc))
            return None

    def part(self, task: Task, split: str, limit: int | None, label: str) -> Iterator[list[str]]:
        """The row texts of one task's split, a batch at a time (nothing if it cannot be read: noted)."""
        skip = self.gate.skip_reason(task)
        if skip is not None:
            self._note(task, label, skip)
            return
        try:
            yield from row_batches(task, split, limit)
        except T2TError as exc:
            self._note(task, label, self.gate.failed(task, exc))

    def batches(self, side: _Side, label: str) -> Iterator[tuple[int, list[str]]]:
        """(part number, row texts) of every batch of a side."""
        for k, (task, split, limit) in enumerate(side.parts):
            for texts in self.part(task, split, limit, label):
                yield k, texts


def _sides(mixture: Mixture, heldout: Sequence[Task], split: str, reader: _Reader) -> tuple[_Side, _Side]:
    held: list[tuple[Task, str, int | None]] = []
    held_rows = 0
    for task in heldout:
        try:
            s = eval_split(task, split)
        except T2TError as exc:
            reader.unavailable[f"{task.name} (held out)"] = str(exc)
            continue
        rows = reader.count(task, s, "held out")
        if rows is not None:
            held_rows += rows
            held.append((task, s, None))
    train = [(e.task, TRAIN_SPLIT, e.limit) for e in mixture.entries]
    return _Side(held, held_rows), _Side(train, sum(e.examples for e in mixture.entries))


@dataclass
class _Found:
    """What a stream found: per held-out part, row in part -> [training task numbers, first shared n-gram]."""

    dirty: dict[int, dict[int, list[Any]]]
    counts: list[int]
    shorts: list[int]
    train_grams: int = 0
    nbytes: int = 0


def check(mixture: Mixture, heldout: Sequence[Task] | None = None, *, n: int = DEFAULT_N,
          split: str = "validation", mode: str | None = None) -> ContaminationReport:
    """Which rows of each held-out task (its ``split``, else the next one evaluate would score) share an
    n-gram with a training row of ``mixture``, with which training tasks and the first such n-gram;
    ``heldout`` defaults to the mixture's held-out tasks. ``mode`` (one of :data:`MODES`) forces which side
    is indexed; by default the smaller one by rows."""
    if n < 1:
        raise T2TError(f"--ngram {n}: the n-gram size must be at least 1 (GPT-3 used 8 to 13)")
    if mode not in (None, *MODES):
        raise T2TError(f"contamination mode '{mode}': use one of {', '.join(MODES)}")
    start = time.perf_counter()
    heldout = list(mixture.heldout if heldout is None else heldout)
    reader = _Reader()
    held, train = _sides(mixture, heldout, split, reader)
    mode = mode or (MODES[0] if held.rows <= train.rows else MODES[1])
    found = (_stream_train if mode == MODES[0] else _stream_heldout)(held, train, n, reader)
    names = [e.name for e in mixture.entries]
    tasks = []
    for k, (task, s, _) in enumerate(held.parts):
        if f"{task.name} (held out)" in reader.unavailable:
            continue
        rows = sorted(found.dirty[k])
        origins = tuple(DirtyRow(i, tuple(names[j] for j in found.dirty[k][i][0]), found.dirty[k][i][1])
                        for i in rows)
        tasks.append(TaskOverlap(task.name, s, found.counts[k], tuple(rows), found.shorts[k], origins))
    return ContaminationReport(mixture.name, n, mode, tuple(tasks), tuple(names), train.rows, found.train_grams,
                               reader.unavailable, found.nbytes, time.perf_counter() - start)


def _read_heldout(held: _Side, n: int, reader: _Reader
                  ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, list[str]]]:
    """(part, first row of the batch in its part, n-gram hashes, their row within the batch, the texts)."""
    seen = [0] * len(held.parts)
    for k, texts in reader.batches(held, "held out"):
        h, o = gram_hashes(texts, n)
        yield k, seen[k], h, o, texts
        seen[k] += len(texts)


def _short_rows(owners: np.ndarray, rows: int) -> int:
    return int((np.bincount(owners, minlength=rows) == 0).sum())


def _stream_train(held: _Side, train: _Side, n: int, reader: _Reader) -> _Found:
    """Index the held-out n-grams (owner: a global row id), stream the training rows once, noting which
    training task hit which indexed n-gram; then read the dirty held-out rows again for their first n-gram."""
    hashes, owners, where = [], [], []  # where: (part, row in part) of each global row id
    found = _Found({k: {} for k in range(len(held.parts))}, [0] * len(held.parts), [0] * len(held.parts))
    for k, first, h, o, texts in _read_heldout(held, n, reader):
        hashes.append(h)
        owners.append(o + len(where))
        found.shorts[k] += _short_rows(o, len(texts))
        where.extend((k, first + i) for i in range(len(texts)))
        found.counts[k] += len(texts)
    index = GramIndex(np.concatenate(hashes or [np.empty(0, np.uint64)]),
                      np.concatenate(owners or [np.empty(0, np.int64)]))
    del hashes, owners
    hit, hits = np.zeros(len(index), bool), HitTasks()
    if len(index):
        for part, texts in reader.batches(train, "train"):
            h, _ = gram_hashes(texts, n)
            found.train_grams += len(h)
            pos = index.positions(h)
            hit[pos[pos >= 0]] = True
            hits.add(pos, part)
    rows, positions, offsets = index.hit_occurrences(hit)
    tasks = row_tasks(rows, positions, hits.pairs())
    dirty_rows, first = np.unique(rows, return_index=True)
    for row, off in zip(dirty_rows.tolist(), offsets[first].tolist(), strict=True):
        k, i = where[row]
        found.dirty[k][i] = [tasks[row], off]  # the word offset, made text below
    _first_ngrams(held, found.dirty, n, reader)
    found.nbytes = index.nbytes + hits.nbytes
    return found


def _first_ngrams(held: _Side, dirty: dict[int, dict[int, list[Any]]], n: int, reader: _Reader) -> None:
    """Replace each dirty row's word offset by its n-gram's text: the held-out tasks with dirty rows are read
    again (the smaller side; the index keeps hashes, not words)."""
    for k, rows in dirty.items():
        if not rows:
            continue
        task, split, limit = held.parts[k]
        first = 0
        for texts in reader.part(task, split, limit, "held out"):
            for i in range(first, first + len(texts)):
                if i in rows:
                    rows[i][1] = " ".join(words(texts[i - first])[rows[i][1]:rows[i][1] + n])
            first += len(texts)
        for detail in rows.values():  # a task that could not be read again (noted as unavailable)
            if not isinstance(detail[1], str):
                detail[1] = ""


def _stream_heldout(held: _Side, train: _Side, n: int, reader: _Reader) -> _Found:
    """Index the training n-grams (a sorted set, merged batch by batch), stream the held-out rows once; then
    stream the training rows again (the smaller side here) against the dirty rows' n-grams only, to name the
    training tasks they come from."""
    kept = np.empty(0, np.uint64)
    pending: list[np.ndarray] = []
    pending_size = train_grams = 0
    for _, texts in reader.batches(train, "train"):
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
    found = _Found({k: {} for k in range(len(held.parts))}, [0] * len(held.parts), [0] * len(held.parts),
                   train_grams, kept.nbytes)
    where: list[tuple[int, int]] = []  # (part, row in part) of each dirty row, by dirty row number
    occ_rows, occ_hashes = [], []  # per colliding n-gram occurrence: its dirty row number and hash
    for k, first, h, o, texts in _read_heldout(held, n, reader):
        found.shorts[k] += _short_rows(o, len(texts))
        found.counts[k] += len(texts)
        collide = np.flatnonzero(index.positions(h) >= 0)
        batch_rows, firsts = np.unique(o[collide], return_index=True)
        offsets = collide[firsts] - np.searchsorted(o, batch_rows)  # a row's n-grams are in word order
        occ_rows.append(np.searchsorted(batch_rows, o[collide]) + len(where))
        occ_hashes.append(h[collide])
        for r, off in zip(batch_rows.tolist(), offsets.tolist(), strict=True):
            found.dirty[k][first + r] = [[], " ".join(words(texts[r])[off:off + n])]
            where.append((k, first + r))
    if where:
        hashes = np.concatenate(occ_hashes)
        small = GramIndex(sorted_unique(hashes))
        hits = HitTasks()
        for part, texts in reader.batches(train, "train"):
            hits.add(small.positions(gram_hashes(texts, n)[0]), part)
        for row, parts in row_tasks(np.concatenate(occ_rows), small.positions(hashes), hits.pairs()).items():
            k, i = where[row]
            found.dirty[k][i][0] = parts
        found.nbytes += small.nbytes + hits.nbytes
    return found
