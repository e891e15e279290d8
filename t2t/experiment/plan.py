"""What an experiment trains and scores, decided before anything is trained.

From the config and the multitask mixture: the training runs of each seed (``multitask`` and
``single-<task>``, with the overfitting part's snapshots and validation rows), the specialists of the
one-vs-many part (one per training task, or per cluster), the mixture file of every specialist (the
multitask mixture's held-out tasks, rate rule and template policy, its own tasks), and the evaluation
folders. Every output folder is checked by the one output-folder policy (:mod:`t2t.outputs`) before hours
of training, not after.

    multitask mixture "offline", --single-task sentiment_movie, --parts unseen,one_vs_many:
      kinds     multitask, single-sentiment_movie          (trained for every seed)
      extra     single-<every other training task>         (first seed only)
      folders   eval/, one-vs-many/<task>/ for each training task

    --parts clusters --curve-heldout arithmetic,comparison (FLAN's curve over training clusters):
      extra     clusters-1 .. clusters-4: every task of the first K other clusters   (first seed only)
      folders   clusters/eval/ (the base and clusters-K on the held-out clusters' tasks)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from t2t.atomic import write_text
from t2t.errors import T2TError
from t2t.evaluation.runner import OUTPUT_FILES
from t2t.experiment.config import ExperimentConfig
from t2t.mixtures.resolve import Mixture, load_mixture
from t2t.outputs import check_output_dir

SUMMARY_FILES = ("summary.json", "summary.md")


@dataclass
class Plan:
    """The runs and evaluations of one experiment."""

    mixture: Mixture
    kinds: dict[str, dict[str, Any]]  # kind -> finetune options of its run, trained for every seed
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # specialists trained for the first seed
    specialists: dict[str, str] = field(default_factory=dict)  # training task -> kind of its specialist
    curve: list[dict[str, Any]] = field(default_factory=list)  # clusters part: kind, clusters, tasks per point
    curve_tasks: list[str] = field(default_factory=list)  # clusters part: the tasks of the held-out clusters


def _mixture_file(folder: Path, name: str, description: str, tasks: Sequence[str], heldout: Sequence[str],
                  like: Any) -> str:
    """Write a mixture of ``tasks`` with the held-out tasks, rate rule and template policy of ``like`` (the
    multitask mixture's spec), so that a specialist differs from the multitask adapter only in its tasks."""
    folder.mkdir(parents=True, exist_ok=True)
    rate = {"strategy": like.strategy, "cap": like.cap, "cap_per_template": like.cap_per_template,
            "temperature": like.temperature if like.strategy == "temperature" else None,
            "scale": like.scale if like.scale != 1.0 else None}
    spec = {"description": description, "include": {"tasks": list(tasks)}, "heldout": {"tasks": list(heldout)},
            "rate": {k: v for k, v in rate.items() if v is not None}, "templates": like.templates.as_dict()}
    write_text(folder / f"{name}.yaml", yaml.safe_dump(spec, sort_keys=False))
    return name


def single_task_mixture(folder: Path, mixture: Any, task: str, heldout: Sequence[str]) -> str:
    """Write a one-task mixture with the same held-out tasks as the multitask one; return its name."""
    return _mixture_file(folder, f"single_{task}", f"{task} alone; held out as in mixture {mixture.spec.name}",
                         [task], heldout, mixture.spec)


def cluster_mixture(folder: Path, mixture: Any, cluster: str, heldout: Sequence[str]) -> str:
    """Write a mixture of the multitask mixture's training tasks of one cluster; return its name."""
    tasks = sorted(e.task.name for e in mixture.entries if e.task.cluster == cluster)
    return _mixture_file(folder, f"cluster_{cluster}", f"the {cluster} training tasks of {mixture.spec.name}",
                         tasks, heldout, mixture.spec)


def suite_clusters(mixture: Mixture) -> dict[str, list[str]]:
    """Cluster -> its task names, over every task the mixture knows (trained and held out), sorted."""
    clusters: dict[str, list[str]] = {}
    for task in [*(e.task for e in mixture.entries), *mixture.heldout]:
        clusters.setdefault(task.cluster, []).append(task.name)
    return {c: sorted(names) for c, names in sorted(clusters.items())}


def cluster_curve(mixture: Mixture, heldout: Sequence[str]) -> tuple[list[str], list[str]]:
    """The clusters part's split: (the training clusters in the order they are added, the held-out tasks).

    FLAN 2021 (Wei et al., section 4.3, "Number of instruction tuning clusters") holds out whole clusters
    and adds the others "in decreasing order of number of tasks per cluster"; ties here go by name."""
    clusters = suite_clusters(mixture)
    unknown = [c for c in heldout if c not in clusters]
    if unknown:
        raise T2TError(f"--curve-heldout {','.join(unknown)}: no such cluster among the tasks of mixture "
                       f"{mixture.spec.name} (clusters: {', '.join(clusters)})")
    order = sorted((c for c in clusters if c not in heldout), key=lambda c: (-len(clusters[c]), c))
    if not order:
        raise T2TError(f"--curve-heldout {','.join(heldout)}: every cluster is held out; leave at least one "
                       "to train on")
    return order, [name for c in heldout for name in clusters[c]]


def load_plan_mixture(cfg: ExperimentConfig) -> Mixture:
    """The multitask mixture, checked: it holds something out and trains the single task."""
    x, d = cfg.experiment, cfg.finetune.data
    mixture = load_mixture(d.mixture, heldout=d.heldout, task_dirs=d.task_dir, mixture_dirs=d.mixture_dir)
    if not mixture.heldout:
        raise T2TError(f"--mixture {d.mixture} holds nothing out; pick a mixture with a held-out split")
    if x.single_task not in mixture.rates:
        raise T2TError(f"--single-task {x.single_task} is not a training task of mixture {d.mixture} "
                       f"(training tasks: {', '.join(sorted(mixture.rates))})")
    return mixture


def check_folders(cfg: ExperimentConfig, mixture: Mixture) -> list[str]:
    """The evaluation folders the parts write; each, and the summary, refused without ``--overwrite``."""
    x = cfg.experiment
    train_tasks = sorted(mixture.entries, key=lambda e: (e.task.cluster, e.task.name))
    folders = (["eval"] if "unseen" in x.parts else []) + (
        ["overfitting/eval"] if "overfitting" in x.parts else []) + (
        [f"one-vs-many/{e.task.name}" for e in train_tasks] if "one_vs_many" in x.parts else []) + (
        ["clusters/eval"] if "clusters" in x.parts else [])
    out = Path(x.output_dir)
    check_output_dir(out, SUMMARY_FILES, x.overwrite)
    for folder in folders:
        check_output_dir(out / folder, OUTPUT_FILES, x.overwrite)
    return folders


def make_plan(cfg: ExperimentConfig, mixture: Mixture) -> Plan:
    """The runs: (a) multitask and (b) single-task for every seed, with the overfitting part's snapshots
    and validation rows; the one-vs-many part's specialists; their mixture files in ``<out>/mixtures``."""
    x, d = cfg.experiment, cfg.finetune.data
    heldout = [t.name for t in mixture.heldout]
    mix_dir = Path(x.output_dir) / "mixtures"
    mix_dirs = [*d.mixture_dir, str(mix_dir)]
    single = single_task_mixture(mix_dir, mixture, x.single_task, heldout)
    # the specialists' mixture files list the held-out tasks themselves
    kinds: dict[str, dict[str, Any]] = {
        "multitask": {}, f"single-{x.single_task}": {"mixture": single, "mixture_dir": mix_dirs, "heldout": []}}
    if "overfitting" in x.parts:
        # snapshots and validation losses at the same steps; the specialist's task gets the same first
        # validation rows in both runs (the recipe takes eval_examples // tasks rows of each task)
        every = cfg.curve_steps()[0]
        n_val = sum(1 for e in mixture.entries if "validation" in e.task.splits)
        curve = {"snapshot_steps": every, "eval_steps": every, "eval_per_task": True}
        kinds["multitask"].update(curve, eval_examples=x.curve_rows * n_val)
        kinds[f"single-{x.single_task}"].update(curve, eval_examples=x.curve_rows)
    if not {"unseen", "overfitting", "one_vs_many"} & set(x.parts):
        kinds = {}  # the clusters part alone trains only its own runs
    plan = Plan(mixture, kinds)
    if "one_vs_many" in x.parts:
        for entry in sorted(mixture.entries, key=lambda e: (e.task.cluster, e.task.name)):
            task, cluster = entry.task.name, entry.task.cluster
            kind = plan.specialists[task] = f"single-{task}" if x.specialists == "task" else f"cluster-{cluster}"
            if kind not in kinds and kind not in plan.extra:
                name = (single_task_mixture(mix_dir, mixture, task, heldout) if x.specialists == "task"
                        else cluster_mixture(mix_dir, mixture, cluster, heldout))
                plan.extra[kind] = {"mixture": name, "mixture_dir": mix_dirs, "heldout": []}
    if "clusters" in x.parts:
        add_cluster_curve(plan, mix_dir, mix_dirs, x.curve_heldout)
    return plan


def add_cluster_curve(plan: Plan, mix_dir: Path, mix_dirs: list[str], heldout: Sequence[str]) -> None:
    """The clusters part's runs (first seed): ``clusters-K`` trains on every task of the first K training
    clusters, with the held-out clusters' tasks held out, for K = 1 .. the number of training clusters."""
    mixture = plan.mixture
    order, plan.curve_tasks = cluster_curve(mixture, heldout)
    clusters = suite_clusters(mixture)
    for k in range(1, len(order) + 1):
        tasks = [name for c in order[:k] for name in clusters[c]]
        name = _mixture_file(mix_dir, f"clusters_{k}", f"the first {k} training clusters of "
                             f"{mixture.spec.name} ({', '.join(order[:k])})", tasks, plan.curve_tasks, mixture.spec)
        kind = f"clusters-{k}"
        plan.extra[kind] = {"mixture": name, "mixture_dir": mix_dirs, "heldout": []}
        plan.curve.append({"kind": kind, "clusters": order[:k], "tasks": len(tasks)})
