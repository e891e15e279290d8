"""A mixture as the table ``python -m t2t.mixture show`` prints: rates, draws per 1,000, templates, the
held-out split, the tasks excluded as related to it and the allowed source overlaps.

    mixture offline (task_registry/offline.yaml): ...
    rates: proportional, cap 3000; stop: infinite
    task              cluster    examples     rate  per 1k draws  templates
    sentiment_movie   sentiment      2000   0.1250         125.0  4
"""

from __future__ import annotations

from t2t.mixtures.resolve import Mixture


def show_table(mixture: Mixture) -> str:
    spec = mixture.spec
    policies = {(e.policy.choose, tuple(sorted(e.policy.variants.items()))) for e in mixture.entries}
    rates = spec.rate_text() + (f"; nested: {dict(spec.mixtures)}" if spec.mixtures else "")
    rates += f"; explicit weights: {dict(spec.weights)}" if spec.weights else ""
    lines = [f"mixture {mixture.name} ({spec.path})" + (f": {spec.description}" if spec.description else ""),
             f"rates: {rates}; stop: {mixture.stop}",
             "templates: " + " | ".join(f"{c}, variants " + ", ".join(f"{v} {s:.2f}" for v, s in var)
                                        for c, var in sorted(policies))]
    width = max([len(e.name) for e in mixture.entries] + [len(t.name) for t in mixture.heldout] + [5])
    cw = max([len(e.task.cluster) for e in mixture.entries] + [7])
    lines.append(f"{'task':<{width}}  {'cluster':<{cw}}  {'examples':>9}  {'rate':>7}  {'per 1k draws':>12}  "
                 "templates")
    for e in mixture.entries:
        lines.append(f"{e.name:<{width}}  {e.task.cluster:<{cw}}  {e.examples:>9}  {e.rate:>7.4f}  "
                     f"{1000 * e.rate:>12.1f}  {len(e.templates)}")
    total = sum(e.examples for e in mixture.entries)
    share = sum(mixture.rates.values())
    lines.append(f"{'total':<{width}}  {'':<{cw}}  {total:>9}  {share:>7.4f}  {1000 * share:>12.1f}")
    what = ", ".join(mixture.heldout_clusters) or "-"
    lines.append(f"held out ({len(mixture.heldout)} tasks; clusters: {what}): "
                 + (", ".join(f"{t.name} ({t.cluster})" for t in mixture.heldout) or "none"))
    if mixture.excluded:
        lines.append(f"not trained, related to a held-out cluster ({', '.join(mixture.related_clusters)}): "
                     + ", ".join(f"{t.name} ({t.cluster})" for t in mixture.excluded))
    if mixture.source_overlaps:
        pairs = ", ".join(f"{a} ~ {b}" for a, b in mixture.source_overlaps)
        lines.append(f"allowed source overlaps (training ~ held out): {pairs}")
    return "\n".join(lines)
