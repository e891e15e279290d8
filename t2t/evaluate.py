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

How each example is scored (sources in docs/references.md, "Scoring"):

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
versions, per-template scores, aggregates, and per-example predictions with ``--log-samples``),
``report.png`` and ``config.yaml``, the resolved options (``--config`` it to run the same evaluation
again). A folder that already holds results is refused unless ``--overwrite``.

Options: defaults < ``--config`` YAML (flat keys, or under model/tasks/scoring/output) < flags; lists
are comma-separated and repeatable; a yes/no option is given bare (``--log-samples``), with a value
(``--log-samples false``) or negated (``--no-progress``).

    python -m t2t.evaluate --adapter runs/offline-demo/adapter
    python -m t2t.evaluate --model google/flan-t5-base --tasks rte,copa --num-shots 2 --limit 200
    python -m t2t.evaluate --adapter base-lr3=runs/a/adapter --adapter runs/b/adapter --mixture offline
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2t import config as configs
from t2t.errors import T2TError, run_cli
from t2t.evaluation.adapter_runs import AdapterRun, check_not_trained, read_adapter
from t2t.evaluation.config import COMMAND, EvaluateConfig, add_arguments, config_from_args, parse_bool_flags
from t2t.evaluation.runner import OUTPUT_FILES, evaluate, write_outputs
from t2t.mixtures.resolve import heldout_split
from t2t.modeling.config import DEFAULT_MODEL
from t2t.tasks.registry import TaskRegistry
from t2t.tasks.task import Task, warn

DEMO_ADAPTER = Path("runs/offline-demo/adapter")


DEMO_MIXTURE = "offline"


def select_tasks(cfg: EvaluateConfig, runs: Sequence[AdapterRun]) -> tuple[list[Task], dict[str, Any]]:
    """The tasks to evaluate and a record of how they were chosen."""
    t = cfg.tasks
    registry = TaskRegistry.load(t.task_dir)
    names, clusters, heldout = list(t.tasks), list(t.clusters), list(t.heldout)  # not both: validate()
    if names or clusters:
        tasks = {task.name: task for c in clusters for task in registry.by_cluster(c)}
        tasks.update({n: registry.get(n) for n in names})
        chosen = sorted(tasks.values(), key=lambda task: (task.cluster, task.name))
        return chosen, {"tasks": names, "clusters": clusters}
    run = next((r for r in runs if r.manifest is not None), None)
    if t.mixture is None and run is not None and not heldout:
        recorded = [task["name"] for task in run.manifest.get("heldout", {}).get("tasks", [])]
        if not recorded:
            raise T2TError(f"{run.path.parent}/manifest.json records no held-out task; pick tasks with "
                           "--tasks or --mixture")
        try:
            tasks = [registry.get(n) for n in recorded]
        except T2TError as exc:
            raise T2TError(f"{run.path.parent}/manifest.json: {exc}; pass the run's --task-dir") from None
        return tasks, {"heldout_of": str(run.path.parent / "manifest.json"),
                       "mixture": run.manifest.get("mixture")}
    mixture = t.mixture or (run.manifest.get("mixture") if run is not None else None)
    if mixture is None:
        raise T2TError("no tasks chosen: pass --tasks, --clusters or --mixture M [--heldout C] (the adapter "
                       "has no manifest.json beside it to take its held-out tasks from)")
    # The run's own extra held-out names apply when the mixture is the run's.
    extra = list(run.manifest.get("extra_heldout", [])) if run is not None and not t.mixture else []
    split = heldout_split(mixture, heldout=extra + heldout, task_dirs=t.task_dir, mixture_dirs=t.mixture_dir,
                          tasks=registry)
    assert not {task.name for task in split.train} & {task.name for task in split.heldout}
    if not split.heldout:
        raise T2TError(f"mixture '{mixture}' holds nothing out; add --heldout CLUSTER or use --tasks")
    return split.heldout, {"mixture": mixture, "heldout": extra + heldout,
                           "train_tasks": sorted(task.name for task in split.train)}


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
    check_writable(out)
    return out


def check_writable(out: Path) -> None:
    """The report can be written there: found out before the models are scored, not after."""
    if out.is_dir():
        probe = out / f".write-test-{os.getpid()}"
        try:
            with open(probe, "w") as f:
                f.write("ok")
            probe.unlink()
        except OSError as exc:
            raise T2TError(f"--output-dir {out} is not writable ({exc.strerror or exc}); choose another "
                           "--output-dir") from None
        return
    parent = next((p for p in out.parents if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise T2TError(f"--output-dir {out}: cannot create it in {parent} (not a writable folder); choose another "
                       "--output-dir")


def resolve_from_runs(cfg: EvaluateConfig, runs: Sequence[AdapterRun]) -> EvaluateConfig:
    """Fill the defaults that come from the adapters' runs: base model, task folders, output folder."""
    bases = {r.base_model for r in runs if r.base_model}
    values: dict[str, Any] = {}
    if cfg.model.model is None:
        values["model"] = next(iter(bases)) if len(bases) == 1 else DEFAULT_MODEL
    elif bases - {cfg.model.model}:
        warn(f"--model {cfg.model.model}, but the adapters were trained on {', '.join(sorted(bases))}")
    if not cfg.tasks.task_dir:  # an adapter run trained on extra task folders names them in its config
        data = ((runs[0].config or {}).get("data") or {}) if runs else {}
        values["task_dir"] = list(data.get("task_dir") or ())
    # a causal adapter is scored with the prompt format it was trained on, unless the options say otherwise
    trained = ((runs[0].config or {}).get("data") or {}) if runs else {}
    for key in ("chat_template", "target_delimiter"):
        if getattr(cfg.scoring, key) is None and trained.get(key) is not None:
            values[key] = trained[key]
    if cfg.output.output_dir is None:
        values["output_dir"] = str(default_output_dir(runs))
    return configs.override(cfg, values, "options", COMMAND) if values else cfg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m t2t.evaluate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Zero- or k-shot evaluation of a base model and its adapters, side by side.",
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    add_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = configs.parse_args(build_parser(), parse_bool_flags(argv), COMMAND)
    cfg = config_from_args(args)
    if not argv:
        if DEMO_ADAPTER.is_dir():
            cfg = cfg.override(adapter=[str(DEMO_ADAPTER)])
            print(f"no options: evaluating --model {DEFAULT_MODEL} --adapter {DEMO_ADAPTER} on its held-out "
                  "tasks", file=sys.stderr)
        else:
            cfg = cfg.override(mixture=DEMO_MIXTURE)
            print(f"no options: evaluating --model {DEFAULT_MODEL} --mixture {DEMO_MIXTURE} (base only; no "
                  f"adapter at {DEMO_ADAPTER}: run python -m t2t.finetune first)", file=sys.stderr)
    runs = [read_adapter(spec) for spec in cfg.model.adapter]
    cfg = resolve_from_runs(cfg, runs)
    out = check_output_dir(Path(cfg.output.output_dir), cfg.output.overwrite)

    import datasets

    datasets.disable_progress_bars()
    tasks, chosen = select_tasks(cfg, runs)
    trained = check_not_trained(tasks, runs, cfg.tasks.allow_train_tasks)
    print(f"evaluating {cfg.model.model}" + "".join(f" + {r.label} ({r.path})" for r in runs)
          + f" on {len(tasks)} task(s): {', '.join(t.name for t in tasks)}", file=sys.stderr)
    result = evaluate(cfg, tasks, {r.label: r.path for r in runs})
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
