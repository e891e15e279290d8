"""Hostile data files and rows (issue #16): every one is an error naming the file and the line, row or
field, never a traceback, never the text "None" trained and scored, never a silent fall-back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t2t.errors import T2TError, TaskFileError, run_cli
from t2t.tasks import cli
from t2t.tasks.sandbox import T2TSandbox
from t2t.tasks.sources import load_rows
from t2t.tasks.task import Task

GOOD = '{"x": "a", "label": 0}\n'


def task_over(folder: Path, data: bytes, suffix: str = ".jsonl", example: bool = True) -> Task:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"rows{suffix}").write_bytes(data)
    ex = "example: [{x: e, label: 0}]\n" if example else ""
    path = folder / "t.jinja"
    path.write_text(f"---\ncluster: demo\nsource: {{files: rows{suffix}}}\n{ex}---\n"
                    "{% block b %}\n{{ x }} ||| {{ label }}\n{% endblock %}\n")
    return Task(path, T2TSandbox([folder]))


def load_error(task: Task) -> str:
    with pytest.raises(T2TError) as info:
        load_rows(task, "train")
    return str(info.value)


def test_a_non_utf8_byte_names_the_file_and_line(tmp_path: Path) -> None:
    task = task_over(tmp_path, (GOOD + '{"x": "b\xff", "label": 1}\n').encode("latin-1"))
    message = load_error(task)
    assert message.startswith(f"task 't' ({task.path}): could not load split 'train' from files:")
    assert f"{tmp_path / 'rows.jsonl'}:2: not UTF-8 (byte 0xff at column 9)" in message


def test_a_non_utf8_csv_is_refused_too(tmp_path: Path) -> None:
    task = task_over(tmp_path, b"x,label\ncaf\xe9,0\n", suffix=".csv")
    assert f"{tmp_path / 'rows.csv'}:2: not UTF-8" in load_error(task)


@pytest.mark.parametrize("data, problem", [
    (b"", "rows.jsonl: the file is empty"),
    (b"[1, 2]\n[3, 4]\n", "rows.jsonl:1: a row must be a JSON object"),
    ((GOOD + '{"x": \n').encode(), "rows.jsonl:2: not a JSON value"),
    ((GOOD + '"just text"\n').encode(), "rows.jsonl:2: a row must be a JSON object"),
])
def test_broken_json_lines_name_the_file_and_line(tmp_path: Path, data: bytes, problem: str) -> None:
    message = load_error(task_over(tmp_path, data))
    assert f"{tmp_path}/{problem}" in message and f"task 't' ({tmp_path / 't.jinja'})" in message


def test_a_file_of_blank_lines_has_no_rows(tmp_path: Path) -> None:
    message = load_error(task_over(tmp_path, b"\n\n"))
    assert "rows.jsonl" in message and "no rows" in message


@pytest.mark.parametrize("row", [{"label": 1}, {"x": None, "label": 1}])
def test_a_missing_or_null_field_is_an_error_naming_file_row_and_field(tmp_path: Path, row: dict) -> None:
    # datasets fills a field missing from one row with None: printed, it would be the text "None".
    task = task_over(tmp_path, (GOOD + json.dumps(row) + "\n").encode())
    rows = load_rows(task, "train")
    assert task.render(rows[0], 0, "b").input == "a"
    with pytest.raises(TaskFileError) as info:
        task.render(rows[1], 1, "b")
    exc = info.value
    assert (exc.path, exc.row, exc.field, exc.template) == (str(task.path), 1, "x", "b")
    assert "null" in exc.detail and "None" not in str(exc.detail).split("(")[0]


def test_null_is_named_among_several_fields_by_the_template_that_prints_it(tmp_path: Path) -> None:
    path = tmp_path / "t.jinja"
    path.write_text("---\ncluster: demo\nsource: {generator: x}\n---\n"
                    "{% block b %}\n{{ q }} {{ c }} ||| {{ a }}\n{% endblock %}\n")
    task = Task(path, T2TSandbox([tmp_path]))
    with pytest.raises(TaskFileError) as info:
        task.render({"q": "Q", "c": None, "a": "A", "unused": None}, 7, "b")
    assert (info.value.row, info.value.field) == (7, "c")


def test_a_declared_default_renders_a_null_field(tmp_path: Path) -> None:
    path = tmp_path / "t.jinja"
    path.write_text("---\ncluster: demo\nsource: {generator: x}\n---\n"
                    "{% block b %}\n{{ x | default('n/a', true) }}{% if y is none %} (no y){% endif %} ||| ok\n"
                    "{% endblock %}\n")
    task = Task(path, T2TSandbox([tmp_path]))
    assert task.render({"x": None, "y": None}, 0, "b").input == "n/a (no y)"


def test_an_out_of_range_label_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "t.jinja"
    path.write_text('---\ncluster: demo\nsource: {generator: x}\nchoices: ["a", "b"]\n'
                    'answer: "{{ choices[label] }}"\n---\n{% block b %}\n{{ x }} ||| {{ answer }}\n{% endblock %}\n')
    task = Task(path, T2TSandbox([tmp_path]))
    with pytest.raises(TaskFileError) as info:
        task.render({"x": "q", "label": 5}, 12, "b")
    assert (info.value.row, info.value.field) == (12, "answer")
    assert "row 12" in str(info.value)


# -- python -m t2t.tasks render ---------------------------------------------------------------------

def render_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = run_cli(cli.main, ["render", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("data", [b"", b"[1, 2]\n", b"{broken\n", b'{"x": "\xff"}\n'])
def test_render_of_broken_local_data_is_an_error_not_the_example_rows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes) -> None:
    task_over(tmp_path / "tasks", data)
    code, err = render_cli(capsys, "t", "--task-dir", str(tmp_path / "tasks"), "--split", "train")
    assert code == 2
    assert "rows.jsonl" in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "rendering the file's example rows instead" not in err


def test_render_n_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task_over(tmp_path / "tasks", GOOD.encode())
    for n in ("-2", "0"):
        code, err = render_cli(capsys, "t", "--task-dir", str(tmp_path / "tasks"), "--n", n, "--split", "example")
        assert code == 2 and f"--n {n}" in err


def test_render_of_an_unreachable_hub_dataset_still_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "h.jinja"
    path.write_text("---\ncluster: demo\nsource: {hf: nobody/nothing}\nexample: [{x: e, label: 0}]\n---\n"
                    "{% block b %}\n{{ x }} ||| {{ label }}\n{% endblock %}\n")
    task = Task(path, T2TSandbox([tmp_path]))

    def offline(task: Task, split: str) -> None:
        raise T2TError("could not load split 'validation' from hf:nobody/nothing: ConnectionError: offline")

    monkeypatch.setattr("t2t.tasks.sources.load_rows", offline)
    rows, used = cli.preview_rows(task, "validation", 3)
    assert used == "example" and rows == [{"x": "e", "label": 0}]
    assert "rendering the file's example rows instead" in capsys.readouterr().err


def test_an_over_long_render_names_the_row(tmp_path: Path) -> None:
    task = task_over(tmp_path, (GOOD + json.dumps({"x": "y" * 200_000, "label": 1}) + "\n").encode())
    rows = load_rows(task, "train")
    with pytest.raises(TaskFileError) as info:
        task.render(rows[1], 1, "b")
    assert info.value.row == 1 and "output longer than" in str(info.value)
