"""The task file's text format (t2t.tasks.taskfile): front matter between '---' lines, then named Jinja blocks.

Splitting, the file's own line numbers in every block and every error, and malformed inputs.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest

from t2t.errors import TaskFileError
from t2t.tasks import taskfile
from t2t.tasks.sandbox import T2TSandbox
from t2t.tasks.task import Task
from t2t.tasks.taskfile import Block, split_blocks, split_front_matter

REPO = Path(__file__).resolve().parents[2]
PATH = "mine/f.jinja"


def err(message: str, **where) -> TaskFileError:
    return TaskFileError(message, path=PATH, task="f", **where)


@pytest.fixture
def env(tmp_path: Path) -> T2TSandbox:
    (tmp_path / "_lib").mkdir()
    (tmp_path / "_lib" / "m.jinja").write_text("{% macro shout(x) %}{{ x | upper }}!{% endmacro %}")
    return T2TSandbox([tmp_path, REPO / "templates"])


def blocks_of(text: str, env: T2TSandbox) -> list[Block]:
    meta, body, offset = split_front_matter(text, PATH)
    return split_blocks(body, offset, env, err)


def front_matter_error(text: str) -> TaskFileError:
    with pytest.raises(TaskFileError) as info:
        split_front_matter(text, PATH)
    return info.value


def blocks_error(body: str, env: T2TSandbox, offset: int = 3) -> TaskFileError:
    with pytest.raises(TaskFileError) as info:
        split_blocks(body, offset, env, err)
    return info.value


# -- front matter -------------------------------------------------------------------------------------

def test_front_matter_meta_body_and_offset() -> None:
    text = "---\ncluster: nli\nchoices: [\"yes\", \"no\"]\n---\n{% block a %}\nx ||| y\n{% endblock %}\n"
    meta, body, offset = split_front_matter(text, PATH)
    assert meta == {"cluster": "nli", "choices": ["yes", "no"]}
    assert offset == 4  # lines before the body: '---', two fields, '---'
    assert body == "{% block a %}\nx ||| y\n{% endblock %}\n"
    # The body's first line is file line offset + 1.
    assert text.split("\n")[offset] == body.split("\n")[0]


@pytest.mark.parametrize("text, meta, body, offset", [
    ("---\n---\nbody", {}, "body", 2),                          # empty front matter is an empty mapping
    ("---\n# only a comment\n---\nbody", {}, "body", 3),
    ("---\ncluster: a\n---   \nbody", {"cluster": "a"}, "body", 3),  # trailing spaces close it too
    ("---\r\ncluster: a\r\n---\r\nbody\r\n", {"cluster": "a"}, "body\r\n", 3),  # CRLF files
    ("---\ncluster: a\n---\nx\n---\ny", {"cluster": "a"}, "x\n---\ny", 3),  # the first closing line wins
])
def test_front_matter_edges(text: str, meta: dict, body: str, offset: int) -> None:
    assert split_front_matter(text, PATH) == (meta, body, offset)


@pytest.mark.parametrize("text", [
    "cluster: nli\n---\n",
    "\n---\ncluster: nli\n---\n",          # a blank line first
    " ---\ncluster: nli\n---\n",
    "\ufeff\ufeff---\ncluster: nli\n---\n",  # one byte-order mark is dropped (below), a second is text
    "",
])
def test_front_matter_must_open_the_file(text: str) -> None:
    exc = front_matter_error(text)
    assert (exc.path, exc.line) == (PATH, 1)
    assert str(exc) == f"{PATH}:1: a task file must start with a '---' line opening its YAML front matter"


@pytest.mark.parametrize("text", ["---\ncluster: nli\n", "---", "---\ncluster: nli\n--\n{% block a %}{% endblock %}"])
def test_front_matter_must_be_closed(text: str) -> None:
    exc = front_matter_error(text)
    assert exc.line == 1
    assert str(exc) == f"{PATH}:1: the YAML front matter is not closed by a '---' line"


@pytest.mark.parametrize("text, line, problem", [
    ("---\ncluster: nli\ndescription: a: b\n---\n", 3, "mapping values are not allowed here"),
    ("---\ncluster: nli\nanswer: {{ choices[label] }}\n---\n", 3, "expected ',' or '}', but got '['"),
    ("---\ncluster: nli\nchoices: [a, b\n---\n", 3, "expected ',' or ']'"),
    ("---\ncluster: nli\n\n\n\tlimit: 3\n---\n", 5, "found character '\\t' that cannot start any token"),
    ("---\na: !!python/object/apply:os.system [ls]\n---\n", 2, "could not determine a constructor"),
])
def test_bad_yaml_names_the_file_line(text: str, line: int, problem: str) -> None:
    exc = front_matter_error(text)
    assert exc.line == line and exc.path == PATH
    message = str(exc)
    assert message.startswith(f"{PATH}:{line}: bad YAML in front matter: ")
    assert problem in message
    assert "quote Jinja values" in message  # the usual cause, with the fix
    assert "\n" not in message  # one line


@pytest.mark.parametrize("yaml_text, problem", [
    ("a: &a [*a]", "an alias (*name) refers to a value that contains it"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "\n".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
        for p, c in zip("abcdef", "bcdefg", strict=True)), "aliases expand to more than"),
    ("a: " + "[" * 5000 + "]" * 5000, "nested too deeply"),
])
def test_yaml_limits_are_front_matter_errors(yaml_text: str, problem: str) -> None:
    exc = front_matter_error(f"---\n{yaml_text}\n---\n{{% block a %}}x ||| y{{% endblock %}}\n")
    assert exc.path == PATH and exc.line is None  # no mark: the file is named without a line
    assert str(exc).startswith(f"{PATH}: bad YAML in front matter: {problem}")


@pytest.mark.parametrize("yaml_text", ["- cluster\n- nli", "just words", "42"])
def test_front_matter_must_be_a_mapping(yaml_text: str) -> None:
    exc = front_matter_error(f"---\n{yaml_text}\n---\n")
    assert exc.line == 2
    assert str(exc) == f"{PATH}:2: the front matter must be a YAML mapping of fields"


def test_impossible_date_is_a_front_matter_error() -> None:
    exc = front_matter_error("---\ncluster: qa\nexample: {when: 2024-02-30, q: x}\n---\n")
    assert exc.path == PATH and exc.line == 3


def test_text_after_the_opening_dashes_is_refused() -> None:
    exc = front_matter_error("---cluster: nli\ndescription: d\n---\n{% block a %}x ||| y{% endblock %}\n")
    assert exc.line == 1


# -- blocks ---------------------------------------------------------------------------------------------

TWO = """\
---
cluster: demo
---
{% import "_lib/m.jinja" as m %}
{% set greeting = "hi" %}
{# a comment #}
{% block first %}
{{ greeting }} {{ m.shout(x) }}
|||
FIRST
{% endblock %}

{% block second %}
SECOND {{ x }}
|||
{{ greeting }}
{% endblock %}
"""


def test_blocks_keep_the_files_line_numbers(env: T2TSandbox) -> None:
    blocks = blocks_of(TWO, env)
    assert [(b.name, b.line) for b in blocks] == [("first", 7), ("second", 13)]
    file_lines = TWO.split("\n")
    for block in blocks:
        lines = block.source.split("\n")
        # Same number of lines as the file, front matter blanked: Jinja's line numbers are the file's.
        assert len(lines) == len(file_lines)
        assert all(line == "" for line in lines[:3])
        # Top-of-body imports, set and comments stay in every block.
        assert lines[3:6] == file_lines[3:6]
    first, second = (b.source.split("\n") for b in blocks)
    assert first[7] == "{{ greeting }} {{ m.shout(x) }}" and first[9] == "FIRST"
    assert all(line == "" for line in first[12:17])  # the other block is blanked, newlines kept
    assert second[13] == "SECOND {{ x }}" and all(line == "" for line in second[6:11])
    assert "SECOND" not in blocks[0].source and "FIRST" not in blocks[1].source


def test_each_block_renders_alone_with_the_top_level_imports(env: T2TSandbox) -> None:
    first, second = blocks_of(TWO, env)
    render = lambda b: " ".join(env.from_string(b.source).render(x="dog").split())  # noqa: E731
    assert render(first) == "hi DOG! ||| FIRST"
    assert render(second) == "SECOND dog ||| hi"


def test_block_tag_variants(env: T2TSandbox) -> None:
    body = textwrap.dedent("""\
        {%- block a -%}
        A ||| a
        {%- endblock -%}
        {% block b scoped %}B ||| b{% endblock b %}
        {%block c%}C ||| c{%endblock%}
        """)
    blocks = split_blocks(body, 10, env, err)
    assert [(b.name, b.line) for b in blocks] == [("a", 11), ("b", 14), ("c", 15)]
    assert env.from_string(blocks[1].source).render().strip() == "B ||| b"
    assert env.from_string(blocks[0].source).render().strip() == "A ||| a"


def test_runtime_errors_report_the_files_line(tmp_path: Path, env: T2TSandbox) -> None:
    # Through Task: the blanking is what puts the file's line into a render error of the second block.
    path = tmp_path / "lines.jinja"
    path.write_text(TWO.replace("cluster: demo", "cluster: demo\nsource: {generator: arith_sum}")
                    .replace("SECOND {{ x }}", "SECOND {{ y }}"))
    task = Task(path, env)
    assert task.templates["second"].line == 14  # one more front matter line
    with pytest.raises(TaskFileError) as info:
        task.render({"x": "a"}, 0, "second")
    assert (info.value.line, info.value.template, info.value.field) == (15, "second", "y")
    assert str(info.value).startswith(f"{path}:15, task 'lines', template 'second', row 0, field 'y': UndefinedError")


@pytest.mark.parametrize("body, message, line, template", [
    ("", "no templates: write each prompt as {% block NAME %} input ||| target {% endblock %}", 4, None),
    ("just text ||| here\n", "no templates", 4, None),
    ("{# only a comment #}\n", "no templates", 4, None),
    ("stray text\n{% block a %}x ||| y{% endblock %}\n",
     "text outside {% block %} ... {% endblock %}: only imports, macros, set and comments may stand there",
     4, None),
    ("{% block a %}x ||| y{% endblock %}\n\n{% block b %}\nz ||| w\n",
     "{% block b %} is not closed by {% endblock %}", 6, "b"),
    ("{% block a %}\nx ||| y\n{% endblock %}\n{% block b %}\nz\n{% endblock %}\n{% block a %}w{% endblock %}",
     "template 'a' defined twice (lines 4 and 10); template names must be unique in a task", 10, "a"),
    ("{% block a %}x ||| y{% endblock %}\n\n{{ oops }\n", "bad Jinja: unexpected '}'", 6, None),
    ("{% block a %}\n{% if %}x ||| y{% endif %}\n{% endblock %}\n", "bad Jinja: ", 5, None),
    ("{% block a %}x ||| y{% endblock %}\n{% for x in y %}\n", "bad Jinja: Unexpected end of template", 5, None),
])
def test_block_errors(env: T2TSandbox, body: str, message: str, line: int, template: str | None) -> None:
    exc = blocks_error(body, env)
    assert message in exc.detail
    assert (exc.path, exc.task, exc.line, exc.template) == (PATH, "f", line, template)
    assert str(exc).startswith(f"{PATH}:{line}, task 'f'")


@pytest.mark.parametrize("body, line", [
    ("{% block a %}\nx ||| y\n{% endblock %}\nstray text\n", 7),
    ("{% block a %}x ||| y{% endblock %}\n{{ var }}\n", 5),
    ("\n\nstray text\n{% block a %}x ||| y{% endblock %}\n", 6),
])
def test_text_outside_blocks_names_its_own_line(env: T2TSandbox, body: str, line: int) -> None:
    exc = blocks_error(body, env)
    assert exc.detail.startswith("text outside {% block %}")
    assert exc.line == line


@pytest.mark.parametrize("body", [
    "{% block a %}x{% endblock %}\n" + "{% if 1 %}" * 3000 + "{% endif %}" * 3000,
    "{% block a %}" + "{% if 1 %}" * 3000 + "x" + "{% endif %}" * 3000 + "{% endblock %}",
])
def test_too_deep_jinja_is_a_task_file_error(env: T2TSandbox, body: str) -> None:
    exc = blocks_error(body, env)
    assert exc.detail.startswith("Jinja too deeply nested to compile")


class CountingPattern:
    """A compiled pattern that counts its calls and the characters each call is given to scan."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern, self.calls, self.chars = pattern, 0, 0

    def _count(self, string: str, pos: int = 0) -> None:
        self.calls += 1
        self.chars += len(string) - pos

    def search(self, string: str, pos: int = 0, *args: int) -> re.Match[str] | None:
        self._count(string, pos)
        return self.pattern.search(string, pos, *args)

    def finditer(self, string: str, pos: int = 0, *args: int) -> Iterator[re.Match[str]]:
        self._count(string, pos)
        return self.pattern.finditer(string, pos, *args)

    def sub(self, repl: Any, string: str, count: int = 0) -> str:
        self._count(string)
        return self.pattern.sub(repl, string, count=count)


def test_unclosed_openings_are_refused_in_linear_time(env: T2TSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # The block regex's lazy body runs to the end of the file from every opening it tries: with 10,000
    # openings after the last endblock, 10,000 scans of the rest (700 million characters of a 140 kB
    # body). They are refused before it runs, by two patterns that read the body once each.
    patterns = {name: CountingPattern(getattr(taskfile, name))
                for name in ("_BLOCK_RE", "_BLOCK_OPEN_RE", "_BLOCK_END_RE", "_RAW_RE")}
    for name, counting in patterns.items():
        monkeypatch.setattr(taskfile, name, counting)
    blocks_of("---\nx: 1\n---\n{% block a %}x ||| y{% endblock %}\n", env)
    assert patterns["_BLOCK_RE"].calls > 0  # the counters see split_blocks' patterns
    for counting in patterns.values():
        counting.calls = counting.chars = 0
    body = "{% block a %}x ||| y{% endblock %}\n" + "{% block b %}\n" * 10_000
    exc = blocks_error(body, env)
    assert (exc.template, exc.line) == ("b", 5)
    assert patterns["_BLOCK_RE"].calls == 0 and patterns["_RAW_RE"].calls == 0
    assert patterns["_BLOCK_END_RE"].chars + patterns["_BLOCK_OPEN_RE"].chars <= 2 * len(body)


def test_blocks_are_checked_against_the_environment(env: T2TSandbox) -> None:
    # The sandbox parses the body: a tag it does not know is a syntax error naming the line.
    exc = blocks_error("{% block a %}x ||| y{% endblock %}\n{% do x %}\n", env)
    assert exc.line == 5 and "bad Jinja" in exc.detail
    with pytest.raises(jinja2.TemplateSyntaxError):
        env.parse("{% do x %}")


def test_nested_blocks_say_so(env: T2TSandbox) -> None:
    exc = blocks_error("{% block outer %}\n{% block inner %}x ||| y{% endblock %}\n{% endblock %}\n", env)
    assert "blocks cannot be nested" in exc.detail
    assert exc.template == "outer"


def test_mismatched_endblock_name_says_which_block(env: T2TSandbox) -> None:
    exc = blocks_error("{% block a %}\nx ||| y\n{% endblock other %}\n", env)
    assert "{% endblock other %} closes block 'a'" in exc.detail


def test_raw_block_text_is_not_nesting(env: T2TSandbox) -> None:
    body = "{% block a %}Write {% raw %}{% block x %}{% endraw %} ||| ok{% endblock %}\n"
    [block] = split_blocks(body, 3, env, err)
    assert env.from_string(block.source).render().strip() == "Write {% block x %} ||| ok"


# -- hostile text (issue #25) --------------------------------------------------------------------------------

TASK = ('---\ncluster: x\nsource: {generator: g}\nchoices: CHOICES\nexample: [{t: 1}]\n---\n'
        '{% block q %}\n{{ t }} TEXT||| a\n{% endblock %}\n')


def task_from(tmp_path: Path, text: str, env: T2TSandbox) -> Task:
    path = tmp_path / "f.jinja"
    path.write_bytes(text.encode("utf-8"))
    return Task(path, env)


def test_a_byte_order_mark_is_dropped(tmp_path: Path, env: T2TSandbox) -> None:
    text = TASK.replace("CHOICES", '["a", "b"]').replace("TEXT", "")
    plain, marked = task_from(tmp_path, text, env), task_from(tmp_path, "\ufeff" + text, env)
    assert (marked.meta, marked.template_names) == (plain.meta, plain.template_names)
    assert marked.render({"t": 1}, 0, "q") == plain.render({"t": 1}, 0, "q")


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x9b"])
def test_control_characters_in_a_template_are_refused(tmp_path: Path, env: T2TSandbox, char: str) -> None:
    text = TASK.replace("CHOICES", '["a", "b"]').replace("TEXT", f"x{char}y ")
    with pytest.raises(TaskFileError) as info:
        task_from(tmp_path, text, env)
    assert (info.value.template, info.value.line) == ("q", 8)
    assert f"control character U+{ord(char):04X}" in str(info.value) and "f.jinja:8" in str(info.value)
    assert task_from(tmp_path, TASK.replace("CHOICES", '["a", "b"]').replace("TEXT", "x\ty\r "), env)


def test_a_control_character_outside_blocks_names_no_template(env: T2TSandbox) -> None:
    with pytest.raises(TaskFileError, match="control character U\\+0000") as info:
        blocks_of("---\na: 1\n---\n{# \x00 #}\n{% block a %}x ||| y{% endblock %}\n", env)
    assert info.value.template is None and info.value.line == 4


@pytest.mark.parametrize("choices, first, second", [
    ('["yes", "ye\\u200bs"]', "yes", "ye\\u200bs"),   # a zero-width space
    ('["A", "\\uff21"]', "A", "\\uff21"),              # FULLWIDTH LATIN CAPITAL LETTER A: NFKC makes it 'A'
    ('["ﬁne", "fine"]', "ﬁne", "fine"),               # the 'fi' ligature
])
def test_choices_that_collide_once_normalised_are_refused(tmp_path: Path, env: T2TSandbox, choices: str,
                                                          first: str, second: str) -> None:
    text = TASK.replace("CHOICES", choices).replace("TEXT", "")
    with pytest.raises(TaskFileError) as info:
        task_from(tmp_path, text, env)
    first, second = (s.encode().decode("unicode_escape") if "\\u" in s else s for s in (first, second))
    assert info.value.field == "choices"
    assert f"choices {first!r} and {second!r} are the same text once Unicode-normalised" in str(info.value)
