"""The config of ``python -m t2t.predict``: model, inputs, generation and output sections.

Built by :mod:`t2t.config` (defaults < ``--config`` YAML < flags) and checked as a whole by
:meth:`PredictConfig.validate` before any model is loaded. ``None`` marks a default resolved from the run
behind ``--adapter`` / ``--model`` (base model, revision, chat template, target delimiter, task folders)
or by device (batch size). The input texts themselves (``--input``) are data, not options: they are not
part of the config (``--config`` / ``--save-config`` hold where inputs come from, never the inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from t2t import config as configs
from t2t.errors import T2TError
from t2t.evaluation.config import CHOICE_SCORING, PRECISIONS
from t2t.modeling.config import DEFAULT_MODEL, ModelConfig

COMMAND = "t2t.predict"
CHOICE_SEP = "|||"  # the task format's input/target separator, so a choice may hold commas


@dataclass(frozen=True)
class PredictModelConfig(ModelConfig):
    """The model options every command shares, with predict's defaults, and the one adapter to apply."""

    model: str | None = field(default=None, metadata={
        "help": f"base model (hub name, folder, {DEFAULT_MODEL}, smollm2-135m, ...), a merged or fully fine-tuned "
                "model folder, or a t2t run folder (its model/ or merged/ folder, else its adapter/)",
        "metavar": "MODEL", "shown": f"the adapter run's base model, else {DEFAULT_MODEL}"})
    adapter: str | None = field(default=None, metadata={
        "help": "peft adapter folder, or the t2t.finetune run folder that holds it (adapter/); the run's "
                "config.json gives the base model, revision, chat template and target delimiter",
        "metavar": "DIR", "shown": "none (the model alone)"})
    precision: str = field(default="fp32", metadata={"help": "fp32 or bf16 weights (never fp16 for T5)",
                                                      "metavar": "{fp32,bf16}"})
    revision: str | None = field(default=None, metadata={
        "help": "hub revision of the base model", "metavar": "REV", "shown": "the adapter run's revision"})
    allow_other_base: bool = field(default=False, metadata={
        "help": "apply the adapter to a base whose weights hash differs from the one its run recorded (said on "
                "stderr); an adapter that would lose tensors is refused even so", "metavar": "[BOOL]"})


@dataclass(frozen=True)
class PredictInputConfig:
    input_file: str | None = field(default=None, metadata={
        "help": "JSONL file of inputs ('-': stdin): an 'input' text per line, or with --task the task's row "
                "fields; an optional 'choices' list per line is ranked", "metavar": "FILE",
        "shown": "--input texts, else stdin lines when piped"})
    task: str | None = field(default=None, metadata={
        "help": "render each input row (JSON object of the task's fields) through this task's template; a task "
                "with answer choices is rank-classified over them", "metavar": "TASK", "shown": "none (raw text)"})
    template: str | None = field(default=None, metadata={
        "help": "the template of --task", "metavar": "NAME", "shown": "the task's first scored template"})
    task_dir: tuple[str, ...] = field(default=(), metadata={
        "help": "extra task folder (repeatable)", "metavar": "DIR", "shown": "the run's"})
    choices: str | None = field(default=None, metadata={
        "help": f"rank these answer choices for every input instead of generating, '{CHOICE_SEP}'-separated "
                f"(\"yes{CHOICE_SEP}no\")", "metavar": "A|||B", "shown": "the row's or the task's, else generate"})


@dataclass(frozen=True)
class PredictGenerationConfig:
    max_new_tokens: int = field(default=64, metadata={"help": "generation budget in new tokens", "metavar": "N"})
    num_beams: int = field(default=1, metadata={"help": "beam search width (1: greedy); never sampled",
                                                "metavar": "N"})
    batch_size: int | None = field(default=None, metadata={
        "help": "inputs per forward pass (0: by device)", "metavar": "N", "shown": "8 on CPU, 32 on a GPU"})
    max_input_len: int = field(default=1024, metadata={"help": "input tokens kept", "metavar": "N"})
    choice_scoring: str = field(default="t2t", metadata={
        "help": "what a choice's log-likelihood covers: t2t (its tokens + EOS, as t2t trains) or lm-eval "
                "(target_delimiter + its tokens, no EOS, as lm-evaluation-harness 0.4 scores)",
        "metavar": "{t2t,lm-eval}"})
    target_delimiter: str | None = field(default=None, metadata={
        "help": "text between input and answer (lm-eval scoring; for a causal model also the delimiter its "
                "training used)", "metavar": "TEXT", "shown": "the adapter run's, else ' '"})
    chat_template: bool | None = field(default=None, metadata={
        "help": "causal models: wrap each input in the tokenizer's chat template (user turn)", "metavar": "BOOL",
        "shown": "the adapter run's, else off"})


@dataclass(frozen=True)
class PredictOutputConfig:
    output: str | None = field(default=None, metadata={
        "help": "JSONL file of predictions, written whole at the end", "metavar": "FILE", "shown": "stdout"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing --output file",
                                                      "metavar": "[BOOL]"})


@dataclass(frozen=True)
class PredictConfig:
    model: PredictModelConfig = field(default_factory=PredictModelConfig)
    inputs: PredictInputConfig = field(default_factory=PredictInputConfig)
    generation: PredictGenerationConfig = field(default_factory=PredictGenerationConfig)
    output: PredictOutputConfig = field(default_factory=PredictOutputConfig)

    def validate(self) -> None:
        """Checks before any model is loaded; a bad value is one T2TError naming its flag."""
        g, m = self.generation, self.model
        for name, value, least in (("max_new_tokens", g.max_new_tokens, 1), ("num_beams", g.num_beams, 1),
                                   ("batch_size", g.batch_size, 0), ("max_input_len", g.max_input_len, 2)):
            if value is not None and value < least:
                raise T2TError(f"{configs.flag(name)} must be at least {least}, got {value}")
        if g.choice_scoring not in CHOICE_SCORING:
            raise T2TError(f"--choice-scoring {g.choice_scoring}: use t2t (choice + EOS, the default) or lm-eval")
        if m.precision not in PRECISIONS:
            raise T2TError(f"--precision {m.precision}: use fp32 or bf16 (fp16 breaks T5)")
        if self.inputs.template and not self.inputs.task:
            raise T2TError(f"--template {self.inputs.template} needs --task: the template belongs to a task")
        if self.inputs.choices is not None and not choice_list(self.inputs.choices):
            raise T2TError(f"--choices {self.inputs.choices!r}: give at least one choice, e.g. "
                           f"--choices \"yes{CHOICE_SEP}no\"")

    def override(self, **values: Any) -> PredictConfig:
        """A copy with some fields (flat names) set, checked again: ``cfg.override(num_beams=4)``."""
        return configs.override(self, values, "options", COMMAND)


def choice_list(text: str) -> tuple[str, ...]:
    """``"a|||b"`` -> ``("a", "b")``: stripped, empty ones dropped (the task format's rule for choices)."""
    return tuple(c.strip() for c in text.split(CHOICE_SEP) if c.strip())


def build_config(values: dict[str, Any], origin: str = "config") -> PredictConfig:
    """A predict config from flat or sectioned keys (``{"num_beams": 4}``, ``{"generation": {...}}``)."""
    return configs.build(PredictConfig, values, origin, COMMAND)


def parse_bool_flags(argv: Sequence[str]) -> list[str]:
    return configs.parse_bool_flags(argv, PredictConfig)
