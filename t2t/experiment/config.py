"""The config of ``python -m t2t.experiment``: its own options and the finetune and evaluate configs.

:class:`ExperimentConfig` holds three sections: ``experiment`` (:class:`ExperimentOptions`, the
experiment's own), ``finetune`` (a whole :class:`~t2t.training.config.FinetuneConfig`, the recipe of every
adapter) and ``evaluate`` (a whole :class:`~t2t.evaluation.config.EvaluateConfig`, every evaluation). The
last two start from their commands' defaults except the few the experiment sets on purpose
(:data:`FINETUNE_SETS`, :data:`EVALUATE_SETS`). Built by :mod:`t2t.config` like every command's config:
the experiment's options are flags; a few finetune / evaluate options are flags too
(:attr:`ExperimentConfig.SHORTCUTS`: ``--max-steps`` is the finetune one, ``--limit`` the evaluate one);
``--config`` YAML may give any finetune or evaluate option under ``finetune:`` / ``evaluate:``, flat or by
section. The fields that differ per run (seed, output folders, adapters, the tasks scored) are the
experiment's to set (:data:`PER_RUN`); setting them is an error that says which option sets them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from t2t import config as configs
from t2t.errors import T2TError
from t2t.evaluation.config import EvaluateConfig
from t2t.training.config import FinetuneConfig

COMMAND = "t2t.experiment"

# What the experiment sets on purpose on top of the two commands' defaults (everything else is theirs).
FINETUNE_SETS: dict[str, Any] = {"save_steps": 0}  # short runs: only the final adapter is used
EVALUATE_SETS: dict[str, Any] = {"limit": 100}  # evaluation examples per held-out task

PARTS = ("unseen", "overfitting", "one_vs_many", "clusters")
DEFAULT_PARTS = PARTS[:3]  # clusters needs --curve-heldout: asked for by name


@dataclass(frozen=True)
class ExperimentOptions:
    single_task: str = field(default="sentiment_movie", metadata={
        "help": "the training task of the single-task adapter", "metavar": "TASK"})
    seeds: tuple[int, ...] = field(default=(0,), metadata={"help": "training seeds, comma-separated"})
    output_dir: str = field(default="runs/experiment", metadata={
        "help": "the experiment folder: runs, evaluation and summary"})
    overwrite: bool = field(default=False, metadata={"help": "replace an earlier experiment's runs and results"})
    parts: tuple[str, ...] = field(default=DEFAULT_PARTS, metadata={
        "help": "what to measure, comma-separated: unseen (held-out tasks), overfitting (the specialist's task "
                "over steps), one_vs_many (a specialist per training task against the multitask adapter), "
                "clusters (FLAN's curve: held-out score as training clusters are added; needs --curve-heldout)",
        "choices": PARTS})
    curve_points: int = field(default=6, metadata={
        "help": "overfitting: snapshots per run, evenly spaced (each scored, with the validation loss)"})
    curve_rows: int = field(default=32, metadata={
        "help": "overfitting: validation rows of the specialist's task behind the loss curve, the same in both runs"})
    specialists: str = field(default="task", metadata={
        "help": "one_vs_many: one specialist per training 'task' or per 'cluster' (its training tasks)",
        "choices": ("task", "cluster")})
    curve_heldout: tuple[str, ...] = field(default=(), metadata={
        "help": "clusters: the clusters held out whole and scored, comma-separated; every other cluster of the "
                "mixture's tasks is a training cluster, added one at a time", "metavar": "CLUSTERS"})

    def __post_init__(self) -> None:
        # a seed or part named twice is run once (frozen: set through object.__setattr__, as dataclasses do)
        object.__setattr__(self, "seeds", tuple(dict.fromkeys(self.seeds)))
        object.__setattr__(self, "parts", tuple(dict.fromkeys(self.parts)))
        object.__setattr__(self, "curve_heldout", tuple(dict.fromkeys(self.curve_heldout)))


def _finetune_defaults() -> FinetuneConfig:
    return configs.override(FinetuneConfig(), FINETUNE_SETS, "t2t.experiment defaults", COMMAND)


def _evaluate_defaults() -> EvaluateConfig:
    return configs.override(EvaluateConfig(), EVALUATE_SETS, "t2t.experiment defaults", COMMAND)


# Set by the experiment for each run (the value is what sets it), so never taken from the config.
PER_RUN = {
    ("finetune", "train", "seed"): "--seeds", ("finetune", "train", "output_dir"): "--output-dir",
    ("finetune", "train", "overwrite"): "--overwrite",
    ("evaluate", "model", "model"): "--model, the finetune base model",
    ("evaluate", "model", "revision"): "the finetune --revision",
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

    # The finetune / evaluate options the experiment offers as flags of its own (--max-steps), and the
    # help of those that mean something more here.
    SHORTCUTS: ClassVar[dict[str, str]] = {
        "mixture": "finetune", "model": "finetune", "max_steps": "finetune", "batch_size": "finetune",
        "lr": "finetune", "chat_template": "finetune", "limit": "evaluate", "bootstrap": "evaluate"}
    SHORTCUT_HELP: ClassVar[dict[str, str]] = {
        "mixture": "the multitask mixture; the single-task adapter holds out the same tasks",
        "limit": "evaluation examples per held-out task",
        "chat_template": "causal models: train every adapter through the tokenizer's chat template (input as the "
                         "user turn, target as the assistant turn); the base and the adapters are then all scored "
                         "through it, as evaluate does for an adapter trained so"}

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
        if "clusters" in x.parts and not x.curve_heldout:
            raise T2TError("--parts clusters: name the clusters to hold out whole with --curve-heldout, "
                           "e.g. --curve-heldout sentiment")
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
        """The config of one evaluation: the evaluate section on the finetune base model (and revision), the
        adapters trained here and the mixture's held-out tasks (or ``tasks``, training tasks, for parts 2
        and 3)."""
        d, m = self.finetune.data, self.finetune.model
        chosen: dict[str, Any] = ({"tasks": list(tasks), "allow_train_tasks": True} if tasks else
                                  {"mixture": d.mixture, "heldout": list(d.heldout)})
        values = {"model": m.model, "revision": m.revision, "adapter": [f"{k}={v}" for k, v in adapters.items()],
                  **chosen, "task_dir": list(d.task_dir), "mixture_dir": list(d.mixture_dir),
                  "overwrite": self.experiment.overwrite, "output_dir": str(Path(self.experiment.output_dir) / out)}
        return configs.override(self.evaluate, values, "experiment", COMMAND)

    def curve_steps(self) -> list[int]:
        """The steps of the overfitting part's snapshots: every ``max_steps // curve_points``, and the last."""
        total, every = self.finetune.train.max_steps, self.finetune.train.max_steps // self.experiment.curve_points
        return sorted({*range(every, total + 1, every), total})


def build_experiment(*layers: dict[str, Any], origin: str = "options") -> ExperimentConfig:
    """An experiment config from layers of keys, later ones winning: the experiment's flat options (or
    under ``experiment:``), and finetune / evaluate options under ``finetune:`` / ``evaluate:``."""
    return configs.build_layers(ExperimentConfig, [(values, origin) for values in layers], COMMAND)
