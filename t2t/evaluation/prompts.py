"""Evaluation prompts: one task's rows rendered with one template, zero-shot or k-shot (FLAN style).

With ``--cot`` a task without rationales gets the zero-shot CoT trigger after its input (t2t.tasks.cot).
k-shot prompts prepend k exemplars from the train split, ``x + "\\n\\n" + y`` each, joined and followed by
``"\\n\\n\\n"``; exemplars are drawn per (seed, task, template, split, row), never the example itself nor
a row that renders the same input; the farthest are dropped first when the prompt is too long.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from t2t.errors import T2TError
from t2t.seeds import stable_seed
from t2t.tasks import sources
from t2t.tasks.cot import is_cot_task, zero_shot_cot_input
from t2t.tasks.fewshot import few_shot_input
from t2t.tasks.task import Example, Task, warn

SPLITS = ("validation", "test", "train")


@dataclass(frozen=True)
class Prompt:
    """One example to score; with k-shot its ``input`` starts with the exemplars (train ``shots``)."""

    example: Example
    shots: tuple[int, ...] = ()


def pick_split(task: Task, wanted: str) -> str:
    """``wanted`` if the task has it, else the first of validation, test, train that it has."""
    if wanted in task.splits:
        return wanted
    for split in SPLITS:
        if split in task.splits:
            warn(f"task '{task.name}' has no split '{wanted}'; evaluating its '{split}' split")
            return split
    raise T2TError(f"task '{task.name}' has no split to evaluate (splits: {', '.join(task.splits)}); "
                   f"see the 'splits' field of {task.path}")


class Exemplars:
    """Train rows of one task rendered on demand, drawn as k-shot exemplars per (template, example).

    ``rows`` defaults to the task's train split.
    """

    def __init__(self, task: Task, seed: int, rows: Sequence[Mapping[str, Any]] | None = None) -> None:
        if rows is None:
            if "train" not in task.splits:
                raise T2TError(f"--num-shots: task '{task.name}' has no train split to draw exemplars from "
                               f"(splits: {', '.join(task.splits)}); use --num-shots 0 for it")
            rows = sources.load_rows(task, "train").to_list()
        self.task, self.seed, self.rows = task, seed, list(rows)
        self._cache: dict[tuple[str, int], Example | None] = {}

    def render(self, template: str, row: int) -> Example | None:
        key = (template, row)
        if key not in self._cache:
            self._cache[key] = self.task.render(self.rows[row], row, template, seed=self.seed)
        return self._cache[key]

    def draw(self, template: str, query: Example, split: str, k: int) -> list[tuple[int, Example]]:
        """Up to k exemplars, never the query's own row nor a row that renders the same input."""
        rng = random.Random(stable_seed(self.seed, self.task.name, template, split, query.index))
        seen = {query.index} if split == "train" else set()
        shots: list[tuple[int, Example]] = []
        for _ in range(20 * k + 50):
            if len(shots) == k or len(seen) >= len(self.rows):
                break
            row = rng.randrange(len(self.rows))
            if row in seen:
                continue
            seen.add(row)
            shot = self.render(template, row)
            if shot is not None and shot.input != query.input:
                shots.append((row, shot))
        return shots


def build_prompts(task: Task, rows: Sequence[Mapping[str, Any]], split: str, template: str, *,
                  num_shots: int = 0, seed: int = 0, exemplars: Exemplars | None = None,
                  fits: Callable[[str], bool] | None = None, cot: bool = False) -> tuple[list[Prompt], int]:
    """Prompts for ``rows`` (row i of ``split``) with one template, and how many rows it declined.

    With ``num_shots`` each prompt is ``x1 + "\\n\\n" + y1 + "\\n\\n\\n" + ... + x``; ``fits`` (prompt ->
    bool) drops the farthest exemplars until the prompt fits. With ``cot``, a task that is not a CoT task is
    prompted for zero-shot CoT (:func:`t2t.tasks.cot.zero_shot_cot_input`); its exemplars would carry no
    rationale, so ``num_shots`` is refused for it. A CoT task's prompts are the same either way.
    """
    zero_shot_cot = cot and not is_cot_task(task.tags)
    if zero_shot_cot and num_shots:
        raise T2TError(f"--cot --num-shots {num_shots}: task '{task.name}' has no rationales for its exemplars to "
                       "show (only CoT tasks, tag cot, have them); score it with --cot --num-shots 0 (zero-shot CoT) "
                       "or without --cot")
    if num_shots and exemplars is None:
        exemplars = Exemplars(task, seed)
    prompts, skipped = [], 0
    for i, row in enumerate(rows):
        query = task.render(row, i, template, seed=seed)
        if query is None:
            skipped += 1
            continue
        if zero_shot_cot:
            query = replace(query, input=zero_shot_cot_input(query.input))
        shots = exemplars.draw(template, query, split, num_shots) if num_shots else []
        while True:
            text = few_shot_input(((s.input, s.target) for _, s in shots), query.input)
            if not shots or fits is None or fits(text):
                break
            shots = shots[1:]  # the exemplar farthest from the query goes first
        prompts.append(Prompt(replace(query, input=text), tuple(r for r, _ in shots)))
    return prompts, skipped
