"""t2t.tasks.registry: where task files are found, in which order, and what a registry answers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from t2t.errors import T2TError, TaskFileError, TaskFilesError
from t2t.tasks import registry as registry_module
from t2t.tasks.registry import BUILTIN_TEMPLATES, TaskRegistry, find_task_files, suggest, task_dirs

REPO = Path(__file__).resolve().parents[2]


def task_text(cluster: str, name: str | None = None, body: str = "{{ x }} ||| {{ x }}") -> str:
    name_line = f"name: {name}\n" if name else ""
    return f"---\n{name_line}cluster: {cluster}\nsource: {{generator: arith_sum}}\n---\n" \
           f"{{% block t %}}\n{body}\n{{% endblock %}}\n"


def write(folder: Path, rel: str, text: str) -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def no_task_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T2T_TASK_PATH", raising=False)


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    env_a, env_b, flag = tmp_path / "env_a", tmp_path / "env_b", tmp_path / "flag"
    write(env_a, "zeta.jinja", task_text("qa"))
    write(env_b, "beta.jinja", task_text("nli"))
    write(flag, "alpha.jinja", task_text("qa"))
    write(flag, "nested/deeper/gamma.jinja", task_text("topic"))
    return {"env_a": env_a, "env_b": env_b, "flag": flag}


def test_builtin_folder_is_the_repositorys_templates() -> None:
    assert BUILTIN_TEMPLATES.resolve() == (REPO / "templates").resolve()


def test_search_order_builtin_then_env_then_flags(folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T2T_TASK_PATH", os.pathsep.join([str(folders["env_a"]), "", str(folders["env_b"])]))
    dirs = task_dirs([folders["flag"]])
    assert dirs == [BUILTIN_TEMPLATES, folders["env_a"], folders["env_b"], folders["flag"]]
    assert task_dirs([folders["flag"]], include_builtin=False) == [folders["env_a"], folders["env_b"],
                                                                    folders["flag"]]
    # The registry holds the tasks in that order (each folder's files sorted), not sorted by name.
    reg = TaskRegistry.load([folders["flag"]], include_builtin=False)
    assert [t.name for t in reg] == ["zeta", "beta", "alpha", "gamma"]
    assert reg.names() == ["alpha", "beta", "gamma", "zeta"]
    full = TaskRegistry.load([folders["flag"]])
    order = [t.name for t in full]
    assert order[-4:] == ["zeta", "beta", "alpha", "gamma"]
    assert "sentiment_movie" in order[:-4] and len(full) == len(order) > 4


def test_a_folder_given_twice_is_searched_once(folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert task_dirs([REPO / "templates"]) == [BUILTIN_TEMPLATES]
    monkeypatch.setenv("T2T_TASK_PATH", str(folders["flag"]))
    same = folders["flag"] / ".." / "flag"
    assert task_dirs([same, folders["flag"]], include_builtin=False) == [folders["flag"]]
    # No duplicate-task error from loading one folder twice.
    assert TaskRegistry.load([same], include_builtin=False).names() == ["alpha", "gamma"]


def test_missing_folder_says_where_it_came_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(T2TError) as info:
        task_dirs([missing])
    assert str(info.value) == f"task folder '{missing}' does not exist (from --task-dir or T2T_TASK_PATH)"
    monkeypatch.setenv("T2T_TASK_PATH", str(missing))
    with pytest.raises(T2TError, match="task folder '.*nope' does not exist"):
        TaskRegistry.load(include_builtin=False)


def test_underscore_folders_are_not_tasks(tmp_path: Path) -> None:
    root = tmp_path / "_my_tasks"  # the root's own name does not count
    write(root, "a.jinja", task_text("qa"))
    write(root, "_lib/macros.jinja", "{% macro m() %}broken, not a task{% endmacro %}")
    write(root, "x/_private/b.jinja", "not a task file at all")
    write(root, "x/c.jinja", task_text("qa"))
    write(root, "_d.jinja", task_text("qa"))  # a file's own name may start with '_'
    write(root, "notes.txt", "not jinja")
    assert [p.relative_to(root).as_posix() for p in find_task_files(root)] == ["_d.jinja", "a.jinja", "x/c.jinja"]
    assert find_task_files(root / "a.jinja") == [root / "a.jinja"]
    assert TaskRegistry.load([root], include_builtin=False).names() == ["_d", "a", "c"]


def test_builtin_tasks_and_include_builtin_false(folders: dict[str, Path]) -> None:
    builtin = TaskRegistry.load()
    assert {"sentiment_movie", "arith_sum", "rte"} <= set(builtin.names())
    assert "flan" not in builtin  # templates/_lib/flan.jinja holds macros
    assert len(builtin) == len(find_task_files(BUILTIN_TEMPLATES))
    own = TaskRegistry.load([folders["flag"]], include_builtin=False)
    assert own.names() == ["alpha", "gamma"] and "sentiment_movie" not in own
    assert TaskRegistry.load(include_builtin=False).names() == []


def test_user_tasks_import_builtin_macros_without_builtin_tasks(tmp_path: Path) -> None:
    write(tmp_path / "t", "joined.jinja", task_text(
        "qa", body='{% import "_lib/flan.jinja" as flan %}{{ flan.join_and(items) }} ||| ok'))
    reg = TaskRegistry.load([tmp_path / "t"], include_builtin=False)
    assert reg.get("joined").render({"items": ["a", "b", "c"]}).input == "a, b and c"


def test_duplicate_task_names_name_both_files(tmp_path: Path) -> None:
    first = write(tmp_path / "one", "same.jinja", task_text("qa"))
    second = write(tmp_path / "two", "same.jinja", task_text("nli"))
    with pytest.raises(TaskFileError) as info:
        TaskRegistry.load([tmp_path / "one", tmp_path / "two"], include_builtin=False)
    assert (info.value.path, info.value.task) == (str(second), "same")
    assert str(info.value) == (f"{second}, task 'same': duplicate task name, also defined in {first}; rename one "
                               "(name: field or file name)")
    # Same through the name: field, and against a built-in task.
    write(tmp_path / "three", "other.jinja", task_text("qa", name="sentiment_movie"))
    with pytest.raises(TaskFileError, match=r"task 'sentiment_movie': duplicate task name, also defined in "
                                            r".*templates[/\\]offline[/\\]sentiment_movie\.jinja"):
        TaskRegistry.load([tmp_path / "three"])


def test_unknown_name_suggests_the_nearest(folders: dict[str, Path]) -> None:
    reg = TaskRegistry.load([folders["flag"]])
    with pytest.raises(T2TError) as info:
        reg.get("sentiment_moive")
    message = str(info.value)
    assert message.startswith("unknown task 'sentiment_moive'; did you mean sentiment_movie")
    assert message.endswith("(list them with: python -m t2t.tasks list)")
    with pytest.raises(T2TError) as info:
        reg.get("qqqqqqqqqqqqqqqqqq")
    assert str(info.value) == "unknown task 'qqqqqqqqqqqqqqqqqq' (list them with: python -m t2t.tasks list)"
    assert suggest("alpah", ["alpha", "beta", "alps", "zzz"]) == "; did you mean alpha, alps?"
    assert suggest("x", ["alpha"]) == ""


def test_by_cluster_clusters_names(folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T2T_TASK_PATH", str(folders["env_a"]))
    reg = TaskRegistry.load([folders["flag"]], include_builtin=False)
    assert reg.names() == ["alpha", "gamma", "zeta"]
    assert reg.clusters() == ["qa", "topic"]
    assert [t.name for t in reg.by_cluster("qa")] == ["alpha", "zeta"]  # sorted, though zeta loaded first
    assert [t.name for t in reg.by_cluster("topic")] == ["gamma"]
    assert "alpha" in reg and "beta" not in reg and len(reg) == 3
    assert reg.get("zeta").path == folders["env_a"] / "zeta.jinja"
    with pytest.raises(T2TError) as info:
        reg.by_cluster("topc")
    assert str(info.value) == "unknown cluster 'topc'; did you mean topic? (clusters: qa, topic)"


def test_broken_files_are_all_reported(tmp_path: Path) -> None:
    root = tmp_path / "t"
    write(root, "good.jinja", task_text("qa"))
    write(root, "no_cluster.jinja", "---\nsource: {generator: arith_sum}\n---\n{% block a %}x ||| y{% endblock %}\n")
    write(root, "no_blocks.jinja", "---\ncluster: qa\nsource: {generator: arith_sum}\n---\nnothing\n")
    with pytest.raises(TaskFilesError) as info:
        TaskRegistry.load([root], include_builtin=False)
    assert len(info.value.errors) == 2
    message = str(info.value)
    assert message.startswith("2 task file error(s): ")
    assert f"{root / 'no_blocks.jinja'}:5" in message and f"{root / 'no_cluster.jinja'}" in message
    # With an errors list the good tasks are kept and the broken ones collected.
    errors: list[T2TError] = []
    reg = TaskRegistry.load([root], include_builtin=False, errors=errors)
    assert reg.names() == ["good"]
    assert sorted(Path(e.path).name for e in errors) == ["no_blocks.jinja", "no_cluster.jinja"]
    # One broken file raises its own error, not a list of one.
    (root / "no_blocks.jinja").unlink()
    with pytest.raises(TaskFileError) as one:
        TaskRegistry.load([root], include_builtin=False)
    assert one.value.field == "cluster" and not isinstance(one.value, TaskFilesError)


def test_paths_restrict_loading(folders: dict[str, Path], tmp_path: Path) -> None:
    reg = TaskRegistry.load([folders["flag"]], include_builtin=False,
                            paths=[folders["flag"] / "nested", folders["env_b"] / "beta.jinja"])
    assert reg.names() == ["beta", "gamma"]
    missing = tmp_path / "missing.jinja"
    with pytest.raises(T2TError) as info:
        TaskRegistry.load(include_builtin=False, paths=[missing])
    assert str(info.value) == f"{missing}: no such file or folder"


def test_nothing_is_loaded_at_import() -> None:
    assert not any(isinstance(v, TaskRegistry) for v in vars(registry_module).values())
