"""The experiment, run: every adapter trained, every part scored, the summary written.

For each seed the plan's kinds are trained (:func:`t2t.training.recipe.train`), then the extra
specialists once; then each part that was asked for is scored through the evaluation library
(:func:`t2t.evaluation.runner.evaluate`, one evaluation per folder, written with its ``config.yaml``):

1. ``unseen``: the base and every adapter on the mixture's held-out tasks (:func:`unseen_part`);
2. ``overfitting``: every snapshot of (a) and (b) on the specialist's task, beside the validation loss
   logged at the same steps on the same rows (:func:`overfitting_part`);
3. ``one_vs_many``: the first seed's multitask adapter against each training task's specialist
   (:func:`one_vs_many_part`), with the trainable parameters, disk and training time of each side;
4. ``clusters``: the base and the ``clusters-K`` adapters (the first K training clusters) on the tasks of
   the clusters held out whole (:func:`clusters_part`): FLAN's curve over the number of training clusters.

The experiment folder is locked for the whole run (:class:`t2t.outputs.FolderLock`), its
``config.yaml`` written first (``--config`` it to run the same experiment again).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2t import config as configs
from t2t.atomic import write_json, write_text
from t2t.errors import T2TError
from t2t.evaluation.adapter_runs import read_adapter
from t2t.evaluation.runner import evaluate, write_outputs
from t2t.evaluation.selection import resolve_from_runs
from t2t.experiment.config import ExperimentConfig
from t2t.experiment.plan import Plan, check_folders, load_plan_mixture, make_plan
from t2t.experiment.report import _overfit_stats, summarize_seeds, summary_markdown
from t2t.outputs import FolderLock, create_output_dir, writing


def label(kind: str, seed: int, seeds: Sequence[int]) -> str:
    """A run's model label: its kind, and its seed when there are several."""
    return kind if len(seeds) == 1 else f"{kind}-s{seed}"


def run_experiment(cfg: ExperimentConfig) -> dict[str, Any]:
    """Check every output folder, train every run of the plan, score the parts; return the summary (also
    written as ``summary.json`` / ``summary.md``)."""
    mixture = load_plan_mixture(cfg)
    check_folders(cfg, mixture)  # before hours of training, not after
    out = create_output_dir(Path(cfg.experiment.output_dir))
    with FolderLock(out, "t2t.experiment"):
        with writing(out, "config.yaml"):
            configs.save(cfg, out / "config.yaml")
        plan = make_plan(cfg, mixture)
        runs = train_runs(cfg, plan)
        summary = score_parts(cfg, plan, runs)
        markdown = summary_markdown(summary)
        needed = len(json.dumps(summary, indent=2, default=str)) + len(markdown)
        with writing(out, "summary.json and summary.md", needed):
            write_json(out / "summary.json", summary)
            write_text(out / "summary.md", markdown)
    return summary


def train_runs(cfg: ExperimentConfig, plan: Plan) -> dict[str, dict[str, Any]]:
    """Every run of the plan: label -> kind, seed, folder, adapter and training seconds."""
    from t2t.training.recipe import train  # torch, transformers: once the options and folders are good

    x = cfg.experiment
    runs: dict[str, dict[str, Any]] = {}

    def train_run(seed: int, kind: str, data: dict[str, Any]) -> None:
        run = cfg.finetune_run(seed, kind, **data)
        name = label(kind, seed, x.seeds)
        print(f"== training {name} ({run.data.mixture}, {run.train.max_steps} steps, seed {seed})", flush=True)
        start = time.perf_counter()
        tuned = train(run)["tuned_dir"]
        runs[name] = {"kind": kind, "seed": seed, "folder": run.train.output_dir, "adapter": tuned,
                      "seconds": round(time.perf_counter() - start, 1)}

    for seed in x.seeds:
        for kind, data in plan.kinds.items():
            train_run(seed, kind, data)
    for kind, data in plan.extra.items():  # one seed is enough here (the issue's part 3; T5's Table 11)
        train_run(x.seeds[0], kind, data)
    return runs


def score_parts(cfg: ExperimentConfig, plan: Plan, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each part that was asked for, scored: the summary."""
    x = cfg.experiment
    summary: dict[str, Any] = {"seeds": list(x.seeds), "parts": list(x.parts), "runs": runs}
    part1 = [label(k, s, x.seeds) for s in x.seeds for k in plan.kinds]
    if "unseen" in x.parts:
        summary.update(unseen_part(cfg, plan.mixture, part1, runs, list(plan.kinds)))
    if "overfitting" in x.parts:
        summary["overfitting"] = overfitting_part(cfg, plan.mixture, part1, runs)
    if "one_vs_many" in x.parts:
        summary["one_vs_many"] = one_vs_many_part(cfg, plan.mixture, runs, plan.specialists)
    if "clusters" in x.parts:
        summary["clusters"] = clusters_part(cfg, plan, runs)
    if not summary.get("provenance") and runs:  # no unseen part: the base hash and machine its first run recorded
        summary["provenance"] = json.loads((Path(next(iter(runs.values()))["folder"]) / "provenance.json").read_text())
    return summary


def _evaluate(cfg: ExperimentConfig, tasks: Sequence[Any], adapters: dict[str, str], out: str) -> Any:
    names = [] if out == "eval" else [t.name for t in tasks]
    config = cfg.evaluate_run(adapters, out, names)
    # as python -m t2t.evaluate does: a causal adapter's prompt format (chat template, target delimiter) is
    # the one its run trained with, and the base is scored in that format too (one evaluation, one format)
    config = resolve_from_runs(config, [read_adapter(spec) for spec in config.model.adapter])
    result = evaluate(config, list(tasks), adapters)
    write_outputs(result, Path(cfg.experiment.output_dir) / out)
    return result


def unseen_part(cfg: ExperimentConfig, mixture: Any, labels: Sequence[str], runs: dict[str, dict[str, Any]],
                kinds: Sequence[str]) -> dict[str, Any]:
    """Part 1: the base and the (a)/(b) adapters of every seed, zero-shot on the held-out tasks."""
    heldout = [t.name for t in mixture.heldout]
    print(f"== evaluating base, {', '.join(labels)} on {', '.join(heldout)}", flush=True)
    result = _evaluate(cfg, list(mixture.heldout), {k: runs[k]["adapter"] for k in labels}, "eval")
    print(result.markdown())
    return summarize_seeds(result, kinds, cfg.experiment.seeds)


def _val_losses(folder: str, task: str) -> dict[int, float]:
    """Step -> validation loss of ``task`` from a run's metrics.jsonl (``val_loss/TASK``)."""
    losses = {}
    for line in (Path(folder) / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if f"val_loss/{task}" in record:
            losses[int(record["step"])] = float(record[f"val_loss/{task}"])
    return losses


def overfitting_part(cfg: ExperimentConfig, mixture: Any, labels: Sequence[str],
                     runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Part 2: every snapshot of (a) and (b) scored on the specialist's task, beside its validation loss."""
    x, steps = cfg.experiment, cfg.curve_steps()
    task = next(e.task for e in mixture.entries if e.task.name == x.single_task)
    snaps = {f"{lab}@{step}": str(Path(runs[lab]["folder"]) / "snapshots" / f"step-{step:06d}")
             for lab in labels for step in steps}
    print(f"== evaluating {len(snaps)} snapshots on {task.name}", flush=True)
    report = _evaluate(cfg, [task], snaps, "overfitting/eval").report
    curves: dict[str, Any] = {}
    for lab in labels:
        losses = _val_losses(runs[lab]["folder"], task.name)
        missing = [s for s in steps if s not in losses]
        if missing:
            raise T2TError(f"{runs[lab]['folder']}/metrics.jsonl has no val_loss/{task.name} at steps {missing}")
        points = [{"step": s, "val_loss": round(losses[s], 4),
                   "score": round(report.task(f"{lab}@{s}", task.name).median, 4)} for s in steps]
        curves[lab] = {"kind": runs[lab]["kind"], "seed": runs[lab]["seed"], "points": points,
                       **_overfit_stats(points)}
    by_kind: dict[str, Any] = {}
    for kind in dict.fromkeys(c["kind"] for c in curves.values()):
        mine = [c for c in curves.values() if c["kind"] == kind]
        by_kind[kind] = {
            "val_loss": [round(statistics.fmean(c["points"][i]["val_loss"] for c in mine), 4)
                         for i in range(len(steps))],
            "score": [round(statistics.fmean(c["points"][i]["score"] for c in mine), 4) for i in range(len(steps))],
            **{key: [c[key] for c in mine] for key in ("best_loss_step", "loss_rise", "best_score_step", "score_drop")}}
    return {"task": task.name, "metric": report.primary[task.name], "steps": steps,
            "base_score": round(report.task(report.base, task.name).median, 4),
            "rows": x.curve_rows, "curves": curves, "by_kind": by_kind}


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def one_vs_many_part(cfg: ExperimentConfig, mixture: Any, runs: dict[str, dict[str, Any]],
                     specialists: dict[str, str]) -> dict[str, Any]:
    """Part 3: the first seed's multitask adapter against each training task's specialist, on that task."""
    seed = cfg.experiment.seeds[0]
    multi = label("multitask", seed, cfg.experiment.seeds)
    rows = []
    for entry in sorted(mixture.entries, key=lambda e: (e.task.cluster, e.task.name)):
        task, spec = entry.task, label(specialists[entry.task.name], seed, cfg.experiment.seeds)
        print(f"== evaluating {multi}, {spec} on {task.name}", flush=True)
        result = _evaluate(cfg, [task], {multi: runs[multi]["adapter"], spec: runs[spec]["adapter"]},
                           f"one-vs-many/{task.name}")
        r, boot = result.report, (result.bootstrap or {"models": {}})["models"]
        m, s = r.task(multi, task.name).median, r.task(spec, task.name).median
        rows.append({"task": task.name, "cluster": task.cluster, "metric": r.primary[task.name],
                     "specialist": spec, "base": round(r.task(r.base, task.name).median, 4),
                     "specialist_score": round(s, 4), "multitask_score": round(m, 4),
                     "difference": round(m - s, 4), "relative": round(m / s, 4) if s else None,
                     "intervals": {"specialist": boot.get(spec, {}).get("overall"),
                                   "multitask": boot.get(multi, {}).get("overall")}})

    def cost(labels: Sequence[str]) -> dict[str, Any]:
        folders = [Path(runs[lab]["folder"]) for lab in labels]
        return {"adapters": len(labels),
                "trainable_params": sum(json.loads((f / "versions.json").read_text())["trainable_params"]
                                        for f in folders),
                "weights_bytes": sum((Path(runs[lab]["adapter"]) / "adapter_model.safetensors").stat().st_size
                                     for lab in labels),
                "folder_bytes": sum(_folder_bytes(Path(runs[lab]["adapter"])) for lab in labels),
                "train_seconds": round(sum(runs[lab]["seconds"] for lab in labels), 1)}

    spec_labels = list(dict.fromkeys(row["specialist"] for row in rows))
    return {"multitask": multi, "by": cfg.experiment.specialists, "tasks": rows,
            "mean": {key: round(statistics.fmean(row[key] for row in rows), 4)
                     for key in ("base", "specialist_score", "multitask_score", "difference")},
            "cost": {"multitask": cost([multi]), "specialists": cost(spec_labels)}}


def clusters_part(cfg: ExperimentConfig, plan: Plan, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Part 4: held-out score as training clusters are added (FLAN 2021, section 4.3), first seed."""
    seeds = cfg.experiment.seeds
    known = {t.name: t for t in [*(e.task for e in plan.mixture.entries), *plan.mixture.heldout]}
    tasks = [known[name] for name in plan.curve_tasks]
    labels = [label(point["kind"], seeds[0], seeds) for point in plan.curve]
    print(f"== evaluating base, {', '.join(labels)} on {', '.join(plan.curve_tasks)}", flush=True)
    result = _evaluate(cfg, tasks, {lab: runs[lab]["adapter"] for lab in labels}, "clusters/eval")
    report, boot = result.report, (result.bootstrap or {"models": {}})["models"]
    points = [{"clusters": 0, "added": None, "training_tasks": 0, "label": report.base,
               "overall": round(report.overall[report.base], 4), "delta_interval": None,
               "tasks": {t.name: round(report.task(report.base, t.name).median, 4) for t in tasks}}]
    for point, lab in zip(plan.curve, labels, strict=True):
        points.append({"clusters": len(point["clusters"]), "added": point["clusters"][-1],
                       "training_tasks": point["tasks"], "label": lab, "overall": round(report.overall[lab], 4),
                       "delta_interval": boot.get(lab, {}).get("overall"),
                       "tasks": {t.name: round(report.task(lab, t.name).median, 4) for t in tasks}})
    return {"heldout_clusters": list(cfg.experiment.curve_heldout), "tasks": list(plan.curve_tasks),
            "metrics": {t.name: report.primary[t.name] for t in tasks}, "seed": seeds[0], "points": points}
