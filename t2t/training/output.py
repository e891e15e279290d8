"""The run folder of ``python -m t2t.finetune``: refused if it holds another run, checked before training,
locked against a second writer, and (``--overwrite``) cleared only once the new run has what it needs.

Order, so that a run that cannot start never costs the old one anything:

1. :func:`prepare_output_dir` (before the model is loaded): refuses a non-empty folder without
   ``--resume``/``--overwrite``, checks it can write there and that the disk has room, and takes the
   run lock (:class:`RunLock`: ``fcntl.flock`` on ``.t2t.lock``, released by the OS when the process
   ends, even on ``kill -9``), so a second ``t2t.finetune`` on the same folder is refused at once.
   Nothing is deleted.
2. :func:`retire_previous_run` (``--overwrite``, once the model, tokenizer and data are loaded): the
   old run's outputs are renamed into a hidden ``.overwritten`` folder (each an atomic rename), then
   that folder is deleted. A kill in between leaves ``.overwritten``, removed by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Any

from t2t.errors import T2TError
from t2t.training.config import FinetuneConfig

LOCK_FILE = ".t2t.lock"
RETIRED = ".overwritten"
# What a run writes that a new run with --overwrite replaces (config/manifest/versions are rewritten).
RUN_OUTPUTS = ("checkpoints", "adapter", "model", "merged", "snapshots", "metrics.jsonl", "tb")


class RunLock:
    """An exclusive ``flock`` on ``.t2t.lock`` in the run folder, held while this process runs."""

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (pid {int(os.pread(fd, 32, 0).decode().strip())})"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise T2TError(f"--output-dir {self.path.parent}: another t2t.finetune{holder} is writing to this "
                               "folder; wait for it to end (or stop it), or choose another --output-dir") from None
            raise T2TError(f"--output-dir {self.path.parent}: cannot lock it ({exc.strerror or exc})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def _run_files(out: Path) -> list[Path]:
    """What the folder holds besides the lock file (a finished run leaves its lock file behind)."""
    return [p for p in out.iterdir() if p.name != LOCK_FILE] if out.is_dir() else []


def prepare_output_dir(cfg: FinetuneConfig, is_main: bool, barrier: Any = None) -> tuple[Path, RunLock | None]:
    """Refuse to clobber earlier results; check the folder is writable; lock it (main process). Deletes
    nothing: with ``--overwrite``, :func:`retire_previous_run` does that once the run can start.

    ``barrier`` (a callable; several processes): every process looks at the folder before the main one
    writes its probe and lock there, so all of them see the same folder and agree."""
    out = Path(cfg.train.output_dir)
    if out.exists() and not out.is_dir():
        raise T2TError(f"--output-dir {out} is a file, not a folder")
    existing = bool(_run_files(out))
    if existing and not (cfg.train.resume or cfg.train.overwrite):
        raise T2TError(f"--output-dir {out} is not empty; pass --resume to continue that run or --overwrite "
                       "to start over there (or choose another --output-dir)")
    if barrier is not None:
        barrier()
    lock = None
    if is_main:
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise T2TError(f"--output-dir {out} is not writable: {exc.strerror or exc}") from None
        free = shutil.disk_usage(out).free
        if free < 200 * 2**20:
            raise T2TError(f"--output-dir {out}: only {free / 2**20:.0f} MiB free on that disk; free some space")
        lock = RunLock(out).acquire()
    return out, lock


def retire_previous_run(out: Path) -> list[str]:
    """Remove the old run's outputs (``--overwrite``): renamed into ``.overwritten`` first, each rename
    atomic, then deleted. Called once the new run has loaded everything it needs."""
    trash = out / RETIRED
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    moved = []
    for name in RUN_OUTPUTS:
        target = out / name
        if target.exists() or target.is_symlink():
            trash.mkdir(exist_ok=True)
            os.replace(target, trash / name)
            moved.append(name)
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    return moved
