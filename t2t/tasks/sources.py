"""Rows for a task split, through `datasets`: hub datasets, local files, or built-in generators.

Nothing is loaded until a split is asked for. Remote code is never trusted unless the task file says
``trust_remote_code: true`` explicitly. Local JSON Lines files are counted (:func:`num_rows`) and, for the
mixture stream, read row by row (:func:`lazy_rows`) without ``datasets`` (:mod:`t2t.tasks.jsonlines`):
``datasets`` is imported (~2 s) only when a split goes through it.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2t.errors import T2TError
from t2t.tasks.generators import _check_args, get_generator
from t2t.tasks.jsonlines import JsonLinesRows, count_rows, open_rows
from t2t.tasks.task import Task

if TYPE_CHECKING:
    import datasets

DEFAULT_SIZES = {"train": 2000, "validation": 200, "test": 200}
_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def _files_for(task: Task, source_split: str) -> tuple[str, list[str]]:
    files = task.source["files"]
    if isinstance(files, dict):
        if source_split not in files:
            raise T2TError(f"{task.path}: task '{task.name}' has no file for split '{source_split}' in "
                           f"source.files (splits there: {', '.join(map(str, files))})")
        patterns = files[source_split]
    else:
        patterns = files
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    paths: list[str] = []
    for pattern in patterns:
        full = str(task.path.parent / str(pattern))
        matched = sorted(glob.glob(full))
        if not matched:
            raise T2TError(f"{task.path}: task '{task.name}', field 'source.files': no file matches '{full}'; "
                           f"paths are relative to the task file's folder ({task.path.parent}): fix the path "
                           "or put the file there")
        paths += matched
    fmt = task.source.get("format") or _FORMATS.get(Path(paths[0]).suffix.lower())
    if fmt not in set(_FORMATS.values()):
        raise T2TError(f"{task.path}: task '{task.name}', field 'source.files': cannot tell the format of "
                       f"'{paths[0]}'; use .json, .jsonl, .csv or .parquet, or set source.format")
    return fmt, paths


def _text_file_problem(path: str) -> str | None:
    """A text data file must be UTF-8 (``datasets`` would load a bad byte and fail only when its row is
    read), and every line of a ``.jsonl`` file a JSON object (``datasets`` reads a file of arrays as one
    column ``text``). One pass over the bytes, no parsing."""
    jsonl = Path(path).suffix.lower() == ".jsonl"
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return (f"{path}:{number}: not UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1}); "
                            "data files are read as UTF-8: re-encode the file")
                head = line.lstrip()[:1]
                if jsonl and head and head != b"{":
                    return f"{path}:{number}: a row must be a JSON object {{\"field\": ...}} on one line (JSON Lines)"
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    return None


def _json_lines_problem(path: str) -> str | None:
    """Why a JSON Lines file does not load, naming its first bad line (None if every line is an object)."""
    rows = 0
    with open(path, encoding="utf-8") as f:
        first = f.read(1)
        if first.lstrip() == "" and not f.read(1):
            return f"{path}: the file is empty"
        f.seek(0)
        if first == "[" and Path(path).suffix.lower() != ".jsonl":
            return None  # one JSON array, not JSON Lines: datasets' own message stands
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                return f"{path}:{number}: not a JSON value ({exc.msg if hasattr(exc, 'msg') else exc})"
            if not isinstance(value, dict):
                return f"{path}:{number}: a row must be a JSON object {{\"field\": ...}}, got {type(value).__name__}"
            rows += 1
    return None if rows else f"{path}: no rows (only blank lines)"


def _innermost(exc: BaseException) -> str:
    """The first line of the deepest cause of a ``datasets`` error (its own is often only 'An error
    occurred while generating the dataset')."""
    seen = exc
    while (seen.__cause__ or seen.__context__) is not None and seen is not (seen.__cause__ or seen.__context__):
        seen = seen.__cause__ or seen.__context__
    text = str(seen).splitlines()[0] if str(seen) else ""
    return f"{type(seen).__name__}: {text}" if seen is not exc else f"{type(exc).__name__}: {text}"


def _generator_plan(task: Task, source_split: str) -> tuple[Any, int, int]:
    """(generator, rows, seed) of a generator split, checked as generating it would check: the same
    errors for :func:`load_rows` and :func:`num_rows`, without generating anything."""
    src = task.source
    sizes = {**DEFAULT_SIZES, **(src.get("sizes") or {})}
    if source_split not in sizes:
        raise T2TError(f"{task.path}: task '{task.name}': generator has no size for split '{source_split}' "
                       f"(source.sizes: {sizes})")
    try:
        fn = get_generator(str(src["generator"]))
        n, seed = int(sizes[source_split]), int(src.get("seed", 0))
        _check_args(str(src["generator"]), source_split, n)
    except T2TError as exc:
        raise T2TError(f"{task.path}: task '{task.name}', field 'source.generator': {exc}") from None
    except (TypeError, ValueError) as exc:
        raise T2TError(f"{task.path}: task '{task.name}', field 'source': bad generator settings: {exc}") from None
    return fn, n, seed


def _generated(task: Task, source_split: str) -> datasets.Dataset:
    import datasets

    fn, n, seed = _generator_plan(task, source_split)
    try:
        rows = fn(source_split, n, seed)
    except T2TError as exc:
        raise T2TError(f"{task.path}: task '{task.name}', field 'source.generator': {exc}") from None
    except (TypeError, ValueError) as exc:
        raise T2TError(f"{task.path}: task '{task.name}', field 'source': bad generator settings: {exc}") from None
    return datasets.Dataset.from_list(rows)


def load_rows(task: Task, split: str) -> datasets.Dataset:
    """The rows of one split of a task (after its per-split ``limit``)."""
    import datasets

    # Loading local files must not ping the hub for download counts (it stalls offline).
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    if split not in task.splits:
        raise T2TError(f"task '{task.name}' has no split '{split}' (splits: {', '.join(task.splits)}; "
                       f"see the 'splits' field of {task.path})")
    source_split = task.splits[split]
    src = task.source
    try:
        if "generator" in src:
            ds = _generated(task, source_split)
        elif "files" in src:
            fmt, paths = _files_for(task, source_split)
            cannot = f"task '{task.name}' ({task.path}): could not load split '{split}' from {task.source_id}"
            problems = [p for p in map(_text_file_problem, paths if fmt in ("json", "csv") else ()) if p]
            if problems:
                raise T2TError(f"{cannot}: {problems[0]}")
            try:
                ds = datasets.load_dataset(fmt, data_files={source_split: paths}, split=source_split)
            except Exception as exc:
                problems = [p for p in map(_json_lines_problem, paths if fmt == "json" else ()) if p]
                if problems:
                    raise T2TError(f"{cannot}: {problems[0]}") from exc
                raise
            if len(ds) == 0:
                raise T2TError(f"{cannot}: no rows in {', '.join(paths)}")
        else:
            kwargs: dict[str, Any] = {"split": source_split}
            if src.get("revision"):
                kwargs["revision"] = src["revision"]
            if src.get("data_dir"):
                kwargs["data_dir"] = src["data_dir"]
            if src.get("trust_remote_code"):
                kwargs["trust_remote_code"] = True
            ds = datasets.load_dataset(src["hf"], src.get("config"), **kwargs)
    except T2TError:
        raise
    except Exception as exc:  # the datasets library raises many kinds; all mean "could not load"
        raise T2TError(f"task '{task.name}' ({task.path}): could not load split '{split}' from "
                       f"{task.source_id}: {_innermost(exc)}") from exc
    limit = task.limit.get(split)
    if limit is not None and len(ds) > limit:
        ds = ds.select(range(limit))
    return ds


def _json_lines(task: Task, split: str) -> list[str] | None:
    """The files of a split if they are all local JSON Lines files (else None: ``datasets`` reads them)."""
    if split not in task.splits or "files" not in task.source or "generator" in task.source:
        return None
    fmt, paths = _files_for(task, task.splits[split])
    return paths if fmt == "json" and all(Path(p).suffix.lower() == ".jsonl" for p in paths) else None


def lazy_rows(task: Task, split: str, limit: int | None = None) -> JsonLinesRows | None:
    """The rows of a split of local JSON Lines files, each parsed when read, equal to ``load_rows``'s
    (first ``limit`` rows after the task's own limit); None where only ``load_rows`` can read them."""
    paths = _json_lines(task, split)
    if paths is None:
        return None
    limits = [n for n in (task.limit.get(split), limit) if n is not None]
    return open_rows(paths, min(limits) if limits else None)


def first_rows(task: Task, split: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows of a split of a generator or of local files (for ``tasks check``): JSON Lines
    read line by line, other files through ``datasets``, a generator's split generated in full (small)."""
    rows = lazy_rows(task, split, n) if "files" in task.source else None
    if rows is None:
        rows = load_rows(task, split)
    return [dict(rows[i]) for i in range(min(n, len(rows)))]


def num_rows(task: Task, split: str) -> int:
    """Number of rows of a split; for generators this needs no generation, for local JSON Lines files
    no parsing (a line that starts an object but is not JSON is found when the rows are read)."""
    if "generator" in task.source and split in task.splits:
        _, n, _ = _generator_plan(task, task.splits[split])
        return min(n, task.limit.get(split, n))
    paths = _json_lines(task, split)
    counted = count_rows(paths) if paths is not None else None
    if counted:
        return min(counted, task.limit.get(split, counted))
    return len(load_rows(task, split))
