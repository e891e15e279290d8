"""Configuration for every command: frozen dataclasses, defaults < ``--config`` YAML < flags.

A command's config is a frozen dataclass whose fields are *sections*, each a frozen dataclass of plain
values (``FinetuneConfig`` has ``model``, ``tuning``, ``data``, ``train``). Every field can be set three
ways, later ones winning: its default, a YAML file (``--config F``, sectioned or flat keys), and a
command-line flag (``--max-steps 100`` or ``--train.max-steps 100``). Flat names are unique across a
command's sections; list options are comma-separated and repeatable; a yes/no option is given bare
(``--resume``), with a value (``--resume false``) or negated (``--no-resume``). Unknown names (keys, and
flags through :func:`parse_args`) are errors with the nearest known name; values are coerced to the
field's type or refused; the root class's ``validate()`` then checks values together. The resolved config
is written next to every output (:func:`save`, ``config.yaml``) and ``--config`` reads it back unchanged.

A section may itself be a command's whole config (a *part*): ``python -m t2t.experiment`` holds a
``finetune`` and an ``evaluate`` part. A part is set by its mapping in YAML (``finetune: {lr: 0.01}``,
flat or by section), by dotted keys (``finetune.train.lr``), and through the few flat names the root
offers as its own flags (its ``SHORTCUTS``: ``--max-steps`` sets ``finetune.train.max_steps``). A
section's default is the root's default for it, so a command can start from another's defaults with a
few changes (the experiment's finetune part saves no intermediate checkpoints).

How a value finds its field: every key is first resolved to the full path of one field, layer by layer
(YAML, then flags), so that a later layer replaces exactly the fields it names:

    >>> cfg = build(FinetuneConfig, {"max-steps": 5, "train": {"lr": 1e-3}}, origin="options")
    >>> cfg.train.max_steps, cfg.train.lr
    (5, 0.001)
    >>> paths(FinetuneConfig, {"train": {"lr": 1e-3}, "lora_r": 4})
    {('train', 'lr'): (0.001, 'train.lr'), ('tuning', 'lora_r'): (4, 'lora_r')}
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import re
import reprlib
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import yaml

from t2t import yamlsafe
from t2t.atomic import write_text
from t2t.errors import T2TError

C = TypeVar("C")
FieldPath = tuple[str, ...]  # ("train", "lr"), or ("finetune", "train", "lr") inside a part


class Option(NamedTuple):
    """One flat option name of a command: the section (or part) it belongs to and its field's full path."""

    section: str
    name: str
    kind: Any
    path: FieldPath


def sections(root: type) -> dict[str, type]:
    """section name -> section dataclass of a command's config class."""
    hints = typing.get_type_hints(root)
    return {f.name: hints[f.name] for f in dataclasses.fields(root)}


def is_command_config(cls: Any) -> bool:
    """A whole command's config: a dataclass whose fields are all dataclasses (its sections)."""
    if not dataclasses.is_dataclass(cls) or not dataclasses.fields(cls):
        return False
    return all(dataclasses.is_dataclass(kind) for kind in sections(cls).values())


def parts(root: type) -> dict[str, type]:
    """The sections of ``root`` that are whole command configs themselves (the experiment's finetune)."""
    return {name: cls for name, cls in sections(root).items() if is_command_config(cls)}


def index(root: type) -> dict[str, Option]:
    """flat key -> :class:`Option`; flat keys are unique across sections (and the parts' shortcuts)."""
    out: dict[str, Option] = {}
    nested = parts(root)
    for section, cls in sections(root).items():
        if section in nested:
            continue
        for name, kind in typing.get_type_hints(cls).items():
            assert name not in out, f"{root.__name__}: option {name} in two sections"
            out[name] = Option(section, name, kind, (section, name))
    for name, part in getattr(root, "SHORTCUTS", {}).items():
        inner = index(nested[part])[name]
        assert name not in out, f"{root.__name__}: shortcut {name} is also an option"
        out[name] = Option(part, name, inner.kind, (part, *inner.path))
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain YAML/JSON values, by section (a part: by its own sections)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = to_dict(value) if is_command_config(type(value)) else _plain(dataclasses.asdict(value))
    return out


def dump(config: Any) -> str:
    """The config as the YAML text that :func:`build` (and ``--config``) reads back to an equal config."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


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
    if origin is typing.Literal:  # one of the named values, compared as the text a flag gives
        for allowed in args:
            if value == allowed or str(value) == str(allowed):
                return allowed
        raise T2TError(f"option '{where}': expected one of {', '.join(map(str, args))}, got {reprlib.repr(value)}")
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


# the file names pip gives the console script ([project.scripts] t2t): bin/t2t, Scripts\t2t.exe, t2t-script.py
_CONSOLE_SCRIPTS = ("t2t", "t2t.exe", "t2t-script.py")


def program(command: str) -> str:
    """A command's name in its usage line and hints, as the user started it: ``t2t predict`` from the ``t2t``
    console script, ``python -m t2t predict`` from ``python -m t2t``, else ``python -m t2t.predict``.
    ``command`` is the module (``t2t.predict``). Read from ``sys.argv[0]``, as argparse derives its default
    ``prog`` (the script's path; under ``-m`` the module's ``__main__.py``)."""
    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    name = command.removeprefix("t2t.")
    if started.name in _CONSOLE_SCRIPTS:
        return f"t2t {name}"
    if started.name == "__main__.py" and started.parent.name == "t2t":
        return f"python -m t2t {name}"
    return f"python -m {command}"


def _unknown(key: str, origin: str, known: Sequence[str], command: str) -> T2TError:
    near = difflib.get_close_matches(key.split(".")[-1].replace("-", "_"), list(known), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return T2TError(f"{origin}: unknown option '{key}'{hint}; see {program(command)} --help")


def paths(root: type, values: dict[str, Any], origin: str = "config",
          command: str = "t2t.finetune") -> dict[FieldPath, tuple[Any, str]]:
    """Every key of ``values`` (flat, dotted or by section) as the full path of its field, with the value
    and the name it was given by (for messages). Unknown keys are errors with the nearest known name."""
    known = index(root)
    names, nested = sections(root), parts(root)
    out: dict[FieldPath, tuple[Any, str]] = {}

    def into_part(part: str, given: dict[str, Any]) -> None:
        inner = paths(nested[part], given, f"{origin} ({part})", command)
        out.update({(part, *p): v for p, v in inner.items()})

    for key, value in values.items():
        norm = str(key).replace("-", "_")
        if norm in nested:
            if not isinstance(value, dict):
                raise T2TError(f"{origin}: '{key}' must be a mapping of options; see {program(command)} --help")
            into_part(norm, value)
            continue
        if norm in names and norm not in known and not isinstance(value, dict):
            raise T2TError(f"{origin}: '{key}' must be a mapping of options; see {program(command)} --help")
        if norm in names and isinstance(value, dict):
            for sub, sub_value in value.items():
                flat = str(sub).replace("-", "_")
                if flat not in known or known[flat].path != (norm, flat):
                    raise _unknown(f"{norm}.{sub}", origin, list(known), command)
                out[(norm, flat)] = (sub_value, f"{norm}.{flat}")
            continue
        head, dot, rest = norm.partition(".")
        if dot and head in nested:
            into_part(head, {rest: value})
            continue
        if dot:
            if rest not in known or known[rest].path != (head, rest):
                raise _unknown(str(key), origin, list(known), command)
            norm = rest
        if norm not in known:
            raise _unknown(str(key), origin, list(known), command)
        out[known[norm].path] = (value, norm)
    return out


def _assemble(root: type[C], found: dict[FieldPath, tuple[Any, str]], base: C | None = None) -> C:
    """``base`` (default: the root's defaults) with the fields in ``found`` set; each part, then the
    whole, checked by its ``validate()``."""
    base = root() if base is None else base
    nested = parts(root)
    values: dict[str, Any] = {}
    for section, cls in sections(root).items():
        current = getattr(base, section)
        mine = {p[1:]: v for p, v in found.items() if p[0] == section}
        if section in nested:
            values[section] = _assemble(cls, mine, current) if mine else current
            continue
        hints = typing.get_type_hints(cls)
        values[section] = dataclasses.replace(current, **{p[0]: coerce(v, hints[p[0]], where)
                                                          for p, (v, where) in mine.items()})
    config = root(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def build(root: type[C], values: dict[str, Any], origin: str = "config", command: str = "t2t.finetune") -> C:
    """A ``root`` config from flat or sectioned keys; unknown keys are errors with suggestions."""
    return _assemble(root, paths(root, values, origin, command))


def build_layers(root: type[C], layers: Sequence[tuple[dict[str, Any], str]], command: str) -> C:
    """A ``root`` config from ``(values, origin)`` layers, later ones winning field by field."""
    found: dict[FieldPath, tuple[Any, str]] = {}
    for values, origin in layers:
        found.update(paths(root, values, origin, command))
    return _assemble(root, found)


def override(config: C, values: dict[str, Any], origin: str = "options", command: str = "t2t.finetune") -> C:
    """A copy of ``config`` with ``values`` (flat or sectioned keys) set on top, checked again."""
    return _assemble(type(config), paths(type(config), values, origin, command), config)


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


# reST/Sphinx markup in docstrings and help (``x``, :class:`~a.b.C`) printed as the plain text it stands for:
# argparse shows text as written, and --help is read in a terminal.
_ROLE = re.compile(r":[a-z]+:`(~?)([^`<]*?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``(.+?)``", re.S)


def plain(text: str | None) -> str | None:
    """``text`` without reST markup: ``x`` -> x, :func:`~a.b.f` -> f, :mod:`a.b` -> a.b.

    >>> plain("``--tasks a,b`` (:func:`~t2t.evaluation.scoring.score_choices`, :mod:`t2t.config`)")
    '--tasks a,b (score_choices, t2t.config)'
    """
    if text is None:
        return None
    text = _ROLE.sub(lambda m: m.group(2).strip().rsplit(".", 1)[-1] if m.group(1) else m.group(2).strip(), text)
    return _LITERAL.sub(r"\1", text)


def choices(f: dataclasses.Field, kind: Any) -> tuple[Any, ...] | None:
    """The values a field takes, if it names them: a ``Literal`` type or ``metadata["choices"]``."""
    kind = _optional_inner(kind)
    if typing.get_origin(kind) is typing.Literal:
        return typing.get_args(kind)
    listed = f.metadata.get("choices")
    return tuple(listed) if listed else None


def _optional_inner(kind: Any) -> Any:
    """``X`` of ``X | None`` (``Optional[X]``); any other type as it is."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return kind


# metavars by type, where a field names none: what the value is, not "V"
_TYPE_METAVARS = {int: "INT", float: "FLOAT", str: "TEXT", bool: "BOOL"}


def metavar(f: dataclasses.Field, kind: Any) -> str:
    """The value's placeholder in --help: the field's ``metadata["metavar"]``, else ``{a,b}`` for choices,
    ``DIR`` for a folder, else by type (INT, FLOAT, TEXT, BOOL; a list: ``INT,...`` / ``LIST``)."""
    given = f.metadata.get("metavar")
    if given:
        return str(given).strip("[]") if _is_bool(kind) else str(given)
    listed = choices(f, kind)
    inner = _optional_inner(kind)
    if typing.get_origin(inner) is tuple:
        item = (typing.get_args(inner) or (str,))[0]
        if listed:
            return "{" + ",".join(map(str, listed)) + "},..."
        if f.name.endswith("_dir"):
            return "DIR"
        return "INT,..." if item is int else "LIST"
    if listed:
        return "{" + ",".join(map(str, listed)) + "}"
    if f.name.endswith("_dir") or f.name.endswith("_path"):
        return "DIR" if f.name.endswith("_dir") else "PATH"
    return _TYPE_METAVARS.get(inner, "VALUE")


def _shown_default(default: Any, f: dataclasses.Field) -> str:
    if default == f.default and "shown" in f.metadata:  # a default in words ("the run's base model"), unless changed
        return str(f.metadata["shown"])
    if isinstance(default, tuple):
        return ",".join(map(str, default)) if default else "none"
    return "none" if default is None else repr(default) if default == "" or default != str(default).strip() \
        else str(default)


def _add_option(group: Any, names: Sequence[str], dest: str, kind: Any, f: dataclasses.Field, default: Any,
                help_text: str | None = None) -> None:
    text = plain(help_text or f.metadata.get("help", "")) or ""
    if "(default" not in text:  # a help that states its default in words says it once
        text = f"{text} (default: {_shown_default(default, f)})"
    meta = metavar(f, kind)
    if _is_bool(kind):
        # bare (--resume), with a value (--resume false); --no-resume through parse_bool_flags
        group.add_argument(*names, dest=dest, default=None, nargs="?", const="true", metavar=meta, help=text)
        return
    # a list option is repeatable as well as comma-separated: --tasks a,b --tasks c
    action = "append" if typing.get_origin(_optional_inner(kind)) is tuple else "store"
    group.add_argument(*names, dest=dest, default=None, action=action, metavar=meta, help=text)


def add_arguments(parser: argparse.ArgumentParser, root: type, only: Sequence[str] | None = None) -> None:
    """One flag per field (``--max-steps``, also ``--train.max-steps``), documented with its default; a
    part's shortcuts (``--max-steps``, also ``--finetune.max-steps``) in a group of their own. ``only``:
    the sections that get flags (a subcommand that uses some of them); ``--config`` may still set any."""
    # the description and epilog are module docstrings: shown without their reST markup, like every help
    parser.description, parser.epilog = plain(parser.description), plain(parser.epilog)
    parser.add_argument("--config", metavar="FILE", help="YAML file of options (by section, or flat keys)")
    defaults, nested = root(), parts(root)
    for section, cls in sections(root).items():
        if section in nested or (only is not None and section not in only):
            continue
        group = parser.add_argument_group(section)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            names = (flag(f.name), f"--{section}.{f.name.replace('_', '-')}")
            _add_option(group, names, f.name, hints[f.name], f, getattr(getattr(defaults, section), f.name))
    shortcuts: dict[str, str] = getattr(root, "SHORTCUTS", {})
    if shortcuts:
        group = parser.add_argument_group(f"{' and '.join(nested)} options (every other one in --config YAML, "
                                          f"under {' / '.join(f'{p}:' for p in nested)})")
        helps: dict[str, str] = getattr(root, "SHORTCUT_HELP", {})
        for name, part in shortcuts.items():
            option = index(root)[name]
            section_cls = sections(nested[part])[option.path[1]]
            f = next(f for f in dataclasses.fields(section_cls) if f.name == name)
            default: Any = defaults
            for step in option.path:
                default = getattr(default, step)
            text = f"{helps.get(name) or f.metadata.get('help', '')}"
            _add_option(group, (flag(name), f"--{part}.{name.replace('_', '-')}"), name, option.kind, f, default,
                        text)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str], command: str) -> argparse.Namespace:
    """``parser.parse_args``, but an unknown flag is one T2TError with the nearest known flag."""
    args, extra = parser.parse_known_args(list(argv))
    if extra:
        bad = next((a for a in extra if a.startswith("-")), extra[0])
        flags = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
        near = difflib.get_close_matches(bad.partition("=")[0].replace("_", "-"), flags, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        what = "option" if bad.startswith("-") else "argument"
        raise T2TError(f"options: unknown {what} '{bad}'{hint}; see {program(command)} --help")
    return args


def from_args(root: type[C], args: argparse.Namespace, command: str) -> C:
    """defaults < ``--config`` YAML < flags given on the command line."""
    config_file = getattr(args, "config", None)
    known = index(root)
    # a repeated list option arrives as a list of comma-separated texts: one text, split by coerce
    flags = {k: ",".join(v) if isinstance(v, list) else v for k, v in vars(args).items()
             if k in known and v is not None}
    layers = [(load_yaml(config_file), f"--config {config_file}")] if config_file else []
    return build_layers(root, [*layers, (flags, "options")], command)


BOOL_WORDS = ("true", "false", "yes", "no", "on", "off", "1", "0")


def _is_bool(kind: Any) -> bool:
    return kind is bool or (typing.get_origin(kind) in (typing.Union, types.UnionType)
                            and set(typing.get_args(kind)) == {bool, type(None)})


def parse_bool_flags(argv: Sequence[str], root: type, positionals: bool = False) -> list[str]:
    """Let boolean options be negated (``--no-resume``) as well as given bare or with a value. With
    ``positionals`` (a command that takes positional arguments) a bare one is followed by anything but a
    yes/no word: ``show --allow-source-overlap offline`` reads ``offline`` as the mixture."""
    known = index(root)
    bools = {flag(name) for name, option in known.items() if _is_bool(option.kind)}
    bools |= {f"--{o.section}.{n.replace('_', '-')}" for n, o in known.items() if _is_bool(o.kind)}
    out: list[str] = []
    argv = list(argv)
    for i, arg in enumerate(argv):
        out.append(arg)
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if arg in bools and (nxt is None or nxt.startswith("--")
                             or (positionals and nxt.lower() not in BOOL_WORDS)):
            out.append("true")
        if arg.startswith("--no-") and "--" + arg[5:] in bools:
            out[-1] = "--" + arg[5:]
            out.append("false")
    return out


def add_save_config(parser: argparse.ArgumentParser) -> None:
    """``--save-config FILE``, for a command that prints and writes no folder of its own."""
    parser.add_argument("--save-config", metavar="FILE",
                        help="also write the resolved options to FILE (YAML) for --config to run the same again")


def save(config: Any, path: Path) -> Path:
    """Write the resolved config as YAML beside a command's outputs (atomically): the file that
    ``--config`` accepts back to run the same thing again."""
    return write_text(path, dump(config))
