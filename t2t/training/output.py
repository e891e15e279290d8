"""The run folder of ``python -m t2t.finetune``: refused if it holds another run, checked before training."""

from __future__ import annotations

import shutil
from pathlib import Path

from t2t.errors import T2TError
from t2t.training.config import FinetuneConfig


def prepare_output_dir(cfg: FinetuneConfig, is_main: bool) -> Path:
    """Refuse to clobber earlier results; check that the folder is writable before training starts."""
    out = Path(cfg.train.output_dir)
    existing = out.is_dir() and any(out.iterdir())
    if existing and not (cfg.train.resume or cfg.train.overwrite):
        raise T2TError(f"--output-dir {out} is not empty; pass --resume to continue that run or --overwrite "
                       "to start over there (or choose another --output-dir)")
    if out.exists() and not out.is_dir():
        raise T2TError(f"--output-dir {out} is a file, not a folder")
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
        if existing and cfg.train.overwrite and not cfg.train.resume:
            for stale in ("checkpoints", "adapter", "merged", "metrics.jsonl", "tb"):
                target = out / stale
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
    return out
