"""t2t.yamlsafe: yaml.safe_load made total (alias bombs, self-referring aliases, deep nesting, unsafe tags)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from t2t import yamlsafe
from t2t.yamlsafe import MAX_YAML_VALUES, YAMLLimitError, safe_load


def laughs(levels: int, width: int = 10) -> str:
    """The "billion laughs": each level is a list of ``width`` aliases of the level below."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines)


@pytest.mark.parametrize("text", [
    "cluster: nli\nchoices: [\"yes\", \"no\"]\nlimit: {train: 30000}\n",
    "a: 1\nb: 2.5\nc: null\nd: true\ne: [x, {y: z}]\nf: 'quoted: {{ x }}'\n",
    "- 1\n- two\n",
    "plain",
    "",
    "# only a comment\n",
])
def test_ordinary_yaml_loads_as_safe_load_does(text: str) -> None:
    assert safe_load(text) == yaml.safe_load(text)


def test_shared_aliases_within_the_limit_load() -> None:
    data = safe_load("base: &b {lr: 0.001, steps: [1, 2, 3]}\nrun1: *b\nrun2: *b\nmerged: {<<: *b, steps: [4]}\n")
    assert data["run1"] == data["run2"] == {"lr": 0.001, "steps": [1, 2, 3]}
    assert data["merged"] == {"lr": 0.001, "steps": [4]}
    # Three levels of ten aliases expand to ~12k values; with a fourth, l4 alone stands for 111,111.
    assert safe_load(laughs(3))["l3"][9][9][9][9] == "lol"
    with pytest.raises(YAMLLimitError):
        safe_load(laughs(4))


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How much a load does: values built by PyYAML's constructor (both loaders build with it, an alias
    node once), and values visited by the expansion check."""
    counts = {"built": 0, "visited": 0}
    construct, visit = yaml.constructor.BaseConstructor.construct_object, yamlsafe._expanded_size

    def counted_construct(self: yaml.constructor.BaseConstructor, node: yaml.Node, deep: bool = False) -> Any:
        counts["built"] += 1
        return construct(self, node, deep)

    def counted_visit(*args: Any) -> int:
        counts["visited"] += 1
        return visit(*args)

    monkeypatch.setattr(yaml.constructor.BaseConstructor, "construct_object", counted_construct)
    monkeypatch.setattr(yamlsafe, "_expanded_size", counted_visit)
    return counts


def test_billion_laughs_is_refused_after_work_on_the_text_not_the_expansion(work: dict[str, int]) -> None:
    with pytest.raises(YAMLLimitError) as info:
        safe_load(laughs(9))  # 10**9 values once expanded, from 10 short lines
    assert info.value.problem == f"aliases expand to more than {MAX_YAML_VALUES} values"
    assert info.value.problem_mark is None
    # The text holds 121 values (the root, 10 keys, 10 lists, 10 'lol', 90 aliases), read by libyaml and
    # again by PyYAML: 242 built and 132 visited (measured). Walking the expansion instead would visit
    # more than MAX_YAML_VALUES (100,000) before refusing.
    in_text = 1 + 10 + 10 + 10 + 90
    assert work["built"] <= 4 * in_text and work["visited"] <= 4 * in_text


def test_merge_keys_do_not_multiply(work: dict[str, int]) -> None:
    # Each level merges the one below twice: a "merge bomb" if merged pairs were kept twice (2**40 pairs).
    lines = ["l0: &l0 {a: 1, b: 2}"] + [f"l{i}: &l{i} {{<<: [*l{i - 1}, *l{i - 1}], k{i}: {i}}}" for i in range(1, 41)]
    data = safe_load("\n".join(lines))
    assert len(data["l40"]) == 42
    # The result holds sum(i + 2 for i in 0..40) = 902 keys and as many values; 1,887 values built (measured):
    # each pair once per level that holds it, plus the 41 mappings, the root and its keys.
    held = sum(len(level) for level in data.values())
    assert held == 902 and work["built"] <= 2 * (2 * held + 2 * len(data) + 1)


@pytest.mark.parametrize("text", ["a: &a [*a]", "a: &a {self: *a}", "a: &a [1, [2, {deep: *a}]]"])
def test_self_referring_alias_is_refused(text: str) -> None:
    yaml.safe_load(text)  # plain safe_load builds the cycle without complaint
    with pytest.raises(YAMLLimitError, match=r"^an alias \(\*name\) refers to a value that contains it$"):
        safe_load(text)


@pytest.mark.parametrize("text", ["[" * 3000 + "]" * 3000, "{a: " * 3000 + "1" + "}" * 3000,
                                  "\n".join(" " * i + "- x:" for i in range(0, 6000, 2))])
def test_deep_nesting_is_a_yaml_error_not_recursion_error(text: str) -> None:
    with pytest.raises(YAMLLimitError) as info:
        safe_load(text)
    assert info.value.problem == "nested too deeply"
    assert isinstance(info.value, yaml.YAMLError)


def test_limit_counts_every_value_keys_included(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsafe, "MAX_YAML_VALUES", 7)
    assert safe_load("[1, 2, 3, 4, 5, 6]") == [1, 2, 3, 4, 5, 6]  # 1 list + 6 items = 7
    with pytest.raises(YAMLLimitError, match="more than 7 values"):
        safe_load("[1, 2, 3, 4, 5, 6, 7]")
    assert safe_load("{a: 1, b: 2, c: 3}") == {"a": 1, "b": 2, "c": 3}  # 1 mapping + 3 keys + 3 values
    with pytest.raises(YAMLLimitError):
        safe_load("{a: 1, b: 2, c: 3, d: 4}")
    # An alias counts the values it stands for, each time it is used.
    monkeypatch.setattr(yamlsafe, "MAX_YAML_VALUES", 9)
    assert safe_load("a: &x [1, 2]\nb: *x") == {"a": [1, 2], "b": [1, 2]}  # 1 + 2 keys + 2 * 3
    with pytest.raises(YAMLLimitError):
        safe_load("a: &x [1, 2]\nb: *x\nc: *x")


@pytest.mark.parametrize("text", [
    "!!python/object/apply:os.system [echo hacked]",
    "a: !!python/name:os.system",
    "!!python/object:collections.OrderedDict {}",
    "a: !custom 1",
])
def test_unsafe_and_unknown_tags_are_refused(text: str) -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="could not determine a constructor"):
        safe_load(text)


def test_loader_subclass_adds_tags_and_stays_guarded() -> None:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!upper", lambda loader, node: loader.construct_scalar(node).upper())
    assert safe_load("a: !upper shout", Loader) == {"a": "SHOUT"}
    with pytest.raises(yaml.constructor.ConstructorError):
        safe_load("a: !upper shout")  # the default loader does not know the tag
    with pytest.raises(YAMLLimitError):
        safe_load(laughs(9), Loader)
    assert "!upper" not in yaml.SafeLoader.yaml_constructors  # the subclass did not leak into SafeLoader


@pytest.mark.parametrize("text, problem", [
    ("a: [1, 2", "expected ',' or ']'"),
    ("a: b: c", "mapping values are not allowed here"),
    ("? [1]\n: x", "found unhashable key"),
])
def test_syntax_errors_keep_their_mark(text: str, problem: str) -> None:
    with pytest.raises(yaml.MarkedYAMLError) as info:
        safe_load(text)
    assert problem in str(info.value.problem)
    assert info.value.problem_mark is not None


def test_limit_error_is_a_yaml_error_with_problem() -> None:
    exc = YAMLLimitError("why")
    assert isinstance(exc, yaml.YAMLError)
    assert (exc.problem, exc.problem_mark, str(exc)) == ("why", None, "why")


@pytest.mark.parametrize("text", [
    "example: {when: 2024-02-30}",
    "a: " + "9" * 5000,
    "a: !!int x",
    "a: !!bool maybe",
    "a: !!timestamp 2020-99-99",
])
def test_constructor_value_errors_are_yaml_errors(text: str) -> None:
    with pytest.raises(yaml.YAMLError):
        safe_load(text)


# -- budgets, duplicate keys, user files (issue #25) -------------------------------------------------------


@pytest.mark.parametrize("text, key, lines", [
    ("a: 1\nb: 2\na: 3\n", "a", (1, 3)),
    ("top:\n  x: 1\n  y: 2\n  x: 1\n", "x", (2, 4)),
    ("- {k: 1, k: 2}\n", "k", (1, 1)),
])
def test_duplicate_keys_are_refused_with_both_lines(text: str, key: str, lines: tuple[int, int]) -> None:
    assert yaml.safe_load(text) is not None  # plain safe_load keeps the last silently
    with pytest.raises(yaml.constructor.ConstructorError) as info:
        safe_load(text)
    assert info.value.problem == f"duplicate key '{key}' (lines {lines[0]} and {lines[1]}); keep one"
    assert safe_load(text, unique_keys=False) == yaml.safe_load(text)  # another tool's format, read as it reads it


def test_duplicate_key_lines_count_from_first_line_and_merge_keys_may_be_overridden() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match=r"lines 3 and 4"):
        safe_load("a: 1\na: 2\n", first_line=3)
    assert safe_load("base: &b {x: 1, y: 2}\nrun: {<<: *b, x: 3}\n")["run"] == {"x": 3, "y": 2}


def test_depth_and_size_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    ok = "[" * yamlsafe.MAX_DEPTH + "]" * yamlsafe.MAX_DEPTH
    assert safe_load(ok) is not None and yamlsafe.load_json(ok) is not None
    deeper = "[" * (yamlsafe.MAX_DEPTH + 1) + "]" * (yamlsafe.MAX_DEPTH + 1)
    with pytest.raises(YAMLLimitError, match="nested too deeply"):
        safe_load(deeper)
    for text in (deeper, "[" * 100_000 + "]" * 100_000):  # the second overflows json's C scanner
        with pytest.raises(ValueError, match=f"nested more than {yamlsafe.MAX_DEPTH} levels"):
            yamlsafe.load_json(text)
    monkeypatch.setattr(yamlsafe, "MAX_BYTES", 10)
    with pytest.raises(YAMLLimitError, match="longer than 10 characters"):
        safe_load("a: 12345678901")


def test_user_files_are_one_line_naming_the_file(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from t2t.errors import T2TError

    path = tmp_path / "f.yaml"
    path.write_bytes(b"\xef\xbb\xbfa: 1\n")  # a byte order mark is dropped
    assert yamlsafe.load_yaml_file(path) == {"a": 1}
    path.write_bytes(b"a: \xff\n")
    with pytest.raises(T2TError, match=r"f.yaml: not UTF-8 text \(invalid start byte at byte 3\)"):
        yamlsafe.load_yaml_file(path, what="--config")
    path.write_text("a: 1\nb: [\n", encoding="utf-8")
    with pytest.raises(T2TError, match=r"f.yaml:3: not valid YAML"):
        yamlsafe.load_yaml_file(path)
    path.write_text("{\"a\": " * 200 + "1" + "}" * 200, encoding="utf-8")
    with pytest.raises(T2TError, match=r"f.yaml: not valid JSON \(nested more than"):
        yamlsafe.load_json_file(path)
    with pytest.raises(T2TError, match=r"missing.yaml: no such file"):
        yamlsafe.read_text(tmp_path / "missing.yaml")
    monkeypatch.setattr(yamlsafe, "MAX_BYTES", 3)
    with pytest.raises(T2TError, match="larger than"):
        yamlsafe.read_text(path)


@pytest.mark.parametrize("value, check, message", [
    (["a", "b"], str, "'k' must be a path, got a list"),
    ("text", dict, "'k' must be a path, got a string"),
    (True, int, "'k' must be a path, got a boolean"),
    ({"a": 1}, lambda v: isinstance(v, list), "'k' must be a path, got a mapping"),
])
def test_expect_names_file_key_and_types(value: Any, check: Any, message: str) -> None:
    from t2t.errors import T2TError

    with pytest.raises(T2TError) as info:
        yamlsafe.expect(value, check, "f.yaml", "k", "a path")
    assert str(info.value) == f"f.yaml: {message}"
    assert yamlsafe.expect(3, int, "f", "k", "n") == 3


def test_config_files_refuse_duplicate_keys(tmp_path) -> None:
    from t2t.config import load_yaml
    from t2t.errors import T2TError

    path = tmp_path / "run.yaml"
    path.write_text("train:\n  max_steps: 10\n  lr: 0.1\n  max_steps: 20\n", encoding="utf-8")
    with pytest.raises(T2TError, match=r"--config .*run.yaml: not valid YAML: duplicate key 'max_steps' "
                                       r"\(lines 2 and 4\)"):
        load_yaml(str(path))
