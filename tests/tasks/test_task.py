"""Task files: parsing, rendering, the sandbox, seeded randomness, declining and every error kind."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from t2t.errors import T2TError, TaskFileError, TaskFilesError
from t2t.tasks.registry import TaskRegistry
from t2t.tasks.sources import load_rows
from t2t.tasks.task import T2TSandbox, Task

REPO = Path(__file__).resolve().parents[2]

RTE = """\
---
cluster: nli
source: {files: {train: data/rows.jsonl, validation: data/rows.jsonl}}
choices: ["yes", "no"]
answer: "{{ choices[label] }}"
metrics: [accuracy]
example: {premise: "A dog runs.", hypothesis: "An animal moves.", label: 0}
templates:
  write_hypothesis: {inverted: true}
---
{% import "_lib/local.jinja" as lib %}
{# a comment is fine outside blocks #}
{% block premise_question %}
{{ premise }}
Question: does this imply that "{{ hypothesis }}"? {{ options }}
|||
{{ answer }}
{% endblock %}

{% block shuffled %}
{{ lib.shout(premise) }} / {{ hypothesis }} [{{ shuffle(choices) | join(", ") }}] {{ randint(0, 10**6) }}
|||
{{ answer }}
{% endblock %}

{% block write_hypothesis %}
{% if label == 0 %}
Write something that follows from: {{ premise }}
|||
{{ hypothesis }}
{% endif %}
{% endblock %}
"""


def write_task(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.jinja"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tasks"
    write_task(folder, "rte_demo", RTE)
    write_task(folder / "_lib", "local", "{% macro shout(x) %}{{ x | upper }}{% endmacro %}")
    (folder / "data").mkdir()
    rows = [{"premise": f"P{i}", "hypothesis": f"H{i}", "label": i % 2} for i in range(6)]
    (folder / "data" / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def load_one(folder: Path, name: str, text: str) -> Task:
    path = write_task(folder, name, text)
    return Task(path, T2TSandbox([folder, REPO / "templates"]))


def error_of(folder: Path, text: str, name: str = "bad") -> TaskFileError:
    with pytest.raises(TaskFileError) as info:
        load_one(folder, name, text)
    return info.value


def test_render_splits_and_strips(task_dir: Path) -> None:
    task = TaskRegistry.load([task_dir]).get("rte_demo")
    ex = task.render({"premise": "A cat sleeps.", "hypothesis": "A cat rests.", "label": 0}, 0, "premise_question")
    assert ex.input == 'A cat sleeps.\nQuestion: does this imply that "A cat rests."? OPTIONS:\n- yes\n- no'
    assert ex.target == "yes"
    assert ex.choices == ("yes", "no")
    no_opts = task.render({"premise": "A", "hypothesis": "B", "label": 1}, 0, "premise_question", options=False)
    assert "OPTIONS" not in no_opts.input and no_opts.input.endswith("?") and no_opts.target == "no"


def test_lib_macros_and_seeded_randomness(task_dir: Path) -> None:
    task = TaskRegistry.load([task_dir]).get("rte_demo")
    row = {"premise": "loud", "hypothesis": "h", "label": 1}
    a = task.render(row, 3, "shuffled", seed=7)
    assert a.input.startswith("LOUD / h [")
    assert a == task.render(row, 3, "shuffled", seed=7)
    # a fresh registry (another process would do the same) gives the same text
    assert a == TaskRegistry.load([task_dir]).get("rte_demo").render(row, 3, "shuffled", seed=7)
    others = {task.render(row, i, "shuffled", seed=s).input for i in range(4) for s in range(4)}
    assert len(others) > 4  # the randomness really depends on seed and row index


def test_inverted_template_declines_and_skips_choice_check(task_dir: Path) -> None:
    task = TaskRegistry.load([task_dir]).get("rte_demo")
    ex = task.render({"premise": "P", "hypothesis": "H", "label": 0}, 0, "write_hypothesis")
    assert (ex.input, ex.target, ex.choices) == ("Write something that follows from: P", "H", None)
    assert task.render({"premise": "P", "hypothesis": "H", "label": 1}, 0, "write_hypothesis") is None
    assert task.scored_templates() == ["premise_question", "shuffled"]


def test_rows_from_local_files(task_dir: Path) -> None:
    task = TaskRegistry.load([task_dir]).get("rte_demo")
    ds = load_rows(task, "train")
    assert len(ds) == 6 and ds[1]["premise"] == "P1"
    assert task.render(ds[1], 1, "premise_question").target == "no"


def test_row_limit_and_missing_split(tmp_path: Path, task_dir: Path) -> None:
    text = RTE.replace("metrics: [accuracy]", "metrics: [accuracy]\nlimit: {train: 4}")
    task = load_one(task_dir, "limited", text)
    assert len(load_rows(task, "train")) == 4
    with pytest.raises(T2TError, match="no split 'test'"):
        load_rows(task, "test")


def test_target_outside_choices_is_an_error(tmp_path: Path) -> None:
    task = load_one(tmp_path, "bad_choice", """\
        ---
        cluster: c
        source: {generator: x}
        choices: ["yes", "no"]
        ---
        {% block t %}
        {{ q }} ||| maybe
        {% endblock %}
        """)
    with pytest.raises(TaskFileError) as info:
        task.render({"q": "?"}, 0, "t")
    msg = str(info.value)
    assert "bad_choice.jinja" in msg and "template 't'" in msg and "'maybe'" in msg and "choices" in msg


def test_per_row_choices(tmp_path: Path) -> None:
    task = load_one(tmp_path, "mc", """\
        ---
        cluster: qa
        source: {generator: x}
        choices: "{{ row.options | join(' ||| ') }}"
        answer: "{{ choices[label] }}"
        ---
        {% block t %}
        {{ question }} {{ t2t.options }} ||| {{ answer }}
        {% endblock %}
        """)
    ex = task.render({"question": "Q?", "options": ["red", "blue", "green"], "label": 2}, 0, "t")
    assert ex.choices == ("red", "blue", "green") and ex.target == "green"
    assert ex.input == "Q? OPTIONS:\n- red\n- blue\n- green"


def test_a_template_can_override_the_choices(tmp_path: Path) -> None:
    """promptsource style: templates of one task answer with different words."""
    task = load_one(tmp_path, "ovr", """\
        ---
        cluster: nli
        source: {generator: x}
        choices: ["yes", "no"]
        answer: "{{ choices[label] }}"
        templates:
          gpt3: {choices: ["True", "False"]}
          per_row: {choices: "{{ row.words | join(' ||| ') }}"}
        ---
        {% block plain %}
        {{ q }} {{ options }} ||| {{ answer }}
        {% endblock %}
        {% block gpt3 %}
        {{ q }} True or False? ||| {{ answer }}
        {% endblock %}
        {% block per_row %}
        {{ q }} {{ options }} ||| {{ choices[label] }}
        {% endblock %}
        """)
    row = {"q": "Q?", "label": 1, "words": ["up", "down"]}
    assert task.render(row, 0, "plain").choices == ("yes", "no")
    ex = task.render(row, 0, "gpt3")
    assert ex.choices == ("True", "False") and ex.target == "False"
    ex = task.render(row, 0, "per_row")
    assert ex.choices == ("up", "down") and ex.target == "down" and ex.input == "Q? OPTIONS:\n- up\n- down"
    assert task.fixed_choices() == ("yes", "no") and task.fixed_choices("gpt3") == ("True", "False")
    assert task.overrides_choices("per_row") and not task.overrides_choices("plain")


@pytest.mark.parametrize("settings, expect", [
    ("choices: [\"a\", \"b\"]\ntemplates: {t: {choices: [on, off]}}", "templates.t.choices.*YAML booleans"),
    ("templates: {t: {choices: [\"a\"]}}", "templates.t.choices.*only in a task with choices"),
    ("choices: [\"a\", \"b\"]\ntemplates: {t: {choices: [\"a\", \"a\"]}}", "templates.t.choices.*distinct"),
])
def test_bad_template_choices(tmp_path: Path, settings: str, expect: str) -> None:
    text = f"---\ncluster: c\nsource: {{generator: x}}\n{settings}\n---\n{{% block t %}}\nq ||| a\n{{% endblock %}}\n"
    with pytest.raises(TaskFileError, match=expect):
        load_one(tmp_path, "badc", text)


def test_undefined_field_names_file_template_line_and_field(tmp_path: Path) -> None:
    task = load_one(tmp_path, "undef", """\
        ---
        cluster: c
        source: {generator: x}
        ---
        {% block first %}
        {{ text }} ||| ok
        {% endblock %}
        {% block second %}
        {{ text }}
        {{ hypothesys }} ||| ok
        {% endblock %}
        """)
    with pytest.raises(TaskFileError) as info:
        task.render({"text": "x"}, 0, "second")
    err = info.value
    assert (err.template, err.field, err.line) == ("second", "hypothesys", 10)
    assert "undef.jinja:10" in str(err) and "row fields: text" in str(err)


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("---\ncluster: [unclosed\n---\n{% block t %}a ||| b{% endblock %}\n", "bad YAML"),
        ("cluster: c\n{% block t %}a ||| b{% endblock %}\n", "must start with a '---'"),
        ("---\ncluster: c\nsource: {generator: x}\n---\n{% block t %}{{ a ||| b{% endblock %}\n", "bad Jinja"),
        ("---\ncluster: c\nsource: {generator: x}\n---\n{% block t %}a{% endblock %}\n"
         "{% block t %}b{% endblock %}\n", "defined twice"),
        ("---\ncluster: c\nsource: {generator: x}\nchoises: [a]\n---\n{% block t %}a ||| b{% endblock %}\n",
         "did you mean 'choices'"),
        ("---\nsource: {generator: x}\n---\n{% block t %}a ||| b{% endblock %}\n", "field 'cluster'"),
        ("---\ncluster: c\n---\n{% block t %}a ||| b{% endblock %}\n", "field 'source'"),
        ("---\ncluster: c\nsource: {generator: x}\n---\nno blocks here\n", "no templates"),
        ("---\ncluster: c\nsource: {generator: x}\n---\nstray text\n{% block t %}a ||| b{% endblock %}\n",
         "text outside"),
        ("---\ncluster: c\nsource: {generator: x}\nmetrics: [acuracy]\n---\n{% block t %}a ||| b{% endblock %}\n",
         "unknown metric"),
        ("---\ncluster: c\nsource: {generator: x}\ntemplates: {nope: {inverted: true}}\n---\n"
         "{% block t %}a ||| b{% endblock %}\n", "no such block"),
    ],
)
def test_load_errors_name_the_file(tmp_path: Path, text: str, expect: str) -> None:
    err = error_of(tmp_path, text)
    assert expect in str(err)
    assert "bad.jinja" in str(err)


def test_syntax_error_line_is_the_file_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, "---\ncluster: c\nsource: {generator: x}\n---\n\n{% block t %}\nok\n"
                             "{{ broken( }} ||| b\n{% endblock %}\n")
    assert err.line == 8 and "bad.jinja:8" in str(err)


def test_missing_separator_and_empty_sides(tmp_path: Path) -> None:
    task = load_one(tmp_path, "sep", """\
        ---
        cluster: c
        source: {generator: x}
        ---
        {% block nosep %}{{ a }}{% endblock %}
        {% block twice %}{{ a }} ||| b ||| c{% endblock %}
        {% block empty_target %}{{ a }} ||| {{ b }}{% endblock %}
        """)
    with pytest.raises(TaskFileError, match="exactly one '\\|\\|\\|'"):
        task.render({"a": "x", "b": ""}, 0, "nosep")
    with pytest.raises(TaskFileError, match=r"found 2"):
        task.render({"a": "x", "b": ""}, 0, "twice")
    assert task.render({"a": "x", "b": ""}, 0, "empty_target") is None  # never trained on as empty text


def test_every_broken_file_is_reported(tmp_path: Path) -> None:
    write_task(tmp_path, "good", "---\ncluster: c\nsource: {generator: x}\n---\n{% block t %}a ||| b{% endblock %}")
    write_task(tmp_path, "bad1", "---\ncluster: [\n---\n")
    write_task(tmp_path, "bad2", "---\ncluster: c\nsource: {generator: x}\n---\n{% block t %}{{ %}{% endblock %}")
    with pytest.raises(TaskFilesError) as info:
        TaskRegistry.load([tmp_path], include_builtin=False)
    assert len(info.value.errors) == 2
    assert "bad1.jinja" in str(info.value) and "bad2.jinja" in str(info.value)


def test_duplicate_task_names_across_folders(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        write_task(tmp_path / sub, "same",
                   "---\ncluster: c\nsource: {generator: x}\n---\n{% block t %}a ||| b{% endblock %}")
    with pytest.raises(T2TError, match="duplicate task name"):
        TaskRegistry.load([tmp_path / "a", tmp_path / "b"], include_builtin=False)


def test_registry_lookup_and_suggestions(task_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T2T_TASK_PATH", str(task_dir))
    registry = TaskRegistry.load()
    assert "rte_demo" in registry.names()
    assert "rte_demo" in [t.name for t in registry.by_cluster("nli")]  # beside the built-in hub NLI tasks
    with pytest.raises(T2TError, match="did you mean rte_demo"):
        registry.get("rte_dmeo")
    with pytest.raises(T2TError, match="unknown cluster"):
        registry.by_cluster("nope")


SANDBOX_PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ text.__class__.__base__.__subclasses__() }}",
    "{{ row.__class__ }}",
    "{{ shuffle.__globals__['__builtins__'] }}",
    "{{ namespace.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ request.application.__globals__ }}",
    "{{ config.items() }}",
    "{% for x in range(100000) %}{% for y in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 'x' * 100000000 }}",
    "{{ 9 ** 9 ** 9 }}",
    "{% include '/etc/passwd' %}",
    "{% include '../../../../etc/passwd' %}",
    "{% import 'os' as os %}",
    "{{ row.update({'a': 1}) }}",
    "{% for c in text.__class__.__mro__ %}{{ c }}{% endfor %}",
    "{{ (text|attr('__class__')) }}",
    "{{ text.format_map({}) }}{{ '{0.__class__}'.format(text) }}",
]


@pytest.mark.parametrize("payload", SANDBOX_PAYLOADS)
def test_sandbox_blocks_known_injection_payloads(tmp_path: Path, payload: str) -> None:
    path = write_task(tmp_path, "evil", "---\ncluster: c\nsource: {generator: x}\n---\n"
                                        "{% block t %}" + payload + " ||| b{% endblock %}\n")
    try:
        task = Task(path, T2TSandbox([tmp_path]))
        ex = task.render({"text": "hello"}, 0, "t")
    except TaskFileError as exc:
        assert "evil.jinja" in str(exc)
        return
    # A payload that renders must not have reached anything dangerous.
    assert ex is None or ("root:" not in ex.input and "uid=" not in ex.input and "<class" not in ex.input
                          and "function" not in ex.input and "module" not in ex.input)


def test_runaway_render_is_stopped(tmp_path: Path) -> None:
    path = write_task(tmp_path, "slow", "---\ncluster: c\nsource: {generator: x}\n---\n{% block t %}"
                                        "{% for i in range(99999) %}{{ 'ab' * 500 }}{% endfor %} ||| b{% endblock %}\n")
    task = Task(path, T2TSandbox([tmp_path]))
    with pytest.raises(TaskFileError, match="output longer|range|longer than"):
        task.render({}, 0, "t")


def run_tasks_cli(*args: str, env_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "t2t.tasks", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_cli_list_render_check_json(task_dir: Path) -> None:
    out = run_tasks_cli("list", "--json", "--task-dir", str(task_dir), "--cluster", "nli")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    demo = next(t for t in listed if t["name"] == "rte_demo")
    assert demo["choices"] == ["yes", "no"] and {t["cluster"] for t in listed} == {"nli"}
    assert demo["templates"] == ["premise_question", "shuffled", "write_hypothesis"]
    assert "files" in demo["source"]
    out = run_tasks_cli("render", "rte_demo", "--task-dir", str(task_dir), "--n", "2", "--json",
                        "--template", "premise_question", "--split", "train")
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert [r["target"] for r in records] == ["yes", "no"]
    assert {"task", "template", "input", "target"} <= set(records[0])
    out = run_tasks_cli("check", str(task_dir))
    assert out.returncode == 0, out.stderr


def test_cli_user_errors_exit_2_with_one_line(task_dir: Path, tmp_path: Path) -> None:
    out = run_tasks_cli("show", "rte_dmeo", "--task-dir", str(task_dir))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "did you mean rte_demo" in out.stderr and "Traceback" not in out.stderr
    bad = tmp_path / "broken"
    write_task(bad, "b1", "---\ncluster: [\n---\n")
    write_task(bad, "b2", "---\ncluster: c\nsource: {generator: x}\n---\n{% block t %}{{ x }}{% endblock %}")
    out = run_tasks_cli("check", str(bad))
    assert out.returncode == 2 and "b1.jinja" in out.stderr and "b2.jinja" in out.stderr
    assert "Traceback" not in out.stderr
    out = run_tasks_cli("show", "rte_dmeo", "--task-dir", str(task_dir), "--debug")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_builtin_tasks_all_check() -> None:
    out = run_tasks_cli("check")
    assert out.returncode == 0, out.stderr


def test_row_fields_named_like_t2t_variables_are_never_shadowed(tmp_path: Path) -> None:
    """commonsense_qa, qasc and race have columns named choices / options / answer: the row keeps them,
    and t2t's own variables stay reachable as t2t.NAME."""
    text = textwrap.dedent("""\
        ---
        cluster: qa
        source: {generator: x}
        choices: "{{ choices.text | join('|||') }}"
        answer: "{{ t2t.choices[choices.label.index(answerKey)] }}"
        ---
        {% block pick %}
        {{ question }} {{ t2t.options }} ({{ options }}, {{ answer }}) ||| {{ t2t.answer }}
        {% endblock %}
        {% block plain %}{{ question }} {{ t2t.options }} ||| {{ t2t.answer }}{% endblock %}
        """)
    task = load_one(tmp_path, "csqa", text)
    row = {"question": "Where do fish live?", "answerKey": "B", "options": "row options", "answer": "row answer",
           "choices": {"label": ["A", "B"], "text": ["tree", "sea"]}}
    ex = task.render(row, 0, "pick")
    assert ex.input == "Where do fish live? OPTIONS:\n- tree\n- sea (row options, row answer)"
    assert ex.target == "sea" and ex.choices == ("tree", "sea")
    assert task.render(row, 0, "plain", options=False).input == "Where do fish live?"
    # without such columns the plain names still mean t2t's variables
    assert task.choices_for(row) == ("tree", "sea")
