"""Checks that what t2t wrote is what it reads back: sha256 per file, and safetensors that open.

A safetensors file can be damaged in ways its loader does not see: zeroed tensor bytes behind an intact
header load as zeros, and training or scoring then go on with wrong weights. So every folder t2t writes
for a later command to read (checkpoints, the adapter, ``model/``, ``merged/``) records the sha256 of
each of its files, and readers verify them: a checkpoint in its ``state.json`` (``files``), a model or
adapter folder in ``t2t_checksums.json`` inside it, written in the same atomic rename as the files.
Adapters are checked by ``check_adapter``, ``model/`` and ``merged/`` by ``check_model_dir`` (both in
:mod:`t2t.modeling.loading`, before any loader reads them); folders without the file still load.
A file whose header is unreadable (truncated, empty, zeroed) is refused before any loader sees it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from t2t.atomic import write_json
from t2t.errors import T2TError

CHECKSUMS = "t2t_checksums.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_checksums(folder: Path, names: list[str] | None = None) -> dict[str, str]:
    """name -> sha256 of the files directly in ``folder`` (or of ``names``): what loaders read, so not the
    checksum file itself nor notes (``README.md``, the model card peft writes, which users may edit)."""
    if names is None:
        names = sorted(p.name for p in folder.iterdir()
                       if p.is_file() and p.name != CHECKSUMS and p.suffix.lower() != ".md")
    return {name: sha256_file(folder / name) for name in names}


def record_checksums(folder: Path) -> Path:
    """Write ``t2t_checksums.json`` in ``folder`` (a staged folder, before it is renamed into place)."""
    return write_json(folder / CHECKSUMS, {"sha256": file_checksums(folder)})


def recorded_checksums(folder: Path, what: str) -> dict[str, str] | None:
    """The checksums t2t recorded in ``folder``, or None for a folder t2t did not write."""
    path = folder / CHECKSUMS
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        sums = data["sha256"]
        if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
            raise ValueError("sha256 is not a mapping of file names to digests")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise T2TError(f"{what}: {path} is damaged ({exc}); the folder cannot be checked") from None
    return sums


def verify_checksums(folder: Path, recorded: dict[str, str], what: str, advice: str) -> None:
    """Each recorded file exists and has its recorded sha256; else one T2TError naming the file."""
    for name, digest in sorted(recorded.items()):
        path = folder / name
        if not path.is_file():
            raise T2TError(f"{what}: {path} is missing (t2t wrote it there); {advice}")
        if sha256_file(path) != digest:
            raise T2TError(f"{what}: {path} is damaged: its sha256 differs from the one recorded when it was "
                           f"written; {advice}")


def check_safetensors(path: Path, what: str, advice: str) -> None:
    """``path`` is a whole safetensors file: a readable JSON header, tensors that end where the file does."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("shorter than a safetensors header")
            (n,) = struct.unpack("<Q", head)
            if n == 0 or n > size - 8:
                raise ValueError("its header length is impossible (zeroed or truncated file)")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
        ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
        if 8 + n + max(ends, default=0) > size:
            raise ValueError("it is truncated: its tensors end past the end of the file")
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise T2TError(f"{what}: {path} is not a readable safetensors file ({exc}); {advice}") from None
