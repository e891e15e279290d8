"""The config of ``python -m t2t.finetune``: model, tuning, data and training sections.

Built by :mod:`t2t.training.config` (defaults < ``--config`` YAML < flags); checked as a whole in
:meth:`FinetuneConfig.validate` before anything is written; saved as ``config.yaml`` in the run folder
(``--config`` it to run the same training again), and as ``config.json`` with what the run resolved (the
model's folder and family), which evaluation reads.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2t import config as configs
from t2t.data.config import DataConfig
from t2t.errors import T2TError
from t2t.modeling.config import ModelConfig, TuningConfig

COMMAND = "t2t.finetune"


@dataclass(frozen=True)
class TrainConfig:
    output_dir: str = field(default="runs/offline-demo", metadata={"help": "where adapter, checkpoints, logs go"})
    max_steps: int = field(default=300, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=32, metadata={"help": "examples per optimiser step, over all processes"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per step and process"})
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1 (first-moment decay)"})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2 (second-moment decay)"})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon, added to the root of the "
                                "second moment; far above the gradients' size it makes updates linear in them"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warm-up steps"})
    schedule: str = field(default="linear", metadata={"help": "decay after warm-up: linear, cosine or constant",
                                                             "choices": ("linear", "cosine", "constant")})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0 = off)"})
    seed: int = field(default=0, metadata={"help": "seed for the model init, LoRA, dropout and the mixture"})
    save_steps: int = field(default=100, metadata={"help": "checkpoint every N steps (0 = only at the end)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept (the newest)"})
    eval_steps: int = field(default=100, metadata={"help": "validation loss every N steps (0 = never)"})
    eval_examples: int = field(default=256, metadata={"help": "validation examples per evaluation"})
    eval_per_task: bool = field(default=False, metadata={
        "help": "also log each task's validation loss (val_loss/TASK), as T5X/seqio report per-task metrics"})
    snapshot_steps: int = field(default=0, metadata={
        "help": "also save the adapter (a plain peft folder) every N steps as snapshots/step-N, all kept, "
                "for learning curves (0 = never)"})
    log_steps: int = field(default=10, metadata={"help": "log metrics every N steps"})
    check_rows: int = field(default=100_000, metadata={
        "help": "before the first step, render up to N rows of every training task with each of its templates, "
                "so that a bad row fails now, naming its file, row and field (0 = off)"})
    check_seconds: float = field(default=60.0, metadata={
        "help": "at most this many seconds for --check-rows in all; rows not reached are checked as drawn"})
    dist_timeout: float = field(default=600.0, metadata={
        "help": "seconds a distributed process waits for the others to start (torchrun, accelerate launch) "
                "before it gives up with a message"})
    resume: bool = field(default=False, metadata={
        "help": "continue the run in --output-dir from its newest checkpoint, with the options of its config.yaml "
                "(--output-dir RUN --resume is enough); options given too override them, and only --max-steps "
                "may differ from the run's (the schedule is then re-planned)"})
    overwrite: bool = field(default=False, metadata={"help": "allow writing into a non-empty output_dir"})
    merge: bool = field(default=False, metadata={"help": "also save the base model with the adapter merged in"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "recompute activations in the backward pass instead of keeping them: less memory, one more forward "
                "pass per step; same loss and gradients"})
    report_to: tuple[str, ...] = field(default=("tensorboard",), metadata={
        "help": "metric trackers besides metrics.jsonl (always written): tensorboard, wandb, mlflow, or none",
        "metavar": "NAMES"})
    push_to_hub: str | None = field(default=None, metadata={
        "help": "after saving, upload the adapter (or model/) to this Hugging Face hub repo, with a model card; "
                "token from HF_TOKEN or `hf auth login`", "metavar": "REPO"})
    hub_private: bool = field(default=False, metadata={"help": "create the --push-to-hub repo as private"})


@dataclass(frozen=True)
class FinetuneConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return configs.to_dict(self)

    def validate(self) -> None:
        """Checks across fields, before anything is written; a bad value is one T2TError."""
        t, d, lo = self.train, self.data, self.tuning
        checks = [
            (lo.method in ("lora", "full"), "method must be 'lora' or 'full'"),
            (self.model.precision in ("auto", "bf16", "fp32"),
             "precision must be auto, bf16 or fp32 (fp16 breaks T5)"),
            (self.model.attn_implementation in ("eager", "sdpa", "flex_attention"),
             "attn_implementation must be eager, sdpa or flex_attention"),
            (bool(self.model.model), "model must name a base model (a hub name, a folder or t2t-tiny)"),
            (self.model.device in ("auto", "cpu", "cuda"),
             "device must be auto, cpu or cuda (choose GPUs with CUDA_VISIBLE_DEVICES or accelerate launch)"),
            (not (self.model.device == "cpu" and self.model.precision == "bf16"),
             "precision bf16 is bf16 autocast on a GPU: with device cpu use auto or fp32"),
            (t.schedule in ("linear", "cosine", "constant"), "schedule must be linear, cosine or constant"),
            (t.max_steps > 0, "max_steps must be positive"),
            (t.batch_size > 0 and t.grad_accum > 0, "batch_size and grad_accum must be positive"),
            (t.grad_accum > 0 and t.batch_size % t.grad_accum == 0,
             "batch_size must be a multiple of grad_accum"),
            (t.lr > 0, "lr must be positive"),
            (0 <= t.adam_beta1 < 1 and 0 <= t.adam_beta2 < 1, "adam_beta1 and adam_beta2 must be in [0, 1)"),
            (t.adam_epsilon > 0, "adam_epsilon must be positive"),
            (lo.lora_r > 0, "lora_r must be positive"),
            (0 <= lo.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
            (d.max_input_len > 1 and d.max_target_len > 1, "max_input_len and max_target_len must be > 1"),
            (d.data_workers >= -1, "data_workers must be >= 0 (or -1 for auto)"),
            (d.loss_on in ("target", "all"), "loss_on must be 'target' or 'all'"),
            (t.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
            (t.save_steps >= 0 and t.eval_steps >= 0 and t.log_steps > 0,
             "save_steps and eval_steps must be >= 0, log_steps > 0"),
            (t.snapshot_steps >= 0, "snapshot_steps must be >= 0 (0 = no snapshots)"),
            (not set(t.report_to) - set(TRACKERS) and not ("none" in t.report_to and len(t.report_to) > 1),
             f"--report-to {','.join(t.report_to)}: choose from {', '.join(TRACKERS)} (comma-separated), "
             "or none alone"),
            (t.push_to_hub is None or t.push_to_hub.count("/") <= 1 and t.push_to_hub.strip("/ ") != "",
             f"--push-to-hub {t.push_to_hub!r}: give a hub repo id, NAME or OWNER/NAME"),
        ]
        for ok, message in checks:
            if not ok:
                raise T2TError(f"bad config: {message}")
        # Values that would be accepted and then ignored or misread: each named by its flag and value.
        ranges = [
            ("weight_decay", t.weight_decay, t.weight_decay >= 0, "must be >= 0"),
            ("warmup_steps", t.warmup_steps, t.warmup_steps >= 0, "must be >= 0"),
            ("check_rows", t.check_rows, t.check_rows >= 0, "must be >= 0 (0 turns the check off)"),
            ("check_seconds", t.check_seconds, t.check_seconds >= 0, "must be >= 0"),
            ("dist_timeout", t.dist_timeout, t.dist_timeout > 0, "must be positive (seconds)"),
            ("max_grad_norm", t.max_grad_norm, t.max_grad_norm >= 0, "must be >= 0 (0 turns clipping off)"),
            ("eval_examples", t.eval_examples, t.eval_examples >= (1 if t.eval_steps else 0),
             "must be >= 1 while --eval-steps is on (--eval-steps 0 turns validation off)"),
            ("lora_alpha", lo.lora_alpha, lo.lora_alpha > 0, "must be positive (LoRA scales by alpha / r)"),
            ("micro_batch_tokens", d.micro_batch_tokens, d.micro_batch_tokens >= 0, "must be >= 0 (0 = auto)"),
            ("pack_input_len", d.pack_input_len, d.pack_input_len > 1, "must be > 1"),
            ("pack_target_len", d.pack_target_len, d.pack_target_len > 1, "must be > 1"),
        ]
        for name, value, ok, message in ranges:
            if not ok:
                raise T2TError(f"bad config: {configs.flag(name)} {value}: {message}")
        check_warmup(t)


# A run shorter than this is a smoke test (the default warm-up alone is 20 steps): warm-up covering it is
# warned about by the recipe instead of refused, so that `--max-steps 2` checks need no extra option.
SMOKE_STEPS = 10
TRACKERS = ("tensorboard", "wandb", "mlflow", "none")


def warmup_swallows_run(t: TrainConfig, smoke: bool = False) -> bool:
    """Whether warm-up lasts the whole run (refused; with ``smoke``: the short runs that are only warned)."""
    covered = t.warmup_steps > 0 and t.warmup_steps >= t.max_steps
    return covered and (t.max_steps < SMOKE_STEPS) == smoke


def check_warmup(t: TrainConfig) -> None:
    """Warm-up as long as the run (the default 20 steps and ``--max-steps 20``): the learning rate would climb
    the whole run and never reach ``--lr``; refused with the fix (short smoke runs: warned by the recipe)."""
    if warmup_swallows_run(t):
        raise T2TError(f"bad config: --warmup-steps {t.warmup_steps} >= --max-steps {t.max_steps}: the whole run "
                       f"would be warm-up (the learning rate never reaches --lr {t.lr:g}); use --warmup-steps "
                       f"{t.max_steps // 10} (a tenth of the steps) or 0")


def build_config(values: dict[str, Any], origin: str = "config") -> FinetuneConfig:
    """A finetune config from flat or sectioned keys (``{"max_steps": 5}``, ``{"train": {...}}``)."""
    return configs.build(FinetuneConfig, values, origin, COMMAND)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    configs.add_arguments(parser, FinetuneConfig)


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """defaults < the run's own ``config.yaml`` (with ``--resume``) < ``--config`` YAML < flags given.

    So ``--output-dir RUN --resume`` alone continues RUN with the options it was started with; an option
    given as well overrides the saved one (and the recipe refuses one that would change the run)."""
    known = configs.index(FinetuneConfig)
    # a repeated list option arrives as a list of comma-separated texts: one text, split by coerce
    flags = {k: ",".join(v) if isinstance(v, list) else v for k, v in vars(args).items()
             if k in known and v is not None}
    config_file = getattr(args, "config", None)
    layers = [(configs.load_yaml(config_file), f"--config {config_file}")] if config_file else []
    layers.append((flags, "options"))
    return configs.build_layers(FinetuneConfig, [*saved_run_layer(layers), *layers], COMMAND)


# What a resumed run never takes from its saved config.yaml: how this invocation opens the folder.
NOT_RESUMED = ("resume", "overwrite", "output_dir")


def saved_run_layer(layers: Sequence[tuple[dict[str, Any], str]]) -> list[tuple[dict[str, Any], str]]:
    """With ``--resume``: the run folder's ``config.yaml`` as the lowest layer of options (none without it)."""
    found: dict[configs.FieldPath, tuple[Any, str]] = {}
    for values, origin in layers:
        found.update(configs.paths(FinetuneConfig, values, origin, COMMAND))
    resume = found.get(("train", "resume"))
    if resume is None or not configs.coerce(resume[0], bool, resume[1]):
        return []
    out = found.get(("train", "output_dir"), (TrainConfig().output_dir, ""))[0]
    path = Path(str(out)) / "config.yaml"
    if not path.is_file():
        return []
    saved = configs.load_yaml(str(path))
    train = saved.get("train")
    if isinstance(train, dict):
        saved = {**saved, "train": {k: v for k, v in train.items() if k not in NOT_RESUMED}}
    return [(saved, str(path))]


def parse_bool_flags(argv: Sequence[str]) -> list[str]:
    return configs.parse_bool_flags(argv, FinetuneConfig)
