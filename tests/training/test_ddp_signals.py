"""A stop signal under DDP (issue #16): SIGTERM sent to one of 2 processes (gloo, CPU) stops both after the
same step, with one checkpoint, and ``--resume`` continues the run exactly.

Each process installs its own handler, so only the signalled rank knows; at every step boundary the ranks
sum their flags (``FinetuneRecipe._stop_requested``), so neither trains a step the other skips, and the
checkpoint (written by both: each its RNG, rank 0 the rest) is of one step.

Each launch costs two processes' start (torch, transformers, peft: most of its time), so the two stopped
runs are made once and shared, and one of them is resumed (the other's checkpoint is shown to be the same).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
MIXTURE = """\
description: a small mixture for tests
include: {tasks: [sentiment_movie, arith_sum]}
heldout: {tasks: [sentiment_product]}
rate: {strategy: proportional, cap: 3000}
"""


def torchrun(mixture_dir: Path, out: Path, *extra: str, script: str | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    target = [script] if script else ["-m", "t2t.finetune"]
    # --standalone: a rendezvous on a free port, so that two test runs on one machine never collide
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           *target, "--mixture", "small", "--mixture-dir", str(mixture_dir), "--output-dir", str(out),
           "--max-steps", "4", "--batch-size", "4", "--lora-dropout", "0.1", "--eval-steps", "0", "--save-steps", "0",
           "--log-steps", "1", "--warmup-steps", "0", "--no-progress", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def steps_logged(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


@pytest.fixture(scope="module")
def mixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mixtures")
    (folder / "small.yaml").write_text(MIXTURE)
    return folder


@pytest.fixture(scope="module")
def whole(mixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same 2-process run, not interrupted."""
    out = tmp_path_factory.mktemp("ddp") / "whole"
    done = torchrun(mixtures, out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def stopped(mixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Signalled rank -> (its run's output folder, the launcher's stderr): SIGTERM to that rank in step 2."""
    runs = {}
    for rank in ("1", "0"):
        out = tmp_path_factory.mktemp(f"stopped-rank{rank}") / "run"
        done = torchrun(mixtures, out, script=str(REPO / "tests" / "training" / "ddp_sigterm.py"),
                        env={"T2T_TEST_SIGNAL_RANK": rank, "T2T_TEST_SIGNAL_STEP": "2"})
        runs[rank] = (out, done.stderr)
    return runs


def checkpoint_files(ckpt: Path) -> dict[str, bytes]:
    """Every file of a checkpoint, with the run's own output folder taken out of state.json's config."""
    files = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    state = json.loads(files.pop("state.json"))
    state["config"]["train"].pop("output_dir")
    return {**files, "state.json": json.dumps(state, sort_keys=True).encode()}


@pytest.mark.slow
@pytest.mark.parametrize("rank", ["1", "0"])
def test_sigterm_to_one_rank_stops_both_at_one_step(stopped: dict[str, tuple[Path, str]], rank: str) -> None:
    out, err = stopped[rank]
    assert f"ddp-signal-test: SIGTERM to rank {rank} " in err, err[-3000:]
    # Both processes stop after step 2 (exit 128 + 15); rank 0 was never signalled. torchrun stops the other
    # workers once the first one exits, so the second message may be cut off: the checkpoint is not, since
    # every rank passes a barrier after it is renamed into place before any rank exits.
    stopped_lines = [line for line in err.splitlines() if line.startswith("stopped by SIGTERM after step ")]
    assert 1 <= len(stopped_lines) <= 2, err[-3000:]
    assert all(line.startswith(f"stopped by SIGTERM after step 2 of 4: checkpoint saved in "
                               f"{out / 'checkpoints' / 'checkpoint-000002'}") for line in stopped_lines)
    assert "exitcode  : 143" in err and str(REPO / "t2t") not in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-000002"]
    ckpt = out / "checkpoints" / "checkpoint-000002"
    assert sorted(p.name for p in ckpt.glob("rng-rank*.safetensors")) == ["rng-rank0.safetensors",
                                                                          "rng-rank1.safetensors"]
    assert json.loads((ckpt / "state.json").read_text())["step"] == 2
    assert steps_logged(out) == [1, 2]
    assert not (out / "adapter").exists()


@pytest.mark.slow
def test_the_resume_after_a_sigterm_to_either_rank_is_exact(stopped: dict[str, tuple[Path, str]], whole: Path,
                                                            mixtures: Path, tmp_path: Path) -> None:
    """Whichever rank got the signal, the checkpoint is the same, byte for byte (the run's output folder
    aside): so resuming one of them (one launch fewer) proves the resume of both."""
    ckpts = {rank: out / "checkpoints" / "checkpoint-000002" for rank, (out, _) in stopped.items()}
    assert checkpoint_files(ckpts["0"]) == checkpoint_files(ckpts["1"])

    out = tmp_path / "resumed"
    shutil.copytree(stopped["1"][0], out)  # the stop test reads the stopped folder as it was left
    done = torchrun(mixtures, out, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert steps_logged(out) == [1, 2, 3, 4]
    expected = load_file(str(whole / "adapter" / "adapter_model.safetensors"))
    resumed = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert expected.keys() == resumed.keys()
    assert all((expected[k] == resumed[k]).all() for k in expected)
