"""The text format of a task file: YAML front matter between ``---`` lines, then named Jinja blocks.

::

    ---                                   <- front matter (YAML): split_front_matter
    cluster: sentiment
    ---
    {% import "_lib/flan.jinja" as flan %} <- imports, macros, set, comments may stand outside blocks
    {% block question %}                  <- one block = one prompt template: split_blocks
    {{ text }} ||| {{ answer }}
    {% endblock %}

:func:`split_blocks` gives each block its own Jinja source in which every other block is blanked out
(newlines kept): Jinja's line numbers are then the file's, and the top-of-body imports and macros are
visible in every block. Compiling and rendering them is :class:`t2t.tasks.task.Task`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jinja2
import yaml
from jinja2 import nodes

from t2t import yamlsafe
from t2t.errors import TaskFileError

_BLOCK_RE = re.compile(
    r"\{%(?P<lt>-?)\s*block\s+(?P<name>\w+)\s*(?:scoped\s*)?(?:required\s*)?-?%\}"
    r"(?P<body>.*?)"
    r"\{%-?\s*endblock(?:\s+(?P<endname>\w+))?\s*(?P<rt>-?)%\}",
    re.S,
)
_BLOCK_OPEN_RE = re.compile(r"\{%-?\s*block\s+(\w+)\s*(?:scoped\s*)?(?:required\s*)?-?%\}")
_BLOCK_END_RE = re.compile(r"\{%-?\s*endblock(?:\s+\w+)?\s*-?%\}")
_RAW_RE = re.compile(r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}", re.S)
# What Jinja or Python raise, instead of a TemplateSyntaxError, on templates nested too deeply to compile.
TOO_DEEP = (RecursionError, SyntaxError, MemoryError)


# C0 controls but tab, newline and carriage return; DEL; C1 controls. Invisible in an editor, they reach the
# model's input unseen (a NUL byte ends a C string in tokenizers' native code): refused in templates.
CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def split_front_matter(text: str, path: str) -> tuple[dict[str, Any], str, int]:
    """Return (metadata, body, number of lines before the body). A leading UTF-8 byte order mark (Windows
    editors write one) is dropped: the file reads as it would without it."""
    text = text.removeprefix("\ufeff")
    if text.split("\n", 1)[0].rstrip() != "---":
        raise TaskFileError("a task file must start with a '---' line opening its YAML front matter",
                            path=path, line=1)
    lines = text.split("\n")
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() == "---"), None)
    if end is None:
        raise TaskFileError("the YAML front matter is not closed by a '---' line", path=path, line=1)
    try:
        meta = yamlsafe.safe_load("\n".join(lines[1:end]), first_line=2) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint = "" if problem.startswith("duplicate key") else ' (quote Jinja values: answer: "{{ choices[label] }}")'
        raise TaskFileError(f"bad YAML in front matter: {problem}{hint}", path=path, line=line) from None
    if not isinstance(meta, dict):
        raise TaskFileError("the front matter must be a YAML mapping of fields", path=path, line=2)
    return meta, "\n".join(lines[end + 1:]), end + 1


@dataclass(frozen=True)
class Block:
    """One named block: its name, the file line it starts on, and its Jinja source (other blocks blanked)."""

    name: str
    line: int
    source: str


def split_blocks(body: str, offset: int, env: jinja2.Environment,
                 err: Callable[..., TaskFileError]) -> list[Block]:
    """The blocks of a task file's ``body`` (which starts after ``offset`` lines of front matter).

    ``env`` parses the whole body (syntax errors outside blocks, duplicate names); ``err(message,
    template=..., line=...)`` builds the error to raise, naming the file and task.
    """
    line_of = lambda pos: offset + body.count("\n", 0, pos) + 1  # noqa: E731
    blocks = _find_blocks(body, offset, err, line_of)
    control = CONTROL_RE.search(body)
    if control:
        holder = next((m.group("name") for m in blocks if m.start() <= control.start() < m.end()), None)
        raise err(f"control character U+{ord(control.group()):04X} in the template text; remove it (only tab, "
                  "newline and carriage return may appear)", template=holder, line=line_of(control.start()))
    _check_outside(body, blocks, offset, env, err)
    out: list[Block] = []
    first_line: dict[str, int] = {}
    for m in blocks:
        name = m.group("name")
        if name in first_line:
            raise err(f"template '{name}' defined twice (lines {first_line[name]} and {line_of(m.start())}); "
                      "template names must be unique in a task", template=name, line=line_of(m.start()))
        first_line[name] = line_of(m.start())
        out.append(Block(name, line_of(m.start()), "\n" * offset + _only_block(body, blocks, m)))
    return out


def _find_blocks(body: str, offset: int, err: Callable[..., TaskFileError],
                 line_of: Callable[[int], int]) -> list[re.Match[str]]:
    """The ``{% block %}`` matches of ``body``, each closed by its own ``{% endblock %}`` and not nested."""
    # An opening after the last endblock never matches _BLOCK_RE, and each one would make the
    # regex rescan the rest of the file: refuse it first, so that loading stays linear.
    ends = [m.end() for m in _BLOCK_END_RE.finditer(body)]
    unclosed = _BLOCK_OPEN_RE.search(body, ends[-1] if ends else 0)
    if unclosed:
        raise err(f"{{% block {unclosed.group(1)} %}} is not closed by {{% endblock %}}",
                  template=unclosed.group(1), line=line_of(unclosed.start()))
    blocks = list(_BLOCK_RE.finditer(body))
    if not blocks:
        raise err("no templates: write each prompt as {% block NAME %} input ||| target {% endblock %}",
                  line=offset + 1)
    # Checked before Jinja parses the body: Jinja allows nesting and reports a mismatched endblock
    # name or a nested block's outer endblock in its own words, on another line.
    for m in blocks:
        name = m.group("name")
        if m.group("endname") and m.group("endname") != name:
            raise err(f"{{% endblock {m.group('endname')} %}} closes block '{name}'", template=name,
                      line=line_of(m.end()))
        inner = _BLOCK_OPEN_RE.search(_RAW_RE.sub(lambda r: " " * len(r.group()), m.group("body")))
        if inner:
            raise err("blocks cannot be nested", template=name, line=line_of(m.start("body") + inner.start()))
    return blocks


def _check_outside(body: str, blocks: list[re.Match[str]], offset: int, env: jinja2.Environment,
                   err: Callable[..., TaskFileError]) -> None:
    """Parse the whole body, then refuse text outside the blocks (imports, macros, set and comments may
    stand there)."""
    # The blocks blanked out with their newlines kept: the text outside keeps the file's line numbers.
    outside = _BLOCK_RE.sub(lambda m: "\n" * m.group().count("\n"), body)
    try:
        env.parse(body)  # catches syntax errors outside blocks and duplicate block names
        outside_ast = env.parse(outside)
    except jinja2.TemplateSyntaxError as exc:
        raise err(f"bad Jinja: {exc.message}", line=offset + (exc.lineno or 1)) from None
    except TOO_DEEP as exc:
        raise err(f"Jinja too deeply nested to compile ({type(exc).__name__})") from None
    for node in outside_ast.body:
        if not isinstance(node, nodes.Output):
            continue
        stray = next((n for n in node.nodes if not (isinstance(n, nodes.TemplateData) and not n.data.strip())),
                     None)
        if stray is not None:
            line = stray.lineno
            if isinstance(stray, nodes.TemplateData):  # a text run starts with the newlines before it
                line += stray.data[:len(stray.data) - len(stray.data.lstrip())].count("\n")
            raise err("text outside {% block %} ... {% endblock %}: only imports, macros, set and comments "
                      "may stand there", line=offset + line)


def _only_block(body: str, blocks: list[re.Match[str]], keep: re.Match[str]) -> str:
    """``body`` with every block but ``keep`` blanked, and ``keep``'s own tags too, newlines kept so that line
    numbers stay the file's."""
    pieces, last = [], 0
    for other in blocks:
        pieces.append(body[last:other.start()])
        if other is keep:
            pieces.append("\n" * body.count("\n", other.start(), other.start("body")))
            pieces.append(other.group("body"))
            pieces.append("\n" * body.count("\n", other.end("body"), other.end()))
        else:
            pieces.append("\n" * body.count("\n", other.start(), other.end()))
        last = other.end()
    pieces.append(body[last:])
    return "".join(pieces)
