"""Aggregate evaluation scores into a report: Markdown table, results JSON and a bar chart.

Input: a flat list of :class:`Score` records, one per (model, task, template, metric), each value on
the 0-100 scale of :mod:`t2t.evaluation.metrics`. Plain dicts with the same keys are accepted, so the evaluate
command can build them from JSON lines. Aggregation follows T0's reporting:

* per (model, task, metric): the **median over templates**, with the spread min / max / std
  (population std, so one template gives 0);
* per (model, cluster): the **mean of the task medians** of the cluster's tasks, each task counted once
  with its primary metric (by default the first metric seen for the task);
* per model: the **overall mean** of the task medians of every task (primary metric), so each task
  weighs the same whatever its cluster;
* every model after the first is compared with the first, the base: ``delta = model - base``.

Example::

    scores = [Score("base", "rte", "t1", "accuracy", 50.0), Score("base", "rte", "t2", "accuracy", 60.0),
              Score("lora", "rte", "t1", "accuracy", 70.0), Score("lora", "rte", "t2", "accuracy", 80.0)]
    report = summarize(scores, clusters={"rte": "nli"})
    report.task("lora", "rte").median          # 75.0
    report.clusters["lora"]["nli"]              # 75.0
    report.delta_overall("lora")                # 20.0
    render_markdown(report)                     # the table of report.md
    to_dict(report)                             # results.json; read_json re-reads it
    plot_bars(report, "runs/eval/report.png")

Every model must have a score for every (task, metric) that any model has, so means and deltas
always compare the same tasks; templates may differ.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from t2t.errors import T2TError

UNCLUSTERED = "unclustered"
FORMAT = "t2t-eval-report"
VERSION = 1


@dataclass(frozen=True)
class Score:
    """The score (0-100) of one model on one task with one template, by one metric."""

    model: str
    task: str
    template: str
    metric: str
    value: float


@dataclass(frozen=True)
class TaskResult:
    """One model's result on one task by one metric, aggregated over templates."""

    model: str
    task: str
    metric: str
    cluster: str
    median: float
    min: float
    max: float
    std: float
    n_templates: int


@dataclass
class Report:
    """Everything the renderers need; build it with :func:`summarize`.

    ``models``: model names, the first is the base the others are compared with.
    ``tasks``: one :class:`TaskResult` per (model, task, metric), rows ordered by cluster, task, metric.
    ``cluster_of``: task -> cluster. ``primary``: task -> the metric used in cluster and overall means.
    ``clusters``: model -> cluster -> mean of task medians. ``overall``: model -> mean of task medians.
    ``scores``: the input scores, kept so the JSON can be re-read and re-aggregated.
    """

    models: list[str]
    tasks: list[TaskResult]
    cluster_of: dict[str, str]
    primary: dict[str, str]
    clusters: dict[str, dict[str, float]]
    overall: dict[str, float]
    scores: list[Score] = field(repr=False, default_factory=list)

    @property
    def base(self) -> str:
        return self.models[0]

    def task(self, model: str, task: str, metric: str | None = None) -> TaskResult:
        """The result of ``model`` on ``task`` by ``metric`` (default: the task's primary metric)."""
        metric = metric or self.primary[task]
        for row in self.tasks:
            if (row.model, row.task, row.metric) == (model, task, metric):
                return row
        raise KeyError((model, task, metric))

    def delta_task(self, model: str, task: str, metric: str | None = None) -> float:
        return self.task(model, task, metric).median - self.task(self.base, task, metric).median

    def delta_cluster(self, model: str, cluster: str) -> float:
        return self.clusters[model][cluster] - self.clusters[self.base][cluster]

    def delta_overall(self, model: str) -> float:
        return self.overall[model] - self.overall[self.base]

    def task_keys(self) -> list[tuple[str, str]]:
        """(task, metric) pairs in row order."""
        return [(r.task, r.metric) for r in self.tasks if r.model == self.base]

    def cluster_names(self) -> list[str]:
        return list(self.clusters[self.base])


def _as_score(item: Score | Mapping) -> Score:
    if isinstance(item, Score):
        score = item
    else:
        names = {f.name for f in fields(Score)}
        if set(item) != names:
            raise T2TError(
                f"a report score needs exactly the keys {sorted(names)}, got {sorted(item)}; "
                "check the scores passed to the report."
            )
        score = Score(**{k: item[k] for k in names})
    if not isinstance(score.value, (int, float)) or not math.isfinite(score.value):
        raise T2TError(
            f"score of model '{score.model}' on task '{score.task}', template '{score.template}', "
            f"metric '{score.metric}' is {score.value!r}; scores must be finite numbers."
        )
    return score


def summarize(
    scores: Iterable[Score | Mapping],
    clusters: Mapping[str, str] | None = None,
    models: Sequence[str] | None = None,
    primary: Mapping[str, str] | None = None,
) -> Report:
    """Aggregate per-template scores into a :class:`Report`.

    ``clusters`` maps task -> cluster (tasks not in it are put in ``"unclustered"``). ``models`` fixes
    the column order, its first entry being the base (default: order of first appearance).
    ``primary`` maps task -> metric for the cluster and overall means (default: first metric seen).
    """
    scores = [_as_score(s) for s in scores]
    if not scores:
        raise T2TError("the report got no scores; evaluate at least one model on one task.")
    models = _model_order(scores, models)
    by_key = _values_by_key(scores)
    task_metrics = list(dict.fromkeys((s.task, s.metric) for s in scores))
    _check_complete(by_key, models, task_metrics)
    primary = _primary_metrics(task_metrics, primary)
    cluster_of = {task: (clusters or {}).get(task, UNCLUSTERED) for task, _ in task_metrics}
    rows = _task_rows(by_key, models, task_metrics, cluster_of, primary)
    cluster_means, overall = _means(rows, models, cluster_of, primary)
    return Report(models, rows, cluster_of, primary, cluster_means, overall, scores)


def _model_order(scores: Sequence[Score], models: Sequence[str] | None) -> list[str]:
    """``models`` (default: the scored ones in order of first appearance), which must be the scored ones."""
    seen_models = list(dict.fromkeys(s.model for s in scores))
    models = list(models) if models is not None else seen_models
    unknown = [m for m in models if m not in seen_models]
    extra = [m for m in seen_models if m not in models]
    if unknown or extra:
        raise T2TError(
            f"report models {models} do not match the scored models {seen_models}; "
            "list every scored model once, base first."
        )
    return models


def _values_by_key(scores: Sequence[Score]) -> dict[tuple[str, str, str], dict[str, float]]:
    """(model, task, metric) -> template -> value; a template scored twice is an error."""
    by_key: dict[tuple[str, str, str], dict[str, float]] = {}
    for s in scores:
        templates = by_key.setdefault((s.model, s.task, s.metric), {})
        if s.template in templates:
            raise T2TError(
                f"model '{s.model}', task '{s.task}', template '{s.template}', metric '{s.metric}' is "
                "scored twice; pass each score once."
            )
        templates[s.template] = float(s.value)
    return by_key


def _check_complete(
    by_key: Mapping[tuple[str, str, str], object], models: Sequence[str], task_metrics: Sequence[tuple[str, str]]
) -> None:
    """Every model has scores for every (task, metric) that any model has."""
    missing = [(m, t, k) for m in models for t, k in task_metrics if (m, t, k) not in by_key]
    if missing:
        listed = ", ".join(f"{m}/{t}/{k}" for m, t, k in missing[:5])
        raise T2TError(
            f"{len(missing)} model/task/metric result(s) missing ({listed}); every model must be "
            "evaluated on the same tasks so that means and deltas compare like with like."
        )


def _primary_metrics(task_metrics: Sequence[tuple[str, str]], primary: Mapping[str, str] | None) -> dict[str, str]:
    """task -> its primary metric: the one given, else the first seen; a given one must be scored."""
    first_metric: dict[str, str] = {}
    for task, metric in task_metrics:
        first_metric.setdefault(task, metric)
    chosen = {**first_metric, **dict(primary or {})}
    for task, metric in chosen.items():
        if (task, metric) not in task_metrics:
            raise T2TError(
                f"primary metric '{metric}' for task '{task}' has no scores; pick a scored metric."
            )
    return chosen


def _task_rows(
    by_key: Mapping[tuple[str, str, str], Mapping[str, float]],
    models: Sequence[str],
    task_metrics: Sequence[tuple[str, str]],
    cluster_of: Mapping[str, str],
    primary: Mapping[str, str],
) -> list[TaskResult]:
    """One :class:`TaskResult` per (model, task, metric), the median and spread over templates; per model
    ordered by cluster, task, then the primary metric first."""
    ordered = sorted(task_metrics, key=lambda k: (cluster_of[k[0]], k[0], k[1] != primary[k[0]], k[1]))
    rows = []
    for model in models:
        for task, metric in ordered:
            values = list(by_key[(model, task, metric)].values())
            rows.append(
                TaskResult(
                    model=model,
                    task=task,
                    metric=metric,
                    cluster=cluster_of[task],
                    median=statistics.median(values),
                    min=min(values),
                    max=max(values),
                    std=statistics.pstdev(values),
                    n_templates=len(values),
                )
            )
    return rows


def _means(
    rows: Sequence[TaskResult], models: Sequence[str], cluster_of: Mapping[str, str], primary: Mapping[str, str]
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per model, the mean of the task medians (primary metric) per cluster, and over every task."""
    medians = {(r.model, r.task): r.median for r in rows if r.metric == primary[r.task]}
    cluster_names = sorted(set(cluster_of.values()))
    cluster_means = {
        model: {
            c: statistics.fmean(medians[(model, t)] for t in primary if cluster_of[t] == c)
            for c in cluster_names
        }
        for model in models
    }
    overall = {model: statistics.fmean(medians[(model, t)] for t in primary) for model in models}
    return cluster_means, overall


# --- rendering ----------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def _signed(x: float, digits: int) -> str:
    return f"{x:+.{digits}f}"


def render_markdown(report: Report, digits: int = 1) -> str:
    """A Markdown table: one row per (task, metric) with ``median ±std (min–max)`` per model and
    ``Δ`` columns against the base, then one mean row per cluster and an overall mean row."""
    tuned = report.models[1:]
    header = ["cluster", "task", "metric", *map(_cell, report.models), *(f"Δ {_cell(m)}" for m in tuned)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]

    def line(cells: Iterable[str]) -> None:
        lines.append("| " + " | ".join(cells) + " |")

    for task, metric in report.task_keys():
        results = [report.task(m, task, metric) for m in report.models]
        cells = [
            f"{r.median:.{digits}f} ±{r.std:.{digits}f} ({r.min:.{digits}f}–{r.max:.{digits}f})"
            for r in results
        ]
        deltas = [_signed(report.delta_task(m, task, metric), digits) for m in tuned]
        line([_cell(report.cluster_of[task]), _cell(task), _cell(metric), *cells, *deltas])
    for cluster in report.cluster_names():
        means = [f"{report.clusters[m][cluster]:.{digits}f}" for m in report.models]
        deltas = [_signed(report.delta_cluster(m, cluster), digits) for m in tuned]
        line([f"**{_cell(cluster)}**", "*mean*", "", *means, *deltas])
    means = [f"{report.overall[m]:.{digits}f}" for m in report.models]
    line(["**all**", "*mean*", "", *means, *(_signed(report.delta_overall(m), digits) for m in tuned)])
    return "\n".join(lines) + "\n"


def to_dict(report: Report) -> dict:
    """JSON-ready dict: the aggregates (with deltas against the base) and the input scores."""
    tasks = []
    for row in report.tasks:
        entry = asdict(row)
        entry["delta"] = report.delta_task(row.model, row.task, row.metric)
        tasks.append(entry)
    return {
        "format": FORMAT,
        "version": VERSION,
        "models": report.models,
        "base": report.base,
        "aggregation": "task: median over templates; cluster, overall: mean of task medians (primary metric)",
        "cluster_of": report.cluster_of,
        "primary": report.primary,
        "tasks": tasks,
        "clusters": {
            m: {c: {"mean": v, "delta": report.delta_cluster(m, c)} for c, v in per.items()}
            for m, per in report.clusters.items()
        },
        "overall": {m: {"mean": v, "delta": report.delta_overall(m)} for m, v in report.overall.items()},
        "scores": [asdict(s) for s in report.scores],
    }


def read_json(path: str | Path) -> Report:
    """Rebuild a :class:`Report` from a ``results.json`` (a :func:`to_dict`, as the evaluate command writes
    it), re-aggregated from its scores."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise T2TError(f'{path}: not a t2t evaluation report (no "format": "{FORMAT}"); pass results.json.')
    return summarize(
        data["scores"], clusters=data["cluster_of"], models=data["models"], primary=data["primary"]
    )


def plot_bars(
    report: Report, path: str | Path, tasks: Sequence[str] | None = None, title: str | None = None
) -> Path:
    """PNG bar chart: per task (default all; pass the held-out tasks), one bar per model at the median
    of the task's primary metric, with a min–max whisker over templates."""
    # Imported here: matplotlib is slow to import and only the chart needs it. The object-oriented API
    # renders with Agg and leaves pyplot's global state alone.
    from matplotlib.figure import Figure

    tasks = list(tasks) if tasks is not None else list(dict.fromkeys(t for t, _ in report.task_keys()))
    unknown = [t for t in tasks if t not in report.primary]
    if unknown:
        raise T2TError(
            f"cannot plot tasks {unknown}: they have no scores; known tasks: {sorted(report.primary)}."
        )
    n_models = len(report.models)
    width = 0.8 / n_models
    fig = Figure(figsize=(max(4.0, 1.0 + 0.6 * len(tasks) * n_models), 4.0), layout="constrained")
    ax = fig.subplots()
    for k, model in enumerate(report.models):
        rows = [report.task(model, t) for t in tasks]
        xs = [i + (k - (n_models - 1) / 2) * width for i in range(len(tasks))]
        heights = [r.median for r in rows]
        whiskers = [[r.median - r.min for r in rows], [r.max - r.median for r in rows]]
        ax.bar(xs, heights, width, yerr=whiskers, capsize=2, label=model)
    ax.set_xticks(range(len(tasks)), [f"{t}\n({report.primary[t]})" for t in tasks], fontsize=8)
    ax.set_ylabel("median over templates (0-100)")
    ax.set_ylim(0, 100)
    ax.set_title(title or f"{report.base} vs tuned, per task")
    ax.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path

