"""The config of ``python -m t2t.evaluate``: model, tasks, scoring and output sections.

Built by :mod:`t2t.config` (defaults < ``--config`` YAML < flags), checked as a whole in
:meth:`EvaluateConfig.validate` before any model is loaded, and saved as ``config.yaml`` beside the
report. ``None`` marks a default that is resolved per run: the base model, chat template and target
delimiter (the adapter run's), the batch size (by device), the generation budget (by task), the output
folder (by adapter).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from t2t import config as configs
from t2t.errors import T2TError
from t2t.modeling.config import DEFAULT_MODEL, ModelConfig
from t2t.tasks.task import SPLITS

COMMAND = "t2t.evaluate"
PRECISIONS = ("fp32", "bf16")
CHOICE_SCORING = ("t2t", "lm-eval")  # t2t.evaluation.scoring.CONVENTIONS (that module imports torch)


@dataclass(frozen=True)
class EvalModelConfig(ModelConfig):
    """The model options every command shares (:class:`~t2t.modeling.config.ModelConfig`) with evaluate's
    defaults (the adapter run's base model and revision, fp32 weights), and the adapters to score."""

    model: str | None = field(default=None, metadata={
        "help": f"base model: hub name, folder or {DEFAULT_MODEL}", "metavar": "MODEL",
        "shown": f"the adapter run's base model, else {DEFAULT_MODEL}"})
    precision: str = field(default="fp32", metadata={"help": "fp32 or bf16 weights (never fp16 for T5)",
                                                      "metavar": "{fp32,bf16}"})
    revision: str | None = field(default=None, metadata={
        "help": "hub revision of the base model; another revision than the adapter run's is refused unless "
                "--allow-revision-mismatch", "metavar": "REV", "shown": "the adapter run's revision"})
    adapter: tuple[str, ...] = field(default=(), metadata={
        "help": "peft adapter folder (repeatable); LABEL defaults to the (run) folder name",
        "metavar": "[LABEL=]DIR", "shown": "none"})
    allow_revision_mismatch: bool = field(default=False, metadata={
        "help": "score adapters on another revision of their base than they were trained on",
        "metavar": "[BOOL]"})
    allow_other_base: bool = field(default=False, metadata={
        "help": "score adapters on a base whose weights hash differs from the one their run recorded (noted in "
                "the report); an adapter that would lose tensors is refused even so", "metavar": "[BOOL]"})


@dataclass(frozen=True)
class EvalTasksConfig:
    tasks: tuple[str, ...] = field(default=(), metadata={
        "help": "tasks to evaluate (comma-separated, repeatable)", "metavar": "A,B", "shown": "none"})
    clusters: tuple[str, ...] = field(default=(), metadata={
        "help": "evaluate every task of these clusters (comma-separated, repeatable)", "metavar": "C,...",
        "shown": "none"})
    mixture: str | None = field(default=None, metadata={
        "help": "evaluate the held-out tasks of this mixture", "metavar": "MIXTURE",
        "shown": "the adapter run's held-out tasks"})
    heldout: tuple[str, ...] = field(default=(), metadata={
        "help": "extra held-out clusters or tasks of the mixture (comma-separated)", "metavar": "C,...",
        "shown": "none"})
    allow_train_tasks: bool = field(default=False, metadata={
        "help": "report tasks an adapter was trained on (flagged: not held-out)", "metavar": "[BOOL]"})
    split: str = field(default="validation", metadata={
        "help": "split to score (a task without it: validation, else test, then train)", "choices": SPLITS})
    limit: int | None = field(default=None, metadata={
        "help": "score the first N rows of each task", "metavar": "N", "shown": "every row"})
    contamination: bool = field(default=False, metadata={
        "help": "also score apart the rows that share an n-gram with the mixture's training rows (dirty) and the "
                "others (clean), as GPT-3 did; the mixture is --mixture or the adapter run's", "metavar": "[BOOL]"})
    contamination_ngram: int = field(default=13, metadata={
        "help": "n-gram size in words of --contamination (GPT-3: 13)", "metavar": "N"})
    task_dir: tuple[str, ...] = field(default=(), metadata={
        "help": "extra task folder (repeatable)", "metavar": "DIR", "shown": "the adapter run's"})
    mixture_dir: tuple[str, ...] = field(default=(), metadata={
        "help": "extra mixture folder (repeatable)", "metavar": "DIR", "shown": "none"})


@dataclass(frozen=True)
class ScoringConfig:
    num_shots: int = field(default=0, metadata={"help": "exemplars from the train split per prompt",
                                                 "metavar": "K"})
    batch_size: int | None = field(default=None, metadata={
        "help": "inputs per forward pass (0: by device, like the default)", "metavar": "N",
        "shown": "8 on CPU, where it measured fastest, 32 on a GPU"})
    max_input_len: int = field(default=1024, metadata={"help": "input tokens kept (EOS kept)", "metavar": "N"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "generation budget", "metavar": "N", "shown": "longest reference + 8, per task"})
    num_beams: int = field(default=1, metadata={"help": "beam search width (1: greedy)", "metavar": "N"})
    seed: int = field(default=0, metadata={"help": "seed of the k-shot exemplar draws and the bootstrap",
                                            "metavar": "SEED"})
    bootstrap: int = field(default=1000, metadata={
        "help": "paired bootstrap resamples of the evaluated rows for each adapter's delta interval (0: none)",
        "metavar": "N"})
    log_samples: bool = field(default=False, metadata={
        "help": "keep every prompt and prediction in results.json", "metavar": "[BOOL]"})
    choice_scoring: str = field(default="t2t", metadata={
        "help": "what a choice's score covers: t2t (its tokens + EOS, as the model is trained) or lm-eval "
                "(target_delimiter + its tokens, no EOS, as lm-evaluation-harness 0.4's HFLM scores seq2seq and "
                "causal models)",
        "choices": CHOICE_SCORING})
    target_delimiter: str | None = field(default=None, metadata={
        "help": "text between input and choice: lm-eval's target_delimiter under --choice-scoring lm-eval; for a "
                "causal model also the delimiter its training put before the target (t2t scoring, generation)",
        "metavar": "TEXT", "shown": "the adapter run's, else ' ', lm-eval's default"})
    cot: bool = field(default=False, metadata={
        "help": "chain of thought: a task without rationales gets \"Let's think step by step.\" after its input, is "
                "generated rather than ranked and scored by the answer its output gives (cot_exact_match); CoT tasks "
                "(tag cot) always reason, with --num-shots their exemplars carry rationales", "metavar": "[BOOL]"})
    chat_template: bool | None = field(default=None, metadata={
        "help": "causal models: render each input through the tokenizer's chat template (user turn) and score or "
                "generate the assistant turn, as --chat-template trained it", "metavar": "BOOL",
        "shown": "the adapter run's, else off"})


@dataclass(frozen=True)
class EvalOutputConfig:
    output_dir: str | None = field(default=None, metadata={
        "help": "where report.md, results.json, report.png and config.yaml go", "metavar": "DIR",
        "shown": "<run>/eval, <adapter>/eval or runs/eval"})
    overwrite: bool = field(default=False, metadata={"help": "replace results already in --output-dir",
                                                      "metavar": "[BOOL]"})
    progress: bool = field(default=True, metadata={"help": "progress bars (--no-progress: none)",
                                                    "metavar": "[BOOL]"})


@dataclass(frozen=True)
class EvaluateConfig:
    model: EvalModelConfig = field(default_factory=EvalModelConfig)
    tasks: EvalTasksConfig = field(default_factory=EvalTasksConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    output: EvalOutputConfig = field(default_factory=EvalOutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return configs.to_dict(self)

    def validate(self) -> None:
        """Checks before any model is loaded; a bad value is one T2TError naming its flag."""
        s, t, m = self.scoring, self.tasks, self.model
        for name, value, least in (("num_shots", s.num_shots, 0), ("batch_size", s.batch_size, 1),
                                   ("bootstrap", s.bootstrap, 0), ("num_beams", s.num_beams, 1),
                                   ("limit", t.limit, 1), ("max_new_tokens", s.max_new_tokens, 1),
                                   ("max_input_len", s.max_input_len, 2),
                                   ("contamination_ngram", t.contamination_ngram, 1)):
            if name == "batch_size" and value == 0:
                continue  # 0, like None: by device
            if value is not None and value < least:
                raise T2TError(f"{configs.flag(name)} must be at least {least}, got {value}")
        if s.choice_scoring not in CHOICE_SCORING:
            raise T2TError(f"--choice-scoring {s.choice_scoring}: use t2t (choice + EOS, the default) or lm-eval "
                           "(target_delimiter + choice, no EOS)")
        # --target-delimiter and --chat-template on a seq2seq model: checked once the model's family is known
        # (t2t.evaluation.runner.load_base)
        if m.precision not in PRECISIONS:
            raise T2TError(f"--precision {m.precision}: use fp32 or bf16 (fp16 breaks T5)")
        if m.attn_implementation not in ("eager", "sdpa", "flex_attention"):
            raise T2TError(f"--attn-implementation {m.attn_implementation}: use eager, sdpa or flex_attention")
        if t.split not in SPLITS:
            raise T2TError(f"--split {t.split}: use {', '.join(SPLITS[1:])} or {SPLITS[0]}")
        if (t.tasks or t.clusters) and (t.mixture or t.heldout):
            raise T2TError("choose tasks with --tasks/--clusters or with --mixture/--heldout, not both")

    def override(self, **values: Any) -> EvaluateConfig:
        """A copy with some fields (flat names) set, checked again: ``cfg.override(limit=5)``."""
        return configs.override(self, values, "options", COMMAND)


def build_config(values: dict[str, Any], origin: str = "config") -> EvaluateConfig:
    """An evaluate config from flat or sectioned keys (``{"limit": 5}``, ``{"scoring": {...}}``)."""
    return configs.build(EvaluateConfig, values, origin, COMMAND)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    configs.add_arguments(parser, EvaluateConfig)


def config_from_args(args: argparse.Namespace) -> EvaluateConfig:
    return configs.from_args(EvaluateConfig, args, COMMAND)


def parse_bool_flags(argv: Sequence[str]) -> list[str]:
    return configs.parse_bool_flags(argv, EvaluateConfig)
