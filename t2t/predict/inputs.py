"""What ``t2t.predict`` reads: inputs from ``--input``, stdin or a JSONL file, optionally rendered through a task.

Where inputs come from (:func:`read_records`), in this order:

* ``--input TEXT`` (repeatable): one input each; ``--input -`` reads stdin, one input per non-empty line;
* ``--input-file FILE`` (``-``: stdin): JSONL, one JSON object per line;
* neither, with stdin piped: stdin lines, as axolotl's ``inference`` reads a piped prompt.

What an input is (:func:`to_items`). Without ``--task``: a text, or a JSONL object with an ``input`` text
and optionally ``choices`` (a list, ranked instead of generated). With ``--task``: a JSON object of the
task's row fields (``--input '{"text": "..."}'`` too), rendered with ``--template`` (default: the task's
first scored template) exactly as training and evaluation render it (:meth:`t2t.tasks.task.Task.render`).

A row for a new input rarely holds the answer (a sentiment row without its ``label``). The template's input
side does not read it, but the task's ``answer`` does, so the missing fields are taken from the task's first
``example`` row to render, and the input is rendered again with each filled field given another value of the
same shape (a number + 1, a text with more words, a list reversed): if the input changes, the template reads
that field to build the input, and the row is refused naming it. A rendered target is only reported when the
row itself held every field.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from t2t.errors import T2TError
from t2t.tasks.task import Example, Task

Record = tuple[str, Any]  # (where it came from, for messages: "--input 2", "rows.jsonl:3"; text or object)


@dataclass(frozen=True)
class Item:
    """One input ready for the model: the text it reads, the choices to rank (None: generate), and what the
    output line echoes besides the prediction."""

    input: str
    choices: tuple[str, ...] | None = None
    echo: dict[str, Any] = field(default_factory=dict)


def _stdin_lines(stdin: IO[str]) -> list[Record]:
    return [(f"stdin:{n}", line.rstrip("\n")) for n, line in enumerate(stdin, start=1) if line.strip()]


def _jsonl(name: str, lines: Iterable[str]) -> list[Record]:
    out: list[Record] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise T2TError(f"{name}:{n}: not valid JSON ({exc}); --input-file takes one JSON object per line"
                           ) from None
        if not isinstance(value, dict):
            raise T2TError(f"{name}:{n}: expected a JSON object per line, got {type(value).__name__}")
        out.append((f"{name}:{n}", value))
    return out


def read_records(texts: Sequence[str], input_file: str | None, stdin: IO[str] | None = None) -> list[Record]:
    """Every input, in order: the ``--input`` texts (``-``: stdin lines), then the ``--input-file`` rows;
    with neither, stdin lines when stdin is not a terminal."""
    stdin = sys.stdin if stdin is None else stdin
    out: list[Record] = []
    for k, text in enumerate(texts, start=1):
        out += _stdin_lines(stdin) if text == "-" else [(f"--input {k}", text)]
    if input_file == "-":
        out += _jsonl("stdin", stdin)
    elif input_file is not None:
        try:
            with open(input_file, encoding="utf-8") as f:
                out += _jsonl(input_file, f)
        except FileNotFoundError:
            raise T2TError(f"--input-file {input_file}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise T2TError(f"--input-file {input_file}: cannot read it ({exc})") from None
    if not texts and input_file is None and not stdin.isatty():
        out += _stdin_lines(stdin)
    if not out:
        raise T2TError("no input: give --input TEXT (repeatable), --input-file FILE.jsonl, or pipe text on stdin")
    return out


def _choices_of(where: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise T2TError(f"{where}: 'choices' must be a non-empty list of texts, got {value!r}")
    return tuple(value)


def _plain_item(where: str, value: Any, choices: tuple[str, ...] | None) -> Item:
    if isinstance(value, str):
        return Item(value, choices, {"input": value})
    text = value.get("input")
    if not isinstance(text, str):
        raise T2TError(f"{where}: no 'input' text in {sorted(value)}; give {{\"input\": \"...\"}}, or --task "
                       "NAME to render the task's fields")
    return Item(text, choices or _choices_of(where, value.get("choices")), {"input": text})


def _as_row(where: str, value: Any, task: Task) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    try:
        row = json.loads(value)
    except ValueError:
        row = None
    if not isinstance(row, dict):
        sample = json.dumps(task.example_rows[0]) if task.example_rows else '{"field": "..."}'
        raise T2TError(f"{where}: with --task {task.name} an input is a JSON object of the task's fields, like "
                       f"{sample}")
    return row


def _render(task: Task, row: Mapping[str, Any], index: int, template: str, where: str) -> Example:
    example = task.render(row, index, template)
    if example is None:
        raise T2TError(f"{where}: task '{task.name}', template '{template}' declines this row (it renders an "
                       "empty input or target); try another --template")
    return example


def _other(value: Any) -> Any:
    """A value of the same shape that differs from ``value`` wherever a template could print or index it."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + " (other)"
    if isinstance(value, list):
        return [_other(v) for v in reversed(value)]
    if isinstance(value, dict):
        return {k: _other(v) for k, v in value.items()}
    return value


def _reads(task: Task, row: Mapping[str, Any], fill: Mapping[str, Any], index: int, template: str,
           first: Example) -> list[str]:
    """The filled fields whose value changes the rendered input, each tried with another value alone."""
    read = []
    for name, value in fill.items():
        try:
            again = task.render({**row, **fill, name: _other(value)}, index, template)
        except T2TError:
            continue  # the other value does not render (an index out of range): no evidence either way
        if again is not None and again.input != first.input:
            read.append(name)
    return read


def render_row(task: Task, row: Mapping[str, Any], index: int, template: str, where: str) -> tuple[Example, bool]:
    """The row rendered with ``template``, and whether its target is the row's own (every field given).

    Fields the row lacks are filled from the task's first example row; each is then tried with another value,
    and a field that changes the input is refused (module docstring)."""
    fill = {k: v for k, v in (task.example_rows[0] if task.example_rows else {}).items() if k not in row}
    if not fill:
        return _render(task, row, index, template, where), True
    first = _render(task, {**row, **fill}, index, template, where)
    read = _reads(task, row, fill, index, template, first)
    if read:
        raise T2TError(f"{where}: task '{task.name}', template '{template}' reads field(s) {', '.join(read)} to "
                       f"build its input; add them to the row (the task's example row: "
                       f"{json.dumps(task.example_rows[0], ensure_ascii=False)})")
    return first, False


def to_items(records: Sequence[Record], task: Task | None = None, template: str | None = None,
             choices: tuple[str, ...] | None = None) -> list[Item]:
    """The model's inputs for ``records`` (module docstring); ``choices`` (``--choices``) for every one."""
    if task is None:
        return [_plain_item(where, value, choices) for where, value in records]
    template = template or (task.scored_templates() or task.template_names)[0]
    if template not in task.templates:
        task.render({}, 0, template)  # raises the task's error, which names its templates
    items = []
    for index, (where, value) in enumerate(records):
        row = _as_row(where, value, task)
        example, own = render_row(task, row, index, template, where)
        echo: dict[str, Any] = {"task": task.name, "template": template, "row": row, "input": example.input}
        if own:
            echo["target"] = example.target
        items.append(Item(example.input, choices or example.choices, echo))
    return items
