"""``python -m t2t.mixture``: list the mixtures, show one's tasks, rates and held-out split, sample its stream.

    python -m t2t.mixture list
    python -m t2t.mixture show NAME [--heldout C] [--json]
    python -m t2t.mixture sample NAME [--n N] [--seed S] [--heldout C] [--json]

The rules behind the rates and the held-out split: :mod:`t2t.mixtures.resolve`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from t2t.errors import T2TError, run_cli
from t2t.mixtures.resolve import Mixture, load_mixture
from t2t.mixtures.spec import STOP_POLICIES, MixtureRegistry


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2t.mixture", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list the mixtures")
    p_show = sub.add_parser("show", help="tasks, rates and the held-out split of a mixture")
    p_sample = sub.add_parser("sample", help="print rendered draws of a mixture's training stream")
    for p in (p_show, p_sample):
        p.add_argument("name")
        p.add_argument("--heldout", action="append", default=[], metavar="C",
                       help="extra held-out cluster or task (repeatable, or comma-separated)")
        p.add_argument("--allow-source-overlap", action="store_true", default=None,
                       help="allow training tasks that share a source dataset with a held-out task")
    p_sample.add_argument("--n", type=int, default=5, help="draws to print (default 5)")
    p_sample.add_argument("--seed", type=int, default=0)
    p_sample.add_argument("--start", type=int, default=0, help="first stream position")
    p_sample.add_argument("--stop", choices=STOP_POLICIES, help="override the mixture's stop policy")
    for p in (p_list, p_show, p_sample):
        p.add_argument("--json", action="store_true")
        p.add_argument("--mixture-dir", action="append", default=[], metavar="DIR",
                       help="extra folder of mixture files (repeatable; also T2T_MIXTURE_PATH)")
        p.add_argument("--task-dir", action="append", default=[], metavar="DIR",
                       help="extra folder of task files (repeatable; also T2T_TASK_PATH)")
        p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    args = parser.parse_args(argv)
    import datasets

    datasets.disable_progress_bars()

    if args.command == "list":
        specs = sorted(MixtureRegistry.load(args.mixture_dir), key=lambda s: s.name)
        if args.json:
            print(json.dumps([{"name": s.name, "path": str(s.path), "description": s.description}
                              for s in specs], indent=2))
        else:
            width = max([len(s.name) for s in specs] + [4])
            for s in specs:
                print(f"{s.name:<{width}}  {s.description or '-'}  ({s.path})")
        return 0
    mixture = load_mixture(args.name, heldout=args.heldout, allow_source_overlap=args.allow_source_overlap,
                           task_dirs=args.task_dir, mixture_dirs=args.mixture_dir)
    if args.command == "show":
        if args.json:
            manifest = mixture.manifest()
            for t in manifest["tasks"]:
                t["per_1000"] = 1000 * t["rate"]
            print(json.dumps(manifest, indent=2))
        else:
            print(show_table(mixture))
        return 0
    if args.n < 0 or args.start < 0:
        raise T2TError("--n and --start must not be negative")
    from t2t.mixtures.stream import ExampleStream  # torch (IterableDataset, ~6 s): only to sample

    stream = ExampleStream(mixture, seed=args.seed, stop=args.stop)
    draws = stream.draws(args.start, args.n)
    if args.json:
        print(json.dumps([d.as_dict() for d in draws], indent=2, ensure_ascii=False))
    else:
        for d in draws:
            print(f"--- [{d.position}] {d.example.task} / {d.example.template} / {d.variant} / row {d.row}")
            print(f"{d.example.input}\n>>> {d.example.target}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
