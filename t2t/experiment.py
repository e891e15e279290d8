"""``python -m t2t.experiment``: the claim behind multitask tuning, measured in three parts.

On the offline suite by default, for each training seed it trains

1. (a) multitask: one LoRA adapter on every training task of the mixture;
2. (b) single-task: one LoRA adapter on one training task (``--single-task``), same steps, batch and
   learning rate;

and then, for each part named in ``--parts`` (all three by default):

- ``unseen``: one evaluation scores the base and every adapter zero-shot on the mixture's held-out tasks
  (median over templates), each delta with a paired-bootstrap interval over the evaluated rows
  (:mod:`t2t.evaluation.significance`); the summary gives each kind's mean and spread over the seeds: the
  rows' luck and the training run's luck, measured separately.
- ``overfitting``: (a) and (b) keep adapter snapshots at ``--curve-points`` evenly spaced steps and log the
  validation loss of the specialist's task on the same rows in both runs (``val_loss/TASK``); every
  snapshot is scored on that task's validation rows. Does the specialist overfit earlier, and by how much?
- ``one_vs_many``: one specialist per other training task (or per cluster, ``--specialists cluster``),
  first seed only, same budget; each training task is scored for the base, its specialist and the
  multitask adapters; trainable parameters, disk and training time of one adapter against the
  specialists' (the T5 paper's Table 11 question).

Both kinds see the same held-out split, so neither ever trains on a scored task. Everything lands in
``--output-dir`` (default ``runs/experiment``): ``config.yaml`` (the resolved options), ``seed-S/multitask/``,
``seed-S/single-<task>/`` (and ``seed-S/cluster-<name>/``), ``eval/`` (report.md, results.json, report.png,
config.yaml), ``overfitting/eval/``, ``one-vs-many/<task>/`` and ``summary.md`` / ``summary.json``.

The config composes the two commands' own: :class:`ExperimentConfig` holds a
:class:`~t2t.training.config.FinetuneConfig` (the recipe of every adapter) and an
:class:`~t2t.evaluation.config.EvaluateConfig` (every evaluation), with their defaults except the few
the experiment sets on purpose (:data:`FINETUNE_SETS`, :data:`EVALUATE_SETS`). Its flags set fields of
those (``--max-steps`` is the finetune one, ``--limit`` the evaluate one); ``--config`` YAML may also give
any finetune or evaluate option under ``finetune:`` / ``evaluate:``, flat or by section. The fields that
differ per run (seed, output folders, adapters, the tasks scored) are the experiment's to set.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import statistics
import sys
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from t2t import config as configs
from t2t.atomic import write_json, write_text
from t2t.errors import T2TError, run_cli
from t2t.evaluation.config import EvaluateConfig
from t2t.training.config import FinetuneConfig

COMMAND = "t2t.experiment"

# What the experiment sets on purpose on top of the two commands' defaults (everything else is theirs).
FINETUNE_SETS: dict[str, Any] = {"save_steps": 0}  # short runs: only the final adapter is used
EVALUATE_SETS: dict[str, Any] = {"limit": 100}  # evaluation examples per held-out task


PARTS = ("unseen", "overfitting", "one_vs_many")


@dataclass(frozen=True)
class ExperimentOptions:
    single_task: str = field(default="sentiment_movie", metadata={
        "help": "the training task of the single-task adapter"})
    seeds: tuple[int, ...] = field(default=(0,), metadata={"help": "training seeds, comma-separated"})
    output_dir: str = field(default="runs/experiment", metadata={
        "help": "the experiment folder: runs, evaluation and summary"})
    overwrite: bool = field(default=False, metadata={"help": "replace an earlier experiment's runs and results"})
    parts: tuple[str, ...] = field(default=PARTS, metadata={
        "help": "what to measure, comma-separated: unseen (held-out tasks), overfitting (the specialist's task "
                "over steps), one_vs_many (a specialist per training task against the multitask adapter)"})
    curve_points: int = field(default=6, metadata={
        "help": "overfitting: snapshots per run, evenly spaced (each scored, with the validation loss)"})
    curve_rows: int = field(default=32, metadata={
        "help": "overfitting: validation rows of the specialist's task behind the loss curve, the same in both runs"})
    specialists: str = field(default="task", metadata={
        "help": "one_vs_many: one specialist per training 'task' or per 'cluster' (its training tasks)"})


def _finetune_defaults() -> FinetuneConfig:
    return configs.override(FinetuneConfig(), FINETUNE_SETS, "t2t.experiment defaults", COMMAND)


def _evaluate_defaults() -> EvaluateConfig:
    return configs.override(EvaluateConfig(), EVALUATE_SETS, "t2t.experiment defaults", COMMAND)


# Set by the experiment for each run (the value is what sets it), so never taken from the config.
PER_RUN = {
    ("finetune", "train", "seed"): "--seeds", ("finetune", "train", "output_dir"): "--output-dir",
    ("finetune", "train", "overwrite"): "--overwrite",
    ("evaluate", "model", "model"): "--model, the finetune base model",
    ("evaluate", "model", "adapter"): "the adapters trained here",
    **{("evaluate", "tasks", name): "the mixture's held-out tasks (--mixture, finetune heldout)"
       for name in ("tasks", "clusters", "mixture", "heldout")},
    **{("evaluate", "tasks", name): f"finetune {name}" for name in ("task_dir", "mixture_dir")},
    ("evaluate", "output", "output_dir"): "--output-dir", ("evaluate", "output", "overwrite"): "--overwrite",
}


@dataclass(frozen=True)
class ExperimentConfig:
    experiment: ExperimentOptions = field(default_factory=ExperimentOptions)
    finetune: FinetuneConfig = field(default_factory=_finetune_defaults)
    evaluate: EvaluateConfig = field(default_factory=_evaluate_defaults)

    def validate(self) -> None:
        x = self.experiment
        if not x.seeds:
            raise T2TError("--seeds: give at least one seed, e.g. 0")
        unknown = [p for p in x.parts if p not in PARTS]
        if unknown or not x.parts:
            raise T2TError(f"--parts {','.join(x.parts)}: use one or more of {', '.join(PARTS)}")
        if x.specialists not in ("task", "cluster"):
            raise T2TError(f"--specialists {x.specialists}: use task or cluster")
        if "overfitting" in x.parts and not 1 <= x.curve_points <= self.finetune.train.max_steps:
            raise T2TError(f"--curve-points {x.curve_points}: must be between 1 and --max-steps "
                           f"({self.finetune.train.max_steps})")
        if x.curve_rows < 1:
            raise T2TError(f"--curve-rows {x.curve_rows}: must be at least 1")
        if self.finetune.tuning.method != "lora":
            raise T2TError(f"finetune option 'method' is {self.finetune.tuning.method}: the experiment compares "
                           "LoRA adapters on one base model; use lora")
        default = ExperimentConfig()
        for (part, section, name), how in PER_RUN.items():
            value = getattr(getattr(getattr(self, part), section), name)
            if value != getattr(getattr(getattr(default, part), section), name):
                raise T2TError(f"{part} option '{name}' is set by the experiment for each run ({how}); "
                               "leave it out")

    def finetune_run(self, seed: int, kind: str, **data: Any) -> FinetuneConfig:
        """The config of one training run: the finetune section with its seed, folder and mixture."""
        values = {"seed": seed, "output_dir": str(Path(self.experiment.output_dir) / f"seed-{seed}" / kind),
                  "overwrite": self.experiment.overwrite, **data}
        return configs.override(self.finetune, values, "experiment", COMMAND)

    def evaluate_run(self, adapters: dict[str, str], out: str = "eval",
                     tasks: Sequence[str] = ()) -> EvaluateConfig:
        """The config of one evaluation: the evaluate section on the finetune base model, the adapters
        trained here and the mixture's held-out tasks (or ``tasks``, training tasks, for parts 2 and 3)."""
        d = self.finetune.data
        chosen: dict[str, Any] = ({"tasks": list(tasks), "allow_train_tasks": True} if tasks else
                                  {"mixture": d.mixture, "heldout": list(d.heldout)})
        values = {"model": self.finetune.model.model, "adapter": [f"{k}={v}" for k, v in adapters.items()],
                  **chosen, "task_dir": list(d.task_dir), "mixture_dir": list(d.mixture_dir),
                  "overwrite": self.experiment.overwrite, "output_dir": str(Path(self.experiment.output_dir) / out)}
        return configs.override(self.evaluate, values, "experiment", COMMAND)

    def curve_steps(self) -> list[int]:
        """The steps of the overfitting part's snapshots: every ``max_steps // curve_points``, and the last."""
        total, every = self.finetune.train.max_steps, self.finetune.train.max_steps // self.experiment.curve_points
        return sorted({*range(every, total + 1, every), total})


# The experiment's flags: each sets one field of a part, whose default and help it shows.
FLAGS: dict[str, tuple[str, str, str | None]] = {
    "mixture": ("finetune", "mixture", "the multitask mixture; the single-task adapter holds out the same tasks"),
    "single_task": ("experiment", "single_task", None),
    "model": ("finetune", "model", None),
    "max_steps": ("finetune", "max_steps", None),
    "batch_size": ("finetune", "batch_size", None),
    "lr": ("finetune", "lr", None),
    "seeds": ("experiment", "seeds", None),
    "parts": ("experiment", "parts", None),
    "curve_points": ("experiment", "curve_points", None),
    "curve_rows": ("experiment", "curve_rows", None),
    "specialists": ("experiment", "specialists", None),
    "limit": ("evaluate", "limit", "evaluation examples per held-out task"),
    "bootstrap": ("evaluate", "bootstrap", None),
    "output_dir": ("experiment", "output_dir", None),
    "overwrite": ("experiment", "overwrite", None),
}


def _field(part: str, name: str) -> tuple[dataclasses.Field, Any]:
    """The dataclass field behind a part's flat option name, and its default in the experiment."""
    defaults = ExperimentConfig()
    if part == "experiment":
        cls, value = ExperimentOptions, getattr(defaults.experiment, name)
    else:
        root = configs.sections(ExperimentConfig)[part]
        section = configs.index(root)[name][0]
        cls, value = configs.sections(root)[section], getattr(getattr(getattr(defaults, part), section), name)
    return next(f for f in dataclasses.fields(cls) if f.name == name), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m t2t.experiment", description=__doc__.split("\n\n")[0],
        epilog="--config YAML: these options as flat keys (or under experiment:), and any option of "
               "python -m t2t.finetune / t2t.evaluate under finetune: / evaluate:.")
    parser.add_argument("--config", help="YAML file of options")
    for name, (part, target, help_text) in FLAGS.items():
        f, default = _field(part, target)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{help_text or f.metadata.get('help', '')} (default: {shown})"
        if part != "experiment":
            help_text += f"; {part} --{target.replace('_', '-')}"
        if default is False:
            parser.add_argument(configs.flag(name), dest=name, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(configs.flag(name), dest=name, default=None, help=help_text)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return parser


def build_experiment(*layers: dict[str, Any], origin: str = "options") -> ExperimentConfig:
    """An experiment config from layers of keys, later ones winning: the experiment's flat options (or
    under ``experiment:``), and finetune / evaluate options under ``finetune:`` / ``evaluate:``."""
    hints = typing.get_type_hints(ExperimentOptions)
    own: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {"finetune": {}, "evaluate": {}}
    known = [*FLAGS, "experiment", *parts]
    for values in layers:
        for key, value in values.items():
            name = str(key).replace("-", "_")
            if name in (*parts, "experiment") and not isinstance(value, dict):
                raise T2TError(f"{origin}: '{key}' must be a mapping of options; see python -m {COMMAND} --help")
            if name in parts:
                parts[name].update(value)
            elif name == "experiment":
                for sub, sub_value in value.items():
                    if str(sub).replace("-", "_") not in hints:
                        raise _unknown(f"experiment.{sub}", origin, list(hints))
                    own[str(sub).replace("-", "_")] = sub_value
            elif name in FLAGS:
                part, target, _ = FLAGS[name]
                if part == "experiment":
                    own[target] = value
                else:  # dotted, so that --model never replaces a model: section given in the YAML
                    root = configs.sections(ExperimentConfig)[part]
                    parts[part][f"{configs.index(root)[target][0]}.{target}"] = value
            else:
                raise _unknown(str(key), origin, known)
    options = ExperimentOptions(**{k: configs.coerce(v, hints[k], configs.flag(k)) for k, v in own.items()})
    options = dataclasses.replace(options, seeds=tuple(dict.fromkeys(options.seeds)),
                                  parts=tuple(dict.fromkeys(options.parts)))
    config = ExperimentConfig(
        options, configs.override(_finetune_defaults(), parts["finetune"], f"{origin} (finetune)", COMMAND),
        configs.override(_evaluate_defaults(), parts["evaluate"], f"{origin} (evaluate)", COMMAND))
    config.validate()
    return config


def _unknown(key: str, origin: str, known: Sequence[str]) -> T2TError:
    near = difflib.get_close_matches(key.split(".")[-1].replace("-", "_"), list(known), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return T2TError(f"{origin}: unknown option '{key}'{hint}; see python -m {COMMAND} --help")


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """defaults < ``--config`` YAML < flags."""
    values = configs.load_yaml(args.config) if args.config else {}
    flags = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
    return build_experiment(values, flags, origin=f"--config {args.config}" if args.config else "options")


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
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = config_from_args(configs.parse_args(build_parser(), argv, COMMAND))

    from t2t.evaluate import check_output_dir
    from t2t.mixtures.resolve import load_mixture
    from t2t.training.recipe import train

    x, d = cfg.experiment, cfg.finetune.data
    mixture = load_mixture(d.mixture, heldout=d.heldout, task_dirs=d.task_dir, mixture_dirs=d.mixture_dir)
    heldout = [t.name for t in mixture.heldout]
    if not heldout:
        raise T2TError(f"--mixture {d.mixture} holds nothing out; pick a mixture with a held-out split")
    if x.single_task not in mixture.rates:
        raise T2TError(f"--single-task {x.single_task} is not a training task of mixture {d.mixture} "
                       f"(training tasks: {', '.join(sorted(mixture.rates))})")
    out = Path(x.output_dir)
    train_tasks = sorted(mixture.entries, key=lambda e: (e.task.cluster, e.task.name))
    # every evaluation folder is refused before hours of training, not after
    for folder in (["eval"] if "unseen" in x.parts else []) + (
            ["overfitting/eval"] if "overfitting" in x.parts else []) + (
            [f"one-vs-many/{e.task.name}" for e in train_tasks] if "one_vs_many" in x.parts else []):
        check_output_dir(out / folder, x.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    configs.save(cfg, out / "config.yaml")
    mix_dir = out / "mixtures"
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
    specialists: dict[str, str] = {}  # training task -> kind of its specialist
    extra: dict[str, dict[str, Any]] = {}  # the specialists not trained for parts 1 and 2
    if "one_vs_many" in x.parts:
        for entry in train_tasks:
            task, cluster = entry.task.name, entry.task.cluster
            kind = specialists[task] = f"single-{task}" if x.specialists == "task" else f"cluster-{cluster}"
            if kind not in kinds and kind not in extra:
                name = (single_task_mixture(mix_dir, mixture, task, heldout) if x.specialists == "task"
                        else cluster_mixture(mix_dir, mixture, cluster, heldout))
                extra[kind] = {"mixture": name, "mixture_dir": mix_dirs, "heldout": []}

    runs: dict[str, dict[str, Any]] = {}

    def label(kind: str, seed: int) -> str:
        return kind if len(x.seeds) == 1 else f"{kind}-s{seed}"

    def train_run(seed: int, kind: str, data: dict[str, Any]) -> None:
        run = cfg.finetune_run(seed, kind, **data)
        print(f"== training {label(kind, seed)} ({run.data.mixture}, {run.train.max_steps} steps, seed {seed})",
              flush=True)
        start = time.perf_counter()
        tuned = train(run)["tuned_dir"]
        runs[label(kind, seed)] = {"kind": kind, "seed": seed, "folder": run.train.output_dir, "adapter": tuned,
                                   "seconds": round(time.perf_counter() - start, 1)}

    for seed in x.seeds:
        for kind, data in kinds.items():
            train_run(seed, kind, data)
    for kind, data in extra.items():  # one seed is enough here (the issue's part 3; T5's Table 11)
        train_run(x.seeds[0], kind, data)

    summary: dict[str, Any] = {"seeds": list(x.seeds), "parts": list(x.parts), "runs": runs}
    part1 = [label(k, s) for s in x.seeds for k in kinds]
    if "unseen" in x.parts:
        summary.update(unseen_part(cfg, mixture, part1, runs, list(kinds)))
    if "overfitting" in x.parts:
        summary["overfitting"] = overfitting_part(cfg, mixture, part1, runs)
    if "one_vs_many" in x.parts:
        summary["one_vs_many"] = one_vs_many_part(cfg, mixture, runs, specialists, label)
    write_json(out / "summary.json", summary)
    text = summary_markdown(summary)
    write_text(out / "summary.md", text)
    print(text)
    return 0


def _evaluate(cfg: ExperimentConfig, tasks: Sequence[Any], adapters: dict[str, str], out: str) -> Any:
    from t2t.evaluation.runner import evaluate, write_outputs

    names = [] if out == "eval" else [t.name for t in tasks]
    result = evaluate(cfg.evaluate_run(adapters, out, names), list(tasks), adapters)
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


def _overfit_stats(points: Sequence[dict[str, float]]) -> dict[str, float]:
    """Where the validation loss bottoms out and how far it rises after; the same for the score's peak."""
    best = min(points, key=lambda p: p["val_loss"])
    top = max(points, key=lambda p: p["score"])
    return {"best_loss_step": best["step"], "loss_rise": round(points[-1]["val_loss"] - best["val_loss"], 4),
            "best_score_step": top["step"], "score_drop": round(top["score"] - points[-1]["score"], 4)}


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def one_vs_many_part(cfg: ExperimentConfig, mixture: Any, runs: dict[str, dict[str, Any]],
                     specialists: dict[str, str], label: Any) -> dict[str, Any]:
    """Part 3: the first seed's multitask adapter against each training task's specialist, on that task."""
    seed = cfg.experiment.seeds[0]
    multi = label("multitask", seed)
    rows = []
    for entry in sorted(mixture.entries, key=lambda e: (e.task.cluster, e.task.name)):
        task, spec = entry.task, label(specialists[entry.task.name], seed)
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
    """``summary.md``: one section per part that ran."""
    text = ""
    if "kinds" in summary:
        text += _unseen_markdown(summary)
    if "overfitting" in summary:
        text += _overfitting_markdown(summary["overfitting"])
    if "one_vs_many" in summary:
        text += _one_vs_many_markdown(summary["one_vs_many"])
    return text


def _unseen_markdown(summary: dict[str, Any]) -> str:
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


if __name__ == "__main__":
    sys.exit(run_cli(main))
