"""The run folder of ``python -m t2t.finetune``: the output-folder policy of :mod:`t2t.outputs` (refused if
it holds another run, probed, locked against a second writer), and (``--overwrite``) cleared only once the
new run has what it needs.

Order, so that a run that cannot start never costs the old one anything:

1. :func:`prepare_output_dir` (before the model is loaded): refuses a non-empty folder without
   ``--resume``/``--overwrite``, checks it can write there and that the disk has room, and takes the
   run lock (:class:`~t2t.outputs.FolderLock`: ``fcntl.flock`` on ``.t2t.lock``, released by the OS when
   the process ends, even on ``kill -9``), so a second ``t2t.finetune`` on the same folder is refused at once.
   Nothing is deleted.
2. :func:`retire_previous_run` (``--overwrite``, once the model, tokenizer and data are loaded): the
   old run's outputs are renamed into a hidden ``.overwritten`` folder (each an atomic rename), then
   that folder is deleted. A kill in between leaves ``.overwritten``, removed by the next run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from t2t.errors import T2TError
from t2t.outputs import LOCK_FILE, FolderLock, create_output_dir, refuse_existing
from t2t.training.config import FinetuneConfig

RETIRED = ".overwritten"
# What a run writes that a new run with --overwrite replaces (config/manifest/versions are rewritten).
RUN_OUTPUTS = ("checkpoints", "adapter", "model", "merged", "snapshots", "metrics.jsonl", "tb")
RunLock = FolderLock  # the run lock: t2t.outputs' folder lock, held by t2t.finetune
__all__ = ["LOCK_FILE", "RETIRED", "RUN_OUTPUTS", "RunLock", "prepare_output_dir", "retire_previous_run"]


def prepare_output_dir(cfg: FinetuneConfig, is_main: bool, barrier: Any = None) -> tuple[Path, FolderLock | None]:
    """Refuse to clobber earlier results; check the folder is writable; lock it (main process). Deletes
    nothing: with ``--overwrite``, :func:`retire_previous_run` does that once the run can start.

    ``barrier`` (a callable; several processes): every process looks at the folder before the main one
    writes its probe and lock there, so all of them see the same folder and agree."""
    out = Path(cfg.train.output_dir)
    refuse_existing(out, None, cfg.train.overwrite, resume=cfg.train.resume)
    if barrier is not None:
        barrier()
    lock = None
    if is_main:
        create_output_dir(out)
        free = shutil.disk_usage(out).free
        if free < 200 * 2**20:
            raise T2TError(f"--output-dir {out}: only {free / 2**20:.0f} MiB free on that disk; free some space")
        lock = FolderLock(out, "t2t.finetune").acquire()
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
