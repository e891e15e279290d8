"""``python -m t2t.experiment``: does multitask tuning beat single-task tuning on held-out tasks?

The recipe behind the README's table, on the offline suite by default:

1. (a) multitask: one LoRA adapter trained on every training task of the mixture;
2. (b) single-task: one LoRA adapter trained on one training task, same steps, batch and learning rate;
3. evaluate base, (a) and (b) zero-shot on the mixture's held-out tasks, median over templates.

Both adapters see the same held-out split, so neither ever trains on a scored task. Everything lands in
``--output-dir`` (default ``runs/experiment``): ``multitask/``, ``single-<task>/``, ``eval/``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=100, help="evaluation examples per held-out task")
    parser.add_argument("--output-dir", default="runs/experiment")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    from t2t.config import build_config
    from t2t.evaluate import evaluate, write_outputs
    from t2t.mixture import load_mixture
    from t2t.trainer import train

    mixture = load_mixture(args.mixture)
    heldout = [t.name for t in mixture.heldout]
    if not heldout:
        raise T2TError(f"--mixture {args.mixture} holds nothing out; pick a mixture with a held-out split")
    if args.single_task not in mixture.rates:
        raise T2TError(f"--single-task {args.single_task} is not a training task of mixture {args.mixture} "
                       f"(training tasks: {', '.join(sorted(mixture.rates))})")
    out = Path(args.output_dir)
    common = {"model": args.model, "max_steps": args.max_steps, "batch_size": args.batch_size, "lr": args.lr,
              "seed": args.seed, "overwrite": args.overwrite, "save_steps": 0}
    mix_dir = out / "mixtures"
    single = single_task_mixture(mix_dir, args.mixture, args.single_task, heldout)
    single_label = f"single-{args.single_task}"
    runs = {
        "multitask": build_config({**common, "mixture": args.mixture, "output_dir": str(out / "multitask")}),
        single_label: build_config({**common, "mixture": single, "mixture_dir": [str(mix_dir)],
                                    "output_dir": str(out / single_label)}),
    }
    adapters = {}
    for label, cfg in runs.items():
        print(f"== training {label} ({cfg.data.mixture}, {cfg.train.max_steps} steps)", flush=True)
        adapters[label] = train(cfg)["adapter_dir"]
    print(f"== evaluating base, {', '.join(adapters)} on {', '.join(heldout)}", flush=True)
    result = evaluate(args.model, adapters, list(mixture.heldout), limit=args.limit, seed=args.seed,
                      progress=True)
    write_outputs(result, out / "eval")
    print(result.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
