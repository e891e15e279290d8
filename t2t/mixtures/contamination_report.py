"""The contamination report: per held-out task its dirty rows, and per dirty row where it came from.

:func:`t2t.mixtures.contamination.check` fills it; ``python -m t2t.mixture check`` prints :meth:`text` or
:meth:`as_dict` (``--json``); ``python -m t2t.evaluate --contamination`` keeps :meth:`as_dict` in results.json.
Where a row came from: the training tasks whose rows share an n-gram with it, and the first such n-gram of
the row (its normalised words), as lm-evaluation-harness's decontamination and GPT-3 (appendix C) report
which overlaps a benchmark has. The training side is compared as raw rows, not rendered through templates
(see :mod:`t2t.mixtures.contamination`), so an overlap names a task, never a template.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TOP_TASKS = 3  # training tasks named per held-out task in the text summary


@dataclass(frozen=True)
class DirtyRow:
    """One dirty held-out row: the training tasks that share an n-gram with it, and its first shared n-gram."""

    row: int
    train_tasks: tuple[str, ...]
    ngram: str  # normalised words (lowercase, no punctuation), as compared

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "train_tasks": list(self.train_tasks), "ngram": self.ngram}


@dataclass(frozen=True)
class TaskOverlap:
    """One held-out task: its checked rows, the dirty ones (row indices of the split) and the short ones."""

    task: str
    split: str
    rows: int
    dirty: tuple[int, ...]
    short: int  # rows of fewer than n words: no n-gram, never dirty
    origins: tuple[DirtyRow, ...] = ()  # one per dirty row, in the same order

    @property
    def percent(self) -> float:
        return 100.0 * len(self.dirty) / self.rows if self.rows else 0.0

    def by_train_task(self) -> dict[str, int]:
        """Training task -> how many of this task's dirty rows it overlaps, most first (then by name)."""
        counts = Counter(name for o in self.origins for name in o.train_tasks)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "split": self.split, "rows": self.rows, "dirty": len(self.dirty),
                "clean": self.rows - len(self.dirty), "percent": round(self.percent, 2), "short": self.short,
                "dirty_rows": list(self.dirty), "dirty_by_train_task": self.by_train_task(),
                "dirty_origins": [o.as_dict() for o in self.origins]}


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
    index_bytes: int = 0  # the n-gram index and the (n-gram, training task) pairs of what collided
    seconds: float = 0.0

    def dirty(self) -> dict[str, frozenset[int]]:
        """held-out task -> its dirty row indices (of the checked split)."""
        return {t.task: frozenset(t.dirty) for t in self.tasks}

    @property
    def complete(self) -> bool:
        """False when a training task could not be read: the dirty counts are then a lower bound."""
        return not any(k.endswith("(train)") for k in self.unavailable)

    def by_train_task(self) -> dict[str, int]:
        """Training task -> dirty held-out rows (of all held-out tasks) it overlaps, most first."""
        counts: Counter[str] = Counter()
        for t in self.tasks:
            counts.update(t.by_train_task())
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def as_dict(self) -> dict[str, Any]:
        return {"mixture": self.mixture, "n": self.n, "mode": self.mode, "complete": self.complete,
                "normalisation": "lowercase, ASCII punctuation deleted, whitespace words (GPT-3 appendix C)",
                "train_tasks": list(self.train_tasks), "train_rows": self.train_rows,
                "train_ngrams": self.train_ngrams, "dirty_by_train_task": self.by_train_task(),
                "tasks": [t.as_dict() for t in self.tasks], "unavailable": dict(self.unavailable),
                "index_bytes": self.index_bytes, "seconds": round(self.seconds, 3)}

    def text(self) -> str:
        """The report as the command prints it: one line per held-out task (dirty rows as k/n and %, the
        training tasks it overlaps most), an example n-gram per dirty task, then the training tasks overall."""
        lines = [f"mixture {self.mixture}: {self.n}-gram overlap of held-out rows with "
                 f"{self.train_rows} training rows of {len(self.train_tasks)} tasks"]
        width = max([len(t.task) for t in self.tasks] + [4])
        lines.append(f"{'task':<{width}}  {'split':<10}  {'dirty':>13}  {'%':>6}  {'short':>5}  "
                     f"overlaps (dirty rows per training task)")
        for t in self.tasks:
            lines.append(f"{t.task:<{width}}  {t.split:<10}  {f'{len(t.dirty)}/{t.rows}':>13}  "
                         f"{t.percent:>5.1f}%  {t.short:>5}  {_top(t.by_train_task())}")
        lines.append(f"(short: rows of fewer than {self.n} words, never dirty)")
        for t in self.tasks:
            if t.origins:
                o = t.origins[0]
                lines.append(f"e.g. {t.task} row {o.row} and {', '.join(o.train_tasks)}: \"{o.ngram}\"")
        if self.by_train_task():
            lines.append(f"dirty held-out rows per training task: {_top(self.by_train_task(), limit=10)}")
        for name, why in self.unavailable.items():
            lines.append(f"not checked: {name}: {why}")
        if not self.complete:
            lines.append("some training tasks could not be read: the dirty counts are lower bounds")
        return "\n".join(lines)


def _top(counts: dict[str, int], limit: int = TOP_TASKS) -> str:
    """``name k, name k`` for the first ``limit`` entries, ``+m more`` after; ``-`` when empty."""
    if not counts:
        return "-"
    shown = ", ".join(f"{name} {k}" for name, k in list(counts.items())[:limit])
    return shown + (f", +{len(counts) - limit} more" if len(counts) > limit else "")
