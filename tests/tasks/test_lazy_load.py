"""Loading task files fast without changing what loading reports (issue #14: 2,000 SNI task files).

Templates that cannot fail to compile wait for their first render; the rest, and every template whose
compile could raise, are compiled at load as before. The default YAML loader parses with libyaml where
its reading is PyYAML's, and hands every other text to PyYAML.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from t2t import yamlsafe
from t2t.errors import TaskFileError
from t2t.tasks.registry import BUILTIN_TEMPLATES
from t2t.tasks.task import T2TSandbox, Task
from tests.conftest import require_that

# PyPI's PyYAML wheels are built with libyaml; a source build without it has no C loader to compare.
LIBYAML = "PyYAML built with libyaml (yaml.CSafeLoader)"

HEAD = "---\ncluster: demo\nsource: {files: rows.jsonl}\n---\n"
ROW = {"text": "Hello world", "label": "b", "items": ["x", "y"]}


def load(tmp_path: Path, body: str) -> Task:
    path = tmp_path / "demo.jinja"
    path.write_text(HEAD + body, encoding="utf-8")
    return Task(path, T2TSandbox([tmp_path]))


def test_lazy_templates_render_as_compiled_ones(tmp_path: Path) -> None:
    body = ("{% block plain %}{{ text | upper }} {% for i in items %}{{ loop.index }}{{ i }}{% endfor %}"
            " ||| {{ label }}{% endblock %}\n"
            "{% block other %}{% set t = text | trim %}{{ t[:5] ~ '!' }} ||| {{ label }}{% endblock %}\n")
    task = load(tmp_path, body)
    assert sorted(task._pending) == ["other", "plain"]  # nothing compiled yet
    first = task.render(ROW, 0, "plain")
    assert (first.input, first.target) == ("HELLO WORLD 1x2y", "b")
    assert list(task._pending) == ["other"]  # compiled on its first render only
    task.compile_templates()
    assert task._pending == {}
    assert (task.render(ROW, 0, "other").input, task.render(ROW, 0, "plain").input) == ("Hello!", first.input)


@pytest.mark.parametrize("body, message", [
    ("{% block a %}{{ text | no_such_filter }} ||| x{% endblock %}", "bad Jinja: No filter named 'no_such_filter'."),
    ("{% block a %}{% set t = text is no_such_test %}{{ t }} ||| x{% endblock %}",
     "bad Jinja: No test named 'no_such_test'."),
    ("{% block a %}{% for loop in items %}{{ loop }}{% endfor %} ||| x{% endblock %}",
     "bad Jinja: Can't assign to special loop variable in for-loop target"),
    ("{% block a %}" + "{% for i in items %}" * 24 + "{{ i }}" + "{% endfor %}" * 24 + " ||| x{% endblock %}",
     "Jinja too deeply nested to compile (SyntaxError)"),
])
def test_what_only_the_compiler_refuses_is_still_refused_at_load(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(TaskFileError) as info:
        load(tmp_path, body)
    assert message in str(info.value)
    assert info.value.template == "a"


def test_builtin_suite_renders_the_same_lazily_and_eagerly() -> None:
    from t2t.tasks.registry import TaskRegistry

    lazy, eager = TaskRegistry.load(), TaskRegistry.load()
    for task in eager:
        task.compile_templates()
    pending = sum(len(t._pending) for t in lazy)
    assert pending > 0.9 * sum(len(t.templates) for t in lazy)  # almost every built-in template waits
    for task in lazy:
        twin = eager.get(task.name)
        for i, row in enumerate(task.example_rows):
            for name in task.template_names:
                assert task.render(row, i, name) == twin.render(row, i, name), (task.name, name)


# -- YAML: libyaml where it reads as PyYAML does -------------------------------------------------------

def python_load(text: str) -> tuple[str, object]:
    try:
        return "ok", yaml.load(text, Loader=yamlsafe._total(yaml.SafeLoader))  # noqa: S506
    except yaml.YAMLError as exc:
        return "error", str(exc)


def ours(text: str) -> tuple[str, object]:
    try:
        return "ok", yamlsafe.safe_load(text)
    except yaml.YAMLError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("text", [
    "tags: [off?line]", "source: {hf?: x}", "example: [{item_a:kettle, price: 3}]", "a:\tb",
    "a: 1\n\ufeff# a comment", "a: x\u2028y", "a: \"x\x00y\"", "a: [1, 2", "? [1]\n: x",
])
def test_where_libyaml_reads_otherwise_pyyaml_decides(text: str) -> None:
    require_that(yamlsafe._C_SAFE_LOADER is not None, LIBYAML)
    assert ours(text) == python_load(text)


def front_matters() -> list[str]:
    texts = []
    for path in sorted(BUILTIN_TEMPLATES.rglob("*.jinja")):
        text = path.read_text(encoding="utf-8")
        if text.startswith("---\n"):
            texts.append(text[4:].split("\n---\n", 1)[0])
    return texts


def test_builtin_front_matter_loads_as_pyyaml_does() -> None:
    texts = front_matters()
    assert len(texts) > 20
    for text in texts:
        assert ours(text) == python_load(text)


def test_mutated_front_matter_loads_or_fails_as_pyyaml_does() -> None:
    """A sample of the comparison that found the differences above (19,000 mutated files, none differ now)."""
    require_that(yamlsafe._C_SAFE_LOADER is not None, LIBYAML)
    texts, rng = front_matters(), random.Random(14)
    pieces = list(":-?[]{},&*!|>'\"#%@` \n\t\\") + ["- ", ": ", "\n  ", "\x85", "\ufeff", "~", "yes", "<<", "&a ",
                                                   "*a", "!!str ", "{a:b}", "[a?b]", "é", "\r\n"]
    for _ in range(400):
        text = rng.choice(texts)
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(text) + 1)
            text = text[:k] + rng.choice(pieces) + text[k + rng.choice([0, 0, 1, 3]):]
        a, b = ours(text), python_load(text)
        if b[0] == "error" and "expand" in str(b[1]):
            continue  # an alias bomb: ours refuses it (the Python loader alone would build it)
        assert (a[0], repr(a[1])) == (b[0], repr(b[1])), text
