"""Configuration for every command: frozen dataclasses, defaults < ``--config`` YAML < flags.

A command's config is a frozen dataclass whose fields are *sections*, each a frozen dataclass of plain
values (``FinetuneConfig`` has ``model``, ``tuning``, ``data``, ``train``). Every field can be set three
ways, later ones winning: its default, a YAML file (``--config F``, sectioned or flat keys), and a
command-line flag (``--max-steps 100`` or ``--train.max-steps 100``). Flat names are unique across a
command's sections; list options are comma-separated and repeatable. Unknown names (keys, and flags
through :func:`parse_args`) are errors with the nearest known name; values are coerced to the field's type
or refused; the root class's ``validate()`` then checks values together. The resolved config
is written next to every output (:func:`to_dict`) and is enough to reproduce it.

    >>> cfg = build(FinetuneConfig, {"max-steps": 5, "train": {"lr": 1e-3}}, origin="options")
    >>> cfg.train.max_steps, cfg.train.lr
    (5, 0.001)
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
from pathlib import Path
from typing import Any, TypeVar

import yaml

from t2t import yamlsafe
from t2t.errors import T2TError

C = TypeVar("C")


def sections(root: type) -> dict[str, type]:
    """section name -> section dataclass of a command's config class."""
    hints = typing.get_type_hints(root)
    return {f.name: hints[f.name] for f in dataclasses.fields(root)}


def index(root: type) -> dict[str, tuple[str, str, Any]]:
    """flat key -> (section, field, type); flat keys are unique across sections."""
    out: dict[str, tuple[str, str, Any]] = {}
    for section, cls in sections(root).items():
        for name, kind in typing.get_type_hints(cls).items():
            assert name not in out, f"{root.__name__}: option {name} in two sections"
            out[name] = (section, name, kind)
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain YAML/JSON values, by section."""
    return {f.name: _plain(dataclasses.asdict(getattr(config, f.name))) for f in dataclasses.fields(config)}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def coerce(value: Any, kind: Any, where: str) -> Any:
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
            if args and args[0] is int:  # tuple[int, ...]: whole numbers only
                if any(isinstance(v, float) and not v.is_integer() for v in items):
                    raise ValueError(value)
                return tuple(int(v) if isinstance(v, float) else int(str(v).strip()) for v in items)
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
        if origin is tuple and args and args[0] is int:
            name = "whole numbers separated by commas"
        raise T2TError(f"option '{where}': expected {name}, got {reprlib.repr(value)}") from None



def flag(name: str) -> str:
    """The command-line spelling of a field: ``max_new_tokens`` -> ``--max-new-tokens``."""
    return "--" + name.replace("_", "-")


def _unknown(key: str, origin: str, known: dict[str, Any], command: str) -> T2TError:
    near = difflib.get_close_matches(key.split(".")[-1].replace("-", "_"), list(known), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return T2TError(f"{origin}: unknown option '{key}'{hint}; see python -m {command} --help")


def build(root: type[C], values: dict[str, Any], origin: str = "config", command: str = "t2t.finetune") -> C:
    """A ``root`` config from flat or sectioned keys; unknown keys are errors with suggestions."""
    known = index(root)
    per_section: dict[str, dict[str, Any]] = {s: {} for s in sections(root)}
    for key, value in values.items():
        norm = str(key).replace("-", "_")
        if norm in per_section and isinstance(value, dict):
            for sub, sub_value in value.items():
                flat = str(sub).replace("-", "_")
                if flat not in known or known[flat][0] != norm:
                    raise _unknown(f"{norm}.{sub}", origin, known, command)
                per_section[norm][flat] = coerce(sub_value, known[flat][2], f"{norm}.{flat}")
            continue
        if "." in norm:
            section, _, norm = norm.partition(".")
            if norm not in known or known[norm][0] != section:
                raise _unknown(str(key), origin, known, command)
        if norm not in known:
            raise _unknown(str(key), origin, known, command)
        section, name, kind = known[norm]
        per_section[section][name] = coerce(value, kind, name)
    config = root(**{s: cls(**per_section[s]) for s, cls in sections(root).items()})
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def override(config: C, values: dict[str, Any], origin: str = "options", command: str = "t2t.finetune") -> C:
    """A copy of ``config`` with ``values`` (flat or sectioned keys) set on top, built and checked again."""
    current = {f"{s}.{k}": v for s, part in to_dict(config).items() for k, v in part.items()}
    return build(type(config), {**current, **values}, origin, command)


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


def add_arguments(parser: argparse.ArgumentParser, root: type) -> None:
    """One flag per field (``--max-steps``, also ``--train.max-steps``), documented with its default."""
    parser.add_argument("--config", help="YAML file of options (by section, or flat keys)")
    for section, cls in sections(root).items():
        group = parser.add_argument_group(section)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            shown = f.metadata.get("shown", shown)  # a default described in words ("the run's base model")
            meta = f.metadata.get("metavar", "V")
            # a list option is repeatable as well as comma-separated: --tasks a,b --tasks c
            action = "append" if typing.get_origin(hints[f.name]) is tuple else "store"
            group.add_argument(flag(f.name), f"--{section}.{f.name.replace('_', '-')}", dest=f.name, default=None,
                               action=action, metavar=meta, help=f"{f.metadata.get('help', '')} (default: {shown})")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str], command: str) -> argparse.Namespace:
    """``parser.parse_args``, but an unknown flag is one T2TError with the nearest known flag."""
    args, extra = parser.parse_known_args(list(argv))
    if extra:
        bad = next((a for a in extra if a.startswith("-")), extra[0])
        flags = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
        near = difflib.get_close_matches(bad.partition("=")[0].replace("_", "-"), flags, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        what = "option" if bad.startswith("-") else "argument"
        raise T2TError(f"options: unknown {what} '{bad}'{hint}; see python -m {command} --help")
    return args


def from_args(root: type[C], args: argparse.Namespace, command: str) -> C:
    """defaults < ``--config`` YAML < flags given on the command line."""
    values: dict[str, Any] = load_yaml(args.config) if getattr(args, "config", None) else {}
    known = index(root)
    merged = _flatten(root, values)
    # a repeated list option arrives as a list of comma-separated texts: one text, split by coerce
    merged.update({k: ",".join(v) if isinstance(v, list) else v for k, v in vars(args).items()
                   if k in known and v is not None})
    return build(root, merged, origin=f"--config {args.config}" if getattr(args, "config", None) else "options",
                 command=command)


def _flatten(root: type, values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = sections(root)
    for key, value in values.items():
        if key in names and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def parse_bool_flags(argv: Sequence[str], root: type) -> list[str]:
    """Let boolean options be given bare (``--resume``) as well as with a value (``--resume true``)."""
    known = index(root)
    bools = {flag(name) for name, (_, _, kind) in known.items() if kind is bool}
    bools |= {f"--{s}.{n.replace('_', '-')}" for n, (s, _, kind) in known.items() if kind is bool}
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


def save(config: Any, path: Path) -> None:
    """Write the resolved config as YAML beside a command's outputs (atomically)."""
    from t2t.atomic import write_text

    write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
