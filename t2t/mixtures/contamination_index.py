"""The n-gram index of the contamination check, and which training tasks hit which of its n-grams.

:class:`GramIndex` holds the distinct 64-bit n-gram hashes of one side, sorted, and (when that side is the
held-out one) the row that holds each occurrence. :class:`HitTasks` records, while the training side streams
past an index, which training task hit which indexed n-gram: one ``int64`` per distinct (n-gram, task) pair
that collides, deduplicated batch by batch, so it grows with the overlap found, never with the rows streamed.
:func:`row_tasks` joins the two: for each dirty held-out row, the training tasks that share an n-gram with it.
This is what lm-evaluation-harness's decontamination and GPT-3's appendix C report per benchmark (which
overlaps exist); here it is per dirty row. (:mod:`t2t.mixtures.contamination` has the method.)
"""

from __future__ import annotations

import numpy as np

_LOW = np.int64(0xFFFFFFFF)  # a pair packs (index position << 32 | task number) into one int64


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
        """``owners[i]`` (non-decreasing) holds ``hashes[i]``; without owners, ``hashes`` must be distinct and
        sorted already (:func:`sorted_unique`) and only :meth:`positions` is asked."""
        if owners is None:
            self.grams, self.inverse, self.owners = hashes, np.empty(0, np.int64), np.empty(0, np.int64)
        else:
            self.grams, self.inverse = np.unique(hashes, return_inverse=True)
            self.owners = owners

    def __len__(self) -> int:
        return len(self.grams)

    @property
    def nbytes(self) -> int:
        return self.grams.nbytes + self.inverse.nbytes + self.owners.nbytes

    def positions(self, hashes: np.ndarray) -> np.ndarray:
        """Where each of ``hashes`` sits in :attr:`grams` (-1: not there)."""
        if not len(self.grams) or not len(hashes):
            return np.full(len(hashes), -1, np.int64)
        pos = np.searchsorted(self.grams, hashes)
        np.minimum(pos, len(self.grams) - 1, out=pos)
        return np.where(self.grams[pos] == hashes, pos, -1)

    def hit_occurrences(self, hit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the grams marked in ``hit`` (a bool array over :attr:`grams`): the owner, the gram position and
        the word offset in its row of every occurrence, in row order (owners are non-decreasing and a row's
        n-grams are in word order, :func:`t2t.mixtures.contamination.gram_hashes`)."""
        where = np.flatnonzero(hit[self.inverse])
        rows = self.owners[where]
        offsets = where - np.searchsorted(self.owners, rows, side="left")
        return rows, self.inverse[where], offsets


class HitTasks:
    """The distinct (indexed n-gram position, training task number) pairs seen while the training side streams."""

    def __init__(self) -> None:
        self._kept = np.empty(0, np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0

    def add(self, positions: np.ndarray, task: int) -> None:
        """Record that training task number ``task`` holds the n-grams at ``positions`` (-1 entries ignored)."""
        found = positions[positions >= 0]
        if not len(found):
            return
        self._pending.append(sorted_unique((found.astype(np.int64) << 32) | np.int64(task)))
        self._pending_size += len(self._pending[-1])
        if self._pending_size > max(len(self._kept), 1 << 16):  # merge: memory stays ~2x the distinct pairs
            self._merge()

    def _merge(self) -> None:
        if self._pending:
            self._kept = sorted_unique(np.concatenate([self._kept, *self._pending]))
            self._pending, self._pending_size = [], 0

    def pairs(self) -> np.ndarray:
        """The distinct pairs, sorted (so by position), packed as ``position << 32 | task``."""
        self._merge()
        return self._kept

    @property
    def nbytes(self) -> int:
        return self._kept.nbytes + sum(p.nbytes for p in self._pending)


def row_tasks(rows: np.ndarray, positions: np.ndarray, pairs: np.ndarray) -> dict[int, list[int]]:
    """Row -> the sorted training task numbers that hold one of its colliding n-grams, given each colliding
    occurrence's row and indexed position and the :meth:`HitTasks.pairs`. A vectorised join: each occurrence
    is repeated once per pair of its position."""
    pair_pos, pair_task = pairs >> 32, pairs & _LOW
    lo = np.searchsorted(pair_pos, positions, side="left")
    counts = np.searchsorted(pair_pos, positions, side="right") - lo
    starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    tasks = pair_task[np.arange(int(counts.sum()), dtype=np.int64) + starts]
    keys = sorted_unique((np.repeat(rows.astype(np.int64), counts) << 32) | tasks)
    out: dict[int, list[int]] = {}
    for key in keys.tolist():
        out.setdefault(key >> 32, []).append(key & 0xFFFFFFFF)
    return out
