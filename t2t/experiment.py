"""``python -m t2t.experiment``: does multitask tuning beat single-task tuning on held-out tasks?

The recipe behind the README's table, on the offline suite by default, for each training seed:

1. (a) multitask: one LoRA adapter trained on every training task of the mixture;
2. (b) single-task: one LoRA adapter trained on one training task, same steps, batch and learning rate;

then one evaluation scores the base and every adapter zero-shot on the mixture's held-out tasks (median
over templates), each delta with a paired-bootstrap interval over the evaluated rows
(:mod:`t2t.evaluation.significance`), and a summary gives each kind's mean and spread over the seeds: the rows'
luck and the training run's luck, measured separately.

Both kinds see the same held-out split, so neither ever trains on a scored task. Everything lands in
``--output-dir`` (default ``runs/experiment``): ``seed-S/multitask/``, ``seed-S/single-<task>/``,
``eval/`` (report.md, results.json, report.png) and ``summary.md`` / ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from t2t.errors import T2TError, run_cli


def single_task_mixture(folder: Path, mixture_name: str, task: str, heldout: Sequence[str]) -> str:
    """Write a one-task mixture with the same held-out tasks as the multitask one; return its name."""
    name = f"single_{task}"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"description": f"{task} alone; held out as in mixture {mixture_name}",
            "include": {"tasks": [task]}, "heldout": {"tasks": list(heldout)}}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2t.experiment", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mixture", default="offline", help="multitask mixture (default offline)")
    parser.add_argument("--single-task", default="sentiment_movie",
                        help="the training task of the single-task adapter (default sentiment_movie)")
    parser.add_argument("--model", default="t2t-tiny")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated (default 0)")
    parser.add_argument("--limit", type=int, default=100, help="evaluation examples per held-out task")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples (0: none)")
    parser.add_argument("--output-dir", default="runs/experiment")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    from t2t.evaluate import check_output_dir
    from t2t.evaluation.runner import evaluate, write_outputs
    from t2t.mixtures.resolve import load_mixture
    from t2t.training.config import build_config
    from t2t.training.recipe import train

    try:
        seeds = list(dict.fromkeys(int(x) for x in args.seeds.split(",") if x.strip()))
    except ValueError:
        raise T2TError(f"--seeds {args.seeds}: give whole numbers separated by commas, e.g. 0,1,2") from None
    if not seeds:
        raise T2TError("--seeds: give at least one seed, e.g. 0")
    mixture = load_mixture(args.mixture)
    heldout = [t.name for t in mixture.heldout]
    if not heldout:
        raise T2TError(f"--mixture {args.mixture} holds nothing out; pick a mixture with a held-out split")
    if args.single_task not in mixture.rates:
        raise T2TError(f"--single-task {args.single_task} is not a training task of mixture {args.mixture} "
                       f"(training tasks: {', '.join(sorted(mixture.rates))})")
    out = Path(args.output_dir)
    check_output_dir(out / "eval", args.overwrite)  # refuse before hours of training, not after
    mix_dir = out / "mixtures"
    single = single_task_mixture(mix_dir, args.mixture, args.single_task, heldout)
    kinds = {"multitask": {"mixture": args.mixture},
             f"single-{args.single_task}": {"mixture": single, "mixture_dir": [str(mix_dir)]}}
    adapters: dict[str, str] = {}
    for seed in seeds:
        for kind, data in kinds.items():
            label = kind if len(seeds) == 1 else f"{kind}-s{seed}"
            cfg = build_config({"model": args.model, "max_steps": args.max_steps,
                                "batch_size": args.batch_size, "lr": args.lr, "seed": seed, "save_steps": 0,
                                "overwrite": args.overwrite, "output_dir": str(out / f"seed-{seed}" / kind),
                                **data})
            print(f"== training {label} ({cfg.data.mixture}, {cfg.train.max_steps} steps, seed {seed})",
                  flush=True)
            adapters[label] = train(cfg)["adapter_dir"]
    print(f"== evaluating base, {', '.join(adapters)} on {', '.join(heldout)}", flush=True)
    result = evaluate(args.model, adapters, list(mixture.heldout), limit=args.limit, seed=0, progress=True,
                      bootstrap=args.bootstrap)
    write_outputs(result, out / "eval")
    summary = summarize_seeds(result, list(kinds), seeds)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    text = summary_markdown(summary)
    (out / "summary.md").write_text(text, encoding="utf-8")
    print(result.markdown())
    print(text)
    return 0


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
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_cli(main))
