"""``python -m t2t.evaluate``: zero- or k-shot evaluation of a base model and its adapters, side by side.

Which tasks (one of):

* ``--tasks a,b`` and/or ``--clusters c,d``;
* ``--mixture M [--heldout C,...]``: the held-out part of mixture M (disjoint from its training tasks);
* nothing: the held-out tasks recorded in the first adapter's run (``<run>/manifest.json`` beside
  ``<run>/adapter``), as ``python -m t2t.finetune`` wrote them.

With no arguments at all it evaluates ``--model t2t-tiny`` and, if the offline demo ran,
``--adapter runs/offline-demo/adapter`` on its held-out tasks (else the ``offline`` mixture's).
An adapter whose run trained on a selected task (or on its source dataset) is refused, since its score
would not be held-out, unless ``--allow-train-tasks``; the report then names those tasks.

How each example is scored (REFERENCE.md, "Scoring"):

* tasks with answer choices: rank classification (:func:`t2t.evaluation.scoring.score_choices`), reported as
  ``acc`` (argmax of the summed log-probability, T0) and ``acc_norm`` (per character, lm-eval);
* other tasks: greedy (or ``--num-beams``) generation with ``--max-new-tokens`` (default per task: the
  longest reference in tokens + 8), scored with the task file's ``metrics``.

Only the non-inverted templates are scored; a task's result is the median over templates with the
spread, a cluster's the mean of its task medians (:mod:`t2t.evaluation.report`); each adapter's deltas get a 95%
interval from a paired bootstrap over the evaluated rows (``--bootstrap N``, :mod:`t2t.evaluation.significance`).
``--limit N`` takes the first N rows of the split. ``--num-shots K`` prepends K exemplars from the train
split, FLAN style (``x + "\\n\\n" + y``, joined and followed by ``"\\n\\n\\n"``), drawn per example from
``--seed``, never the example itself; when the prompt exceeds ``--max-input-len`` the farthest exemplars
are dropped (:mod:`t2t.evaluation.prompts`).

The base model is loaded once; adapters are loaded onto it one after another with peft.
Outputs in ``--output-dir`` (default ``<run>/eval`` for a t2t.finetune run, ``<adapter>/eval`` for
another adapter, else ``runs/eval``): ``report.md`` (also printed), ``results.json`` (config, library
versions, per-template scores, aggregates, and per-example predictions with ``--log-samples``) and
``report.png``. A folder that already holds results is refused unless ``--overwrite``.

    python -m t2t.evaluate --adapter runs/offline-demo/adapter
    python -m t2t.evaluate --model google/flan-t5-base --tasks rte,copa --num-shots 2 --limit 200
    python -m t2t.evaluate --adapter base-lr3=runs/a/adapter --adapter runs/b/adapter --mixture offline
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2t.errors import T2TError, run_cli
from t2t.evaluation.adapter_runs import AdapterRun, check_not_trained, read_adapter
from t2t.evaluation.runner import OUTPUT_FILES, _device, evaluate, write_outputs
from t2t.mixtures.resolve import heldout_split
from t2t.modeling.config import DEFAULT_MODEL
from t2t.tasks.registry import TaskRegistry
from t2t.tasks.task import Task, warn

DEMO_ADAPTER = Path("runs/offline-demo/adapter")


DEMO_MIXTURE = "offline"


def _names(values: Sequence[str] | None) -> list[str]:
    return [n.strip() for v in values or () for n in v.split(",") if n.strip()]


def select_tasks(args: argparse.Namespace, runs: Sequence[AdapterRun]) -> tuple[list[Task], dict[str, Any]]:
    """The tasks to evaluate and a record of how they were chosen."""
    registry = TaskRegistry.load(args.task_dir)
    names, clusters, heldout = _names(args.tasks), _names(args.clusters), _names(args.heldout)
    if (names or clusters) and (args.mixture or heldout):
        raise T2TError("choose tasks with --tasks/--clusters or with --mixture/--heldout, not both")
    if names or clusters:
        tasks = {t.name: t for c in clusters for t in registry.by_cluster(c)}
        tasks.update({n: registry.get(n) for n in names})
        chosen = sorted(tasks.values(), key=lambda t: (t.cluster, t.name))
        return chosen, {"tasks": names, "clusters": clusters}
    run = next((r for r in runs if r.manifest is not None), None)
    if args.mixture is None and run is not None and not heldout:
        recorded = [t["name"] for t in run.manifest.get("heldout", {}).get("tasks", [])]
        if not recorded:
            raise T2TError(f"{run.path.parent}/manifest.json records no held-out task; pick tasks with "
                           "--tasks or --mixture")
        try:
            tasks = [registry.get(n) for n in recorded]
        except T2TError as exc:
            raise T2TError(f"{run.path.parent}/manifest.json: {exc}; pass the run's --task-dir") from None
        return tasks, {"heldout_of": str(run.path.parent / "manifest.json"),
                       "mixture": run.manifest.get("mixture")}
    mixture = args.mixture or (run.manifest.get("mixture") if run is not None else None)
    if mixture is None:
        raise T2TError("no tasks chosen: pass --tasks, --clusters or --mixture M [--heldout C] (the adapter "
                       "has no manifest.json beside it to take its held-out tasks from)")
    # The run's own extra held-out names apply when the mixture is the run's.
    extra = list(run.manifest.get("extra_heldout", [])) if run is not None and not args.mixture else []
    split = heldout_split(mixture, heldout=extra + heldout, task_dirs=args.task_dir,
                          mixture_dirs=args.mixture_dir, tasks=registry)
    assert not {t.name for t in split.train} & {t.name for t in split.heldout}
    if not split.heldout:
        raise T2TError(f"mixture '{mixture}' holds nothing out; add --heldout CLUSTER or use --tasks")
    return split.heldout, {"mixture": mixture, "heldout": extra + heldout,
                           "train_tasks": sorted(t.name for t in split.train)}


def default_output_dir(runs: Sequence[AdapterRun]) -> Path:
    if not runs:
        return Path("runs/eval")
    first = runs[0]
    return (first.run_dir or first.path) / "eval"


def check_output_dir(out: Path, overwrite: bool) -> Path:
    """Refuse to replace earlier results silently (checked before any model is loaded)."""
    if out.exists() and not out.is_dir():
        raise T2TError(f"--output-dir {out} is a file, not a folder")
    existing = [f for f in OUTPUT_FILES if (out / f).exists()]
    if existing and not overwrite:
        raise T2TError(f"--output-dir {out} already holds results ({', '.join(existing)}); pass --overwrite "
                       "to replace them or choose another --output-dir")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m t2t.evaluate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Zero- or k-shot evaluation of a base model and its adapters, side by side.",
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    a = p.add_argument
    a("--model", default=None, help=f"base model: hub name, folder or {DEFAULT_MODEL} (default: the "
                                    f"adapter run's base model, else {DEFAULT_MODEL})")
    a("--adapter", action="append", default=[], metavar="[LABEL=]DIR",
      help="peft adapter folder (repeatable); LABEL defaults to the (run) folder name")
    a("--tasks", action="append", metavar="A,B", help="tasks to evaluate (comma-separated, repeatable)")
    a("--clusters", action="append", metavar="C", help="evaluate every task of these clusters")
    a("--mixture", help="evaluate the held-out tasks of this mixture")
    a("--heldout", action="append", metavar="C", help="extra held-out clusters or tasks of the mixture")
    a("--allow-train-tasks", action="store_true",
      help="report tasks an adapter was trained on (flagged: not held-out)")
    a("--split", default="validation", help="split to score (default validation; else test, then train)")
    a("--num-shots", type=int, default=0, help="exemplars from the train split per prompt (default 0)")
    a("--limit", type=int, help="score the first N rows of each task")
    a("--batch-size", type=int, default=None,
      help="inputs per forward pass (default: 8 on CPU, where it measured fastest, 32 on a GPU)")
    a("--max-input-len", type=int, default=1024, help="input tokens kept (default 1024; EOS kept)")
    a("--max-new-tokens", type=int, help="generation budget (default: longest reference + 8, per task)")
    a("--num-beams", type=int, default=1, help="beam search width (default 1: greedy)")
    a("--precision", default="fp32", choices=("fp32", "bf16"))
    a("--output-dir", help="default <run>/eval, <adapter>/eval or runs/eval")
    a("--overwrite", action="store_true", help="replace results already in --output-dir")
    a("--log-samples", action="store_true", help="keep every prompt and prediction in results.json")
    a("--bootstrap", type=int, default=1000, metavar="N",
      help="paired bootstrap resamples of the evaluated rows for each adapter's delta interval (0: none; "
           "default 1000)")
    a("--seed", type=int, default=0)
    a("--task-dir", action="append", default=[], metavar="DIR", help="extra task folder (repeatable)")
    a("--mixture-dir", action="append", default=[], metavar="DIR", help="extra mixture folder (repeatable)")
    a("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    a("--no-progress", action="store_true", help="no progress bars")
    a("--debug", action="store_true", help="show tracebacks for errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not argv:
        if DEMO_ADAPTER.is_dir():
            args.adapter = [str(DEMO_ADAPTER)]
            print(f"no options: evaluating --model {DEFAULT_MODEL} --adapter {DEMO_ADAPTER} on its held-out "
                  "tasks", file=sys.stderr)
        else:
            args.mixture = DEMO_MIXTURE
            print(f"no options: evaluating --model {DEFAULT_MODEL} --mixture {DEMO_MIXTURE} (base only; no "
                  f"adapter at {DEMO_ADAPTER}: run python -m t2t.finetune first)", file=sys.stderr)
    runs = [read_adapter(spec) for spec in args.adapter]
    bases = {r.base_model for r in runs if r.base_model}
    if args.model is None:
        args.model = next(iter(bases)) if len(bases) == 1 else DEFAULT_MODEL
    elif bases - {args.model}:
        warn(f"--model {args.model}, but the adapters were trained on {', '.join(sorted(bases))}")
    if not args.task_dir:  # an adapter run trained on extra task folders names them in its config
        data = ((runs[0].config or {}).get("data") or {}) if runs else {}
        args.task_dir = list(data.get("task_dir") or ())
    out = Path(args.output_dir) if args.output_dir else default_output_dir(runs)
    check_output_dir(out, args.overwrite)

    import datasets

    datasets.disable_progress_bars()
    tasks, chosen = select_tasks(args, runs)
    trained = check_not_trained(tasks, runs, args.allow_train_tasks)
    print(f"evaluating {args.model}" + "".join(f" + {r.label} ({r.path})" for r in runs)
          + f" on {len(tasks)} task(s): {', '.join(t.name for t in tasks)}", file=sys.stderr)
    result = evaluate(args.model, {r.label: r.path for r in runs}, tasks, split=args.split,
                      num_shots=args.num_shots, limit=args.limit,
                      batch_size=args.batch_size or (32 if _device(args.device).startswith("cuda") else 8),
                      max_input_len=args.max_input_len, max_new_tokens=args.max_new_tokens,
                      num_beams=args.num_beams, seed=args.seed, device=args.device, precision=args.precision,
                      log_samples=args.log_samples, task_dirs=args.task_dir, progress=not args.no_progress,
                      bootstrap=args.bootstrap)
    result.settings["selection"] = chosen
    result.settings["argv"] = argv
    result.notes += [f"{label} was trained on {', '.join(names)}: not held-out"
                     for label, names in trained.items()]
    paths = write_outputs(result, out)
    print(result.markdown())
    print(f"wrote {', '.join(map(str, paths.values()))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
