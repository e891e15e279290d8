"""What a training run shows and keeps of itself: progress bar, ``metrics.jsonl`` and TensorBoard."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from t2t.atomic import write_text


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


class MetricsLogger:
    """Progress bar (loss, tokens/s, ETA), metrics.jsonl and TensorBoard, on the main process only."""

    def __init__(self, out: Path, active: bool, progress: bool, start: int, total: int, every: int,
                 resumed: bool = False) -> None:
        self.active, self.out, self.every, self.total = active, out, every, total
        self.bar = self.tb = self.file = None
        self.t0, self.tokens, self.last_loss = time.perf_counter(), 0, math.nan
        if not active:
            return
        self.file = open(out / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        try:
            from torch.utils.tensorboard import SummaryWriter

            # On resume, TensorBoard drops its own events after the checkpoint's step (purge_step).
            self.tb = SummaryWriter(str(out / "tb"), purge_step=start + 1 if resumed else None)
        except ImportError:
            self.tb = None
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
        if self.tb is not None:
            for key, value in record.items():
                if key != "step":
                    self.tb.add_scalar(f"train/{key}", value, step)
        if "val_loss" in values and self.bar is not None:
            self.bar.write(f"step {step}: val_loss {values['val_loss']:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.file is not None:
            self.file.close()
