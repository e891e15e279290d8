"""``python -m t2t.tasks check`` on tasks with local data: missing files named with the fix, and the first rows
of every split rendered through every template, the first failing row named."""

from __future__ import annotations

import json
from pathlib import Path

from t2t.errors import run_cli
from t2t.tasks.cli import main

BODY = "{% block plain %}\n{{ text }}\n|||\n{{ label }}\n{% endblock %}\n"


def write_task(folder: Path, name: str, source: str, example: str = "{text: an example, label: pos}") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jinja"
    path.write_text(f"---\ncluster: demo\nsource: {source}\nexample: {example}\n---\n{BODY}", encoding="utf-8")
    return path


def check(*paths: Path) -> int:
    return run_cli(main, ["check", *map(str, paths)])


def test_missing_data_file_is_named_with_the_fix(tmp_path: Path, capsys) -> None:
    write_task(tmp_path, "gone", "{files: {train: data/gone.jsonl}}")
    assert check(tmp_path) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "data" / "gone.jsonl") in err and "relative to the task file's folder" in err


def test_first_rows_of_local_files_are_rendered_and_a_bad_row_named(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"text": "good", "label": "pos"}, {"text": "fine", "label": "neg"}, {"label": "pos"}]
    (data / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (data / "c.csv").write_text("text,label\nfirst,pos\nsecond,neg\n", encoding="utf-8")
    write_task(tmp_path, "t", "{files: {train: data/t.jsonl}}")
    write_task(tmp_path, "c", "{files: {train: data/c.csv}}")
    assert check(tmp_path / "c.jinja") == 0
    assert "3 renders" in capsys.readouterr().out  # the example row and the file's two rows
    assert check(tmp_path / "t.jinja") == 2  # the example row renders; the file's row 2 lacks 'text'
    err = capsys.readouterr().err
    assert "template 'plain', row 2, field 'text'" in err and err.endswith("(in split 'train')\n")
    assert err.count("\n") == 1


def test_hub_sources_are_not_opened(tmp_path: Path, capsys) -> None:
    write_task(tmp_path, "h", "{hf: no_such/dataset_offline}")
    assert check(tmp_path) == 0
    assert "1 renders" in capsys.readouterr().out
