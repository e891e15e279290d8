"""What ``python -m t2t.evaluate`` scores, resolved from its options and the adapters' runs.

* the tasks (:func:`select_tasks`): ``--tasks``/``--clusters``; the held-out part of ``--mixture``; else
  the held-out tasks recorded in the first adapter's run (``<run>/manifest.json``);
* the base model, its revision and the task folders (:func:`resolve_from_runs`): the adapter run's, as
  ``python -m t2t.finetune`` recorded them in ``<run>/config.json``, unless given;
* the output folder: ``<run>/eval`` for a t2t.finetune run, ``<adapter>/eval`` for another adapter, else
  ``runs/eval``.

An adapter scored on another revision of its base than it was trained on is refused
(:func:`base_revision`): the weights it was fitted to are not the ones it would be added to, and nothing
in the scores would show it. ``--allow-revision-mismatch`` scores it anyway, with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2t import config as configs
from t2t.errors import T2TError
from t2t.evaluation.adapter_runs import AdapterRun
from t2t.evaluation.config import COMMAND, EvaluateConfig
from t2t.mixtures.resolve import heldout_split
from t2t.modeling.config import DEFAULT_MODEL
from t2t.tasks.registry import TaskRegistry
from t2t.tasks.task import Task, warn


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


def resolve_from_runs(cfg: EvaluateConfig, runs: Sequence[AdapterRun]) -> EvaluateConfig:
    """Fill the defaults that come from the adapters' runs: base model, task folders, output folder."""
    bases = {r.base_model for r in runs if r.base_model}
    values: dict[str, Any] = {}
    if cfg.model.model is None:  # another base than an adapter's is refused once it is built (adapter_base)
        values["model"] = next(iter(bases)) if len(bases) == 1 else DEFAULT_MODEL
    revision = base_revision(cfg, runs, values.get("model", cfg.model.model))
    if revision != cfg.model.revision:
        values["revision"] = revision
    if not cfg.tasks.task_dir:  # an adapter run trained on extra task folders names them in its config
        data = ((runs[0].config or {}).get("data") or {}) if runs else {}
        values["task_dir"] = list(data.get("task_dir") or ())
    # a causal adapter is scored with the prompt format it was trained on, unless the options say otherwise
    # (a seq2seq run records these causal-only options too, unused: they are not its format)
    run_config = (runs[0].config or {}) if runs else {}
    trained = (run_config.get("data") or {}) if run_config.get("model_family") == "causal" else {}
    for key in ("chat_template", "target_delimiter"):
        if getattr(cfg.scoring, key) is None and trained.get(key) is not None:
            values[key] = trained[key]
    if cfg.output.output_dir is None:
        values["output_dir"] = str(default_output_dir(runs))
    return configs.override(cfg, values, "options", COMMAND) if values else cfg


def _revision_text(revision: str | None) -> str:
    return f"revision {revision}" if revision else "the default revision (no --revision)"


def base_revision(cfg: EvaluateConfig, runs: Sequence[AdapterRun], model: str | None) -> str | None:
    """The revision of the base model to load: ``--revision``, else the one the adapters were trained on.

    Adapters of runs on ``model`` that were trained on another revision (or on several) are refused unless
    ``--allow-revision-mismatch``: the message names both revisions and the way out."""
    trained = {r.label: r.base_revision for r in runs if r.config is not None and r.base_model == model}
    wanted = cfg.model.revision
    if wanted is None:
        found = set(trained.values())
        if len(found) <= 1:
            return next(iter(found), None)
        if not cfg.model.allow_revision_mismatch:
            listed = ", ".join(f"{label} on {_revision_text(rev)}" for label, rev in trained.items())
            raise T2TError(f"the adapters were trained on different revisions of {model} ({listed}); evaluate "
                           "them separately, or pick one with --revision REV and pass --allow-revision-mismatch")
        return None
    wrong = {label: rev for label, rev in trained.items() if rev != wanted}
    for label, rev in wrong.items():
        text = (f"--revision {wanted}: adapter {label} was trained on {_revision_text(rev)} of {model}")
        if not cfg.model.allow_revision_mismatch:
            fix = f"--revision {rev}" if rev else "no --revision"
            raise T2TError(f"{text}; score it on its own base ({fix}), or pass --allow-revision-mismatch to "
                           "score it on this one")
        warn(f"{text}; scored on {wanted} (--allow-revision-mismatch)")
    return wanted
