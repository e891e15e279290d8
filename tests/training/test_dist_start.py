"""A distributed process whose peers never start (issue #25 part 5): it says what it waits for, then gives
up after --dist-timeout with one line and exit 2, instead of waiting silently for torch's 30 minutes
(t2t.training.distributed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rank_0_of_2_started_alone_says_so_and_gives_up(tmp_path: Path) -> None:
    port = free_port()
    # What torchrun sets for the worker of rank 0 in a world of 2 (the other node never comes).
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "t2t.finetune", "--output-dir", str(out), "--max-steps", "1",
                           "--dist-timeout", "2", "--no-progress"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert (f"rank 0: waiting for the 2 processes of this run to start at 127.0.0.1:{port} (gives up after "
            "--dist-timeout 2 s)") in done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith(f"error: rank 0 of 2: the other processes did not all start at 127.0.0.1:{port} "
                            "within --dist-timeout 2 s (")
    assert "1/2 clients joined" in error and "Traceback" not in done.stderr
    assert not out.exists()
