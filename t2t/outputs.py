"""The output-folder policy of every command that writes a folder (finetune, evaluate, experiment).

One set of rules, checked before any model is loaded, so that a run that cannot finish never costs the
results already there:

1. **refuse**: a folder that already holds what the command writes is refused unless ``--overwrite``
   (finetune also accepts ``--resume``: continue that run). A path that is a file is refused.
2. **probe**: the folder (or, if it does not exist yet, the nearest existing folder above it) must be
   writable: a probe file is written and removed, so a read-only disk is found out now, not after hours.
3. **lock**: a command that writes into the folder as it goes (finetune, the experiment) takes
   :class:`FolderLock` (``fcntl.flock`` on ``.t2t.lock``, released by the OS when the process ends, even
   on ``kill -9``), so a second command on the same folder is refused at once instead of interleaving
   files. Evaluate writes its four files once, at its end, in one step (rule 4), so it leaves no lock
   file in a report folder.
4. **overwrite**: the new outputs replace the old ones only once they are whole: single files through
   :mod:`t2t.atomic` (a rename), a run's folders renamed away first (:mod:`t2t.training.output`).

    >>> check_output_dir(Path("runs/eval"), holds=("report.md",), overwrite=False)   # doctest: +SKIP
    []                       # nothing there yet: fine; ["report.md"] with --overwrite; else a T2TError
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from t2t.errors import T2TError

LOCK_FILE = ".t2t.lock"


def existing_outputs(out: Path, holds: Sequence[str] | None) -> list[str]:
    """What ``out`` already holds of ``holds`` (None: anything besides the lock file a finished run
    leaves behind)."""
    if not out.is_dir():
        return []
    if holds is None:
        return sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE)
    return [name for name in holds if (out / name).exists()]


def check_output_dir(out: Path, holds: Sequence[str] | None = None, overwrite: bool = False,
                     resume: bool | None = None) -> list[str]:
    """Rules 1 and 2: refuse earlier results without ``--overwrite`` (or ``--resume``, for a command that
    can resume: ``resume`` not None) and check the folder can be written. Returns what is there already."""
    found = refuse_existing(out, holds, overwrite, resume)
    check_writable(out)
    return found


def refuse_existing(out: Path, holds: Sequence[str] | None = None, overwrite: bool = False,
                    resume: bool | None = None) -> list[str]:
    """Rule 1 alone (it writes nothing, so every process of a distributed run can look at once)."""
    if out.exists() and not out.is_dir():
        raise T2TError(f"--output-dir {out} is a file, not a folder")
    found = existing_outputs(out, holds)
    if found and not (overwrite or resume):
        if resume is not None:
            raise T2TError(f"--output-dir {out} is not empty; pass --resume to continue that run or --overwrite "
                           "to start over there (or choose another --output-dir)")
        raise T2TError(f"--output-dir {out} already holds results ({', '.join(found)}); pass --overwrite to "
                       "replace them or choose another --output-dir")
    return found


def check_writable(out: Path) -> None:
    """Rule 2: a probe file written and removed in ``out``; or, before ``out`` exists, a writable folder
    above it to create it in."""
    if out.is_dir():
        probe = out / f".write-test-{os.getpid()}"
        try:
            with open(probe, "w") as f:
                f.write("ok")
                f.flush()  # a full disk fails here (or at close), after the file was created
        except OSError as exc:
            raise T2TError(f"--output-dir {out} is not writable ({write_error(exc, out, PROBE_BYTES)}); "
                           "choose another --output-dir") from None
        finally:
            with contextlib.suppress(OSError):  # never left behind, whether the write worked or not
                probe.unlink()
        return
    parent = next((p for p in out.parents if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise T2TError(f"--output-dir {out}: cannot create it in {parent} (not a writable folder); choose another "
                       "--output-dir")


PROBE_BYTES = 4096  # the probe writes 2 bytes; a file takes at least one block


def free_bytes(folder: Path) -> int | None:
    """Free space on the file system of ``folder`` (or of the nearest existing folder above it), for this
    user; None where it cannot be read."""
    here = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    try:
        return shutil.disk_usage(here).free
    except OSError:
        return None


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def write_error(exc: OSError, folder: Path, needed: int | None = None) -> str:
    """What went wrong in a write into ``folder``, for a one-line message. A full disk (ENOSPC, or EDQUOT:
    a quota) names the folder and the free space the write needs (``needed``: an estimate from what was
    being written) beside what is free now, since the failed write's partial files were removed."""
    reason = exc.strerror or str(exc)
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return reason
    free = free_bytes(folder)
    need = f"needs about {human_bytes(needed)} free in {folder}" if needed else f"needs more free space in {folder}"
    return f"{reason}: {need}{f', {human_bytes(free)} free now' if free is not None else ''}"


@contextlib.contextmanager
def writing(out: Path, what: str, needed: int | None = None) -> Iterator[None]:
    """An OSError while writing ``what`` into ``out`` as one T2TError (a full disk with the space needed,
    :func:`write_error`); the writes inside go through :mod:`t2t.atomic`, so what was there stays whole."""
    try:
        yield
    except OSError as exc:
        raise T2TError(f"--output-dir {out}: cannot write {what} ({write_error(exc, out, needed)}); files written "
                       "before are unchanged; free space or choose another --output-dir") from None


def create_output_dir(out: Path) -> Path:
    """Create ``out`` (and its parents) and probe it; one T2TError if that fails."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise T2TError(f"--output-dir {out}: cannot create it ({exc.strerror or exc})") from None
    check_writable(out)
    return out


class FolderLock:
    """Rule 3: an exclusive ``flock`` on ``.t2t.lock`` in an output folder, held while this process writes.

    ``command`` names the holder in the message a second command gets (``another t2t.finetune (pid N)``).
    """

    def __init__(self, out: Path, command: str = "t2t.finetune") -> None:
        self.path = out / LOCK_FILE
        self.command = command
        self.fd: int | None = None

    def acquire(self) -> FolderLock:
        import fcntl  # POSIX only: imported where a folder is locked

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (pid {int(os.pread(fd, 32, 0).decode().strip())})"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise T2TError(f"--output-dir {self.path.parent}: another {self.command}{holder} is writing to "
                               "this folder; wait for it to end (or stop it), or choose another --output-dir") from None
            raise T2TError(f"--output-dir {self.path.parent}: cannot lock it ({exc.strerror or exc})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
