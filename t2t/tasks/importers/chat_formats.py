"""Import instruction and chat data (alpaca, sharegpt, OpenAI ``messages``) as t2t task files.

Most instruction data ships in one of three shapes; each becomes a task file and its JSON Lines data, as
``import-sni`` writes them::

    OUT/NAME.jinja          front matter (source: {files: {train: data/NAME.jsonl}}, example rows) + templates
    OUT/data/NAME.jsonl     one row per trained-on response

The formats, as their sources define them:

- **alpaca**: a JSON array (``alpaca_data.json``) or JSON Lines of ``{"instruction", "input", "output"}``
  (tatsu-lab/stanford_alpaca README, "Data Release"; ``input`` may be empty); LLaMA-Factory's alpaca
  format (its ``data/README.md``) adds an optional ``system`` column, read here too. Two templates:
  ``alpaca``, Stanford Alpaca's own prompt (``PROMPT_DICT`` in its ``train.py``: ``prompt_input`` when
  ``input`` is non-empty, else ``prompt_no_input``, ending ``### Response:``), with the system prompt, if
  any, before it; and ``instruction``, the instruction and its input alone (FLAN-style, no boilerplate).
  LLaMA-Factory's ``history`` column (earlier turns) is refused: write such data as sharegpt.
- **sharegpt**: ``{"conversations": [{"from": ..., "value": ...}, ...]}`` (LLaMA-Factory ``data/README.md``:
  ``role_tag`` ``from``, ``content_tag`` ``value``, ``user_tag`` ``human``, ``assistant_tag`` ``gpt``,
  ``system_tag`` ``system``, an optional ``system`` column; axolotl's ``sharegpt`` type the same).
  ``user``/``assistant`` are read as ``human``/``gpt``. Tool turns (``function_call``, ``observation``)
  are refused.
- **messages**: OpenAI's chat fine-tuning JSON Lines, ``{"messages": [{"role": "system"|"user"|"assistant",
  "content": ...}]}`` (OpenAI fine-tuning guide, "Example format"); an assistant message with
  ``"weight": 0`` is not trained on (the guide's multi-turn example), so it becomes context only.

**Multi-turn conversations.** One row per assistant turn, with every earlier turn as context: each of a
conversation's responses is trained on, as LLaMA-Factory (its ``supervised`` processor trains every
assistant turn of a multi-turn example) and axolotl (``roles_to_train: [assistant]``) do, while a t2t row
stays one input ||| target pair. A row is ``{"id": "RECORD-TURN", "system", "history": [{"role",
"content"}...], "prompt", "response"}``; the ``chat`` template renders::

    SYSTEM                  (only if there is one)

    User: earlier user turn

    Assistant: earlier answer

    User: PROMPT
    Assistant:
    |||
    RESPONSE

A system prompt (sharegpt's leading ``system`` message or ``system`` column, OpenAI's leading ``system``
message) opens every row of its conversation. With ``finetune --chat-template`` a decoder-only model then
sees that whole text as the user turn and the response as the assistant turn.

Checks, each one line naming the file and record (``FILE:N``, the line of a JSON Lines file, the
position in a JSON array): a record that is not an object, a missing or non-text field, turns that do
not alternate user/assistant after the system prompt, a conversation without a trained-on response.
Responses holding ``|||`` (t2t's separator) are left out and counted, as ``import-sni`` does. A task
name that an existing task (built-in, ``--task-dir``, ``T2T_TASK_PATH``) already has is refused naming
its file. Both files are staged beside ``OUT`` and moved in together only once the task file has loaded
there and rendered its first rows through every template (:func:`t2t.atomic.staged_files`): a failure or
a kill leaves ``OUT`` as it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from t2t.atomic import staged_files
from t2t.errors import T2TError
from t2t.tasks import registry
from t2t.tasks.registry import TaskRegistry

FORMATS = ("alpaca", "sharegpt", "messages")
SEPARATOR = "|||"
EXAMPLES = 2  # rows copied into the front matter for 'tasks check'
CHECKED_ROWS = 200  # rows rendered through every template before anything is written

# tatsu-lab/stanford_alpaca train.py, PROMPT_DICT (prompt_input / prompt_no_input), as Jinja
_ALPACA = ("{% if system %}{{ system }}\n\n{% endif %}"
           "{% if input %}Below is an instruction that describes a task, paired with an input that provides "
           "further context. Write a response that appropriately completes the request.\n\n"
           "### Instruction:\n{{ instruction }}\n\n### Input:\n{{ input }}\n\n### Response:"
           "{% else %}Below is an instruction that describes a task. Write a response that appropriately "
           "completes the request.\n\n### Instruction:\n{{ instruction }}\n\n### Response:{% endif %}\n"
           "|||\n{{ output }}\n")
_INSTRUCTION = "{{ instruction }}{% if input %}\n\n{{ input }}{% endif %}\n|||\n{{ output }}\n"
_CHAT = ("{% if system %}{{ system }}\n\n{% endif %}"
         "{% for turn in history %}{{ 'User' if turn.role == 'user' else 'Assistant' }}: {{ turn.content }}\n\n"
         "{% endfor %}User: {{ prompt }}\nAssistant:\n|||\n{{ response }}\n")
TEMPLATES = {
    "alpaca": {"alpaca": ("Stanford Alpaca's prompt (PROMPT_DICT in tatsu-lab/stanford_alpaca train.py)", _ALPACA),
               "instruction": ("the instruction and its input, no boilerplate", _INSTRUCTION)},
    "sharegpt": {"chat": ("earlier turns as User:/Assistant: lines, then the prompt", _CHAT)},
    "messages": {"chat": ("earlier turns as User:/Assistant: lines, then the prompt", _CHAT)},
}
# sharegpt role tags (LLaMA-Factory data/README.md defaults, and the role names of other dumps)
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}
TOOL_ROLES = ("function_call", "observation", "tool", "function", "ipython")


@dataclass
class ChatImport:
    task_file: Path
    data_file: Path
    records: int
    rows: int
    skipped: int


def read_records(path: str | Path) -> list[tuple[str, int, Any]]:
    """(where, number, record) of a JSON array file or a JSON Lines file: ``where`` names the record in
    messages (``FILE:LINE``, or ``FILE: record N`` in an array), ``number`` is its line or position."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise T2TError(f"{p}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise T2TError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode the file") from None
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise T2TError(f"{p}: not a JSON array ({exc})") from None
        if not isinstance(data, list) or not data:
            raise T2TError(f"{p}: an empty JSON array: no records")
        return [(f"{p}: record {i}", i, record) for i, record in enumerate(data, 1)]
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append((f"{p}:{number}", number, json.loads(line)))
        except ValueError as exc:
            raise T2TError(f"{p}:{number}: not a JSON object on one line (JSON Lines): {exc}") from None
    if not records:
        raise T2TError(f"{p}: no records (an empty file)")
    return records


def _object(where: str, record: Any, needs: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise T2TError(f"{where}: a record must be a JSON object with {needs}, got {type(record).__name__}")
    return record


def _text(where: str, record: dict[str, Any], key: str, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        got = "missing" if key not in record else f"{type(value).__name__} {json.dumps(value)[:40]}"
        raise T2TError(f"{where}: field '{key}' must be {'non-empty ' if required else ''}text, got {got}")
    return value


def alpaca_rows(where: str, number: int, record: Any) -> list[dict[str, Any]]:
    """The one row of an alpaca record."""
    record = _object(where, record, "'instruction', 'input' and 'output'")
    if record.get("history"):
        raise T2TError(f"{where}: field 'history' (earlier turns) is not read by import-alpaca; convert the data "
                       "to sharegpt conversations and use import-sharegpt")
    return [{"id": str(number), "system": _text(where, record, "system", False),
             "instruction": _text(where, record, "instruction"), "input": _text(where, record, "input", False),
             "output": _text(where, record, "output")}]


def sharegpt_turns(where: str, record: Any) -> tuple[str, list[tuple[str, str, bool]]]:
    """(system prompt, [(role, text, trained)]) of a sharegpt record."""
    record = _object(where, record, "'conversations': [{'from': ..., 'value': ...}]")
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise T2TError(f"{where}: field 'conversations' must be a non-empty list of {{'from', 'value'}} turns")
    out = []
    for k, turn in enumerate(turns):
        at = f"{where}, conversations[{k}]"
        turn = _object(at, turn, "'from' and 'value'")
        tag = _text(at, turn, "from")
        if tag in TOOL_ROLES:
            raise T2TError(f"{at}: tool turns ('{tag}') are not imported; drop them or the conversation")
        if tag not in SHAREGPT_ROLES:
            raise T2TError(f"{at}: unknown 'from' value '{tag}' (use human, gpt or system)")
        out.append((SHAREGPT_ROLES[tag], _text(at, turn, "value"), True))
    system = _text(where, record, "system", False)
    return system, out


def messages_turns(where: str, record: Any) -> tuple[str, list[tuple[str, str, bool]]]:
    """(system prompt, [(role, text, trained)]) of an OpenAI chat fine-tuning record."""
    record = _object(where, record, "'messages': [{'role': ..., 'content': ...}]")
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise T2TError(f"{where}: field 'messages' must be a non-empty list of {{'role', 'content'}} messages")
    out = []
    for k, message in enumerate(messages):
        at = f"{where}, messages[{k}]"
        message = _object(at, message, "'role' and 'content'")
        role = _text(at, message, "role")
        if role in TOOL_ROLES:
            raise T2TError(f"{at}: tool messages ('{role}') are not imported; drop them or the conversation")
        if role not in ("system", "user", "assistant"):
            raise T2TError(f"{at}: unknown role '{role}' (use system, user or assistant)")
        weight = message.get("weight", 1)
        if weight not in (0, 1):
            raise T2TError(f"{at}: 'weight' must be 0 or 1, got {json.dumps(weight)}")
        out.append((role, _text(at, message, "content"), weight == 1))
    return "", out


def conversation_rows(where: str, number: int, system: str,
                      turns: Sequence[tuple[str, str, bool]]) -> list[dict[str, Any]]:
    """One row per trained-on assistant turn, the earlier turns as its history."""
    turns = list(turns)
    if turns and turns[0][0] == "system":
        system = "\n\n".join(t for t in (system, turns.pop(0)[1]) if t)
    roles = [role for role, _, _ in turns]
    expected = ["user", "assistant"] * (len(turns) // 2)
    if roles != expected or not turns:
        found = next((k for k, (a, b) in enumerate(zip(roles, expected, strict=False)) if a != b),
                     len(expected))
        raise T2TError(f"{where}: turns must alternate user, assistant, ... and end with an assistant turn "
                       f"(after an optional leading system turn); turn {found} breaks it ({' '.join(roles)})")
    rows = []
    for k in range(1, len(turns), 2):
        if not turns[k][2]:
            continue
        history = [{"role": role, "content": text} for role, text, _ in turns[:k - 1]]
        rows.append({"id": f"{number}-{k // 2}", "system": system,
                     "history": history, "prompt": turns[k - 1][1], "response": turns[k][1]})
    if not rows:
        raise T2TError(f"{where}: no assistant turn to train on (every one has weight 0)")
    return rows


READERS: dict[str, Callable[[str, int, Any], list[dict[str, Any]]]] = {
    "alpaca": alpaca_rows,
    "sharegpt": lambda where, n, record: conversation_rows(where, n, *sharegpt_turns(where, record)),
    "messages": lambda where, n, record: conversation_rows(where, n, *messages_turns(where, record)),
}


def read_rows(fmt: str, path: str | Path) -> tuple[list[dict[str, Any]], int, int]:
    """(rows, records, rows left out for holding ``|||``) of a data file in format ``fmt``."""
    records = read_records(path)
    rows, skipped = [], 0
    for where, number, record in records:
        for row in READERS[fmt](where, number, record):
            if SEPARATOR in json.dumps(row, ensure_ascii=False):
                skipped += 1
                continue
            rows.append(row)
    if not rows:
        raise T2TError(f"{path}: no rows to import ({skipped} left out for holding '{SEPARATOR}')")
    return rows, len(records), skipped


def task_file(fmt: str, source: str, records: int, cluster: str, rows: Sequence[dict[str, Any]],
              data_path: str) -> str:
    """The task file's text: front matter with the first rows as examples, then the templates."""
    front = {
        "cluster": cluster,
        "description": f"{fmt} data imported from {Path(source).name} ({records} records)",
        "source": {"files": {"train": data_path}},
        "metrics": ["rouge_l"],
        "tags": [fmt],
        "example": list(rows[:EXAMPLES]),
        "templates": {name: {"description": text} for name, (text, _) in TEMPLATES[fmt].items()},
    }
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000)
    body = "\n".join(f"{{% block {name} %}}\n{jinja}{{% endblock %}}\n" for name, (_, jinja) in TEMPLATES[fmt].items())
    return f"---\n{head}---\n{body}"


_NAME_LINE = re.compile(r"^name:[ \t]*['\"]?([^'\"\s#]+)", re.M)


def task_files(extra_dirs: Sequence[str]) -> list[Path]:
    """Every task file of the built-in folders, ``T2T_TASK_PATH`` and ``extra_dirs``."""
    return [path for root in registry.task_dirs(extra_dirs) for path in registry.find_task_files(root)]


def task_name(path: Path) -> str:
    """A task file's name as :class:`~t2t.tasks.task.Task` gives it (its ``name:`` field, else the file
    name), read from the front matter's lines alone: loading every task (Jinja compiled) to learn the
    names takes seconds."""
    text = path.read_text(encoding="utf-8", errors="replace")
    front = text.split("\n---", 1)[0] if text.startswith("---") else ""
    found = _NAME_LINE.search(front)
    return found.group(1) if found else path.stem


def check_name(name: str, target: Path, task_dirs: Sequence[str], overwrite: bool) -> None:
    """Refuse a name that another task already has, and an existing file without ``overwrite``."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise T2TError(f"--name {name!r}: a task name is letters, digits, '_', '.' or '-'")
    other = next((path for path in task_files(task_dirs) if task_name(path) == name
                  and path.resolve() != target.resolve()), None)
    if other is not None:
        raise T2TError(f"task name '{name}' is already taken by {other}; choose another with --name")
    for path in (target, target.parent / "data" / f"{name}.jsonl"):
        if path.exists() and not overwrite:
            raise T2TError(f"{path} already exists; pass --overwrite to replace it")


def import_file(fmt: str, path: str | Path, out_dir: str | Path, name: str | None, cluster: str,
                task_dirs: Sequence[str] = (), overwrite: bool = False) -> ChatImport:
    """Convert one data file in ``fmt`` (alpaca, sharegpt, messages) into ``OUT/NAME.jinja`` and
    ``OUT/data/NAME.jsonl``: all checked first, then both written, or nothing."""
    if fmt not in FORMATS:
        raise T2TError(f"unknown format '{fmt}' (use {', '.join(FORMATS)})")
    name = name or re.sub(r"[^A-Za-z0-9_.\-]+", "_", Path(path).stem)
    out = Path(out_dir)
    jinja, data_file = out / f"{name}.jinja", out / "data" / f"{name}.jsonl"
    rows, records, skipped = read_rows(fmt, path)  # first: a broken file is answered without loading every task
    check_name(name, jinja, task_dirs, overwrite)
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    text = task_file(fmt, str(path), records, cluster, rows, f"data/{name}.jsonl")
    try:  # staged beside OUT, loaded and rendered there, then both files moved in (t2t.atomic.staged_files)
        with staged_files(out) as stage:
            stage.write_text(f"data/{name}.jsonl", data)
            task = TaskRegistry.load(include_builtin=False, paths=[stage.write_text(jinja.name, text)]).get(name)
            for i, row in enumerate(rows[:CHECKED_ROWS]):
                for template in task.template_names:
                    task.render(row, i, template)
    except OSError as exc:
        raise T2TError(f"{out}: cannot write there ({exc.strerror or exc}); nothing was changed") from None
    return ChatImport(jinja, data_file, records, len(rows), skipped)
