"""Is a tuned model's gain over the base more than the luck of the evaluated rows? A paired bootstrap.

Every model scores the same prompts, so the comparison is paired. One resample draws, for each task,
its evaluated rows with replacement (one draw shared by every model and template of the task),
recomputes each template's score on the drawn rows, and aggregates exactly as the report does: the
median over templates per task (the task's primary metric), the mean over tasks overall; it records
``model - base`` for each task and overall. The 2.5th and 97.5th percentiles of ``resamples`` such
deltas bound a 95% interval (percentile bootstrap, Efron & Tibshirani 1993; the paired form is Koehn
2004's test for MT). An interval that contains 0 means these rows cannot tell the two models apart.
It covers the sampling of evaluation rows, not the training run's seed: train with several seeds for
that (``python -m t2t.experiment --seeds 0,1,2``).

    scores = [ExampleScores("base", "rte", "t1", "acc", rows=(0, 1, 2), values=(100.0, 0.0, 0.0)),
              ExampleScores("tuned", "rte", "t1", "acc", rows=(0, 1, 2), values=(100.0, 100.0, 0.0))]
    paired_bootstrap(scores, ["base", "tuned"], {"rte": "acc"}, resamples=1000)["models"]["tuned"]
    # {"overall": {"delta": 33.3, "low": 0.0, "high": 66.7}, "tasks": {"rte": {...}}}

Per-example metrics (accuracy, exact match, F1, ROUGE-L) are weighted means of per-example scores,
so a resample costs a matrix product; corpus-level metrics (BLEU) are recomputed per resample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from t2t.errors import T2TError
from t2t.evaluation import metrics


@dataclass(frozen=True)
class ExampleScores:
    """One model's examples on one task with one template, by one metric.

    ``rows`` are the evaluated row indices (shared across models and templates of the task). ``values``
    are per-example scores x100 whose mean is the template's score; a corpus-level metric has
    ``values=None`` and keeps the ``predictions`` and ``references`` to recompute it instead.
    """

    model: str
    task: str
    template: str
    metric: str
    rows: tuple[int, ...]
    values: tuple[float, ...] | None = None
    predictions: tuple[str, ...] = ()
    references: tuple[tuple[str, ...], ...] = ()


def _template_scores(item: ExampleScores, counts: np.ndarray, position: Mapping[int, int]) -> np.ndarray:
    """The template's score under each resample (rows x ``counts[b]`` times); NaN if no row was drawn."""
    weights = counts[:, [position[r] for r in item.rows]].astype(np.float64)
    drawn = weights.sum(axis=1)
    if item.values is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            return weights @ np.asarray(item.values, dtype=np.float64) / drawn
    out = np.full(len(counts), np.nan)
    for b, row_weights in enumerate(weights.astype(np.int64)):
        if drawn[b] == 0:
            continue
        pick = np.repeat(np.arange(len(item.rows)), row_weights)
        out[b] = metrics.compute(item.metric, [item.predictions[i] for i in pick],
                                 [list(item.references[i]) for i in pick])
    return out


def paired_bootstrap(scores: Sequence[ExampleScores], models: Sequence[str], primary: Mapping[str, str], *,
                     resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """``model - base`` per task (primary metric) and overall, with a ``level`` percentile interval.

    ``models``: the base first. ``primary``: task -> the metric the report aggregates. Returns a
    JSON-ready dict: ``{"resamples", "level", "seed", "models": {model: {"overall": {...}, "tasks":
    {task: {...}}}}}``, each delta as ``{"delta", "low", "high"}`` (the point delta is on all rows).
    """
    if resamples < 1:
        raise T2TError(f"--bootstrap must be at least 1 resample (or 0 to skip it), got {resamples}")
    if not 0 < level < 1:
        raise T2TError(f"the interval level must be in (0, 1), got {level}")
    base, others = models[0], list(models[1:])
    rng = np.random.default_rng(seed)
    task_draws: dict[str, dict[str, np.ndarray]] = {}  # task -> model -> (resamples,) task scores
    task_points: dict[str, dict[str, float]] = {}
    for task in sorted(primary):
        items = [s for s in scores if s.task == task and s.metric == primary[task]]
        universe = sorted({r for s in items for r in s.rows})
        if not universe:
            continue
        position = {r: i for i, r in enumerate(universe)}
        counts = rng.multinomial(len(universe), np.full(len(universe), 1.0 / len(universe)), size=resamples)
        everyone = np.ones((1, len(universe)), dtype=np.int64)
        task_draws[task], task_points[task] = {}, {}
        for model in models:
            mine = [s for s in items if s.model == model]
            if not mine:
                raise T2TError(f"bootstrap: model '{model}' has no example scores for task '{task}'")
            # Medians over templates, as the report takes them (NaN only if a template drew no row).
            task_draws[task][model] = np.nanmedian(np.stack([_template_scores(s, counts, position)
                                                             for s in mine]), axis=0)
            task_points[task][model] = float(np.median([_template_scores(s, everyone, position)[0]
                                                        for s in mine]))
    if not task_draws:
        raise T2TError("bootstrap: no example scores to resample")
    tail = 100 * (1 - level) / 2

    def interval(point: float, draws: np.ndarray) -> dict[str, float]:
        low, high = np.nanpercentile(draws, [tail, 100 - tail])
        return {"delta": round(point, 4), "low": round(float(low), 4), "high": round(float(high), 4)}

    out: dict[str, dict] = {}
    for model in others:
        tasks = {t: {"metric": primary[t], **interval(task_points[t][model] - task_points[t][base],
                                                        draws[model] - draws[base])}
                 for t, draws in task_draws.items()}
        overall = np.mean([draws[model] - draws[base] for draws in task_draws.values()], axis=0)
        point = float(np.mean([task_points[t][model] - task_points[t][base] for t in task_draws]))
        out[model] = {"overall": interval(point, overall), "tasks": tasks}
    return {"resamples": resamples, "level": level, "seed": seed, "base": base, "models": out}


def render_markdown(result: Mapping, digits: int = 1) -> str:
    """A table of the deltas and their intervals, one column per compared model."""
    models = list(result["models"])
    if not models:
        return ""
    pct = f"{100 * result['level']:g}%"

    def cell(d: Mapping[str, float]) -> str:
        mark = " *" if d["low"] > 0 or d["high"] < 0 else ""
        return f"{d['delta']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]{mark}"

    lines = [f"## Paired bootstrap: model - {result['base']}, {pct} interval over {result['resamples']} "
             "resamples of the evaluated rows",
             "",
             "| task | metric | " + " | ".join(models) + " |",
             "|---|---|" + "---:|" * len(models)]
    first = result["models"][models[0]]["tasks"]
    for task in first:
        lines.append(f"| {task} | {first[task]['metric']} | "
                     + " | ".join(cell(result["models"][m]["tasks"][task]) for m in models) + " |")
    lines.append("| **all** (mean of task medians) | | "
                 + " | ".join(cell(result["models"][m]["overall"]) for m in models) + " |")
    lines += ["", f"`*`: the {pct} interval excludes 0. An interval that holds 0 means these rows cannot tell "
              "the model from the base; it does not cover the variation between training seeds.", ""]
    return "\n".join(lines)
