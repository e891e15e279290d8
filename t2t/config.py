"""Configuration: frozen dataclasses per concern, loaded from YAML and overridden on the command line.

Every field can be set three ways, later ones winning: its default, a YAML file (``--config F``, with
sections ``model:``, ``lora:``, ``data:``, ``train:`` or flat keys), and a command-line flag
(``--max-steps 100`` or ``--train.max-steps 100``). The resolved config is written next to every
output and is enough to reproduce the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import reprlib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from t2t import yamlsafe
from t2t.errors import T2TError

DEFAULT_MODEL = "t2t-tiny"


@dataclass(frozen=True)
class ModelConfig:
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "hub name or local path of a seq2seq LM "
                       "(T5, FLAN-T5, mT5, BART); 't2t-tiny' builds the offline tiny T5 once and caches it"})
    attn_implementation: str = field(default="eager", metadata={
        "help": "attention kernel: eager (fastest for T5 on an H100, see REFERENCE) or sdpa"})
    precision: str = field(default="auto", metadata={
        "help": "auto (bf16 autocast where the GPU supports it, else fp32), bf16 or fp32; never fp16 for T5"})
    revision: str | None = field(default=None, metadata={"help": "hub revision of the model"})


@dataclass(frozen=True)
class LoraSettings:
    method: str = field(default="lora", metadata={"help": "lora (peft adapters) or full (full fine-tuning)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scaling = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: tuple[str, ...] = field(default=(), metadata={
        "help": "module names to adapt, comma-separated (default: every linear layer of the architecture)"})


@dataclass(frozen=True)
class DataConfig:
    mixture: str = field(default="offline", metadata={"help": "mixture name from task_registry/"})
    heldout: tuple[str, ...] = field(default=(), metadata={
        "help": "extra held-out clusters or tasks, comma-separated (added to the mixture's own)"})
    task_dir: tuple[str, ...] = field(default=(), metadata={"help": "extra task folders, comma-separated"})
    mixture_dir: tuple[str, ...] = field(default=(), metadata={"help": "extra mixture folders, comma-separated"})
    max_input_len: int = field(default=256, metadata={"help": "input tokens kept per example (EOS kept)"})
    max_target_len: int = field(default=64, metadata={"help": "target tokens kept per example (EOS kept)"})
    packing: bool = field(default=True, metadata={"help": "pack several examples per row (exact loss)"})
    pack_input_len: int = field(default=512, metadata={
        "help": "encoder tokens per packed row (a longer example gets a row of its own)"})
    pack_target_len: int = field(default=128, metadata={"help": "decoder tokens per packed row"})
    micro_batch_tokens: int = field(default=0, metadata={
        "help": "padded tokens per forward pass; rows are length-grouped under it (0 = auto: 1024 on CPU, "
                "measured best; 16384 on a GPU, not yet measured)"})
    data_workers: int = field(default=-1, metadata={
        "help": "worker processes that render, tokenise and batch upcoming steps while the model trains "
                "(-1 = auto: 0 on a CPU, whose cores are training; up to 4 per process on a GPU); "
                "the batches are the same for any number"})


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
    schedule: str = field(default="linear", metadata={"help": "decay after warm-up: linear, cosine or constant"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping (0 = off)"})
    seed: int = field(default=0, metadata={"help": "seed for the model init, LoRA, dropout and the mixture"})
    save_steps: int = field(default=100, metadata={"help": "checkpoint every N steps (0 = only at the end)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept (the newest)"})
    eval_steps: int = field(default=100, metadata={"help": "validation loss every N steps (0 = never)"})
    eval_examples: int = field(default=256, metadata={"help": "validation examples per evaluation"})
    log_steps: int = field(default=10, metadata={"help": "log metrics every N steps"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest checkpoint in output_dir"})
    overwrite: bool = field(default=False, metadata={"help": "allow writing into a non-empty output_dir"})
    merge: bool = field(default=False, metadata={"help": "also save the base model with the adapter merged in"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


@dataclass(frozen=True)
class FinetuneConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(dataclasses.asdict(getattr(self, f.name))) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _sections(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _field_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls)


def _coerce(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    try:
        if origin is tuple:
            items = [v for v in str(value).split(",") if v.strip()] if isinstance(value, str) else list(value or [])
            if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in items):
                raise ValueError(value)
            return tuple(str(v).strip() for v in items)
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if kind in (int, float) and isinstance(value, bool):
            raise ValueError(value)
        # str() accepts anything: a list or null must not become the text "[1, 2]" or "None"
        if kind is str and not isinstance(value, (str, int, float)):
            raise ValueError(value)
        out = kind(value)
        if kind is float and not math.isfinite(out):
            raise ValueError(value)
        return out
    except (TypeError, ValueError, OverflowError):
        name = getattr(kind, "__name__", str(kind))
        raise T2TError(f"option '{where}': expected {name}, got {reprlib.repr(value)}") from None


def _index() -> dict[str, tuple[str, str, Any]]:
    """flat key -> (section, field, type); flat keys are unique across sections."""
    out: dict[str, tuple[str, str, Any]] = {}
    for section, cls in _sections(FinetuneConfig).items():
        for name, kind in _field_types(cls).items():
            out[name] = (section, name, kind)
    return out


def build_config(values: dict[str, Any], origin: str = "config") -> FinetuneConfig:
    """Build a config from flat or sectioned keys; unknown keys are errors with suggestions."""
    index = _index()
    per_section: dict[str, dict[str, Any]] = {s: {} for s in _sections(FinetuneConfig)}
    for key, value in values.items():
        norm = str(key).replace("-", "_")
        if norm in per_section and isinstance(value, dict):
            for sub, sub_value in value.items():
                flat = str(sub).replace("-", "_")
                if flat not in index or index[flat][0] != norm:
                    raise _unknown(f"{norm}.{sub}", origin, index)
                per_section[norm][flat] = _coerce(sub_value, index[flat][2], f"{norm}.{flat}")
            continue
        if "." in norm:
            section, _, norm = norm.partition(".")
            if norm not in index or index[norm][0] != section:
                raise _unknown(str(key), origin, index)
        if norm not in index:
            raise _unknown(str(key), origin, index)
        section, name, kind = index[norm]
        per_section[section][name] = _coerce(value, kind, name)
    built = {}
    for section, cls in _sections(FinetuneConfig).items():
        built[section] = cls(**per_section[section])
    config = FinetuneConfig(**built)
    validate(config)
    return config


def _unknown(key: str, origin: str, index: dict[str, Any]) -> T2TError:
    near = difflib.get_close_matches(key.split(".")[-1].replace("-", "_"), list(index), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return T2TError(f"{origin}: unknown option '{key}'{hint}; see python -m t2t.finetune --help")


def validate(config: FinetuneConfig) -> None:
    t, d, lo = config.train, config.data, config.lora
    checks = [
        (lo.method in ("lora", "full"), "method must be 'lora' or 'full'"),
        (config.model.precision in ("auto", "bf16", "fp32"), "precision must be auto, bf16 or fp32 (fp16 breaks T5)"),
        (config.model.attn_implementation in ("eager", "sdpa", "flex_attention"),
         "attn_implementation must be eager, sdpa or flex_attention"),
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
        (t.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
        (t.save_steps >= 0 and t.eval_steps >= 0 and t.log_steps > 0,
         "save_steps and eval_steps must be >= 0, log_steps > 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise T2TError(f"bad config: {message}")


def load_yaml(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        data = yamlsafe.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise T2TError(f"--config {path}: no such file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise T2TError(f"--config {path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise T2TError(f"--config {path}: cannot read: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise T2TError(f"--config {path}: expected a mapping of options")
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field (``--max-steps``), documented with its default."""
    parser.add_argument("--config", help="YAML file of options (sections model/lora/data/train or flat keys)")
    for section, cls in _sections(FinetuneConfig).items():
        group = parser.add_argument_group(section)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            shown = ",".join(default) if isinstance(default, tuple) else default
            flag = "--" + f.name.replace("_", "-")
            group.add_argument(flag, f"--{section}.{f.name.replace('_', '-')}", dest=f.name, default=None,
                               metavar="V", help=f"{f.metadata.get('help', '')} (default: {shown})")


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    values: dict[str, Any] = load_yaml(args.config) if args.config else {}
    overrides = {k: v for k, v in vars(args).items() if k in _index() and v is not None}
    merged = _flatten(values)
    merged.update(overrides)
    return build_config(merged, origin=f"--config {args.config}" if args.config else "options")


def _flatten(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sections = _sections(FinetuneConfig)
    for key, value in values.items():
        if key in sections and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    # later stages look up flat names; keep "section.key" keys, build_config validates them
    return out


def parse_bool_flags(argv: Sequence[str]) -> list[str]:
    """Let boolean options be given bare (``--resume``) as well as with a value (``--resume true``)."""
    bools = {"--" + name.replace("_", "-") for name, (_, _, kind) in _index().items() if kind is bool}
    bools |= {f"--{s}.{n.replace('_', '-')}" for n, (s, _, kind) in _index().items() if kind is bool}
    out: list[str] = []
    argv = list(argv)
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg in bools and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
            out.append("true")
        if arg.startswith("--no-") and "--" + arg[5:] in bools:
            out[-1] = "--" + arg[5:]
            out.append("false")
    return out
