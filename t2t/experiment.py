"""``python -m t2t.experiment``: does multitask tuning beat single-task tuning on held-out tasks?

The recipe behind the README's table, on the offline suite by default, for each training seed:

1. (a) multitask: one LoRA adapter trained on every training task of the mixture;
2. (b) single-task: one LoRA adapter trained on one training task, same steps, batch and learning rate;

then one evaluation scores the base and every adapter zero-shot on the mixture's held-out tasks (median
over templates), each delta with a paired-bootstrap interval over the evaluated rows
(:mod:`t2t.evaluation.significance`), and a summary gives each kind's mean and spread over the seeds: the rows'
luck and the training run's luck, measured separately.

Both kinds see the same held-out split, so neither ever trains on a scored task. Everything lands in
``--output-dir`` (default ``runs/experiment``): ``config.yaml`` (the resolved options), ``seed-S/multitask/``,
``seed-S/single-<task>/``, ``eval/`` (report.md, results.json, report.png, config.yaml) and
``summary.md`` / ``summary.json``.

The config composes the two commands' own: :class:`ExperimentConfig` holds a
:class:`~t2t.training.config.FinetuneConfig` (the recipe of every adapter) and an
:class:`~t2t.evaluation.config.EvaluateConfig` (the one evaluation), with their defaults except the few
the experiment sets on purpose (:data:`FINETUNE_SETS`, :data:`EVALUATE_SETS`). Its flags set fields of
those (``--max-steps`` is the finetune one, ``--limit`` the evaluate one); ``--config`` YAML may also give
any finetune or evaluate option under ``finetune:`` / ``evaluate:``, flat or by section. The fields that
differ per run (seed, output folders, adapters, the tasks scored) are the experiment's to set.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import statistics
import sys
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


@dataclass(frozen=True)
class ExperimentOptions:
    single_task: str = field(default="sentiment_movie", metadata={
        "help": "the training task of the single-task adapter"})
    seeds: tuple[int, ...] = field(default=(0,), metadata={"help": "training seeds, comma-separated"})
    output_dir: str = field(default="runs/experiment", metadata={
        "help": "the experiment folder: runs, evaluation and summary"})
    overwrite: bool = field(default=False, metadata={"help": "replace an earlier experiment's runs and results"})


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
        if not self.experiment.seeds:
            raise T2TError("--seeds: give at least one seed, e.g. 0")
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

    def evaluate_run(self, adapters: dict[str, str]) -> EvaluateConfig:
        """The config of the evaluation: the evaluate section on the finetune base model, the adapters
        trained here and the mixture's held-out tasks."""
        d = self.finetune.data
        values = {"model": self.finetune.model.model, "adapter": [f"{k}={v}" for k, v in adapters.items()],
                  "mixture": d.mixture, "heldout": list(d.heldout), "task_dir": list(d.task_dir),
                  "mixture_dir": list(d.mixture_dir), "overwrite": self.experiment.overwrite,
                  "output_dir": str(Path(self.experiment.output_dir) / "eval")}
        return configs.override(self.evaluate, values, "experiment", COMMAND)


# The experiment's flags: each sets one field of a part, whose default and help it shows.
FLAGS: dict[str, tuple[str, str, str | None]] = {
    "mixture": ("finetune", "mixture", "the multitask mixture; the single-task adapter holds out the same tasks"),
    "single_task": ("experiment", "single_task", None),
    "model": ("finetune", "model", None),
    "max_steps": ("finetune", "max_steps", None),
    "batch_size": ("finetune", "batch_size", None),
    "lr": ("finetune", "lr", None),
    "seeds": ("experiment", "seeds", None),
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
    options = dataclasses.replace(options, seeds=tuple(dict.fromkeys(options.seeds)))
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


def single_task_mixture(folder: Path, mixture_name: str, task: str, heldout: Sequence[str]) -> str:
    """Write a one-task mixture with the same held-out tasks as the multitask one; return its name."""
    name = f"single_{task}"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"description": f"{task} alone; held out as in mixture {mixture_name}",
            "include": {"tasks": [task]}, "heldout": {"tasks": list(heldout)}}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return name


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = config_from_args(configs.parse_args(build_parser(), argv, COMMAND))

    from t2t.evaluate import check_output_dir
    from t2t.evaluation.runner import evaluate, write_outputs
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
    check_output_dir(out / "eval", x.overwrite)  # refuse before hours of training, not after
    out.mkdir(parents=True, exist_ok=True)
    configs.save(cfg, out / "config.yaml")
    mix_dir = out / "mixtures"
    single = single_task_mixture(mix_dir, d.mixture, x.single_task, heldout)
    # the single-task mixture file lists the held-out tasks itself
    kinds = {"multitask": {},
             f"single-{x.single_task}": {"mixture": single, "mixture_dir": [*d.mixture_dir, str(mix_dir)],
                                         "heldout": []}}
    adapters: dict[str, str] = {}
    for seed in x.seeds:
        for kind, data in kinds.items():
            label = kind if len(x.seeds) == 1 else f"{kind}-s{seed}"
            run = cfg.finetune_run(seed, kind, **data)
            print(f"== training {label} ({run.data.mixture}, {run.train.max_steps} steps, seed {seed})",
                  flush=True)
            adapters[label] = train(run)["tuned_dir"]
    print(f"== evaluating base, {', '.join(adapters)} on {', '.join(heldout)}", flush=True)
    result = evaluate(cfg.evaluate_run(adapters), list(mixture.heldout), adapters)
    write_outputs(result, out / "eval")
    summary = summarize_seeds(result, list(kinds), x.seeds)
    write_json(out / "summary.json", summary)
    text = summary_markdown(summary)
    write_text(out / "summary.md", text)
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
