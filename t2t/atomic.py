"""Atomic writes: a file or folder appears whole under its final name, or not at all.

Everything t2t writes that a later command reads (checkpoints, adapters, reports, manifests, the tiny
model) goes through here: written under a hidden temporary name in the same folder, flushed to disk,
then renamed into place. A kill at any moment leaves the old version or the new one, never half of one.

Files: :func:`write_file` (any writer that takes a path), :func:`write_bytes`, :func:`write_text`,
:func:`write_json`; :func:`write_files` for several, renamed into place only once all are whole.
Folders: ``with write_dir(out) as tmp:`` fills a hidden sibling folder and swaps it in; the steps on
their own are :func:`staging_dir` and :func:`publish_dir` (:func:`staging_path` names the sibling
for processes that share one folder). Leftovers of a kill are hidden names beginning with ``.`` and the
final name: ``.NAME.tmp``, ``.NAME.old``, ``.NAME.tmp-PID``.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a written file's data to disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_file(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` writes the file under a hidden temporary name beside ``path``; it is then flushed
    to disk and renamed to ``path``. For writers that want a file name (``safetensors.save_file``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)
    return path


def write_files(writes: dict[Path, Callable[[Path], object]]) -> list[Path]:
    """Several files that belong together (a report and its results): each written by its ``write(tmp)``
    under a hidden temporary name and flushed; only when every one is whole are they renamed into place.
    A writer that fails leaves every earlier file as it was."""
    staged = {path: path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}") for path in writes}
    try:
        for path, write in writes.items():
            write(staged[path])  # the suffix is kept: some writers (matplotlib) pick the format by it
            fsync_file(staged[path])
        for path, tmp in staged.items():
            os.replace(tmp, path)
    finally:
        for tmp in staged.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    for folder in {path.parent for path in writes}:
        fsync_dir(folder)
    return list(writes)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a hidden temporary file and a rename."""
    return write_file(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], data: Any, **dump: Any) -> Path:
    return write_text(path, json.dumps(data, **{"indent": 2, **dump}) + "\n")


# -- folders ---------------------------------------------------------------------------------------

def staging_path(final: str | os.PathLike[str]) -> Path:
    """The hidden sibling ``.NAME.tmp`` in which the folder ``final`` is built."""
    final = Path(final)
    return final.with_name(f".{final.name}.tmp")


def _old_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def staging_dir(final: str | os.PathLike[str], *, unique: bool = False) -> Path:
    """Create and return an empty hidden sibling folder to build ``final`` in.

    By default it is :func:`staging_path` (``.NAME.tmp``), after removing what a killed earlier write of
    ``final`` left behind (``.NAME.tmp``, ``.NAME.old``). With ``unique`` it is a fresh ``.NAME-XXXXXXXX``
    of this process's own, for folders that several processes may build at once.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if unique:
        return Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    tmp = staging_path(final)
    for leftover in (tmp, _old_path(final)):
        if leftover.exists():
            shutil.rmtree(leftover)
    tmp.mkdir()
    return tmp


def publish_dir(staged: Path, final: Path, *, replace: bool = True) -> bool:
    """Rename the finished folder ``staged`` to ``final``, durably; True if it is now ``final``.

    Every file below ``staged`` is flushed to disk first. An existing ``final`` is, with ``replace``,
    renamed away to ``.NAME.old``, the new one renamed in, the old one deleted: a kill never leaves a
    half folder under the final name. Without ``replace`` an existing ``final`` is kept (another process
    built the same folder first) and ``staged`` is deleted: False.
    """
    for path in sorted(staged.rglob("*")):
        if path.is_file() and not path.is_symlink():
            fsync_file(path)
    fsync_dir(staged)
    old: Path | None = None
    if replace and final.exists():
        old = _old_path(final)
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    try:
        os.rename(staged, final)
    except OSError:
        if replace or not final.exists():
            raise
        shutil.rmtree(staged, ignore_errors=True)
        return False
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)  # a kill here leaves .NAME.old: staging_dir removes it
    return True


@contextlib.contextmanager
def write_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Build the folder ``final`` whole or not at all, replacing an existing one::

        with write_dir(out) as tmp:       # an empty .NAME.tmp beside out
            model.save_pretrained(tmp)
        # out is now the new folder; the old one was renamed away, then deleted

    When the block raises, the staged folder is deleted and ``final`` is left as it was.
    """
    final = Path(final)
    tmp = staging_dir(final)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, final)


# -- several files of a shared folder, all or nothing ------------------------------------------------

JOURNAL = "journal.json"
# The staged files' folder inside the stage. Its leading '_' keeps a task folder search from finding them
# (t2t.tasks.registry.find_files skips folders named '_...'): a stage left by a kill, beside --out inside a
# --task-dir, is not read as a second copy of its tasks.
NEW = "_new"


class StagedFiles:
    """Files to add to (and remove from) a folder that holds other files too, all at once or not at all.

    ``with staged_files(out) as stage:`` gives a hidden sibling folder, ``.OUT.stage-PID``, whose
    ``stage.root`` mirrors ``out``: write the new files there (relative paths are kept, so a task file's
    ``data/NAME.jsonl`` resolves in the stage as it will in ``out``), check them there, and name with
    :meth:`remove` what the new version no longer has. When the block ends without an exception the stage
    commits: every staged file is flushed, a journal of the moves is written (the commit point), then each
    file is renamed over its final name and the removals deleted. Before the journal exists nothing of
    ``out`` has changed, so a failure or a kill (ENOSPC, SIGKILL) leaves every earlier file byte-identical
    and the stage is deleted (at once, or by the next :func:`recover` of ``out`` for a kill). Once the
    journal exists the commit is only renames; a kill among them is finished by the next :func:`recover`
    (every t2t writer of ``out`` runs it first): the folder then holds the new version whole.
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out).resolve()
        if self.out.exists() and not self.out.is_dir():  # found now, not among the renames after the commit point
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(self.out))
        recover(self.out)
        self.stage = self.out.with_name(f".{self.out.name}.stage-{os.getpid()}")
        if self.stage.exists():
            shutil.rmtree(self.stage)
        self.root = self.stage / NEW
        self.root.mkdir(parents=True)
        self.removed: set[str] = set()

    def path(self, rel: str | os.PathLike[str]) -> Path:
        """Where the file ``out/rel`` is staged (its folder created)."""
        staged = self.root / rel
        staged.parent.mkdir(parents=True, exist_ok=True)
        return staged

    def write_text(self, rel: str | os.PathLike[str], text: str) -> Path:
        """Stage ``out/rel`` with ``text`` (UTF-8). Written directly: the stage is private until the commit,
        which flushes every staged file once."""
        staged = self.path(rel)
        staged.write_bytes(text.encode("utf-8"))
        return staged

    def remove(self, rel: str | os.PathLike[str]) -> None:
        """Delete ``out/rel`` on commit (unless the stage holds a new one)."""
        self.removed.add(Path(rel).as_posix())

    def staged(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def commit(self) -> None:
        files = self.staged()
        for rel in files:
            fsync_file(self.root / rel)
        for folder in {(self.root / rel).parent for rel in files}:
            fsync_dir(folder)
        journal = {"out": str(self.out), "files": files, "remove": sorted(self.removed - set(files))}
        write_json(self.stage / JOURNAL, journal)  # the commit point: from here on the new version wins
        _apply(self.stage, journal)

    def discard(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)


@contextlib.contextmanager
def staged_files(out: str | os.PathLike[str]) -> Iterator[StagedFiles]:
    """Stage files for ``out`` and commit them when the block succeeds (:class:`StagedFiles`)."""
    stage = StagedFiles(out)
    try:
        yield stage
        stage.commit()
    except BaseException:
        if not (stage.stage / JOURNAL).exists():
            stage.discard()
        raise


def _apply(stage: Path, journal: dict[str, Any]) -> None:
    """Move a committed stage's files into place (each rename atomic; rerunning it is harmless)."""
    out = Path(journal["out"])
    folders = {out}
    for rel in journal["files"]:
        new, final = stage / NEW / rel, out / rel
        if new.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(new, final)
            folders.add(final.parent)
    for rel in journal["remove"]:
        with contextlib.suppress(FileNotFoundError):
            (out / rel).unlink()
            folders.add((out / rel).parent)
    for folder in folders:
        fsync_dir(folder)
    shutil.rmtree(stage, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a stage of this process's own is never in use when a new one starts
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists (owned by another user)
    return True


def recover(out: str | os.PathLike[str]) -> None:
    """Finish or undo what a killed :class:`StagedFiles` of ``out`` left: a stage with its journal is
    committed (moved into place), one without is deleted. Stages of running processes are left alone."""
    out = Path(out).resolve()
    if not out.parent.is_dir():
        return
    for stage in out.parent.glob(f".{glob.escape(out.name)}.stage-*"):
        pid = stage.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            journal = json.loads((stage / JOURNAL).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            shutil.rmtree(stage, ignore_errors=True)  # never committed (or its journal was cut short)
            continue
        _apply(stage, journal)

