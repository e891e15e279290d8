"""The model cache of the offline bases (t2t-tiny, minilm-ed): each built once, found again without work.

``$T2T_CACHE`` (default ``~/.cache/t2t``) holds ``models/NAME-<hash>``, the hash taken over the text the
model is built from, so a model is built only when its folder does not exist. Producing that text costs
seconds; a ``recipe``, a digest of everything the text is made from (task files, code, versions), lets a
later call skip it: ``models/recipes/<digest>`` names the folder its text gave. A recipe not seen before,
or one whose folder is gone, falls back to producing the text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from t2t import atomic
from t2t.errors import T2TError


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
        if not atomic.publish_dir(tmp, final, replace=False) and not (final / "config.json").is_file():
            raise T2TError(f"{name}: {final} exists but holds no model; delete that folder and retry")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
