"""The experiment's summary: each part's numbers gathered over seeds, and ``summary.md``.

``summary.json`` holds, per part that ran: ``kinds`` (unseen: each kind's overall score per seed, their
mean, sample sd, min and max, the same for the delta to the base, and each seed's bootstrap interval of
that delta), ``overfitting`` (per run
and per kind, the validation loss and score at each snapshot step, where each bottoms out or peaks and
how far it moves after) and ``one_vs_many`` (per training task, the specialist against the multitask
adapter, and the two sides' costs). :func:`summary_markdown` renders the same as tables.

The headline uncertainty of each claim is the spread across training seeds (mean ± sd, min..max of the
delta to the base): a re-run with another seed, or on another machine, moves a figure by about that much
(issue #28: a single-task gain of +8.3 on one machine was -0.3 on another). The paired bootstrap over the
evaluated rows stays beside each seed's figure, labelled within-run: it holds the adapter fixed and so
says nothing about training noise. ``provenance`` (the evaluation's base weights hash, adapters' hashes,
machine and versions: :mod:`t2t.modeling.provenance`) heads ``summary.md``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from t2t.modeling.provenance import summary_line


def _overfit_stats(points: Sequence[dict[str, float]]) -> dict[str, float]:
    """Where the validation loss bottoms out and how far it rises after; the same for the score's peak."""
    best = min(points, key=lambda p: p["val_loss"])
    top = max(points, key=lambda p: p["score"])
    return {"best_loss_step": best["step"], "loss_rise": round(points[-1]["val_loss"] - best["val_loss"], 4),
            "best_score_step": top["step"], "score_drop": round(top["score"] - points[-1]["score"], 4)}



def spread(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, sample sd (None for one value), min and max, rounded to 4 places."""
    return {"mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
            "min": round(min(values), 4), "max": round(max(values), 4)}


def summarize_seeds(result: Any, kinds: Sequence[str], seeds: Sequence[int]) -> dict[str, Any]:
    """Per kind: the overall score (mean of held-out task medians) of each seed and its spread over seeds,
    the spread of the delta to the base (the headline), and each seed's within-run bootstrap interval of that
    delta; with the evaluation's provenance."""
    report, boot = result.report, result.bootstrap or {"models": {}}
    base = report.overall[report.base]
    out: dict[str, Any] = {"base": {"label": report.base, "overall": round(base, 4)},
                           "seeds": list(seeds), "kinds": {}, "provenance": getattr(result, "provenance", None)}
    for kind in kinds:
        labels = [kind] if len(seeds) == 1 else [f"{kind}-s{s}" for s in seeds]
        values = [report.overall[label] for label in labels]
        out["kinds"][kind] = {
            "overall": [round(v, 4) for v in values], **spread(values),
            "delta": spread([v - base for v in values]),
            "delta_intervals": [boot["models"].get(label, {}).get("overall") for label in labels]}
    return out


def summary_markdown(summary: dict[str, Any]) -> str:
    """``summary.md``: one section per part that ran."""
    text = ""
    if summary.get("provenance"):  # what every figure below depends on (issue #28)
        text += summary_line(summary["provenance"]) + "\n\n"
    if "kinds" in summary:
        text += _unseen_markdown(summary)
    if "overfitting" in summary:
        text += _overfitting_markdown(summary["overfitting"])
    if "one_vs_many" in summary:
        text += _one_vs_many_markdown(summary["one_vs_many"])
    if "clusters" in summary:
        text += _clusters_markdown(summary["clusters"])
    return text


def _headline(summary: dict[str, Any]) -> list[str]:
    """Each claim (a kind's delta to the base) with its spread across training seeds."""
    n = len(summary["seeds"])
    lines = [f"Each claim with its spread across training seeds ({n} seed{'s' if n > 1 else ''}): the "
             "uncertainty a re-run meets" + ("" if n > 1 else "; one seed measures none, so the delta alone "
                                                           "is no evidence of a gain") + ".", "",
             "| claim | Δ to base: mean ± sd over seeds | min .. max |", "|---|---:|---:|"]
    for kind, k in summary["kinds"].items():
        d = k.get("delta")
        if d is None:  # a summary written before the spread was recorded
            continue
        sd = f"{d['sd']:.1f}" if d["sd"] is not None else "- (one seed)"
        lines.append(f"| {kind} - base | {d['mean']:+.1f} ± {sd} | {d['min']:+.1f} .. {d['max']:+.1f} |")
    return lines + [""]


def _unseen_markdown(summary: dict[str, Any]) -> str:
    base = summary["base"]
    lines = ["## Held-out score over training seeds (mean of held-out task medians)", "", *_headline(summary),
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
    lines += ["", "Δ [interval]: that seed's delta to the base with its within-run 95% paired-bootstrap interval "
              "over the evaluated rows (the adapter held fixed: no training noise in it); sd: sample standard "
              "deviation over training seeds.", ""]
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


def _clusters_markdown(c: dict[str, Any]) -> str:
    tasks = c["tasks"]
    lines = [f"## Held-out score as training clusters are added (held out whole: {', '.join(c['heldout_clusters'])};"
             f" seed {c['seed']})", "",
             "| training clusters | added | training tasks | " + " | ".join(tasks) + " | mean | Δ [95%] |",
             "|---:|---|---:|" + "---:|" * (len(tasks) + 2)]
    for p in c["points"]:
        ci = p["delta_interval"]
        delta = f"{ci['delta']:+.1f} [{ci['low']:+.1f}, {ci['high']:+.1f}]" if ci else "-"
        lines.append(f"| {p['clusters']} | {p['added'] or '(base)'} | {p['training_tasks']} | "
                     + " | ".join(f"{p['tasks'][t]:.1f}" for t in tasks) + f" | {p['overall']:.1f} | {delta} |")
    lines += ["", "Each row's adapter trains on every task of the clusters above it, same steps and options; "
              "scores are medians over templates (" + ", ".join(f"{t}: {m}" for t, m in c["metrics"].items())
              + "); Δ: to the base, paired bootstrap over the evaluated rows (within-run).", ""]
    return "\n".join(lines) + "\n"
