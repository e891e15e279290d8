"""``python -m t2t.evaluate --contamination``: every task's score on all, clean and dirty rows, as GPT-3 did.

GPT-3 (Brown et al. 2020, appendix C, Table C.1) reported per benchmark the score on all examples, on the
dirty ones (an N-gram shared with the training corpus) and on the clean ones, with their counts. Here the
training corpus is the mixture the adapter trained on (``--mixture``, or the adapter run's), the test is
:func:`t2t.mixtures.contamination.check` on the split evaluate scores (``--contamination-ngram``, 13 by
default), and a task's score on a subset is computed as the report computes it on all rows
(:mod:`t2t.evaluation.report`): each template's metric over the subset's rows (a per-example mean, or the
corpus metric recomputed for BLEU), then the median over templates, for the task's primary metric. A
subset without rows has no score (``None``, ``-`` in report.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from t2t.errors import T2TError
from t2t.evaluation import metrics
from t2t.evaluation.adapter_runs import AdapterRun
from t2t.evaluation.config import EvaluateConfig
from t2t.evaluation.significance import ExampleScores
from t2t.mixtures.contamination import ContaminationReport, check
from t2t.mixtures.resolve import load_mixture
from t2t.tasks.task import Task

SUBSETS = ("all", "clean", "dirty")


def training_side(cfg: EvaluateConfig, chosen: Mapping[str, Any], runs: Sequence[AdapterRun]) -> tuple[str, list[str]]:
    """The mixture whose training rows decide what is dirty, and its extra held-out names: ``--mixture``,
    else the mixture of the first adapter run that recorded one (``manifest.json``)."""
    t = cfg.tasks
    if t.mixture:
        return t.mixture, list(t.heldout)
    run = next((r for r in runs if r.manifest is not None and r.manifest.get("mixture")), None)
    if run is None:
        raise T2TError("--contamination compares the scored rows with a mixture's training rows: pass --mixture M, "
                       "or an --adapter whose run folder has manifest.json")
    if chosen.get("mixture") not in (None, run.manifest["mixture"]):
        raise T2TError(f"--contamination: the tasks come from mixture '{chosen['mixture']}' but the adapter trained "
                       f"on '{run.manifest['mixture']}'; pass --mixture {run.manifest['mixture']}")
    return run.manifest["mixture"], list(run.manifest.get("extra_heldout", [])) + list(t.heldout)


def check_tasks(cfg: EvaluateConfig, tasks: Sequence[Task], chosen: Mapping[str, Any],
                runs: Sequence[AdapterRun]) -> ContaminationReport:
    """The contamination report of the tasks to score, on the split evaluate scores, before any model loads."""
    t = cfg.tasks
    name, extra = training_side(cfg, chosen, runs)
    mixture = load_mixture(name, heldout=extra, task_dirs=t.task_dir, mixture_dirs=t.mixture_dir)
    report = check(mixture, tasks, n=t.contamination_ngram, split=t.split)
    missing = [k for k in report.unavailable if k.endswith("(held out)")]
    if missing:
        raise T2TError(f"--contamination: cannot read the rows of {', '.join(missing)}: "
                       f"{report.unavailable[missing[0]]}")
    return report


def _subset_value(item: ExampleScores, keep: Sequence[bool]) -> float | None:
    """The template's metric over the kept rows (None when none is kept)."""
    if not any(keep):
        return None
    if item.values is not None:
        chosen = [v for v, k in zip(item.values, keep, strict=True) if k]
        return sum(chosen) / len(chosen)
    predictions = [p for p, k in zip(item.predictions, keep, strict=True) if k]
    references = [list(r) for r, k in zip(item.references, keep, strict=True) if k]
    return metrics.compute(item.metric, predictions, references)


def split_scores(examples: Iterable[ExampleScores], dirty: Mapping[str, frozenset[int]],
                 primary: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per (model, task): the primary metric's median over templates on all, clean and dirty rows, with the
    number of distinct rows each covers."""
    by_key: dict[tuple[str, str], list[ExampleScores]] = {}
    for item in examples:
        if item.task in dirty and item.metric == primary.get(item.task):
            by_key.setdefault((item.model, item.task), []).append(item)
    out = []
    for (model, task), items in by_key.items():
        entry: dict[str, Any] = {"model": model, "task": task, "metric": primary[task]}
        for subset in SUBSETS:
            values, rows = [], set()
            for item in items:
                keep = [subset == "all" or (r in dirty[task]) == (subset == "dirty") for r in item.rows]
                value = _subset_value(item, keep)
                if value is not None:
                    values.append(value)
                rows.update(r for r, k in zip(item.rows, keep, strict=True) if k)
            entry[subset] = statistics.median(values) if values else None
            entry[f"{subset}_rows"] = len(rows)
        out.append(entry)
    return out


def as_dict(report: ContaminationReport, scores: list[dict[str, Any]]) -> dict[str, Any]:
    """What results.json keeps under ``contamination``."""
    return {"method": f"{report.n}-gram overlap of each scored row with the training rows of mixture "
                      f"'{report.mixture}' (t2t.mixtures.contamination, GPT-3 appendix C)",
            "report": report.as_dict(), "scores": scores}


def _cell(value: float | None, rows: int) -> str:
    return f"{value:.1f} ({rows})" if value is not None else f"- ({rows})"


def render_markdown(report: ContaminationReport, scores: list[dict[str, Any]]) -> str:
    """The clean/dirty table of report.md: score (rows) on all, clean and dirty rows, and clean minus all."""
    lines = [f"## Contamination: {report.n}-gram overlap with mixture {report.mixture}'s training rows\n",
             "| model | task | metric | all (rows) | clean (rows) | dirty (rows) | clean − all |",
             "|---|---|---|---:|---:|---:|---:|"]
    for s in scores:
        delta = f"{s['clean'] - s['all']:+.1f}" if s["clean"] is not None else "-"
        lines.append(f"| {s['model']} | {s['task']} | {s['metric']} | {_cell(s['all'], s['all_rows'])} | "
                     f"{_cell(s['clean'], s['clean_rows'])} | {_cell(s['dirty'], s['dirty_rows'])} | {delta} |")
    lines += _origins_markdown(report)
    if not report.complete:
        lines.append("\nSome training tasks could not be read (see results.json): dirty counts are lower bounds.")
    return "\n".join(lines) + "\n"


def _origins_markdown(report: ContaminationReport) -> list[str]:
    """Where the dirty rows come from: per held-out task with dirty rows, the training tasks they overlap
    (dirty rows each, most first) and one row's first shared n-gram; every row's are in results.json."""
    dirty = [t for t in report.tasks if t.origins]
    if not dirty:
        return []
    lines = ["", f"Dirty rows by training task (first shared {report.n}-gram of the first dirty row; every "
                 "row's in results.json, `contamination.report.tasks[].dirty_origins`):", "",
             "| task | dirty rows | training tasks (dirty rows) | example |", "|---|---:|---|---|"]
    for t in dirty:
        counts = list(t.by_train_task().items())
        by_task = ", ".join(f"{name} ({k})" for name, k in counts[:5]) + (f", +{len(counts) - 5} more"
                                                                         if len(counts) > 5 else "")
        example = t.origins[0]
        lines.append(f"| {t.task} | {len(t.dirty)} | {by_task} | row {example.row}: \"{example.ngram}\" |")
    return lines
