"""``python -m t2t.finetune ARGS EXTRA`` that makes its imports first, then waits for one line on stdin (EXTRA,
more options; an empty stdin: exit without running), for tests/training/test_crash.py.

The kill -9 test starts many short-lived trainers one after another; starting Python with torch,
transformers, peft and accelerate is most of each one's time. Started ahead, the next trainer imports on
the second core while the current one trains, and begins only when told, after the current one is killed.
What runs then is the command's own ``main`` through ``run_cli``, as under ``python -m t2t.finetune``.
"""

from __future__ import annotations

import sys

import accelerate  # noqa: F401  (imported ahead: the point of this script)
import peft  # noqa: F401
import torch  # noqa: F401
from transformers import T5ForConditionalGeneration  # noqa: F401  (t2t-tiny's class: its module loads lazily)

import t2t.training.recipe  # noqa: F401
from t2t.errors import run_cli
from t2t.finetune import main

if __name__ == "__main__":
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    sys.exit(run_cli(main, [*sys.argv[1:], *line.split()]))
