"""t2t.tasks.sources: the rows of a task split from local files, built-in generators or the hub (mocked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest

from t2t.errors import T2TError
from t2t.tasks import generators
from t2t.tasks.sandbox import T2TSandbox
from t2t.tasks.sources import DEFAULT_SIZES, load_rows, num_rows
from t2t.tasks.task import Task

ROWS = [{"x": f"row {i}", "label": i % 2} for i in range(5)]


@pytest.fixture(autouse=True)
def no_download_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)


def make_task(folder: Path, front: str, name: str = "t") -> Task:
    path = folder / f"{name}.jinja"
    path.write_text(f"---\ncluster: demo\n{front.strip()}\n---\n{{% block b %}}\n{{{{ x }}}} ||| {{{{ label }}}}\n"
                    "{% endblock %}\n")
    return Task(path, T2TSandbox([folder]))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        write_jsonl(path, rows)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".csv":
        path.write_text("x,label\n" + "".join(f"{r['x']},{r['label']}\n" for r in rows))
    else:
        datasets.Dataset.from_list(rows).to_parquet(str(path))


def error_of(task: Task, split: str) -> str:
    with pytest.raises(T2TError) as info:
        load_rows(task, split)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- local files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", ["jsonl", "json", "csv", "parquet"])
def test_rows_from_each_file_format(tmp_path: Path, ext: str) -> None:
    write_rows(tmp_path / "data" / f"rows.{ext}", ROWS)
    task = make_task(tmp_path, f"source: {{files: data/rows.{ext}}}")
    ds = load_rows(task, "train")
    assert isinstance(ds, datasets.Dataset)
    assert ds.to_list() == ROWS
    assert load_rows(task, "test").to_list() == ROWS  # one file (not per split): every default split reads it


def test_format_field_reads_any_extension(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "rows.txt", ROWS)
    assert load_rows(make_task(tmp_path, "source: {files: data/rows.txt, format: json}"), "train").to_list() == ROWS
    task = make_task(tmp_path, "source: {files: data/rows.txt}")
    assert error_of(task, "train") == (
        f"{task.path}: task 't', field 'source.files': cannot tell the format of '{tmp_path / 'data' / 'rows.txt'}'; "
        "use .json, .jsonl, .csv or .parquet, or set source.format")
    assert "cannot tell the format" in error_of(make_task(tmp_path, "source: {files: data/rows.txt, format: xml}"),
                                                "train")


def test_per_split_files_and_splits_mapping(tmp_path: Path) -> None:
    train = [{"x": f"train {i}", "label": 0} for i in range(4)]
    dev = [{"x": f"dev {i}", "label": 1} for i in range(2)]
    write_jsonl(tmp_path / "data" / "train.jsonl", train)
    write_jsonl(tmp_path / "data" / "dev.jsonl", dev)
    files = "source: {files: {train: data/train.jsonl, dev: data/dev.jsonl}}"
    mapped = make_task(tmp_path, files + "\nsplits: {train: train, validation: dev}")
    assert load_rows(mapped, "train").to_list() == train
    assert load_rows(mapped, "validation").to_list() == dev
    # Without splits the split names are the keys of source.files.
    unmapped = make_task(tmp_path, files, name="u")
    assert unmapped.splits == {"train": "train", "dev": "dev"}
    assert load_rows(unmapped, "dev").to_list() == dev
    assert error_of(unmapped, "validation") == (
        f"task 'u' has no split 'validation' (splits: train, dev; see the 'splits' field of {unmapped.path})")


def test_split_without_a_file(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", ROWS)
    task = make_task(tmp_path, "source: {files: {train: data/train.jsonl}}\nsplits: {train: train, test: heldout}")
    assert error_of(task, "test") == (f"{task.path}: task 't' has no file for split 'heldout' in source.files "
                                      "(splits there: train)")


def test_glob_patterns_and_lists_concatenate_in_order(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "part-2.jsonl", ROWS[3:])
    write_jsonl(tmp_path / "data" / "part-1.jsonl", ROWS[:3])
    write_jsonl(tmp_path / "data" / "extra.jsonl", [{"x": "extra", "label": 1}])
    globbed = make_task(tmp_path, "source: {files: {train: data/part-*.jsonl}}")
    assert load_rows(globbed, "train").to_list() == ROWS  # matches sorted: part-1 before part-2
    listed = make_task(tmp_path, "source: {files: [data/extra.jsonl, data/part-*.jsonl]}", name="l")
    assert load_rows(listed, "validation").to_list() == [{"x": "extra", "label": 1}, *ROWS]


def test_missing_file_names_the_pattern(tmp_path: Path) -> None:
    task = make_task(tmp_path, "source: {files: {train: data/nothing-*.jsonl}}")
    assert error_of(task, "train") == (f"{task.path}: task 't', field 'source.files': no file matches "
                                       f"'{tmp_path / 'data' / 'nothing-*.jsonl'}'; paths are relative to the "
                                       f"task file's folder ({tmp_path}): fix the path or put the file there")


@pytest.mark.parametrize("name, content", [
    ("bad.jsonl", '{"x": "a", "label": 0}\nnot json at all\n'),
    ("bad.csv", 'x,label\n"unterminated,0\na,1,extra,fields\n'),
    ("bad.parquet", "this is not parquet"),
    ("empty.jsonl", ""),
])
def test_bad_file_is_a_one_line_t2t_error(tmp_path: Path, name: str, content: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / name).write_text(content)
    task = make_task(tmp_path, f"source: {{files: data/{name}}}")
    message = error_of(task, "train")
    assert message.startswith(f"task 't' ({task.path}): could not load split 'train' from "
                              f"files:{(tmp_path / 'data' / name).resolve()}: ")


def test_limit_caps_each_split(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "rows.jsonl", ROWS)
    task = make_task(tmp_path, "source: {files: data/rows.jsonl}\nlimit: {train: 3, test: 50}")
    assert load_rows(task, "train").to_list() == ROWS[:3]  # the first rows, in file order
    assert load_rows(task, "test").to_list() == ROWS  # a cap above the size changes nothing
    assert load_rows(task, "validation").to_list() == ROWS  # no cap
    assert (num_rows(task, "train"), num_rows(task, "test"), num_rows(task, "validation")) == (3, 5, 5)


# -- generators ---------------------------------------------------------------------------------------

def test_generator_rows_with_sizes_seed_and_splits(tmp_path: Path) -> None:
    task = make_task(tmp_path, "source: {generator: arith_sum, sizes: {train: 30, test: 7}, seed: 3}\n"
                               "splits: {train: train, validation: test}\nlimit: {train: 20}")
    gen = generators.get_generator("arith_sum")
    assert load_rows(task, "train").to_list() == gen("train", 30, 3)[:20]
    assert load_rows(task, "validation").to_list() == gen("test", 7, 3)  # t2t validation <- generator test
    assert load_rows(task, "validation").to_list() == load_rows(task, "validation").to_list()  # deterministic
    assert error_of(task, "test").startswith("task 't' has no split 'test' (splits: train, validation;")
    # Without sizes: the default sizes; seed 0.
    default = make_task(tmp_path, "source: {generator: word_last}", name="d")
    assert load_rows(default, "validation").to_list() == generators.get_generator("word_last")(
        "validation", DEFAULT_SIZES["validation"], 0)


@pytest.mark.parametrize("front, split, message", [
    ("source: {generator: arith_sun}", "train",
     "task 't', field 'source.generator': unknown generator 'arith_sun' in source.generator; did you mean arith_sum"),
    ("source: {generator: arith_sum, sizes: {dev: 5}}\nsplits: {train: dev}", "train",
     "task 't', field 'source.generator': generator 'arith_sum' has splits train, validation, test, not 'dev'"),
    ("source: {generator: arith_sum}\nsplits: {train: dev}", "train",
     "task 't': generator has no size for split 'dev' (source.sizes: "),
    ("source: {generator: arith_sum, sizes: {test: 500}}", "test",
     "task 't', field 'source.generator': generator 'arith_sum' has only "),
])
def test_generator_errors_name_the_task_and_field(tmp_path: Path, front: str, split: str, message: str) -> None:
    task = make_task(tmp_path, front)
    got = error_of(task, split)
    assert got.startswith(f"{task.path}: {message}")


def test_num_rows_of_a_generator_needs_no_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = make_task(tmp_path, "source: {generator: word_last, sizes: {train: 40, validation: 9}}\n"
                               "limit: {train: 25}")
    expected = {"train": 25, "validation": 9, "test": DEFAULT_SIZES["test"]}
    assert {s: len(load_rows(task, s)) for s in expected} == expected

    def no_generation(name: str):
        raise AssertionError("num_rows generated rows")

    monkeypatch.setattr(generators, "get_generator", no_generation)
    assert {s: num_rows(task, s) for s in expected} == expected
    with pytest.raises(T2TError, match="has no split 'dev'"):
        num_rows(task, "dev")


@pytest.mark.parametrize("front", ["source: {generator: arith_sum}\nsplits: {train: dev}",
                                   "source: {generator: no_such_generator}"])
def test_num_rows_refuses_what_load_rows_refuses(tmp_path: Path, front: str) -> None:
    task = make_task(tmp_path, front)
    with pytest.raises(T2TError) as loading:
        load_rows(task, "train")
    with pytest.raises(T2TError) as counting:
        num_rows(task, "train")
    assert str(counting.value) == str(loading.value)


# -- hub datasets (datasets.load_dataset mocked: no network) ------------------------------------------

@pytest.fixture
def hub_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple, dict]]:
    calls: list[tuple[tuple, dict]] = []

    def fake_load_dataset(*args: Any, **kwargs: Any) -> datasets.Dataset:
        calls.append((args, kwargs))
        return datasets.Dataset.from_list(ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


def test_hub_source_arguments_and_no_remote_code(tmp_path: Path, hub_calls: list) -> None:
    task = make_task(tmp_path, "source: {hf: super_glue, config: rte}\nsplits: {validation: dev}\n"
                               "limit: {validation: 2}")
    assert load_rows(task, "validation").to_list() == ROWS[:2]
    assert hub_calls == [(("super_glue", "rte"), {"split": "dev"})]  # trust_remote_code is never passed
    full = make_task(tmp_path, "source: {hf: org/ds, revision: v1.0, data_dir: sub, trust_remote_code: true}",
                     name="full")
    load_rows(full, "train")
    assert hub_calls[-1] == (("org/ds", None), {"split": "train", "revision": "v1.0", "data_dir": "sub",
                                                "trust_remote_code": True})
    off = make_task(tmp_path, "source: {hf: org/ds, trust_remote_code: false}", name="off")
    load_rows(off, "test")
    assert "trust_remote_code" not in hub_calls[-1][1]


def test_unreachable_hub_dataset_is_a_t2t_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    task = make_task(tmp_path, "source: {hf: t2t-tests/no-such-dataset}")
    message = error_of(task, "train")
    assert message.startswith(f"task 't' ({task.path}): could not load split 'train' from "
                              "hf:t2t-tests/no-such-dataset: ")


def test_loading_switches_download_counts_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", True)
    load_rows(make_task(tmp_path, "source: {generator: arith_sum, sizes: {train: 2}}"), "train")
    assert datasets.config.HF_UPDATE_DOWNLOAD_COUNTS is False
