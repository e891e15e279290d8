"""Bad input, fuzzed: malformed task files, mixture files, configs and data rows end in a t2t error.

Property, for every generated input: either it works (and what it produced is sane: non-empty input and
target, a target among the choices, rates that sum to 1, options of the declared types), or it raises a
T2TError whose message names the file or the field. Any other exception fails the test, and so does a
costly case (counted in work, not seconds: see :class:`Work`). Hypothesis runs derandomised, so CI sees
the same cases every time. The cases below the
property tests are the bugs these properties found, kept as plain regression tests.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from t2t.config import load_yaml
from t2t.errors import T2TError, TaskFileError
from t2t.evaluation.config import EvaluateConfig
from t2t.evaluation.config import build_config as build_evaluate_config
from t2t.experiment import build_experiment
from t2t.mixtures.resolve import resolve
from t2t.mixtures.spec import STOP_POLICIES, STRATEGIES, VARIANTS, MixtureRegistry, MixtureSpec
from t2t.tasks import taskfile
from t2t.tasks.cli import task_summary
from t2t.tasks.registry import TaskRegistry
from t2t.tasks.sandbox import T2TSandbox
from t2t.tasks.sources import num_rows
from t2t.tasks.task import KNOWN_METRICS, SEPARATOR, Task
from t2t.training.config import FinetuneConfig, build_config

REPO = Path(__file__).resolve().parent.parent
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


class Work:
    """What one case costs, counted where unbounded work has hidden before: YAML values built (an alias
    bomb walked is 387 million values), characters handed to the task-file block patterns (a pattern
    called again from every opening is quadratic) and sandbox steps (every loop iteration, call and '~'
    of a render, each checked against its budget). Counts, unlike seconds, are the same on a loaded
    machine. A case may cost 4 units per character of its input plus 100,000: measured, the 40,000
    unclosed openings below cost 1,040,043 for 520,036 characters (the body read twice) and every other
    case at most 30,157. One regex call's own backtracking is not counted: test_taskfile.py asserts that
    the block pattern, whose lazy body rescans from every opening, never runs on such a body."""

    def __init__(self) -> None:
        self.built = self.scanned = self.steps = 0
        self._patches: list[tuple[Any, str, Any]] = []

    @property
    def total(self) -> int:
        return self.built + self.scanned + self.steps

    def _patch(self, owner: Any, name: str, counted: Any) -> None:
        self._patches.append((owner, name, getattr(owner, name)))
        setattr(owner, name, counted)

    def __enter__(self) -> Work:
        construct, check = yaml.constructor.BaseConstructor.construct_object, T2TSandbox._check_budget

        def counted_construct(loader: Any, node: yaml.Node, deep: bool = False) -> Any:
            self.built += 1
            return construct(loader, node, deep)

        def counted_check(sandbox: T2TSandbox) -> None:
            self.steps += 1
            check(sandbox)

        self._patch(yaml.constructor.BaseConstructor, "construct_object", counted_construct)
        self._patch(T2TSandbox, "_check_budget", counted_check)
        for name in ("_BLOCK_RE", "_BLOCK_OPEN_RE", "_BLOCK_END_RE", "_RAW_RE"):
            self._patch(taskfile, name, _Scanned(getattr(taskfile, name), self))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)
        if os.environ.get("T2T_FUZZ_WORK_LOG"):
            with open(os.environ["T2T_FUZZ_WORK_LOG"], "a") as log:
                log.write(f"{self.built} {self.scanned} {self.steps}\n")

    def check(self, size: int) -> None:
        """At most 4 units of work per character of the case's input (``size``), plus 100,000."""
        assert self.total <= 4 * size + 100_000, (f"a case of {size} characters cost {self.built} YAML values, "
                                                  f"{self.scanned} scanned characters, {self.steps} render steps")


class _Scanned:
    """A compiled pattern that adds the characters each call is given to :attr:`Work.scanned`."""

    def __init__(self, pattern: re.Pattern[str], work: Work) -> None:
        self.pattern, self.work = pattern, work

    def search(self, string: str, pos: int = 0, *args: int) -> re.Match[str] | None:
        self.work.scanned += len(string) - pos
        return self.pattern.search(string, pos, *args)

    def finditer(self, string: str, pos: int = 0, *args: int) -> Any:
        self.work.scanned += len(string) - pos
        return self.pattern.finditer(string, pos, *args)

    def sub(self, repl: Any, string: str, count: int = 0) -> str:
        self.work.scanned += len(string)
        return self.pattern.sub(repl, string, count=count)

# -- generic junk -------------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                    st.sampled_from(["", " ", "{{", "|||", "-1", "nan", "yes", "\x00", "caf\u00e9"]))
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
huge_text = st.integers(0, 300_000).map(lambda n: "x" * n)
numbers = st.one_of(st.integers(-3, 10**6), st.integers(), st.floats(), st.sampled_from([0, 0.5, 1, 3000]))


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly plausible values, sometimes junk: both reach deep into the checks."""
    return st.one_of(strategy, strategy, junk)


def mutated(text: str) -> st.SearchStrategy[str]:
    """``text`` with a few characters deleted and a few inserted, from an alphabet Jinja cares about."""
    edit = st.tuples(st.integers(0, len(text)), st.integers(0, 8),
                     st.text(alphabet="{}%#|-~()[]'\" .\n_abcdefiklnorstw", max_size=8))

    def apply(edits: list[tuple[int, int, str]]) -> str:
        out = text
        for pos, cut, insert in edits:
            pos = min(pos, len(out))
            out = out[:pos] + insert + out[pos + cut:]
        return out

    return st.lists(edit, min_size=1, max_size=4).map(apply)


def mutated_bytes(raw: bytes) -> st.SearchStrategy[bytes]:
    return st.tuples(st.integers(0, len(raw)), st.binary(max_size=6)).map(
        lambda t: raw[:t[0]] + t[1] + raw[t[0]:])


def alias_bomb(indent: str = "  ") -> str:
    """A YAML list whose last item nests nine levels of nine aliases: 387 million values when walked."""
    items = [f"{indent}- &b0 [x, x, x, x, x, x, x, x, x]\n"]
    items += [f"{indent}- &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]\n" for i in range(1, 10)]
    return "".join(items)


def assert_t2t_error_naming(exc: BaseException, *names: str) -> None:
    """A T2TError whose one-line message names at least one of ``names`` (the file, field or option)."""
    assert isinstance(exc, T2TError), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    event(f"error: {message.split(': ')[-1][:40]}")  # --hypothesis-show-statistics: what the cases hit
    assert any(n and n in message for n in names), f"{message!r} names none of {names}"


# -- task files ---------------------------------------------------------------------------------------

GOOD_BODY = """\
{% macro ask(x) %}Q: {{ x }}{% endmacro %}
{% block plain %}
{{ text }} {{ options }}
|||
{{ answer }}
{% endblock %}
{% block inv %}{% if label == 0 %}{{ ask(text) }} ||| {{ text }}{% endif %}{% endblock %}
"""
BAD_BODIES = [
    "", "no blocks", "{% block t %}a ||| b", "{% block t %}{% block u %}a ||| b{% endblock %}{% endblock %}",
    "{% endblock %}{% block t %}", "{% block t %}{{ ( ||| b{% endblock %}",
    "stray {% block t %}a|||b{% endblock %}",
    "{% block t %}{{ " + "(" * 3000 + "x" + ")" * 3000 + " }} ||| b{% endblock %}",
    "{% block t %}{{ " + "[" * 3000 + "]" * 3000 + " }} ||| b{% endblock %}",
    "{% block t %}" + "{% if 1 %}" * 300 + "a|||b" + "{% endif %}" * 300 + "{% endblock %}",
    "{% block t %}" + "".join(f"{{% for x{i} in [1] %}}" for i in range(120)) + "a ||| b"
    + "{% endfor %}" * 120 + "{% endblock %}",
    "{% block t %}a ||| b{% endblock %}" + "{% block u %}" * 3000,
    "{% block t %}{% include 'fuzz.jinja' %}{% endblock %}",
]
bodies = st.one_of(st.just(GOOD_BODY), mutated(GOOD_BODY), st.sampled_from(BAD_BODIES),
                   st.text(alphabet="{}%#|-~ab\n block endblock", max_size=120))

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["fuzz", "a b", "", "x/y", "ok.name-1"]),
    "cluster": st.sampled_from(["c", "", "nli"]),
    "description": st.text(max_size=20),
    "source": st.one_of(
        st.sampled_from([{"generator": "arith_sum"}, {"generator": "nope"}, {"files": "data.jsonl"},
                         {"files": {"train": ["a.jsonl", "b.jsonl"]}}, {"files": {"train": 5}},
                         {"files": None},
                         {"hf": "glue", "config": "rte"}, {"hf": "x", "trust_remote_code": "false"}, {},
                         {"generator": "x", "hf": "y"}, {"generator": "arith_sum", "sizes": {"train": "9"}},
                         {"generator": "arith_sum", "sizes": [1]}, {"generator": "arith_sum", "seed": "s"}]),
        st.dictionaries(st.sampled_from(["hf", "files", "generator", "config", "sizes", "seed", "format",
                                         "trust_remote_code", "revision", "data_dir", "nope"]), junk,
                        max_size=3)),
    "splits": st.sampled_from([{"train": "train"}, {"train": 1}, ["train"], {"validation": "dev"}]),
    "limit": st.sampled_from([{"train": 5}, {"train": 0}, {"train": True}, {"train": "5"}, 5]),
    "choices": st.sampled_from([["yes", "no"], [True, False], ["a", "a"], ["", "b"], [], [1, 2.5],
                                "{{ row.opts | join(' ||| ') }}", "{{ broken", [None], [["a"]]]),
    "answer": st.sampled_from(["{{ choices[label] }}", "{{ label }}", "{{ nope }}", "{{ x",
                               "{{ choices[-1] }}", "{{ text }}", "", "{{ 'x' * 10**9 }}"]),
    "references": st.sampled_from(["{{ text }} ||| {{ label }}", "{{ refs | join(' ||| ') }}", "{% for %}"]),
    "metrics": st.lists(st.sampled_from([*KNOWN_METRICS, "acc", ""]), max_size=3),
    "example": st.sampled_from([{"text": "t", "label": 0},
                                [{"text": "t", "label": 1}, {"text": "u", "label": 0}], {"text": "t"}, [1],
                                {"text": "t", "label": 7}, {"text": "", "label": 0},
                                {"text": "t", "label": -1}]),
    "templates": st.sampled_from([{"inv": {"inverted": True}}, {"inv": {"inverted": "no"}}, {"zz": {}},
                                  {"plain": {"bad": 1}}, {"plain": None}, []]),
    "tags": st.sampled_from([["a"], "a", "abc", [1], [None], []]),
}
# Values that pass the front-matter checks, so that most cases get as far as compiling and rendering.
VALID_FIELDS: dict[str, list[Any]] = {
    "name": ["fuzz", "ok.name-1"], "description": ["a task"], "splits": [{"train": "train", "test": "dev"}],
    "limit": [{"train": 5}], "metrics": [["accuracy"], ["f1", "bleu"]], "tags": [["a", "b"], "a"],
    "choices": [["yes", "no"], "{{ opts | join(' ||| ') }}", [1, 2.5]],
    "answer": ["{{ choices[label] }}", "{{ text }}", "{{ label }}"],
    "references": ["{{ text }} ||| {{ label }}", "{{ text }}"],
    "example": [{"text": "t", "label": 0}, [{"text": "t", "label": 1, "opts": ["a", "b"]}]],
    "templates": [{"inv": {"inverted": True}}, {"plain": {"description": "d"}}],
}
plausible_front_matter = st.fixed_dictionaries(
    {"cluster": st.just("c"), "source": st.sampled_from([{"generator": "arith_sum"}, {"files": "data.jsonl"},
                                                          {"generator": "x", "sizes": {"train": 5}}])},
    optional={k: st.sampled_from(v) for k, v in VALID_FIELDS.items()})
front_matter = st.fixed_dictionaries(
    {"cluster": maybe(FIELD_VALUES["cluster"]), "source": maybe(FIELD_VALUES["source"])},
    optional={**{k: maybe(v) for k, v in FIELD_VALUES.items() if k not in ("cluster", "source")},
              "choises": junk, "sorce": junk})


def task_text(meta: dict[str, Any], body: str) -> str:
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True) + "---\n" + body


task_files = st.one_of(
    st.builds(task_text, st.just({"cluster": "c", "source": {"generator": "x"}}), bodies).map(str.encode),
    st.builds(task_text, front_matter, bodies).map(str.encode),
    st.builds(task_text, plausible_front_matter, st.one_of(st.just(GOOD_BODY), mutated(GOOD_BODY))).map(
        str.encode),
    st.text(max_size=200).map(lambda t: ("---\n" + t).encode()),
    st.binary(max_size=200),
    st.binary(max_size=60).map(lambda b: b"---\ncluster: c\nsource: {generator: x}\n---\n{% block t %}" + b
                               + b" ||| b{% endblock %}\n"),
    st.sampled_from([b"---\ncluster: [\n---\n", b"---\n---\n", b"---\ncluster: c\n", b"\xff\xfe---\n",
                     b"---\n- a\n---\n{% block t %}a|||b{% endblock %}",
                     b"---\r\ncluster: c\r\nsource: {generator: x}\r\n---\r\n"
                     b"{% block t %}a ||| b{% endblock %}"]),
)
ROWS_FOR_TASKS = [{"text": "a review", "label": 0}, {"text": "another", "label": 1, "opts": ["p", "q"]}, {}]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check_example(task: Task, template: str, ex: Any) -> None:
    if ex is None:
        return  # declined: skipped and counted, never trained on
    assert ex.input and ex.target and ex.input == ex.input.strip() and ex.target == ex.target.strip()
    assert SEPARATOR not in ex.input and SEPARATOR not in ex.target
    if task.has_choices and not task.templates[template].inverted:
        assert ex.choices and ex.target in ex.choices
    assert all(ex.references)


@FUZZ
@given(raw=task_files)
@example(raw=task_text({"cluster": "c", "source": {"generator": "x"}, "choices": ["yes", "no"],
                       "answer": "{{ choices[label] }}", "example": {"text": "t", "label": -1}},
                      GOOD_BODY).encode())
@example(raw=("---\ncluster: c\nsource: {generator: x}\ntags:\n" + alias_bomb() + "---\n"
              "{% block t %}a ||| b{% endblock %}\n").encode())
def test_task_files_load_or_name_the_file(folder: Path, raw: bytes) -> None:
    path = folder / "fuzz.jinja"
    path.write_bytes(raw)
    with Work() as work:
        load_and_render(folder, path)
    work.check(len(raw))


def load_and_render(folder: Path, path: Path) -> None:
    try:
        task = Task(path, T2TSandbox([folder]))
    except Exception as exc:  # noqa: BLE001 - the property is about which exceptions escape
        assert_t2t_error_naming(exc, "fuzz.jinja")
        return
    event("loaded")
    json.dumps(task_summary(task), default=str)  # list/show never trip on what loaded
    if "generator" in task.source:
        try:
            assert num_rows(task, "train") >= 0
        except Exception as exc:  # noqa: BLE001
            assert_t2t_error_naming(exc, "fuzz.jinja", task.name)
    for row in [*task.example_rows[:3], *ROWS_FOR_TASKS]:
        for template in task.template_names:
            try:
                ex = task.render(row, 0, template)
                event("rendered" if ex else "declined")
                check_example(task, template, ex)
            except TaskFileError as exc:
                assert_t2t_error_naming(exc, "fuzz.jinja")


# -- data rows ----------------------------------------------------------------------------------------

ROW_TASKS = {
    "fixed_choices": """\
---
cluster: nli
source: {generator: x}
choices: ["yes", "no"]
answer: "{{ choices[label] }}"
templates: {inv: {inverted: true}}
---
{% block plain %}{{ premise }}
Does it follow that {{ hypothesis }}? {{ options }}
|||
{{ answer }}{% endblock %}
{% block loops %}{% for w in words %}{{ w }} {% endfor %}{{ premise | upper }} ||| {{ answer }}{% endblock %}
{% block inv %}{% if label == 0 %}{{ premise }} ||| {{ hypothesis }}{% endif %}{% endblock %}
{% block shuffled %}{{ shuffle(choices) | join(', ') }} {{ premise }} ||| {{ answer }}{% endblock %}
""",
    "row_choices": """\
---
cluster: qa
source: {generator: x}
choices: "{{ opts | join(' ||| ') }}"
answer: "{{ choices[label] }}"
---
{% block mc %}{{ question }} {{ options }} ||| {{ answer }}{% endblock %}
""",
    "generation": """\
---
cluster: qa
source: {generator: x}
answer: "{{ answers[0] }}"
references: "{{ answers | join(' ||| ') }}"
---
{% block ask %}Q: {{ question }} ||| {{ answer }}{% endblock %}
{% block row %}{{ row.question }} / {{ row['premise'] }} ||| {{ answer }}{% endblock %}
""",
}
ROW_FIELDS = ["premise", "hypothesis", "label", "words", "opts", "question", "answers", "row", "choices",
              "answer", "options", "shuffle"]
row_values = st.one_of(junk, huge_text, st.integers(-3, 3), st.text(max_size=30),
                       st.lists(st.one_of(st.text(max_size=10), huge_text, junk), max_size=6),
                       st.binary(max_size=10))
rows = st.one_of(
    st.fixed_dictionaries({k: row_values for k in ("premise", "hypothesis", "label", "words", "opts",
                                                   "question", "answers")}),
    st.fixed_dictionaries({"premise": st.text(max_size=30), "hypothesis": st.text(max_size=30),
                           "label": st.integers(-2, 3), "words": st.lists(st.text(max_size=5), max_size=5),
                           "opts": st.lists(st.text(max_size=8), max_size=4),
                           "question": st.text(max_size=30),
                           "answers": st.lists(st.text(max_size=8), max_size=3)}),
    st.dictionaries(st.one_of(st.sampled_from(ROW_FIELDS), st.text(max_size=5), st.integers()), row_values,
                    max_size=8),
    junk,
)


@pytest.fixture(scope="module")
def row_tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Task]:
    folder = tmp_path_factory.mktemp("rows")
    env = T2TSandbox([folder])
    tasks = {}
    for name, text in ROW_TASKS.items():
        (folder / f"{name}.jinja").write_text(text)
        tasks[name] = Task(folder / f"{name}.jinja", env)
    return tasks


@FUZZ
@given(row=rows, which=st.sampled_from(sorted(ROW_TASKS)))
@example(row={"premise": "p", "hypothesis": "h", "label": -1, "words": []}, which="fixed_choices")
@example(row={"premise": "p" * 200_000, "hypothesis": "h", "label": 0, "words": []}, which="fixed_choices")
@example(row={"question": "q", "opts": ["a", "a"], "label": 1}, which="row_choices")
def test_rows_render_or_name_the_file(row_tasks: dict[str, Task], row: Any, which: str) -> None:
    task = row_tasks[which]
    for template in task.template_names:
        with Work() as work:
            render_or_name(task, which, template, row)
        work.check(len(repr(row)))


def render_or_name(task: Task, which: str, template: str, row: Any) -> None:
    try:
        ex = task.render(row, 3, template, seed=1)
    except Exception as exc:  # noqa: BLE001
        assert_t2t_error_naming(exc, f"{which}.jinja")
        assert exc.template == template or exc.field  # where: the template, or the field that failed
        if "is undefined" in str(exc):
            assert exc.field and f"field '{exc.field}'" in str(exc)
    else:
        event("rendered" if ex else "declined")
        check_example(task, template, ex)


# -- mixture files ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def builtin_tasks() -> TaskRegistry:
    # The offline suite only: the built-in hub tasks would need the network to be sized.
    return TaskRegistry.load([Path(__file__).resolve().parent.parent / "templates" / "offline"],
                             include_builtin=False)


TASK_NAMES = ["sentiment_movie", "arith_sum", "word_last", "nope", "sentiment", "arithmetic", "*", "sent*",
              "fuzzmix", "other", "cluster:sentiment", "task:arith_sum", "", "a,b"]
names = st.one_of(st.lists(st.sampled_from(TASK_NAMES), max_size=3), st.sampled_from(TASK_NAMES))
selection = st.fixed_dictionaries({}, optional={k: maybe(names) for k in ("tasks", "clusters", "patterns",
                                                                           "tags")})
mixture_fields = st.fixed_dictionaries({}, optional={
    "description": maybe(st.text(max_size=20)),
    "include": maybe(selection),
    "exclude": maybe(selection),
    "mixtures": maybe(st.dictionaries(st.sampled_from(["other", "fuzzmix", "nope"]), numbers, max_size=2)),
    "rate": maybe(st.fixed_dictionaries({}, optional={
        "strategy": maybe(st.sampled_from([*STRATEGIES, "bogus"])), "cap": maybe(numbers),
        "temperature": maybe(numbers), "scale": maybe(numbers), "tempreature": junk})),
    "weights": maybe(st.dictionaries(st.sampled_from(TASK_NAMES), numbers, max_size=3)),
    "heldout": maybe(st.one_of(names, st.fixed_dictionaries({}, optional={
        "tasks": maybe(names), "clusters": maybe(names), "task": junk}))),
    "allow_source_overlap": maybe(st.booleans()),
    "templates": maybe(st.fixed_dictionaries({}, optional={
        "choose": maybe(st.sampled_from(["round_robin", "random", "rr"])),
        "use": maybe(st.sampled_from(["all", "scored", "some"])),
        "subset": maybe(st.dictionaries(st.sampled_from(TASK_NAMES), names, max_size=2)),
        "variants": maybe(st.dictionaries(st.sampled_from([*VARIANTS, "three_shot"]), numbers, max_size=3)),
        "few_shot_k": maybe(numbers)})),
    "stop": maybe(st.sampled_from([*STOP_POLICIES, "never"])),
    "inclde": junk,
})
# Mixtures that mostly resolve, so that the rates and the held-out split get checked too.
plausible_mixture = st.fixed_dictionaries(
    {"include": st.sampled_from([{"clusters": ["sentiment"]}, {"tasks": ["arith_sum", "word_last"]},
                                 {"patterns": ["sent*"]}, {"clusters": ["sentiment", "arithmetic"]}])},
    optional={
        "rate": st.sampled_from([{"strategy": "temperature", "temperature": 2.0, "cap": 100},
                                 {"strategy": "equal"}, {"cap": 10, "scale": 0.5}]),
        "weights": st.sampled_from([{"arith_sum": 5}, {"sentiment_movie": 0}, {"word_first": 1e-9}]),
        "heldout": st.sampled_from([{"tasks": ["sentiment_movie"]}, ["arithmetic"], "sentiment",
                                    {"clusters": ["transform"]}]),
        "exclude": st.sampled_from([{"tasks": ["sentiment_product"]}, {"patterns": ["*"]}]),
        "mixtures": st.sampled_from([{"other": 0.5}, {"other": 0}]),
        "templates": st.sampled_from([{"choose": "random", "variants": {"zero_shot": 1, "few_shot": 1}},
                                      {"use": "scored"}, {"subset": {"sentiment_movie": ["nope"]}},
                                      {"variants": {"zero_shot": 0}}, {"few_shot_k": 0}]),
        "allow_source_overlap": st.booleans(),
        "stop": st.sampled_from(STOP_POLICIES),
        "description": st.text(max_size=10)})
mixture_files = st.one_of(
    plausible_mixture.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode()),
    plausible_mixture.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode()),
    mixture_fields.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode()),
    mixture_fields.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode()).flatmap(mutated_bytes),
    st.binary(max_size=120),
    st.text(max_size=120).map(str.encode),
)


@FUZZ
@given(raw=mixture_files)
@example(raw=b"include: {tasks: [sentiment_movie]}\nrate: {cap: .inf}\n")
@example(raw=b"weights: {sentiment_movie: .inf, arith_sum: 1}\n")
@example(raw=b"include: {tasks: [sentiment_movie]}\nrate: {cap: 1" + b"0" * 400 + b"}\n")
@example(raw=b"include: {tasks: [sentiment_movie]}\ndescription: \xff\xfe\n")
@example(raw=b"a: &a [" + b",".join([b"*a"] * 3) + b"]\ninclude: *a\n")
@example(raw=("include: {tasks: [sentiment_movie]}\nrate:\n  cap:\n" + alias_bomb("  ")).encode())
def test_mixture_files_resolve_or_name_the_file(folder: Path, builtin_tasks: TaskRegistry,
                                                raw: bytes) -> None:
    path = folder / "fuzzmix.yaml"
    path.write_bytes(raw)
    with Work() as work:
        resolve_or_name(path, builtin_tasks)
    work.check(len(raw))


def resolve_or_name(path: Path, builtin_tasks: TaskRegistry) -> None:
    try:
        spec = MixtureSpec.from_file(path)
        other = MixtureSpec.from_dict({"include": {"clusters": ["sentiment"]}}, "other")
        mixture = resolve(spec, builtin_tasks, MixtureRegistry([spec, other]))
    except Exception as exc:  # noqa: BLE001
        assert_t2t_error_naming(exc, "fuzzmix.yaml")
    else:
        event("resolved")
        rates = list(mixture.rates.values())
        assert rates and all(math.isfinite(r) and r > 0 for r in rates)
        assert math.isclose(sum(rates), 1.0)
        assert not {e.name for e in mixture.entries} & {t.name for t in mixture.heldout}
        for e in mixture.entries:
            assert e.templates and set(e.templates) <= set(e.task.template_names)
        json.dumps(mixture.manifest())


# -- configs ------------------------------------------------------------------------------------------

SECTION_TYPES = typing.get_type_hints(FinetuneConfig)
OPTIONS = {name: (section, kind) for section, cls in SECTION_TYPES.items()
           for name, kind in typing.get_type_hints(cls).items()}
option_keys = st.one_of(st.sampled_from(sorted(OPTIONS)), st.sampled_from(
    [f"{s}.{n}" for n, (s, _) in OPTIONS.items()] + [n.replace("_", "-") for n in OPTIONS]
    + ["lr ", "train.nope", "nope", "model.lr", "", "train", "lora"]))
option_values = st.one_of(junk, numbers, st.sampled_from(
    ["1", "0", "-1", "true", "no", "nan", "inf", "-inf", "1e3", "2.5", "a,b", "t5-small", "eager", "bf16",
     "cosine", "lora", "full", "9" * 5000]))
configs = st.one_of(
    st.dictionaries(option_keys, option_values, max_size=5),
    st.dictionaries(st.sampled_from(sorted(SECTION_TYPES)), st.dictionaries(
        st.sampled_from(sorted(OPTIONS) + ["nope"]), option_values, max_size=3), max_size=2),
)


def check_types(config: FinetuneConfig) -> None:
    for section, cls in SECTION_TYPES.items():
        part = getattr(config, section)
        for name, kind in typing.get_type_hints(cls).items():
            value = getattr(part, name)
            if typing.get_origin(kind) is tuple:
                assert isinstance(value, tuple), (name, value)
                assert all(isinstance(v, str) and v for v in value), (name, value)
            elif kind is float:
                assert isinstance(value, float) and math.isfinite(value), (name, value)
            elif kind in (int, bool, str):
                assert type(value) is kind, (name, value)
            else:  # str | None
                assert value is None or isinstance(value, str), (name, value)


@FUZZ
@given(values=configs)
@example(values={"grad_accum": 0})
@example(values={"lr": float("inf")})
@example(values={"model": None})
@example(values={"mixture": ["a", "b"]})
@example(values={"save_steps": -1})
def test_configs_build_or_name_the_option(values: dict[Any, Any]) -> None:
    try:
        config = build_config(values, origin="fuzz.yaml")
    except Exception as exc:  # noqa: BLE001
        keys = [str(k) for k in values] + [str(s) for v in values.values() if isinstance(v, dict) for s in v]
        keys += [k.replace("-", "_").split(".")[-1].strip() for k in keys]
        keys += ["--" + k.replace("_", "-") for k in keys]  # a value check names the option by its flag
        assert_t2t_error_naming(exc, "fuzz.yaml", *keys)
    else:
        event("built")
        check_types(config)
        json.dumps(config.to_dict())


config_files = st.one_of(
    configs.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode()),
    st.binary(max_size=100),
    st.sampled_from([b"- a\n", b"lr: [\n", b"x: " + b"[" * 2000 + b"]" * 2000, b"\xff\xfe\x00",
                     b"a: &a [*a]\nlr: *a\n", ("lr:\n" + alias_bomb()).encode()]),
)


@FUZZ
@given(raw=config_files)
def test_config_files_load_or_name_the_file(folder: Path, raw: bytes) -> None:
    path = folder / "fuzz_config.yaml"
    path.write_bytes(raw)
    try:
        build_config(load_yaml(str(path)), origin=f"--config {path}")
    except Exception as exc:  # noqa: BLE001
        assert isinstance(exc, T2TError), f"{type(exc).__name__}: {exc}"
        assert "fuzz_config.yaml" in str(exc) or "option '" in str(exc) or "bad config:" in str(exc), str(exc)


EVALUATE_SECTIONS = typing.get_type_hints(EvaluateConfig)
EVALUATE_OPTIONS = sorted(n for cls in EVALUATE_SECTIONS.values() for n in typing.get_type_hints(cls))
evaluate_keys = st.one_of(st.sampled_from(EVALUATE_OPTIONS), st.sampled_from(
    [n.replace("_", "-") for n in EVALUATE_OPTIONS] + ["scoring.seed", "tasks.limit", "model.limit", "nope", ""]))
evaluate_values = st.one_of(option_values, st.sampled_from(["validation", "test", "dev", "fp16", "auto", "a=b"]))
evaluate_configs = st.one_of(
    st.dictionaries(evaluate_keys, evaluate_values, max_size=5),
    st.dictionaries(st.sampled_from(sorted(EVALUATE_SECTIONS)), st.dictionaries(
        st.sampled_from(EVALUATE_OPTIONS + ["nope"]), evaluate_values, max_size=3), max_size=2),
)


def _option_names(values: dict[Any, Any]) -> list[str]:
    """Every way an error may name a key of ``values``: as given, as a field, as a flag."""
    keys = [str(k) for k in values] + [str(s) for v in values.values() if isinstance(v, dict) for s in v]
    fields = [k.replace("-", "_").split(".")[-1].strip() for k in keys]
    return keys + fields + ["--" + f.replace("_", "-") for f in fields if f]


@FUZZ
@given(values=evaluate_configs)
@example(values={"batch_size": -1})
@example(values={"split": "dev"})
@example(values={"tasks": "a", "mixture": "m"})
@example(values={"adapter": [["x"]]})
def test_evaluate_configs_build_or_name_the_option(values: dict[Any, Any]) -> None:
    try:
        config = build_evaluate_config(values, origin="fuzz.yaml")
    except Exception as exc:  # noqa: BLE001
        assert_t2t_error_naming(exc, "fuzz.yaml", *_option_names(values))
    else:
        event("built")
        assert build_evaluate_config(config.to_dict()) == config
        json.dumps(config.to_dict())


@FUZZ
@given(values=st.one_of(
    st.dictionaries(st.sampled_from(["seeds", "single_task", "max_steps", "limit", "model", "overwrite", "nope"]),
                    option_values, max_size=4),
    st.fixed_dictionaries({}, optional={"finetune": configs, "evaluate": evaluate_configs})))
@example(values={"seeds": "1.5"})
@example(values={"finetune": {"seed": 1}})
def test_experiment_configs_build_or_name_the_option(values: dict[Any, Any]) -> None:
    try:
        build_experiment(values, origin="fuzz.yaml")
    except Exception as exc:  # noqa: BLE001
        nested = [v for part in ("finetune", "evaluate") if isinstance(values.get(part), dict) for v in [values[part]]]
        names = _option_names(values) + [n for v in nested for n in _option_names(v)]
        assert_t2t_error_naming(exc, "fuzz.yaml", *names)
    else:
        event("built")


# -- regressions these properties found ---------------------------------------------------------------

def load_error(folder: Path, text: str) -> TaskFileError:
    path = folder / "found.jinja"
    path.write_text(text)
    with pytest.raises(TaskFileError) as info:
        task = Task(path, T2TSandbox([folder]))
        task.render({"text": "t", "label": -1}, 0, task.template_names[0])
    assert "found.jinja" in str(info.value)
    return info.value


HEAD = "---\ncluster: c\nsource: {generator: x}\n"
BLOCK = "---\n{% block t %}a ||| b{% endblock %}\n"


@pytest.mark.parametrize(("text", "expect"), [
    # an unquoted yes/no is a YAML boolean: the targets were silently "True"/"False"
    (HEAD + "choices: [yes, no]\n---\n{% block t %}a ||| yes{% endblock %}\n", "field 'choices': unquoted"),
    (HEAD + "choices: [a, a]\n---\n{% block t %}a ||| a{% endblock %}\n", "distinct"),
    # label -1 (GLUE's "no label") silently became the last choice
    (HEAD + "choices: [\"a\", \"b\"]\nanswer: \"{{ choices[label] }}\"\n---\n{% block t %}{{ text }} ||| "
     "{{ answer }}{% endblock %}\n", "field 'answer': ValueError: choices[-1]"),
    # the string "false" is truthy: it turned trust_remote_code on
    ("---\ncluster: c\nsource: {hf: x, trust_remote_code: \"false\"}\n" + BLOCK,
     "field 'source.trust_remote_code': must be true or false"),
    ("---\ncluster: c\nsource: {files: 5}\n" + BLOCK, "field 'source.files'"),
    (HEAD + "tags: abc\n" + BLOCK, None),
    (HEAD + "tags: [1]\n" + BLOCK, "field 'tags'"),
    (HEAD + "templates: {t: {inverted: \"no\"}}\n" + BLOCK, "inverted: true or"),
    # RecursionError / IndentationError escaped from compiling deeply nested Jinja
    (HEAD + "---\n{% block t %}{{ " + "(" * 3000 + "1" + ")" * 3000 + " }} ||| b{% endblock %}\n",
     "too deeply"),
    (HEAD + "---\n{% block t %}" + "".join(f"{{% for x{i} in [1] %}}" for i in range(120)) + "a ||| b"
     + "{% endfor %}" * 120 + "{% endblock %}\n", "too deeply"),
    # unclosed blocks made the block regex rescan the file: quadratic, minutes for a 500 kB file
    (HEAD + BLOCK + "{% block u %}" * 40000, "{% block u %} is not closed"),
    # a YAML alias bomb in the front matter expanded to billions of values
    (HEAD + "tags:\n" + alias_bomb() + BLOCK, "aliases expand"),
    (HEAD + "x: " + "[" * 3000 + "]" * 3000 + "\n" + BLOCK, "nested too deeply"),
])
def test_found_task_file_bugs(tmp_path: Path, text: str, expect: str | None) -> None:
    if expect is None:  # a single tag written as a string is one tag, not one per character
        path = tmp_path / "found.jinja"
        path.write_text(text)
        assert Task(path, T2TSandbox([tmp_path])).tags == ("abc",)
        return
    with Work() as work:
        error = str(load_error(tmp_path, text))
    assert expect in error
    work.check(len(text))  # the alias bomb and the unclosed blocks cost billions before they were fixed


def test_found_a_directory_named_like_a_task_file(tmp_path: Path) -> None:
    (tmp_path / "dir.jinja").mkdir()
    with pytest.raises(TaskFileError, match="dir.jinja: cannot read"):
        Task(tmp_path / "dir.jinja", T2TSandbox([tmp_path]))


# -- command line -------------------------------------------------------------------------------------

def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_cli_broken_task_files_exit_2_one_line_each(tmp_path: Path) -> None:
    broken = {
        "not_utf8.jinja": b"---\ncluster: \xff\xfe\n---\n",
        "bomb.jinja": (HEAD + "tags:\n" + alias_bomb() + BLOCK).encode(),
        "deep.jinja": (HEAD + "---\n{% block t %}{{ " + "(" * 3000 + " }}{% endblock %}\n").encode(),
        "unclosed.jinja": (HEAD + "---\n{% block t %}a ||| b{% endblock %}{% block u %}").encode(),
    }
    for name, raw in broken.items():
        (tmp_path / name).write_bytes(raw)
    out = run_module("t2t.tasks", "check", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == len(broken) and all(line.startswith("error: ") for line in lines)
    assert {name for name in broken for line in lines if name in line} == set(broken)


def test_cli_broken_mixture_files_and_runaway_render_exit_2_one_line(tmp_path: Path) -> None:
    mixtures = tmp_path / "mixtures"
    mixtures.mkdir()
    (mixtures / "latin1.yaml").write_bytes(b"description: caf\xe9\ninclude: {clusters: [sentiment]}\n")
    out = run_module("t2t.mixture", "show", "latin1", "--mixture-dir", str(mixtures))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "latin1.yaml" in out.stderr and "not UTF-8" in out.stderr

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "spin.jinja").write_text(HEAD + "example: {words: [" + ", ".join(["w"] * 3000) + "]}\n---\n"
                                      "{% block t %}{% for a in words %}{% for b in words %}"
                                      "{% for c in words %}{% endfor %}{% endfor %}{% endfor %} ||| b"
                                      "{% endblock %}\n")
    out = run_module("t2t.tasks", "render", "spin", "--task-dir", str(tasks), "--split", "example")
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    assert "spin.jinja" in out.stderr and "template 't'" in out.stderr and "took more than 2s of CPU time" in out.stderr


@pytest.mark.parametrize(("args", "expect"), [
    (["--config", "{path}"], "fuzz_cli.yaml: not valid YAML"),
    (["--lr", "inf"], "option 'lr': expected float"),
    (["--grad-accum", "0"], "grad_accum"),  # was a ZeroDivisionError traceback
    (["--adam-epsilon", "0"], "adam_epsilon must be positive"),
    (["--adam-beta2", "1"], "adam_beta1 and adam_beta2"),
])
def test_cli_bad_finetune_options_exit_2_one_line(tmp_path: Path, args: list[str], expect: str) -> None:
    path = tmp_path / "fuzz_cli.yaml"
    path.write_text("lr: [\n")
    out = run_module("t2t.finetune", *[a.format(path=path) for a in args])
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    assert expect in out.stderr


@pytest.mark.parametrize(("module", "args", "expect"), [
    ("t2t.evaluate", ["--config", "{path}"], "fuzz_cli.yaml: not valid YAML"),
    ("t2t.evaluate", ["--batchsize", "4"], "unknown option '--batchsize' (did you mean '--batch-size'?)"),
    ("t2t.evaluate", ["--batch-size", "-1"], "--batch-size must be at least 1"),
    ("t2t.evaluate", ["--max-new-tokens", "inf"], "option 'max_new_tokens': expected int"),
    ("t2t.evaluate", ["--split", "dev"], "--split dev: use validation, test or train"),
    ("t2t.experiment", ["--config", "{path}"], "fuzz_cli.yaml: not valid YAML"),
    ("t2t.experiment", ["--seeds", "1.5"], "option 'seeds': expected whole numbers separated by commas"),
    ("t2t.experiment", ["--lr", "nan"], "option 'lr': expected float"),
    ("t2t.experiment", ["--limit", "0"], "--limit must be at least 1"),
])
def test_cli_bad_evaluate_and_experiment_options_exit_2_one_line(tmp_path: Path, module: str, args: list[str],
                                                                  expect: str) -> None:
    path = tmp_path / "fuzz_cli.yaml"
    path.write_text("limit: [\n")
    out = run_module(module, *[a.format(path=path) for a in args], "--output-dir", str(tmp_path / "never"))
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert expect in out.stderr
    assert not (tmp_path / "never").exists()
