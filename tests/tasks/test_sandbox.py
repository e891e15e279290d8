"""Hostile templates: injection payloads, runaway time and size, and that benign Jinja still renders the same.

Every payload must either raise a TaskFileError naming the file and the template, or render harmless text,
and must end within the sandbox's time limit (checked with a minute of slack). tests/test_templates.py
carries the first payloads; these go further (format strings, filters, Jinja internals, Flask globals,
recursion and growth bombs).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import jinja2
import pytest

from t2t.errors import TaskFileError
from t2t.tasks import sandbox
from t2t.tasks.sandbox import MAX_OUTPUT_CHARS, MAX_RENDER_SECONDS, MAX_VALUE_CHARS, T2TSandbox
from t2t.tasks.task import Task

# A row with lists long enough for nested loops to run for minutes.
ROW = {"text": "hello", "label": 0, "items": ["ab"] * 300, "words": ["word"] * 3000}
SECRET = "S3CRET-TOKEN"  # in the environment of every render: no payload may print it
# The sandbox's own time limit is the one wall-clock bound here. A runaway render (1e10 loop steps) runs
# for hours, a stopped one for MAX_RENDER_SECONDS and a little: a minute of slack tells them apart on any
# machine, however loaded, and a stopped render never waits for it.
SLACK_SECONDS = 60.0

# Never in an error message: object reprs, addresses, file contents, command output, secrets.
ERROR_LEAKS = re.compile(rf"<(class|function|built-in|bound method|module|method)\b| at 0x[0-9a-f]+|root:|"
                         rf"uid=|{SECRET}")
# Never in rendered text either: Python internals of any kind.
LEAKS = re.compile(ERROR_LEAKS.pattern + r"|__globals__|__builtins__|__subclasses__|T2TSandbox|jinja2\.")

PAYLOADS = [
    # attribute walks, directly and through every indirection Jinja offers
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__.__subclasses__()[40]('/etc/passwd').read() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{{ {}.__class__.__bases__[0].__subclasses__() }}",
    "{{ ().__class__.__base__ }}",
    "{{ (1).__class__ }}",
    "{{ dict.__class__ }}",
    "{{ dict.__init__.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ text|attr('__class__')|attr('__mro__') }}",
    "{{ text|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ [text]|map(attribute='__class__')|list }}",
    "{{ [text]|map(attribute='__class__.__mro__')|list }}",
    "{{ row|attr('__class__') }}",
    "{{ row['__class__'] }}",
    "{{ text['__class__'] }}",
    "{{ row.get('__class__') }}",
    "{% for c in text.__class__.__mro__ %}{{ c }}{% endfor %}",
    "{% set x = text.__class__ %}{{ x }}",
    "{% set x = {}.__class__ %}{{ x }}",
    # format-string attacks: str.format, format_map, % and |format
    "{{ '{0.__class__}'.format(text) }}",
    "{{ '{0.__class__.__mro__}'.format(text) }}",
    "{{ '{0[__class__]}'.format(row) }}",
    "{{ '{x.__init__.__globals__}'.format_map({'x': shuffle}) }}",
    "{{ text.format_map({}) }}{{ '{0.__class__}'.format(text) }}",
    "{{ '%s' % text.__class__ }}",
    "{{ '%r' % shuffle }}",
    "{{ '%s %s' % (text.upper, 1) }}",
    "{{ '%s'|format(shuffle) }}",
    "{{ '%(a)s'|format(a=range) }}",
    "{{ '{}'.format(text.upper) }}",
    # Jinja internals: self, loop, caller, macros, namespace, dict
    "{{ self }}{{ self._TemplateReference__context }}",
    "{{ self._TemplateReference__context.keys()|list }}",
    "{{ self.t.__globals__ }}",
    "{% for x in [1] %}{{ loop }}{% endfor %}",
    "{% for x in [1] %}{{ loop.__class__ }}{{ loop._iterator }}{% endfor %}",
    "{% macro m() %}{{ caller }}{{ caller._func }}{% endmacro %}{% call m() %}x{% endcall %}",
    "{% macro m() %}{{ m.__class__ }}{{ m._func.__globals__ }}{% endmacro %}{{ m() }}",
    "{% set ns = namespace(a=1) %}{% set ns.a = ns.__class__ %}{{ ns.a }}",
    "{% set ns = namespace(a=1) %}{{ ns.__init__ }}{{ ns._Namespace__attrs }}",
    "{{ namespace.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace }}{{ dict }}{{ range }}{{ shuffle }}",
    "{{ [shuffle, choice] }}",
    "{{ [text.upper]|string }}",
    "{{ shuffle|pprint }}",
    "{{ text.upper ~ '' }}",
    # Flask / Jinja default globals: absent
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ request.application.__globals__.__builtins__.open('/etc/passwd').read() }}",
    "{{ config.items() }}",
    "{{ url_for.__globals__['current_app'] }}",
    "{{ get_flashed_messages.__globals__['__builtins__'] }}",
    # files and modules
    "{% include '/etc/passwd' %}",
    "{% include '../../../../etc/passwd' %}",
    "{% extends '/etc/passwd' %}",
    "{% from '/etc/passwd' import x %}",
    "{% import 'os' as os %}{{ os.system('id') }}",
    # mutation of rows
    "{{ row.update({'a': 1}) }}",
    "{{ items.append(1) }}{{ items.pop() }}",
    "{{ row.clear() }}",
    "{% set _ = row.__setitem__('label', 1) %}",
    # size bombs: each would allocate gigabytes if it ran
    "{{ 'x' * 100000000 }}",
    "{{ 'x' * 99999 * 99999 }}",
    "{{ [1] * 99999 * 99999 }}",
    "{{ 9 ** 9 ** 9 }}",
    "{% set ns = namespace(n=10) %}{% for i in range(60) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ 1 }}",
    "{% set ns = namespace(n=10) %}{% for i in range(60) %}{% set ns.n = ns.n ** 50 %}{% endfor %}{{ 1 }}",
    "{% set ns = namespace(s='a') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% set ns = namespace(s='a') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% set ns = namespace(s=[1]) %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% set s = 'a' %}{% for i in range(60) %}{% set s = s ~ s %}{% endfor %}{{ s }}",
    "{{ '{:>1000000000}'.format('x') }}",
    "{{ '{:>{w}}'.format('x', w=1000000000) }}",
    "{{ ('{:999999}' * 1000).format(*((1,) * 1000)) }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '%.999999999f' % 1 }}",
    "{{ '%*d' % (1000000000, 1) }}",
    "{{ ('%999999s' * 1000) % ((1,) * 1000) }}",
    "{{ '%999999999d'|format(1) }}",
    "{{ 'x'|center(1000000000) }}",
    "{{ 'x'.ljust(1000000000) }}{{ 'x'.rjust(1000000000) }}",
    "{{ 'x'.zfill(1000000000) }}",
    "{{ '\\t\\t'.expandtabs(1000000000) }}",
    "{{ ('a' * 50000)|replace('a', 'a' * 50000) }}",
    "{{ ('a' * 50000).replace('a', 'a' * 50000) }}",
    "{{ items|join('x' * 99999) }}",
    "{{ range(99999)|map('string')|join('x' * 99999) }}",
    "{{ ('x' * 99999).join(range(99999)|map('string')) }}",
    "{{ ('x' * 99999)|indent(99999999) }}",
    "{{ ('x ' * 50000)|wordwrap(1, wrapstring='y' * 99999) }}",
    "{{ [1]|batch(1000000000, 'x')|list }}",
    "{{ [1]|slice(1000000000, 'x')|list }}",
    "{{ items|tojson(100000000) }}",
    "{{ range(10**12)|list }}",
    "{% for i in range(99999) %}{{ 'ab' * 500 }}{% endfor %}",
    # time bombs: recursion, nested loops that call nothing, recursive loops, self-inclusion
    "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}",
    "{% macro r(n) %}{{ r(n) }}{{ r(n) }}{% endmacro %}{{ r(0) }}",
    "{% for a in items recursive %}{{ loop([a, a]) }}{% endfor %}",
    "{% include 'evil.jinja' %}",
    "{% import 'evil.jinja' as e %}{{ e }}",
    "{% for x in range(100000) %}{% for y in range(100000) %}{% endfor %}{% endfor %}",
    "{% for a in items %}{% for b in items %}{% for c in items %}{% for d in items %}"
    "{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
    "{% for a in items %}{% for b in items %}{% for c in items %}{% set s = a ~ b ~ c %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{% for a in words %}{% for b in words %}{% if a == b %}{% endif %}{% endfor %}{% endfor %}",
    "{% for a in words %}{% for b in words %}{{ '' }}{% endfor %}{% endfor %}",
]


def evil_task(folder: Path, body: str, name: str = "evil") -> Task:
    path = folder / f"{name}.jinja"
    path.write_text("---\ncluster: c\nsource: {generator: x}\n---\n"
                    "{% block t %}" + body + " ||| b{% endblock %}\n")
    return Task(path, T2TSandbox([folder]))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_is_blocked_or_harmless(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        payload: str) -> None:
    monkeypatch.setenv("T2T_TEST_SECRET", SECRET)
    start = time.monotonic()
    try:
        ex = evil_task(tmp_path, payload).render(dict(ROW), 0, "t")
    except TaskFileError as exc:
        assert "evil.jinja" in str(exc) and exc.task == "evil"
        assert exc.template == "t" or exc.template is None and exc.line is None  # failed while compiling
        assert not ERROR_LEAKS.search(str(exc)), str(exc)
    else:
        text = "" if ex is None else ex.input
        assert not LEAKS.search(text), text[:300]
        assert len(text) <= MAX_OUTPUT_CHARS
    assert time.monotonic() - start < MAX_RENDER_SECONDS + SLACK_SECONDS


@pytest.mark.parametrize("body", [
    # loops that make no call at all: before the loop guard, these ran for minutes
    "{% for a in items %}{% for b in items %}{% for c in items %}{% endfor %}{% endfor %}{% endfor %}",
    "{% for a in words %}{% for b in words %}{% set s = a ~ b %}{% endfor %}{% endfor %}",
    "{% for a in words %}{% for b in words %}{% for c in a %}{% endfor %}{% endfor %}{% endfor %}",
])
def test_spinning_loops_are_stopped_by_time(tmp_path: Path, body: str) -> None:
    task = evil_task(tmp_path, body, "spin")
    start = time.monotonic()
    with pytest.raises(TaskFileError, match="took more than .* of CPU time") as info:
        task.render(dict(ROW), 0, "t")
    elapsed = time.monotonic() - start
    assert MAX_RENDER_SECONDS <= elapsed < MAX_RENDER_SECONDS + SLACK_SECONDS
    assert "spin.jinja" in str(info.value) and "template 't'" in str(info.value)


def test_exponential_growth_is_stopped_by_size_before_memory(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    task = evil_task(tmp_path, "{% set ns = namespace(s='a') %}{% for i in range(60) %}"
                               "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}", "grow")
    built: list[int] = []
    too_long = sandbox._too_long

    def counted(n: int, what: str) -> None:
        built.append(n)
        too_long(n, what)

    monkeypatch.setattr(sandbox, "_too_long", counted)
    with pytest.raises(TaskFileError, match="'~' would build more than") as info:
        task.render({}, 0, "t")
    # Refused at the first doubling past MAX_VALUE_CHARS (2**20 characters, the 20th), not after 2**60:
    # about two million characters built in all.
    assert built == [2 ** k for k in range(1, 21)] and 2 ** 19 <= MAX_VALUE_CHARS < 2 ** 20
    assert "grow.jinja" in str(info.value) and "template 't'" in str(info.value)


def test_runaway_answer_field_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "ans.jinja"
    path.write_text("---\ncluster: c\nsource: {generator: x}\nanswer: \"{{ 'x' * 10**9 }}\"\n---\n"
                    "{% block t %}q ||| {{ answer }}{% endblock %}\n")
    with pytest.raises(TaskFileError) as info:
        Task(path, T2TSandbox([tmp_path])).render({}, 0, "t")
    assert info.value.field == "answer" and "ans.jinja" in str(info.value)


def test_printing_a_function_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(TaskFileError, match=r"cannot be printed; call it") as info:
        evil_task(tmp_path, "{{ text.upper }}").render({"text": "a"}, 0, "t")
    assert info.value.line == 5


BENIGN = [
    "{{ text ~ '!' ~ label }}",
    "{{ text + '?' }} {{ items + [1] }} {{ 3 + 4 }} {{ 2 * 3 }} {{ 'ab' * 3 }} {{ 2 ** 10 }} {{ 7 % 3 }}",
    "{{ '%s=%d (%.2f) %5s|%-4s|' % (text, 3, 1.5, 'r', 'l') }} {{ '%(a)s'|format(a=1) }}",
    "{{ '{} {:>6} {:.3f} {x}'.format(text, 'r', 2.0, x=1) }} {{ '{a}'.format_map({'a': 2}) }}",
    "{% for w in items %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}",
    "{% for w in items if w != 'b' %}{{ w }}{% else %}none{% endfor %}",
    "{% for w in [] %}{{ w }}{% else %}empty{% endfor %}",
    "{% for k, v in row|dictsort %}{{ k }}={{ v }};{% endfor %}",
    "{% for x in [[1, [2]], [3]] recursive %}[{% if x is iterable %}{{ loop(x) }}{% else %}{{ x }}"
    "{% endif %}]{% endfor %}",
    "{% set ns = namespace(total=0) %}{% for i in range(5) %}{% set ns.total = ns.total + i %}"
    "{% endfor %}{{ ns.total }}",
    "{{ dict(a=1, b=2)|dictsort }} {{ range(3)|list }} {{ range(2, 9, 3)|join(',') }}",
    "{{ text|center(11) }}|{{ (text ~ '\\nline')|indent(2, true) }}|{{ 'a b c d'|wordwrap(3) }}",
    "{{ items|join(', ') }} {{ text|replace('l', 'L') }} {{ items|batch(2, '-')|list }}",
    "{{ items|slice(2)|list }} {{ row|tojson }} {{ items|tojson(2) }} {{ text|truncate(9) }}",
    "{{ text.upper() }} {{ text.center(9, '*') }} {{ text.zfill(8) }} {{ ', '.join(items) }}",
    "{{ 'a\\tb'.expandtabs(4) }} {{ text.replace('l', 'LL', 1) }} {{ text.ljust(7) }}|",
    "{{ row|pprint }} {{ items|string }} {{ label|string }}",
    "{% macro m(x) %}<{{ x }}>{% endmacro %}{% macro n() %}[{{ caller() }}]{% endmacro %}{{ m(1) }}"
    "{% call n() %}c{% endcall %}",
    "{% autoescape true %}{{ '<b>' ~ text }}{% endautoescape %}",
    "{% macro m(x) %}{{ x ~ '!' }}{% for i in range(2) %}{{ i ~ x }}{% endfor %}{% endmacro %}{{ m(text) }}",
    "{% set x %}{{ text ~ label }}{% endset %}{{ x }} {% filter upper %}{{ text ~ 'b' }}{% endfilter %}",
    "{% set y = text ~ '-' ~ items|join %}{{ y }} {{ (text ~ label)|length }} {{ [text ~ 1, 2 ~ 3] }}",
    "{{ (items|map('upper')|list)[0] }} {{ items|select('equalto', 'a')|list }} {{ [1, 2]|sum(start=3) }}",
    "{{ choices[label] }}",
]


@pytest.mark.parametrize("body", BENIGN)
def test_benign_jinja_renders_as_in_plain_jinja(tmp_path: Path, body: str) -> None:
    """The loop guard, the '~' rewrite and the bounded filters change nothing for ordinary templates."""
    row = {"text": "hello", "label": 1, "items": ["a", "b", "c"]}
    plain = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    expected = plain.from_string(body).render(**row, row=row, choices=["x", "y"])
    sandbox = T2TSandbox([tmp_path])
    context = {**row, "row": row, "choices": ["x", "y"]}
    assert sandbox.render_bounded(sandbox.from_string(body), context) == expected


def test_budget_is_per_render(tmp_path: Path) -> None:
    """A render close to the range limit does not eat into the next one's budget."""
    task = evil_task(tmp_path, "{% for i in range(90000) %}{% endfor %}{{ text }}", "budget")
    for _ in range(3):
        assert task.render({"text": "ok"}, 0, "t").input == "ok"
