"""Every command's ``--help``: each option explained, a typed placeholder, no reST markup, one default.

The parsers are taken from the commands themselves: ``main(["--help"])`` runs until it parses, where the
parser is caught (finetune builds its parser inside ``main``), so an option added anywhere is walked.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import re
import sys
from typing import Literal

import pytest

from t2t import config as configs
from t2t.__main__ import COMMANDS as CONSOLE_COMMANDS
from t2t.errors import T2TError
from t2t.training.config import FinetuneConfig

COMMANDS = list(CONSOLE_COMMANDS.values())  # every command the t2t console script runs
MARKUP = re.compile(r"``|:(class|func|mod|meth|data|attr|exc):`")


class _Caught(Exception):
    pass


def command_parsers(module: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of a command and of each of its subcommands."""
    def grab(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Caught(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_known_args", grab)
        with pytest.raises(_Caught) as caught:
            importlib.import_module(module).main(["--help"])
    parser = caught.value.args[0]
    found = [(module, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [(f"{module} {name}", sub) for name, sub in action.choices.items()]
    return found


PARSERS = [pair for module in COMMANDS for pair in command_parsers(module)]


@pytest.mark.parametrize(("name", "parser"), PARSERS, ids=[name for name, _ in PARSERS])
def test_every_option_is_documented_plainly(name: str, parser: argparse.ArgumentParser) -> None:
    problems = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        option = "/".join(action.option_strings) or action.dest
        text = (action.help or "") % {"default": action.default} if action.help else ""
        if not text.strip():
            problems.append(f"{option}: no help")
        if action.metavar == "V" or (action.nargs != 0 and action.option_strings and action.metavar is None
                                     and action.choices is None):
            problems.append(f"{option}: untyped placeholder {action.metavar!r}")
        if text.count("(default") > 1:
            problems.append(f"{option}: default printed twice: {text}")
        if "(default: )" in text:
            problems.append(f"{option}: empty default")
    shown = parser.format_help()
    problems += [f"markup in --help: ...{shown[m.start() - 30:m.end() + 30]!r}" for m in MARKUP.finditer(shown)]
    assert not problems, f"{name}: " + "; ".join(problems)


def test_usage_names_the_program_as_the_user_started_it(monkeypatch) -> None:
    """``t2t COMMAND --help`` says ``usage: t2t COMMAND``, subcommands included (``t2t tasks list``), and so do
    the hints of its errors; ``python -m t2t COMMAND`` and ``python -m t2t.COMMAND`` keep their own names."""
    monkeypatch.setattr(sys, "argv", ["/venv/bin/t2t", "--help"])  # the console script, as pip writes it
    for name, module in CONSOLE_COMMANDS.items():
        (_, parser), *subcommands = command_parsers(module)
        assert parser.format_usage().startswith(f"usage: t2t {name} "), parser.format_usage()
        assert all(sub.prog == f"t2t {name} {sub_name.split()[-1]}" for sub_name, sub in subcommands), name
    with pytest.raises(T2TError, match="see t2t finetune --help"):
        configs.build(FinetuneConfig, {"max_stepz": 3}, "options", "t2t.finetune")
    for started, program in (("/src/t2t/__main__.py", "python -m t2t predict"),
                             ("/src/t2t/predict/__main__.py", "python -m t2t.predict"), ("", "python -m t2t.predict")):
        monkeypatch.setattr(sys, "argv", [started])
        assert configs.program("t2t.predict") == program


def test_placeholders_follow_the_field_type() -> None:
    usage = dict(command_parsers("t2t.finetune"))["t2t.finetune"].format_usage()
    for expected in ("--max-steps INT", "--lr FLOAT", "--output-dir DIR", "--method {lora,full}",
                     "--schedule {linear,cosine,constant}", "--packing [BOOL]", "--target-modules NAME,..."):
        assert expected in usage, expected


@dataclasses.dataclass(frozen=True)
class _Section:
    mode: Literal["fast", "slow"] = dataclasses.field(default="fast", metadata={"help": "how"})
    folders: tuple[str, ...] = dataclasses.field(default=(), metadata={"help": "where"})
    label: str = dataclasses.field(default="", metadata={"help": "what"})


@dataclasses.dataclass(frozen=True)
class _Root:
    section: _Section = dataclasses.field(default_factory=_Section)


def test_literal_fields_give_choices_and_are_checked() -> None:
    parser = argparse.ArgumentParser()
    configs.add_arguments(parser, _Root)
    text = parser.format_help()
    assert "--mode {fast,slow}" in text and "(default: fast)" in text
    assert "--folders LIST" in text and "where (default: none)" in text
    assert "what (default: '')" in text
    assert configs.build(_Root, {"mode": "slow"}).section.mode == "slow"
    with pytest.raises(T2TError, match=r"option 'mode': expected one of fast, slow, got 'medium'"):
        configs.build(_Root, {"mode": "medium"})


def test_plain_strips_sphinx_roles_and_literals() -> None:
    text = "see ``--tasks a,b`` and :func:`~t2t.x.score` or :mod:`t2t.config`, :class:`label <t2t.A>`"
    assert configs.plain(text) == "see --tasks a,b and score or t2t.config, label"


def test_tasks_list_has_a_header_a_tag_column_and_filters_by_tag(tmp_path, capsys, monkeypatch) -> None:
    from t2t.errors import run_cli
    from t2t.tasks import cli
    from t2t.tasks.registry import TaskRegistry

    # only the folder's task: the built-ins (Jinja compiled) and datasets' import would cost seconds here
    monkeypatch.setattr(cli, "quiet_datasets", lambda: None)
    monkeypatch.setattr(cli.TaskRegistry, "load", functools.partial(TaskRegistry.load.__func__, TaskRegistry,
                                                                    include_builtin=False))

    (tmp_path / "tagged.jinja").write_text("---\ncluster: demo\nsource: {hf: someone/data}\ntags: [mine, other]\n---\n"
                                           "{% block t %}{{ x }} ||| {{ x }}{% endblock %}\n", encoding="utf-8")
    (tmp_path / "untagged.jinja").write_text("---\ncluster: demo\nsource: {hf: someone/data}\n---\n"
                                             "{% block t %}{{ x }} ||| {{ x }}{% endblock %}\n", encoding="utf-8")
    assert run_cli(cli.main, ["list", "--task-dir", str(tmp_path)]) == 0
    assert "untagged" in capsys.readouterr().out
    assert run_cli(cli.main, ["list", "--tag", "mine", "--task-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TASK", "CLUSTER", "KIND", "TEMPLATES", "TAGS", "SOURCE"]
    assert [line.split() for line in lines[1:]] == [["tagged", "demo", "generation", "1", "mine,other",
                                                     "hf:someone/data"]]
