"""Test-wide settings: one torch thread per process, and no network.

The suite runs tiny models, several processes at a time (torchrun, CLI subprocesses) on 2-core
machines; with torch's default of one thread per core they oversubscribe the CPU and run many times
slower. The tests use built-in generators and local files only; a test that reached for the hub by
mistake (the built-in hub tasks) would wait through the hub client's retries (~25 s), so the hub is
switched off and such a test fails at once. Subprocesses inherit the environment.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
