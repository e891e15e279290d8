"""Crash safety: kill -9 the trainer at random moments (during steps and saves), resume, get the same adapter."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from t2t.modeling.checkpoint import list_checkpoints

REPO = Path(__file__).resolve().parents[2]
MIXTURE = """\
include: {tasks: [sentiment_movie, topic_sentence, arith_sum]}
rate: {strategy: equal}
"""


def options(mixture_dir: Path, out: Path) -> list[str]:
    return ["--mixture", "crash", "--mixture-dir", str(mixture_dir), "--output-dir", str(out), "--max-steps", "40",
            "--batch-size", "8", "--save-steps", "1", "--keep-checkpoints", "2", "--eval-steps", "0", "--no-progress",
            "--lora-dropout", "0.1"]


def started_ahead(mixture_dir: Path, out: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """A trainer that imports now and starts when its remaining options arrive on stdin (warm_finetune.py)."""
    return subprocess.Popen([sys.executable, str(REPO / "tests" / "training" / "warm_finetune.py"),
                             *options(mixture_dir, out)], cwd=REPO, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_minus_nine_and_resume_gives_the_uninterrupted_adapter(tmp_path: Path) -> None:
    mixture_dir = tmp_path / "mixtures"
    mixture_dir.mkdir()
    (mixture_dir / "crash.yaml").write_text(MIXTURE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # The uninterrupted run and each next trainer start while another process trains: a CI machine has 2 cores.
    reference = tmp_path / "reference"
    uninterrupted = subprocess.Popen([sys.executable, "-m", "t2t.finetune", *options(mixture_dir, reference)],
                                     cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
    out = tmp_path / "killed"
    rng = random.Random(1234)
    kills = 0
    spare = proc = started_ahead(mixture_dir, out, env)
    try:
        for _attempt in range(12):
            proc, spare = spare, started_ahead(mixture_dir, out, env)
            resume = bool(list_checkpoints(out / "checkpoints"))
            proc.stdin.write("--resume\n" if resume else "--overwrite\n")
            proc.stdin.flush()  # left open: communicate() below closes it (it refuses a closed one)
            if kills < 4:
                # Wait until training is under way (a new checkpoint appears), then kill at a random moment,
                # which lands inside a step or inside a checkpoint save.
                before = {p for _, p in list_checkpoints(out / "checkpoints")}
                deadline = time.monotonic() + 120
                while proc.poll() is None and time.monotonic() < deadline:
                    now = {p for _, p in list_checkpoints(out / "checkpoints")}
                    if now - before:
                        break
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.3))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    proc.stdin.close()
                    kills += 1
                    # Every checkpoint left behind is complete and loadable.
                    for _, path in list_checkpoints(out / "checkpoints"):
                        assert (path / "state.json").is_file() and (path / "trainable.safetensors").is_file()
                        load_file(str(path / "trainable.safetensors"))
                    continue
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-2000:]
            break
        _, err = uninterrupted.communicate(timeout=600)
        assert uninterrupted.returncode == 0, err[-2000:]
    finally:
        spare.communicate(input="", timeout=600)  # an empty stdin: it exits without training
        for running in (proc, uninterrupted):  # after a failed assertion
            if running.poll() is None:
                running.kill()
                running.wait()
    assert kills >= 3, "the run finished before it could be killed several times"
    ref, got = load_file(str(reference / "adapter" / "adapter_model.safetensors")), \
        load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert ref.keys() == got.keys()
    for key in ref:
        assert (ref[key] == got[key]).all(), key


def test_a_kill_while_pruning_never_leaves_a_half_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pruning renames a checkpoint away before deleting it; a kill during the deletion (simulated by an
    exception out of rmtree) leaves only a hidden folder, which the next save sweeps."""
    import shutil

    import torch

    from t2t.modeling import checkpoint

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    root = tmp_path / "checkpoints"
    for step in (1, 2):
        checkpoint.save_checkpoint(root, step, model, optimizer, {}, keep=2)
    real_rmtree = shutil.rmtree

    def killed(path, *args, **kwargs):  # deletes one file, then the process "dies"
        files = sorted(p for p in Path(path).iterdir())
        if files:
            files[-1].unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(root, 3, model, optimizer, {}, keep=2)
    monkeypatch.setattr(checkpoint.shutil, "rmtree", real_rmtree)
    assert [s for s, _ in checkpoint.list_checkpoints(root)] == [2, 3]
    assert (root / ".checkpoint-000001.del").is_dir()
    checkpoint.save_checkpoint(root, 4, model, optimizer, {}, keep=2)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-000003", "checkpoint-000004"]
    # A folder that lost a file some other way is not listed as a checkpoint either.
    (root / "checkpoint-000004" / "trainable.safetensors").unlink()
    assert [s for s, _ in checkpoint.list_checkpoints(root)] == [3]
