"""Rows of local JSON Lines files read on demand, by byte offset, without ``datasets``.

A mixture over SNI (1,616 tasks, ~5M instances) cannot load every task through ``datasets`` to count it
(``load_dataset`` converts each file to Arrow first: ~40 ms a small file, cold) nor hold every row as a
Python dict. Here a file is indexed once (the byte offset where each row starts: 8 bytes a row, found
with numpy over 16 MiB chunks) and a row is parsed when it is asked for.

The rows must be the ones ``datasets`` would give (the stream's examples may not depend on the path that
read them). ``datasets`` builds one Arrow schema per file set: a field missing from a row becomes None,
ints mixed with floats become floats, nested objects get the union of their keys. :func:`open_rows`
therefore parses every row once and returns None (load them through ``datasets``) unless every row has
the same fields and every field holds one JSON type (str, bool, int in int64, float, or a list of one
such type; null anywhere): then ``json.loads`` and Arrow agree value for value.

What ``t2t.tasks.sources`` checks before ``datasets`` reads a file (UTF-8, every line an object) is
checked here at the same cost; :func:`index` returns None on any doubt, so that the caller goes through
``datasets`` and its one-line error names the file and line.
"""

from __future__ import annotations

import bisect
import json
import mmap
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

_CHUNK = 1 << 24
_WHITESPACE = frozenset(b" \t\r\x0b\x0c")
_LONE_SURROGATE = re.compile(rb"\\[uU][dD][89a-fA-F]")  # json.loads and Arrow may differ on \ud800
_INT64 = (-(1 << 63), 1 << 63)
_STR_LIST = ("list", "str")


def index(path: str) -> np.ndarray | None:
    """Byte offsets of the rows of a JSON Lines file, with the file's size last (row i is bytes
    ``[out[i], out[i + 1])``); blank lines are skipped, as ``datasets`` skips them. None when a line is
    not UTF-8, does not start a JSON object, or the file escapes a surrogate (see the module docstring)."""
    starts: list[np.ndarray] = []
    base, tail = 0, b""
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(_CHUNK)
                data = tail + chunk
                if chunk:
                    cut = data.rfind(b"\n") + 1
                    data, tail = data[:cut], data[cut:]
                else:
                    tail = b""
                if data:
                    found = _row_starts(data)
                    if found is None:
                        return None
                    starts.append(found + base)
                    base += len(data)
                if not chunk:
                    break
    except OSError:
        return None
    return np.concatenate([*starts, np.array([base], np.int64)])


def _row_starts(data: bytes) -> np.ndarray | None:
    """Offsets in ``data`` (whole lines) of the lines that hold a row."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _LONE_SURROGATE.search(data):
        return None
    buf = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(buf == 10)
    starts = np.concatenate([np.zeros(1, np.int64), newlines + 1])
    starts = starts[starts < len(buf)]
    keep = buf[starts] == ord("{")
    for i in np.flatnonzero(~keep).tolist():  # blank, indented or not an object: rare, looked at one by one
        line = data[starts[i]:data.find(b"\n", starts[i]) + 1 or len(data)]
        head = line.lstrip()[:1]
        if head == b"{":
            keep[i] = True
        elif head:
            return None
    return starts[keep].astype(np.int64)


def _kind(value: Any) -> Any:
    """The Arrow type ``datasets`` would give a JSON value (None for null); '?' where the two readers may
    disagree (nested objects, lists of lists or of mixed types, ints past int64)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value < _INT64[1] else "?"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        inner = set(map(type, value))
        if inner == {str}:  # SNI's references: the common case, without a call per element
            return _STR_LIST
        inner = {_kind(v) for v in value} - {None}
        if len(inner) > 1 or (inner and next(iter(inner)) not in ("bool", "int", "float", "str")):
            return "?"
        return ("list", inner.pop() if inner else None)
    return "?"


def _merge(a: Any, b: Any) -> Any:
    """One field's kind over two rows: null and an empty list fit any kind; anything else must match."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    if isinstance(a, tuple) and isinstance(b, tuple):
        return ("list", _merge(a[1], b[1]))
    return "?"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN / Infinity: Python reads them, Arrow does not


class JsonLinesRows(Sequence):
    """The rows of one or more JSON Lines files (in order), each parsed when it is read."""

    def __init__(self, files: Sequence[tuple[str, np.ndarray]], keys: Sequence[str], limit: int | None = None
                 ) -> None:
        self._paths = [p for p, _ in files]
        self._offsets = [o for _, o in files]
        counts = [len(o) - 1 for o in self._offsets]
        self._first = [0, *np.cumsum(counts).tolist()]  # the first row of each file
        total = self._first[-1]
        self._len = total if limit is None else min(total, limit)
        if limit is not None:  # keep only the offsets a row below the limit needs
            self._offsets = [o[:max(0, min(len(o), limit - first + 1))] for o, first in
                             zip(self._offsets, self._first, strict=False)]
        self._keys = tuple(keys)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._len))]
        if not -self._len <= i < self._len:
            raise IndexError(f"row {i} of {self._len}")
        i = int(i) % self._len
        f = bisect.bisect_right(self._first, i) - 1
        offsets, at = self._offsets[f], i - self._first[f]
        with open(self._paths[f], "rb") as fh:
            fh.seek(int(offsets[at]))
            raw = fh.read(int(offsets[at + 1] - offsets[at]))
        row = json.loads(raw)
        return {k: row[k] for k in self._keys}  # the field order of the first row, as Arrow's schema


def open_rows(paths: Sequence[str], limit: int | None = None) -> JsonLinesRows | None:
    """The rows of JSON Lines files, read on demand, if they are exactly the rows ``datasets`` would load
    (checked by parsing each once); else None."""
    files: list[tuple[str, np.ndarray]] = []
    keys: tuple[str, ...] | None = None
    kinds: dict[str, Any] = {}
    for path in paths:
        offsets = index(path)
        if offsets is None or len(offsets) < 2:
            return None  # not plain JSON Lines, or an empty file: datasets decides what they mean
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
                try:
                    row = json.loads(data[a:b], parse_constant=_refuse_constant)
                except ValueError:
                    return None
                if not isinstance(row, dict):
                    return None
                if keys is None:
                    keys, kinds = tuple(row), dict.fromkeys(row)
                elif len(row) != len(keys) or any(k not in row for k in keys):
                    return None
                for k, v in row.items():
                    kind = "str" if type(v) is str else _kind(v)
                    if kind != kinds[k]:
                        kinds[k] = _merge(kinds[k], kind)
        files.append((path, offsets))
    if keys is None or any(v == "?" or (isinstance(v, tuple) and v[1] == "?") for v in kinds.values()):
        return None
    return JsonLinesRows(files, keys, limit)


def count_rows(paths: Sequence[str]) -> int | None:
    """How many rows the files hold, without parsing them (None: let ``datasets`` load them to tell)."""
    total = 0
    for path in paths:
        offsets = index(path)
        if offsets is None:
            return None
        total += len(offsets) - 1
    return total
