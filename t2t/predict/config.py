"""The config of ``python -m t2t.predict``: model, inputs, generation and output sections.

Built by :mod:`t2t.config` (defaults < ``--config`` YAML < flags) and checked as a whole by
:meth:`PredictConfig.validate` before any model is loaded. ``None`` marks a default resolved from the run
behind ``--adapter`` / ``--model`` (base model, revision, chat template, target delimiter, task folders)
or by device (batch size). The input texts themselves (``--input``) are data, not options: they are not
part of the config (``--config`` / ``--save-config`` hold where inputs come from, never the inputs).
"""

from __future__ import annotations

import re
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
    num_beams: int = field(default=1, metadata={"help": "beam search width (1: greedy)", "metavar": "N"})
    # The sampling options are transformers' GenerationConfig fields of the same names, with its meaning
    # (https://huggingface.co/docs/transformers/main_classes/text_generation#transformers.GenerationConfig;
    # transformers 5.25 generation/configuration_utils.py): one left unset is not passed to generate(), so the
    # model's generation_config.json, else transformers' default, applies, as in transformers itself.
    do_sample: bool = field(default=False, metadata={
        "help": "sample each next token instead of greedy or beam search (transformers' do_sample); "
                "reproducible with --seed", "metavar": "[BOOL]"})
    temperature: float | None = field(default=None, metadata={
        "help": "with --do-sample: divide the scores by T before sampling (T > 0; below 1 sharper, above 1 "
                "flatter)", "metavar": "T", "shown": "the model's generation_config.json, else 1.0"})
    top_p: float | None = field(default=None, metadata={
        "help": "with --do-sample: sample only from the most probable tokens whose probabilities add up to P "
                "(nucleus sampling, 0 < P <= 1)", "metavar": "P",
        "shown": "the model's generation_config.json, else 1.0 (all)"})
    top_k: int | None = field(default=None, metadata={
        "help": "with --do-sample: sample only from the K most probable tokens (0: no limit)", "metavar": "K",
        "shown": "the model's generation_config.json, else 50"})
    repetition_penalty: float | None = field(default=None, metadata={
        "help": "divide the scores of tokens already in the prompt (decoder-only) or the output by R (R > 0; "
                "above 1 discourages repeats), for greedy, beam search and sampling alike", "metavar": "R",
        "shown": "the model's generation_config.json, else 1.0 (none)"})
    num_return_sequences: int = field(default=1, metadata={
        "help": "outputs per input, all in the output's 'predictions' list: N samples with --do-sample, else "
                "the N best beams (N <= --num-beams)", "metavar": "N"})
    seed: int = field(default=0, metadata={
        "help": "seed of --do-sample: the same command with the same seed writes the same output (the seed is "
                "in each line)", "metavar": "N"})
    stop: tuple[str, ...] | None = field(default=None, metadata={
        "help": "stop generating at the first of these strings and leave it out of the output (repeatable; "
                "\\n, \\t, \\r, \\\\, \\xHH and \\uHHHH are read as escapes, so a comma is \\x2c; '': stop at EOS "
                "only)", "metavar": "TEXT",
        "shown": "'\\n\\n' for a decoder-only model (lm-eval's default), none for a seq2seq one"})
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


    def check_sampling(self, choices: bool) -> None:
        """The sampling options together, as transformers would refuse (or silently ignore) them, in one line."""
        if self.do_sample and choices:
            raise T2TError("--do-sample with --choices: answer choices are ranked by log-likelihood, never "
                           "sampled; drop one of them")
        for name in ("temperature", "top_p", "top_k"):
            if getattr(self, name) is not None and not self.do_sample:
                # transformers only warns and generates greedily: a run that looks sampled and is not
                raise T2TError(f"{configs.flag(name)} {getattr(self, name)} applies only to sampling; add "
                               f"--do-sample, or drop {configs.flag(name)}")
        if self.temperature is not None and self.temperature <= 0:
            raise T2TError(f"--temperature {self.temperature}: must be above 0 (the scores are divided by it); "
                           "for the most probable tokens drop --do-sample (greedy)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise T2TError(f"--top-p {self.top_p}: must be above 0 and at most 1 (1: no nucleus cut)")
        if self.repetition_penalty is not None and self.repetition_penalty <= 0:
            raise T2TError(f"--repetition-penalty {self.repetition_penalty}: must be above 0 (1.0: no penalty)")
        n = self.num_return_sequences
        if n > 1 and choices:
            raise T2TError(f"--num-return-sequences {n} with --choices: a ranked input has one prediction; "
                           "drop one of them")
        if n > self.num_beams and (self.num_beams > 1 or not self.do_sample):
            raise T2TError(f"--num-return-sequences {n} is above --num-beams {self.num_beams}: without "
                           "--do-sample the outputs are the best beams; add --do-sample, or give --num-beams "
                           f"{n} or more")
        for text in self.stop or ():
            if not unescape(text):
                raise T2TError(f"--stop {text!r}: empty once its surrounding whitespace is dropped; write a newline "
                               "as \\n and a space as \\x20 (--stop '' alone: stop at EOS only)")


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
                                   ("batch_size", g.batch_size, 0), ("max_input_len", g.max_input_len, 2),
                                   ("num_return_sequences", g.num_return_sequences, 1), ("seed", g.seed, 0),
                                   ("top_k", g.top_k, 0)):
            if value is not None and value < least:
                raise T2TError(f"{configs.flag(name)} must be at least {least}, got {value}")
        g.check_sampling(self.inputs.choices is not None)
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


_ESCAPE = re.compile(r"\\(n|t|r|\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")
_NAMED = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    r"""A ``--stop`` value as the string it stands for: ``\n``, ``\t``, ``\r``, ``\\``, ``\xHH`` and ``\uHHHH``
    read as in Python, any other backslash kept. A shell passes ``"\n"`` as backslash + n; llama.cpp reads
    its prompts and reverse prompts the same way (``-e/--escape``, on by default, common/arg.cpp). The
    option itself holds the text as typed, so ``--save-config`` writes it back unchanged.

    >>> unescape(r"\n\nQ:"), unescape(r"a\x2cb"), unescape(r"C:\dir")
    ('\n\nQ:', 'a,b', 'C:\\dir')
    """
    return _ESCAPE.sub(lambda m: _NAMED.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), text)


def stop_strings(g: PredictGenerationConfig) -> tuple[str, ...] | None:
    """The ``--stop`` strings to stop at; None: the family's default (evaluation's)."""
    return None if g.stop is None else tuple(unescape(s) for s in g.stop)


def build_config(values: dict[str, Any], origin: str = "config") -> PredictConfig:
    """A predict config from flat or sectioned keys (``{"num_beams": 4}``, ``{"generation": {...}}``)."""
    return configs.build(PredictConfig, values, origin, COMMAND)


def parse_bool_flags(argv: Sequence[str]) -> list[str]:
    return configs.parse_bool_flags(argv, PredictConfig)
