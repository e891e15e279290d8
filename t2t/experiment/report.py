"""The experiment's summary: each part's numbers gathered over seeds, and ``summary.md``.

``summary.json`` holds, per part that ran: ``kinds`` (unseen: each kind's overall score per seed, their
mean and sample sd, each seed's bootstrap interval of the delta to the base), ``overfitting`` (per run
and per kind, the validation loss and score at each snapshot step, where each bottoms out or peaks and
how far it moves after) and ``one_vs_many`` (per training task, the specialist against the multitask
adapter, and the two sides' costs). :func:`summary_markdown` renders the same as tables.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def _overfit_stats(points: Sequence[dict[str, float]]) -> dict[str, float]:
    """Where the validation loss bottoms out and how far it rises after; the same for the score's peak."""
    best = min(points, key=lambda p: p["val_loss"])
    top = max(points, key=lambda p: p["score"])
    return {"best_loss_step": best["step"], "loss_rise": round(points[-1]["val_loss"] - best["val_loss"], 4),
            "best_score_step": top["step"], "score_drop": round(top["score"] - points[-1]["score"], 4)}



def summarize_seeds(result: Any, kinds: Sequence[str], seeds: Sequence[int]) -> dict[str, Any]:
    """Per kind: the overall score (mean of held-out task medians) of each seed, their mean and sample sd,
    and each seed's bootstrap interval of the delta to the base."""
    report, boot = result.report, result.bootstrap or {"models": {}}
    out: dict[str, Any] = {"base": {"label": report.base, "overall": round(report.overall[report.base], 4)},
                           "seeds": list(seeds), "kinds": {}}
    for kind in kinds:
        labels = [kind] if len(seeds) == 1 else [f"{kind}-s{s}" for s in seeds]
        values = [report.overall[label] for label in labels]
        out["kinds"][kind] = {
            "overall": [round(v, 4) for v in values],
            "mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
            "delta_intervals": [boot["models"].get(label, {}).get("overall") for label in labels]}
    return out


def summary_markdown(summary: dict[str, Any]) -> str:
    """``summary.md``: one section per part that ran."""
    text = ""
    if "kinds" in summary:
        text += _unseen_markdown(summary)
    if "overfitting" in summary:
        text += _overfitting_markdown(summary["overfitting"])
    if "one_vs_many" in summary:
        text += _one_vs_many_markdown(summary["one_vs_many"])
    return text


def _unseen_markdown(summary: dict[str, Any]) -> str:
    base = summary["base"]
    lines = ["## Held-out score over training seeds (mean of held-out task medians)", "",
             "| model | " + " | ".join(f"seed {s}" for s in summary["seeds"]) + " | mean | sd |",
             "|---|" + "---:|" * (len(summary["seeds"]) + 2),
             f"| base ({base['label']}) | " + " | ".join(f"{base['overall']:.1f}" for _ in summary["seeds"])
             + f" | {base['overall']:.1f} | 0 |"]
    for kind, k in summary["kinds"].items():
        cells = []
        for value, ci in zip(k["overall"], k["delta_intervals"], strict=True):
            cells.append(f"{value:.1f}" + (f" (Δ {ci['delta']:+.1f} [{ci['low']:+.1f}, {ci['high']:+.1f}])"
                                           if ci else ""))
        sd = f"{k['sd']:.1f}" if k["sd"] is not None else "-"
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {k['mean']:.1f} | {sd} |")
    lines += ["", "Δ [interval]: that seed's delta to the base with its 95% paired-bootstrap interval over the "
              "evaluated rows; sd: sample standard deviation over training seeds.", ""]
    return "\n".join(lines) + "\n"


def _overfitting_markdown(o: dict[str, Any]) -> str:
    kinds = list(o["by_kind"])
    lines = [f"## Overfitting: {o['task']} over steps (mean over seeds)", "",
             f"Validation loss on its first {o['rows']} validation rows (the same in every run) and score "
             f"({o['metric']}, median over templates; untuned base {o['base_score']:.1f}).", "",
             "| step | " + " | ".join(f"{k} loss | {k} score" for k in kinds) + " |",
             "|---:|" + "---:|---:|" * len(kinds)]
    for i, step in enumerate(o["steps"]):
        lines.append(f"| {step} | " + " | ".join(f"{o['by_kind'][k]['val_loss'][i]:.3f} | "
                                                  f"{o['by_kind'][k]['score'][i]:.1f}" for k in kinds) + " |")
    lines += ["", "| run | lowest loss at step | loss rise after it | best score at step | score drop after it |",
              "|---|---:|---:|---:|---:|"]
    for lab, c in o["curves"].items():
        lines.append(f"| {lab} | {c['best_loss_step']} | {c['loss_rise']:+.3f} | {c['best_score_step']} | "
                     f"{c['score_drop']:.1f} |")
    return "\n".join(lines) + "\n\n"


def _one_vs_many_markdown(v: dict[str, Any]) -> str:
    lines = [f"## One model vs many: {v['multitask']} against one specialist per training {v['by']}", "",
             "| task (cluster; metric) | base | specialist | multitask | multitask - specialist | relative |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in v["tasks"]:
        rel = f"{r['relative']:.2f}" if r["relative"] is not None else "-"
        lines.append(f"| {r['task']} ({r['cluster']}; {r['metric']}) | {r['base']:.1f} | "
                     f"{r['specialist_score']:.1f} | {r['multitask_score']:.1f} | {r['difference']:+.1f} | {rel} |")
    m = v["mean"]
    lines += [f"| mean | {m['base']:.1f} | {m['specialist_score']:.1f} | {m['multitask_score']:.1f} | "
              f"{m['difference']:+.1f} | |", "", "| cost | adapters | trainable parameters | weights on disk | "
              "adapter folders | training time |", "|---|---:|---:|---:|---:|---:|"]
    for name, c in v["cost"].items():
        lines.append(f"| {name} | {c['adapters']} | {c['trainable_params']:,} | {c['weights_bytes'] / 1e6:.1f} MB | "
                     f"{c['folder_bytes'] / 1e6:.1f} MB | {c['train_seconds']:.0f} s |")
    return "\n".join(lines) + "\n\n"
