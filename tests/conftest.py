"""Test-wide settings: one torch thread per process.

The suite runs tiny models, several processes at a time (torchrun, CLI subprocesses) on 2-core
machines; with torch's default of one thread per core they oversubscribe the CPU and run many times
slower. Subprocesses inherit OMP_NUM_THREADS.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
