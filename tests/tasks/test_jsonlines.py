"""Rows of local JSON Lines files read by byte offset: the same rows as through ``datasets``, or None."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t2t.tasks.jsonlines import count_rows, index, open_rows
from t2t.tasks.registry import TaskRegistry
from t2t.tasks.sources import lazy_rows, load_rows, num_rows


@pytest.fixture(autouse=True)
def no_download_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_offsets_skip_blank_lines_and_end_with_the_size(tmp_path: Path) -> None:
    data = b'{"a": 1}\n\n  {"a": 2}\r\n \t\n{"a": 3}'
    offsets = index(write(tmp_path / "r.jsonl", data))
    assert offsets.tolist() == [0, 10, 25, len(data)]
    assert [json.loads(data[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)] == [
        {"a": 1}, {"a": 2}, {"a": 3}]


@pytest.mark.parametrize("data", [b'{"a": "\xff"}\n', b'{"a": 1}\n[1, 2]\n', b'{"a": "\\ud800"}\n'])
def test_what_datasets_must_judge_has_no_index(tmp_path: Path, data: bytes) -> None:
    assert index(write(tmp_path / "r.jsonl", data)) is None
    assert count_rows([str(tmp_path / "r.jsonl")]) is None


@pytest.mark.parametrize("rows, lazy", [
    ([{"x": "a", "n": 1, "l": ["p"]}, {"x": "b", "n": None, "l": []}], True),
    ([{"x": "a", "f": 1.5, "b": True}, {"x": None, "f": 2.0, "b": False}], True),
    ([{"x": "a", "n": 1}, {"x": "b", "n": 2.5}], False),       # Arrow: 1 -> 1.0
    ([{"x": "a"}, {"x": "b", "y": 1}], False),                 # Arrow: y None in row 0
    ([{"x": {"k": 1}}, {"x": {"j": 2}}], False),               # Arrow: the union of nested keys
    ([{"x": ["a", 1]}], False),
    ([{"x": 2 ** 70}], False),
])
def test_rows_are_read_lazily_only_where_they_equal_datasets(tmp_path: Path, rows: list, lazy: bool) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "t.jinja").write_text("---\ncluster: demo\nsource: {files: data/r.jsonl}\n---\n"
                                      "{% block b %}\n{{ x }} ||| x\n{% endblock %}\n")
    task = TaskRegistry.load(include_builtin=False, paths=[tmp_path / "t.jinja"]).get("t")
    got = lazy_rows(task, "train")
    assert (got is not None) == lazy
    if lazy:
        assert list(got) == load_rows(task, "train").to_list()


def test_several_files_in_order_with_limits(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for k, n in ((1, 3), (2, 4), (3, 2)):
        (tmp_path / "data" / f"part-{k}.jsonl").write_text(
            "".join(json.dumps({"x": f"{k}-{i}"}) + "\n" for i in range(n)))
    (tmp_path / "t.jinja").write_text("---\ncluster: demo\nsource: {files: data/part-*.jsonl}\nlimit: {train: 6}\n"
                                      "---\n{% block b %}\n{{ x }} ||| x\n{% endblock %}\n")
    task = TaskRegistry.load(include_builtin=False, paths=[tmp_path / "t.jinja"]).get("t")
    eager = load_rows(task, "train").to_list()
    assert list(lazy_rows(task, "train")) == eager and num_rows(task, "train") == 6
    assert list(lazy_rows(task, "train", limit=4)) == eager[:4]
    rows = open_rows(sorted(str(p) for p in (tmp_path / "data").glob("*.jsonl")))
    assert len(rows) == 9 and rows[-1] == {"x": "3-1"} and rows[3:5] == [{"x": "2-0"}, {"x": "2-1"}]
    with pytest.raises(IndexError):
        rows[9]
