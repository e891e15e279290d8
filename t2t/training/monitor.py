"""What a training run shows and keeps of itself: progress bar, ``metrics.jsonl`` (always) and the trackers of
``--report-to``: TensorBoard (``tb/``), Weights & Biases, MLflow, through accelerate's tracker classes
(:mod:`accelerate.tracking`: ``TensorBoardTracker``, ``WandBTracker``, ``MLflowTracker``; each has
``start``, ``store_init_configuration``, ``log(values, step)`` and ``finish``).

W&B and MLflow are configured as those libraries are, from the environment: ``WANDB_PROJECT`` (default
``t2t``), ``WANDB_MODE=offline`` (files under ``<run>/wandb``), ``MLFLOW_TRACKING_URI`` (e.g. a ``file:``
store), ``MLFLOW_EXPERIMENT_NAME`` (default ``t2t``). Each run invocation (a resume too) is a tracker run
of its own, named after the output folder, its steps continuing the run's."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2t.atomic import write_text
from t2t.errors import T2TError


def truncate_metrics(out: Path, step: int) -> int:
    """Keep the records of ``metrics.jsonl`` up to ``step`` (a resumed run logs the later ones again);
    a torn last line (a kill mid-write) goes too. Rewritten atomically; returns the records dropped."""
    path = out / "metrics.jsonl"
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            keep = isinstance(record, dict) and int(record.get("step", 0)) <= step
        except (ValueError, TypeError):
            keep = False
        if keep:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        write_text(path, "".join(f"{line}\n" for line in kept))
    return dropped


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``, lists as comma-separated text: what trackers store
    as hyperparameters (plain scalars only)."""
    out: dict[str, Any] = {}
    for section, values in config.items():
        for key, value in (values.items() if isinstance(values, dict) else [(None, values)]):
            name = f"{section}.{key}" if key is not None else section
            out[name] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    return out


def start_trackers(names: Sequence[str], out: Path, start: int, resumed: bool,
                   config: dict[str, Any] | None) -> list[Any]:
    """accelerate's trackers for ``--report-to`` names, started, the run's config stored in W&B and MLflow.
    A tracker library that is not installed is one T2TError naming the option and the package."""
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    trackers: list[Any] = []
    for name in names:
        if name == "none":
            continue
        try:
            if name == "tensorboard":
                # On resume, TensorBoard drops its own events after the checkpoint's step (purge_step).
                tracker = TensorBoardTracker("tb", out, purge_step=start + 1 if resumed else None)
            elif name == "wandb":
                tracker = WandBTracker(os.environ.get("WANDB_PROJECT", "t2t"), name=out.resolve().name,
                                       dir=str(out))
            else:
                tracker = MLflowTracker(experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", "t2t"),
                                        run_name=out.resolve().name)
            tracker.start()
        except ImportError as exc:
            package = "tensorboard" if name == "tensorboard" else name
            raise T2TError(f"--report-to {name}: {exc.name or package} is not installed (pip install {package}), "
                           "or leave it out of --report-to") from None
        # A tracker that will not start (MLflow 3 refusing a file: store, a W&B login missing) is said in
        # one line before any step is trained; its own exception types differ by library.
        except Exception as exc:  # noqa: BLE001
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise T2TError(f"--report-to {name}: the tracker did not start ({reason}); fix its settings (see "
                           "docs/finetuning.md) or leave it out of --report-to") from None
        if config is not None and name != "tensorboard":  # config.yaml is in the run folder already
            tracker.store_init_configuration(flat_config(config))
        trackers.append(tracker)
    return trackers


class MetricsLogger:
    """Progress bar (loss, tokens/s, ETA), metrics.jsonl and the ``--report-to`` trackers, on the main
    process only."""

    def __init__(self, out: Path, active: bool, progress: bool, start: int, total: int, every: int,
                 resumed: bool = False, report_to: Sequence[str] = ("tensorboard",),
                 config: dict[str, Any] | None = None) -> None:
        self.active, self.out, self.every, self.total = active, out, every, total
        self.bar = self.file = None
        self.trackers: list[Any] = []
        self.t0, self.tokens, self.last_loss = time.perf_counter(), 0, math.nan
        if not active:
            return
        self.trackers = start_trackers(report_to, out, start, resumed, config)
        self.file = open(out / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, desc="train", dynamic_ncols=True)

    def step(self, step: int, loss: float, lr: float, grad_norm: float | None, tokens: int) -> None:
        if not self.active:
            return
        self.tokens += tokens
        elapsed = time.perf_counter() - self.t0
        tps = self.tokens / max(elapsed, 1e-9)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tps:,.0f}")
        if step % self.every == 0 or step == self.total:
            self.log(step, {"loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": tps})

    def log(self, step: int, values: dict[str, float | None]) -> None:
        if not self.active:
            return
        record = {"step": step, **{k: v for k, v in values.items() if v is not None}}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        scalars = {f"train/{key}": value for key, value in record.items() if key != "step"}
        for tracker in self.trackers:
            tracker.log(scalars, step=step)
        if "val_loss" in values and self.bar is not None:
            self.bar.write(f"step {step}: val_loss {values['val_loss']:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []
        if self.file is not None:
            self.file.close()
