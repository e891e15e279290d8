"""The config of ``python -m t2t.mixture``: which mixture, its held-out split, where files are, the sample.

Built by :mod:`t2t.config` like every command's (defaults < ``--config`` YAML < flags); the positional
``NAME`` sets ``mixture``. The command prints and writes no folder, so ``--save-config FILE`` writes the
resolved config on request: ``--config FILE`` then shows or samples the same again.

    python -m t2t.mixture sample offline --n 3 --seed 1 --save-config s.yaml
    python -m t2t.mixture sample --config s.yaml          # the same three draws
"""

from __future__ import annotations

from dataclasses import dataclass, field

from t2t.errors import T2TError
from t2t.mixtures.spec import STOP_POLICIES
from t2t.tasks.task import SPLITS

COMMAND = "t2t.mixture"


@dataclass(frozen=True)
class MixtureOptions:
    mixture: str | None = field(default=None, metadata={
        "help": "the mixture (also the positional NAME)", "metavar": "NAME", "shown": "none"})
    heldout: tuple[str, ...] = field(default=(), metadata={
        "help": "extra held-out cluster or task (repeatable, or comma-separated)", "metavar": "C", "shown": "none"})
    allow_source_overlap: bool | None = field(default=None, metadata={
        "help": "allow training tasks that share a source dataset with a held-out task", "metavar": "BOOL",
        "shown": "the mixture file's"})
    task_dir: tuple[str, ...] = field(default=(), metadata={
        "help": "extra folder of task files (repeatable; also T2T_TASK_PATH)", "metavar": "DIR", "shown": "none"})
    mixture_dir: tuple[str, ...] = field(default=(), metadata={
        "help": "extra folder of mixture files (repeatable; also T2T_MIXTURE_PATH)", "metavar": "DIR",
        "shown": "none"})


@dataclass(frozen=True)
class SampleOptions:
    n: int = field(default=5, metadata={"help": "draws to print", "metavar": "N"})
    seed: int = field(default=0, metadata={"help": "seed of the stream", "metavar": "S"})
    start: int = field(default=0, metadata={"help": "first stream position", "metavar": "N"})
    stop: str | None = field(default=None, metadata={
        "help": "override the mixture's stop policy", "choices": STOP_POLICIES,
        "shown": "the mixture's"})


@dataclass(frozen=True)
class CheckOptions:
    """``check``: the n-gram contamination report (:mod:`t2t.mixtures.contamination`)."""

    ngram: int = field(default=13, metadata={
        "help": "n-gram size in words (GPT-3: 13); also --n on check", "metavar": "N"})
    split: str = field(default="validation", metadata={
        "help": "held-out split to check (a task without it: validation, else test, then train)",
        "metavar": "SPLIT"})


@dataclass(frozen=True)
class MixtureConfig:
    mixture: MixtureOptions = field(default_factory=MixtureOptions)
    sample: SampleOptions = field(default_factory=SampleOptions)
    check: CheckOptions = field(default_factory=CheckOptions)

    def validate(self) -> None:
        s = self.sample
        if s.n < 0 or s.start < 0:
            raise T2TError("--n and --start must not be negative")
        if self.check.ngram < 1:
            raise T2TError(f"--ngram {self.check.ngram}: the n-gram size must be at least 1 (GPT-3 used 8 to 13)")
        if self.check.split not in SPLITS:
            raise T2TError(f"--split {self.check.split}: use {', '.join(SPLITS)}")
        if s.stop is not None and s.stop not in STOP_POLICIES:
            raise T2TError(f"--stop {s.stop}: use one of {', '.join(STOP_POLICIES)}")
