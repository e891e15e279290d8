"""``python -m t2t.finetune`` under torchrun whose rank ``T2T_TEST_SIGNAL_RANK`` sends itself SIGTERM during
step ``T2T_TEST_SIGNAL_STEP``, for tests/training/test_ddp_signals.py.

The signal reaches that one process only (as when a scheduler or an OOM killer picks one rank); the
other rank must learn of it from the step-boundary all-reduce (``FinetuneRecipe._stop_requested``).
"""

from __future__ import annotations

import os
import signal
import sys

from t2t.errors import run_cli
from t2t.finetune import main
from t2t.training import monitor

_step = monitor.MetricsLogger.step


def _step_then_signal(self: monitor.MetricsLogger, done: int, *args: object) -> None:
    _step(self, done, *args)
    if os.environ["RANK"] == os.environ["T2T_TEST_SIGNAL_RANK"] and done == int(os.environ["T2T_TEST_SIGNAL_STEP"]):
        print(f"ddp-signal-test: SIGTERM to rank {os.environ['RANK']} (pid {os.getpid()}) during step {done}",
              file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)


monitor.MetricsLogger.step = _step_then_signal  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(run_cli(main))
