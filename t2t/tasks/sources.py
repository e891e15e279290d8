"""Rows for a task split, through `datasets`: hub datasets, local files, or built-in generators.

Nothing is loaded until a split is asked for. Remote code is never trusted unless the task file says
``trust_remote_code: true`` explicitly.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import datasets

from t2t.errors import T2TError
from t2t.tasks.generators import get_generator
from t2t.tasks.task import Task

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
            raise T2TError(f"{task.path}: task '{task.name}', field 'source.files': no file matches '{full}'")
        paths += matched
    fmt = task.source.get("format") or _FORMATS.get(Path(paths[0]).suffix.lower())
    if fmt not in set(_FORMATS.values()):
        raise T2TError(f"{task.path}: task '{task.name}', field 'source.files': cannot tell the format of "
                       f"'{paths[0]}'; use .json, .jsonl, .csv or .parquet, or set source.format")
    return fmt, paths


def _generated(task: Task, source_split: str) -> datasets.Dataset:
    src = task.source
    sizes = {**DEFAULT_SIZES, **(src.get("sizes") or {})}
    if source_split not in sizes:
        raise T2TError(f"{task.path}: task '{task.name}': generator has no size for split '{source_split}' "
                       f"(source.sizes: {sizes})")
    try:
        fn = get_generator(str(src["generator"]))
        rows = fn(source_split, int(sizes[source_split]), int(src.get("seed", 0)))
    except T2TError as exc:
        raise T2TError(f"{task.path}: task '{task.name}', field 'source.generator': {exc}") from None
    except (TypeError, ValueError) as exc:
        raise T2TError(f"{task.path}: task '{task.name}', field 'source': bad generator settings: {exc}") from None
    return datasets.Dataset.from_list(rows)


def load_rows(task: Task, split: str) -> datasets.Dataset:
    """The rows of one split of a task (after its per-split ``limit``)."""
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
            ds = datasets.load_dataset(fmt, data_files={source_split: paths}, split=source_split)
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
                       f"{task.source_id}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                       ) from exc
    limit = task.limit.get(split)
    if limit is not None and len(ds) > limit:
        ds = ds.select(range(limit))
    return ds


def num_rows(task: Task, split: str) -> int:
    """Number of rows of a split; for generators this needs no generation."""
    if "generator" in task.source and split in task.splits:
        sizes = {**DEFAULT_SIZES, **(task.source.get("sizes") or {})}
        n = int(sizes.get(task.splits[split], 0))
        return min(n, task.limit.get(split, n))
    return len(load_rows(task, split))
