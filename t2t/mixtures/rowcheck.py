"""Every training row checked against its templates before the first step (issue #25 part 6).

The stream renders a row only when it draws it, so a row missing a template's field (or with a label
out of range) would pass ``finetune`` unless that row happened to be drawn, while ``tasks render`` and
``evaluate`` refuse it. :func:`check_training_rows` renders the rows each training task draws from (its
train split, cut to the mixture's limit) with every template of the task, as the stream would: the
first failure is the render's own :class:`~t2t.errors.TaskFileError`, naming the task file, task,
template, row number and field.

Rendering every row with every template costs about as much as an epoch of rendering (measured: 6750
rows of 4 tasks took 41 s on a loaded 2-core machine), so a row is rendered only when its *shape* (its
field names with the type of each value, None included) is new for its task: a row with the fields and
types of a row that rendered can miss no field the templates need. What the shape does not show (a
label out of range of the choices) is still found when the row is drawn, as before.

Huge sources are bounded, by rows per task and by seconds in all; tasks are checked in turns of
``TURN`` rows so that one big task does not use up the time of the others. What was checked is
returned, for one line in the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

TURN = 1000  # rows of one task checked before the next task's turn


@dataclass(frozen=True)
class RowCheck:
    """What :func:`check_training_rows` covered."""

    checked: int  # rows whose fields were checked (each new shape rendered with every template)
    total: int  # rows the training tasks draw from
    rendered: int  # rows rendered: one per shape and task
    tasks: int
    timed_out: bool

    def summary(self, seconds: float) -> str:
        shapes = f"{self.rendered} row shape(s) rendered with every template"
        if self.checked == self.total:
            return f"checked the fields of all {self.total} training rows of {self.tasks} task(s) ({shapes})"
        why = f"--check-seconds {seconds:g} ran out" if self.timed_out else "--check-rows per task"
        return (f"checked the fields of {self.checked} of {self.total} training rows of {self.tasks} task(s) "
                f"({shapes}; {why}); the others are checked as they are drawn")


def check_training_rows(stream: Any, max_rows: int, seconds: float,
                        clock: Callable[[], float] = time.monotonic) -> RowCheck:
    """Render the first ``max_rows`` rows of every task of ``stream``'s mixture with each of its templates,
    within ``seconds`` in all; the first row that fails raises its TaskFileError (exit 2)."""
    entries = stream.mixture.entries
    rows = [stream.task_rows(t) for t in range(len(entries))]
    limits = [min(len(r), max_rows) for r in rows]
    done = [0] * len(entries)
    shapes: list[set[Any]] = [set() for _ in entries]
    deadline = clock() + seconds
    timed_out = False
    while not timed_out and any(d < lim for d, lim in zip(done, limits, strict=True)):
        for t, entry in enumerate(entries):
            stop = min(done[t] + TURN, limits[t])
            for i in range(done[t], stop):
                if clock() > deadline:
                    timed_out = True
                    break
                row = rows[t][i]
                shape = _shape(row)
                if shape is None or shape not in shapes[t]:
                    for template in entry.templates:  # the row number is its index in the split, as the stream's
                        entry.task.render(row, i, template, seed=stream.seed)
                    if shape is not None:
                        shapes[t].add(shape)
                done[t] = i + 1
            if timed_out:
                break
    return RowCheck(sum(done), sum(len(r) for r in rows), sum(map(len, shapes)), len(entries), timed_out)


def _shape(row: Any) -> frozenset[tuple[str, type]] | None:
    """A row's field names and value types; None for what is not a mapping (always rendered: it fails)."""
    if not isinstance(row, Mapping):
        return None
    try:
        return frozenset((key, type(value)) for key, value in row.items())
    except TypeError:  # an unhashable key: rendered, and refused by name there
        return None
