"""``--output-dir RUN --resume`` alone continues RUN from its config.yaml; ``--max-steps`` may change on resume
(the schedule re-planned and said so), and the extended run is itself resumable exactly; warm-up that covers
the whole run is refused."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from t2t import finetune
from t2t.errors import T2TError, run_cli
from t2t.training.config import build_config

MIXTURE = "include: {tasks: [sentiment_movie, topic_sentence, arith_sum]}\nrate: {strategy: equal}\n"
LR, WARMUP = 1e-2, 2


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A 4-step run, then the same run resumed with ``--max-steps 8`` by ``--output-dir RUN --resume``."""
    root = tmp_path_factory.mktemp("extend")
    (root / "mixtures").mkdir()
    (root / "mixtures" / "three.yaml").write_text(MIXTURE)
    run = root / "run"
    args = ["--mixture", "three", "--mixture-dir", str(root / "mixtures"), "--output-dir", str(run),
            "--max-steps", "4", "--batch-size", "4", "--save-steps", "2", "--keep-checkpoints", "9", "--eval-steps",
            "0", "--no-progress", "--lora-dropout", "0.1", "--log-steps", "1", "--lr", str(LR), "--warmup-steps",
            str(WARMUP), "--max-input-len", "64", "--max-target-len", "16"]
    assert run_cli(finetune.main, args) == 0
    first = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        assert run_cli(finetune.main, ["--output-dir", str(run), "--resume", "--max-steps", "8"]) == 0
    return {"root": root, "run": run, "first": first, "log": log.getvalue()}


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def adapter(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


def test_max_steps_extended_on_resume_replans_the_schedule(extended: dict) -> None:
    from transformers import get_scheduler

    run = extended["run"]
    assert "resuming from" in extended["log"] and "(step 4)" in extended["log"]
    assert "--max-steps 4 -> 8" in extended["log"] and "warm-up (2 steps) finished" in extended["log"]
    assert "linear decay to 0 at step 8" in extended["log"]
    records = [r for r in metrics(run) if "lr" in r]
    assert [r["step"] for r in records] == list(range(1, 9))
    # steps 5-8 follow the schedule of an 8-step run (what a run planned for 8 steps would log)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    schedule = get_scheduler("linear", optimizer, num_warmup_steps=WARMUP, num_training_steps=8)
    planned = []
    for _ in range(8):
        optimizer.step()
        schedule.step()
        planned.append(schedule.get_last_lr()[0])
    assert [r["lr"] for r in records[4:]] == pytest.approx(planned[4:], rel=1e-6)
    assert planned[3] != records[3]["lr"]  # steps 1-4 ran on the 4-step plan: this is a re-plan
    saved = (run / "config.yaml").read_text()
    assert "max_steps: 8" in saved  # the run's config is now the 8-step one
    assert any((adapter(run)[k] != extended["first"][k]).any() for k in extended["first"])


def test_an_extended_run_resumes_exactly(extended: dict, tmp_path: Path) -> None:
    """A crash after the extended run's step-6 checkpoint, then ``--output-dir RUN --resume``: the same
    adapter and the same losses as the extended run that was not interrupted."""
    run, crashed = extended["run"], tmp_path / "crashed"
    shutil.copytree(run, crashed)
    shutil.rmtree(crashed / "checkpoints" / "checkpoint-000008")
    shutil.rmtree(crashed / "adapter")
    kept = [line for line in (run / "metrics.jsonl").read_text().splitlines() if json.loads(line)["step"] <= 7]
    (crashed / "metrics.jsonl").write_text("\n".join(kept) + "\n")  # a death in step 8, after its log line
    assert run_cli(finetune.main, ["--output-dir", str(crashed), "--resume"]) == 0
    ref, got = adapter(run), adapter(crashed)
    assert ref.keys() == got.keys() and all((ref[k] == got[k]).all() for k in ref)
    assert [(r["step"], r["loss"], r["lr"]) for r in metrics(crashed) if "loss" in r] == \
        [(r["step"], r["loss"], r["lr"]) for r in metrics(run) if "loss" in r]


def test_resume_refuses_a_changed_run_and_max_steps_below_the_step(extended: dict, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "copy"
    shutil.copytree(extended["run"], run)
    assert run_cli(finetune.main, ["--output-dir", str(run), "--resume", "--max-steps", "6"]) == 2
    err = capsys.readouterr().err
    assert "--resume --max-steps 6: " in err and "is at step 8 already" in err, err
    assert run_cli(finetune.main, ["--output-dir", str(run), "--resume", "--lr", "0.5"]) == 2
    assert "--lr 0.01 -> 0.5" in capsys.readouterr().err  # the saved options, overridden by the flag, refused


def test_warmup_covering_the_run_is_refused_with_the_fix() -> None:
    with pytest.raises(T2TError, match=r"--warmup-steps 20 >= --max-steps 20: the whole run would be warm-up.*"
                                       r"use --warmup-steps 2"):
        build_config({"max_steps": 20})
    assert build_config({"max_steps": 21}).train.warmup_steps == 20
    assert build_config({"max_steps": 3}).train.max_steps == 3  # a smoke test: warned by the run instead
