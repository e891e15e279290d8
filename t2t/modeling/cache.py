"""The model cache of the offline bases (t2t-tiny, minilm-ed): each built once, found again without work.

``$T2T_CACHE`` (default ``~/.cache/t2t``) holds ``models/NAME-<hash>``, the hash taken over the text the
model is built from, so a model is built only when its folder does not exist. Producing that text costs
seconds; a ``recipe``, a digest of everything the text is made from (task files, code, versions), lets a
later call skip it: ``models/recipes/<digest>`` names the folder its text gave. A recipe not seen before,
or one whose folder is gone, falls back to producing the text.

Each model folder also gets the hash of its weights (:func:`weights_hash`, what
:mod:`t2t.modeling.provenance` records beside every result): computed once, in the folder's build, and
kept in ``t2t_weights.json`` beside the weights; other folders' hashes are kept in ``$T2T_CACHE/weights/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from t2t import atomic
from t2t.errors import T2TError
from t2t.modeling.integrity import recorded_checksums, sha256_file

WEIGHTS_NOTE = "t2t_weights.json"


def default_cache_dir() -> Path:
    """``$T2T_CACHE`` or ``~/.cache/t2t``."""
    return Path(os.environ.get("T2T_CACHE") or Path.home() / ".cache" / "t2t")


def cached_model(name: str, texts_fn: Callable[[], Iterable[str]], key: Callable[[list[str]], str],
                 build: Callable[[Path, list[str]], None], *, settings: dict[str, Any],
                 cache_dir: str | os.PathLike[str] | None = None, recipe: str | None = None) -> Path:
    """The folder ``models/NAME-<key(texts)[:16]>``, made by ``build(final, texts)`` when it is missing.

    ``settings`` (build version, seed, shape, ...) go into the recipe note's name with ``recipe``.
    """
    models = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "models"
    note = None
    if recipe is not None:
        text = json.dumps(settings, sort_keys=True)
        note = models / "recipes" / hashlib.sha256(f"{recipe}\n{text}".encode()).hexdigest()[:32]
        with contextlib.suppress(OSError, UnicodeDecodeError):
            known = models / note.read_text(encoding="utf-8").strip()
            if known.parent == models and (known / "config.json").is_file():
                return known
    texts = list(texts_fn())
    final = models / f"{name}-{key(texts)[:16]}"
    if not (final / "config.json").is_file():
        build(final, texts)
    if note is not None:
        with contextlib.suppress(OSError):  # only a shortcut: a read-only cache still works without it
            note.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(note, final.name + "\n")
    return final


def build_into(final: Path, name: str, build: Callable[[Path], None]) -> None:
    """``build(tmp)`` in a folder of this process's own, then rename it to ``final``. Several processes may
    build the same model at once: the first rename wins and the others' identical copies are deleted."""
    try:
        tmp = atomic.staging_dir(final, unique=True)
    except OSError as exc:
        raise T2TError(f"{name}: cannot write the model cache {final.parent} ({exc.strerror or exc}); set "
                       "T2T_CACHE to a writable folder") from None
    try:
        build(tmp)
        write_weights_note(tmp)  # the base's identity, hashed once, published with the weights
        if not atomic.publish_dir(tmp, final, replace=False) and not (final / "config.json").is_file():
            raise T2TError(f"{name}: {final} exists but holds no model; delete that folder and retry")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _listing_digest(files: Mapping[str, str]) -> str:
    """sha256 of ``sha256sum`` output (``<hex>  <name>\\n``) sorted by name."""
    text = "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _stats(folder: Path) -> dict[str, list[int]]:
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        st = path.stat()  # follows the hub cache's symlinks to the blobs
        out[path.name] = [st.st_size, st.st_mtime_ns]
    return out


def _note_path(folder: Path, revision: str | None) -> Path:
    """Where the cached hash of ``folder`` lives: beside it inside t2t's model cache, else under
    ``$T2T_CACHE/weights`` keyed by the resolved path (and revision)."""
    resolved = folder.resolve()
    models = (default_cache_dir() / "models").resolve()
    if resolved.parent == models:
        return resolved / WEIGHTS_NOTE
    key = hashlib.sha256(f"{resolved}\0{revision or ''}".encode()).hexdigest()[:32]
    return default_cache_dir() / "weights" / f"{key}.json"


def weights_record(folder: Path) -> dict[str, Any]:
    """Hash every ``*.safetensors`` file of ``folder`` (no cache): ``weights_sha256``, ``files`` and the
    ``stats`` (size, mtime) that tell a later call whether the record still holds."""
    stats = _stats(folder)
    recorded = {}
    with contextlib.suppress(T2TError):  # a damaged checksum file is only a missed shortcut here
        recorded = recorded_checksums(folder, str(folder)) or {}
    files = {name: recorded.get(name) or sha256_file(folder / name) for name in stats}
    return {"weights_sha256": _listing_digest(files) if files else None, "files": files, "stats": stats}


def write_weights_note(folder: Path) -> dict[str, Any]:
    """Write ``t2t_weights.json`` in ``folder`` (a staged model folder, before it is renamed into place)."""
    record = weights_record(folder)
    atomic.write_json(folder / WEIGHTS_NOTE, record, sort_keys=True)
    return record


def weights_hash(folder: str | os.PathLike[str], revision: str | None = None) -> dict[str, Any]:
    """``{"weights_sha256", "files"}`` of a local model folder, from the cached record when every file's size
    and modification time are those recorded, else hashed now and cached (a read-only cache only costs time)."""
    folder = Path(folder)
    note = _note_path(folder, revision)
    stats = _stats(folder)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        record = json.loads(note.read_text(encoding="utf-8"))
        if record["stats"] == stats and record["weights_sha256"]:
            return {"weights_sha256": record["weights_sha256"], "files": record["files"]}
    record = weights_record(folder)
    with contextlib.suppress(OSError):
        note.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(note, record, sort_keys=True)
    return {"weights_sha256": record["weights_sha256"], "files": record["files"]}
