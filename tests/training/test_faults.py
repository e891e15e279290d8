"""Faults around a training run (issue #16): nothing already written is lost or silently damaged.

--overwrite keeps the old run until the new one can start; a damaged checkpoint is refused by name; a
resume logs each step once; a second writer is refused by the run lock; a full disk is one message;
SIGTERM stops at a step boundary with a checkpoint and says how to resume.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from t2t import atomic
from t2t.errors import T2TError
from t2t.training.config import build_config
from t2t.training.output import LOCK_FILE, RunLock
from t2t.training.recipe import train

REPO = Path(__file__).resolve().parents[2]
MIXTURE = """\
description: a small mixture for tests
include: {tasks: [sentiment_movie, arith_sum]}
heldout: {tasks: [sentiment_product]}
rate: {strategy: proportional, cap: 3000}
"""


@pytest.fixture(scope="module")
def mixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mixtures")
    (folder / "small.yaml").write_text(MIXTURE)
    return folder


def options(mixture_dir: Path, out: Path, **overrides: object) -> dict:
    return {"mixture": "small", "mixture_dir": [str(mixture_dir)], "output_dir": str(out), "max_steps": 2,
            "batch_size": 4, "lora_dropout": 0.0, "eval_steps": 0, "save_steps": 1, "progress": False,
            "warmup_steps": 0, "log_steps": 1, **overrides}


def run(mixture_dir: Path, out: Path, **overrides: object) -> dict:
    return train(build_config(options(mixture_dir, out, **overrides)))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != LOCK_FILE}


def steps_logged(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)]


@pytest.fixture(scope="module")
def finished(mixture_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step run with checkpoints 1 and 2 (copied by each test that damages it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    run(mixture_dir, out)
    return out


def copy_run(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


# -- --overwrite --------------------------------------------------------------------------------------

def test_overwrite_keeps_the_old_run_until_the_new_one_can_start(mixture_dir: Path, finished: Path,
                                                                  tmp_path: Path) -> None:
    out = copy_run(finished, tmp_path)
    before = snapshot(out)
    assert {"adapter/adapter_model.safetensors", "checkpoints/checkpoint-000002/trainable.safetensors",
            "metrics.jsonl"} <= set(before) and any(k.startswith("tb/") for k in before)
    empty_model = tmp_path / "empty-model"
    empty_model.mkdir()
    with pytest.raises(T2TError, match=f"--model {empty_model}"):
        run(mixture_dir, out, overwrite=True, model=str(empty_model))
    assert snapshot(out) == before  # adapter/, checkpoints/, tb/ and metrics.jsonl untouched
    # A new run that can start replaces it: only its own checkpoint and steps remain, no leftovers.
    run(mixture_dir, out, overwrite=True, max_steps=1, save_steps=0)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-000001"]
    assert steps_logged(out) == [1]
    assert not (out / ".overwritten").exists()


# -- damaged checkpoints ------------------------------------------------------------------------------

def zero_tensor_bytes(path: Path) -> None:
    """Zero the data after an intact header: the file still loads, as zeros."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header:] = bytes(len(data) - header)
    path.write_bytes(bytes(data))
    assert load_file(str(path))  # the loader alone does not notice


@pytest.mark.parametrize("damage", ["truncate", "empty", "zero_file", "zero_tensors"])
@pytest.mark.parametrize("name", ["trainable.safetensors", "optimizer.safetensors"])
def test_a_damaged_newest_checkpoint_is_refused_by_name(mixture_dir: Path, finished: Path, tmp_path: Path,
                                                        damage: str, name: str) -> None:
    out = copy_run(finished, tmp_path)
    newest = out / "checkpoints" / "checkpoint-000002"
    path = newest / name
    size = path.stat().st_size
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "zero_file":
        path.write_bytes(bytes(size))
    else:
        zero_tensor_bytes(path)
    with pytest.raises(T2TError) as info:
        run(mixture_dir, out, resume=True)
    message = str(info.value)
    assert str(path) in message and f"delete {newest} to resume from the checkpoint before it" in message
    assert "\n" not in message
    # As the message says: without it, the run resumes from the one before and finishes.
    shutil.rmtree(newest)
    run(mixture_dir, out, resume=True)
    assert (out / "checkpoints" / "checkpoint-000002" / name).is_file()


def test_checkpoints_record_a_sha256_per_file(finished: Path) -> None:
    from t2t.modeling.integrity import sha256_file

    ckpt = finished / "checkpoints" / "checkpoint-000002"
    files = json.loads((ckpt / "state.json").read_text())["files"]
    assert set(files) == {"trainable.safetensors", "optimizer.safetensors", "rng-rank0.safetensors"}
    assert all(files[name] == sha256_file(ckpt / name) for name in files)


# -- metrics after --resume ----------------------------------------------------------------------------

def test_resume_logs_each_step_once(mixture_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(mixture_dir, out, max_steps=4, save_steps=2, keep_checkpoints=3)
    assert steps_logged(out) == [1, 2, 3, 4]
    # A crash after step 3's log and before checkpoint 4: the resume starts again after step 2.
    shutil.rmtree(out / "checkpoints" / "checkpoint-000004")
    shutil.rmtree(out / "adapter")
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # and a torn last line
    run(mixture_dir, out, max_steps=4, save_steps=2, keep_checkpoints=3, resume=True)
    assert steps_logged(out) == [1, 2, 3, 4]


# -- one writer per folder ------------------------------------------------------------------------------

def test_a_second_writer_is_refused_while_the_lock_is_held(mixture_dir: Path, finished: Path,
                                                           tmp_path: Path) -> None:
    out = copy_run(finished, tmp_path)
    before = snapshot(out)
    held = RunLock(out).acquire()  # what a running t2t.finetune holds (flock: per open file, so it conflicts)
    try:
        for extra in ({"resume": True}, {"overwrite": True}):
            with pytest.raises(T2TError, match=f"--output-dir {out}: another t2t.finetune \\(pid {os.getpid()}\\) "
                                               "is writing to this folder"):
                run(mixture_dir, out, **extra)
    finally:
        held.release()
    assert snapshot(out) == before
    run(mixture_dir, out, resume=True)  # released: it goes on


# -- a full disk ------------------------------------------------------------------------------------------

def no_space(when: callable):
    real = atomic.write_file

    def write_file(path, write):
        if when(Path(path)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, write)

    return write_file


def test_a_full_disk_while_checkpointing_is_one_message_and_keeps_the_last_checkpoint(
        mixture_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    monkeypatch.setattr(atomic, "write_file", no_space(
        lambda p: p.name == "trainable.safetensors" and "000002" in str(p)))
    with pytest.raises(T2TError) as info:
        run(mixture_dir, out, max_steps=3)
    message = str(info.value)
    assert message.startswith(f"--output-dir {out}: cannot write checkpoint-000002 at step 2 (No space left on "
                              "device: needs about ")
    assert f"the last complete checkpoint is {out / 'checkpoints' / 'checkpoint-000001'}" in message
    assert "--resume" in message and "\n" not in message
    # The folder and the space: an estimate within a factor of 2 of what checkpoint 1 takes on disk.
    needed = re.search(r"needs about ([\d.]+) (B|kB|MB|GB) free in (\S+), ([\d.]+) (B|kB|MB|GB|TB) free now",
                       message)
    assert needed and Path(needed[3]) == out / "checkpoints", message
    estimate = float(needed[1]) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[needed[2]]
    written = sum(f.stat().st_size for f in (out / "checkpoints" / "checkpoint-000001").iterdir())
    assert written / 2 < estimate < written * 2
    # The half-written checkpoint was removed at once: only the complete one is there.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-000001"]
    monkeypatch.undo()
    run(mixture_dir, out, max_steps=3, resume=True)  # space again: the run resumes from checkpoint 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-000002", "checkpoint-000003"]


def test_a_full_disk_while_logging_or_saving_the_adapter(mixture_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from t2t.training import monitor, recipe

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "log"
    monkeypatch.setattr(monitor.MetricsLogger, "log", full)
    with pytest.raises(T2TError, match="cannot write metrics or a checkpoint at step 1 \\(No space left"):
        run(mixture_dir, out)
    monkeypatch.undo()

    out = tmp_path / "adapter"
    monkeypatch.setattr(recipe, "record_checksums", full)  # inside the staged adapter folder
    with pytest.raises(T2TError) as info:
        run(mixture_dir, out)
    assert str(info.value).startswith(f"--output-dir {out}: cannot write adapter/ (No space left on device: "
                                      f"needs about ")
    assert f" free in {out}, " in str(info.value)
    assert not (out / "adapter").exists() and not (out / ".adapter.tmp").exists()
    monkeypatch.undo()
    run(mixture_dir, out, resume=True)  # the final checkpoint is there: resuming only writes the adapter
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


# -- two processes and SIGTERM -----------------------------------------------------------------------------

def finetune(mixture_dir: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "t2t.finetune", "--mixture", "small", "--mixture-dir", str(mixture_dir),
            "--output-dir", str(out), "--batch-size", "2", "--eval-steps", "0", "--save-steps", "0",
            "--log-steps", "1", "--warmup-steps", "0", "--no-progress", *extra]


@pytest.mark.slow
def test_a_second_process_is_refused_and_sigterm_stops_with_a_checkpoint(mixture_dir: Path,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = subprocess.Popen(finetune(mixture_dir, out, "--max-steps", "100000"), cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600  # a hang guard, as generous as every subprocess timeout here
        while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text()):
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.05)
        for extra in ("--resume", "--overwrite"):
            second = subprocess.run(finetune(mixture_dir, out, "--max-steps", "100000", extra), cwd=REPO,
                                    capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, second.stderr
            assert f"another t2t.finetune (pid {first.pid}) is writing to this folder" in second.stderr
            assert "Traceback" not in second.stderr
        assert first.poll() is None
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    [stopped] = [line for line in err.splitlines() if line.startswith("stopped by SIGTERM after step ")]
    step = int(stopped.split("after step ")[1].split()[0])
    assert f"checkpoint saved in {out / 'checkpoints' / f'checkpoint-{step:06d}'}" in stopped
    # the command that continues the run follows on its own line, the run's options read from its config.yaml
    assert f"python -m t2t.finetune --output-dir {out} --resume" in err.split(stopped, 1)[1].splitlines()[1]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [f"checkpoint-{step:06d}"]
    assert steps_logged(out) == list(range(1, step + 1))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_checkpoints_at_the_step_boundary_and_the_resume_is_exact(
        mixture_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int) -> None:
    from t2t.errors import Stopped
    from t2t.training import monitor

    run(mixture_dir, tmp_path / "whole", max_steps=4, save_steps=0)
    real_step = monitor.MetricsLogger.step

    def step(self, done: int, *args) -> None:
        real_step(self, done, *args)
        if done == 2:
            os.kill(os.getpid(), signum)  # arrives mid-step: the loop finishes the step, then stops

    monkeypatch.setattr(monitor.MetricsLogger, "step", step)
    out = tmp_path / "stopped"
    with pytest.raises(Stopped) as info:
        run(mixture_dir, out, max_steps=4, save_steps=0)
    assert info.value.code == 128 + signum
    assert str(info.value).startswith(f"stopped by {signal.Signals(signum).name} after step 2 of 4: checkpoint "
                                      f"saved in {out / 'checkpoints' / 'checkpoint-000002'}")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back
    monkeypatch.undo()
    run(mixture_dir, out, max_steps=4, save_steps=0, resume=True)
    whole = load_file(str(tmp_path / "whole" / "adapter" / "adapter_model.safetensors"))
    resumed = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert all((whole[k] == resumed[k]).all() for k in whole)
    assert steps_logged(out) == [1, 2, 3, 4]


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(mixture_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str], first: int) -> None:
    """A stop signal asks for a checkpoint at the step boundary; Ctrl-C before that boundary interrupts at
    once (t2t.training.recipe.StopSignals): KeyboardInterrupt from inside step 2, no checkpoint, no adapter,
    no step 3, the previous handlers put back and the output folder free for the next run."""
    from t2t.training import monitor

    real_step = monitor.MetricsLogger.step

    def step(self, done: int, *args) -> None:
        real_step(self, done, *args)
        if done == 2:
            os.kill(os.getpid(), first)  # handled: a stop at the end of this step is asked for
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again, while step 2 is still running

    monkeypatch.setattr(monitor.MetricsLogger, "step", step)
    out = tmp_path / "interrupted"
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        run(mixture_dir, out, max_steps=4, save_steps=0)
    err = capsys.readouterr().err
    assert err.count("stopping after this step, with a checkpoint (Ctrl-C again to stop at once") == 1, err
    assert "stopped by" not in err
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())
    assert not (out / "adapter").exists()
    assert steps_logged(out) == [1, 2]
    monkeypatch.undo()
    run(mixture_dir, out, max_steps=2, save_steps=0, overwrite=True)  # the lock was released
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_a_bad_row_in_training_names_the_task_file_and_row(tmp_path: Path) -> None:
    tasks, mixtures = tmp_path / "tasks", tmp_path / "mixtures"
    tasks.mkdir()
    mixtures.mkdir()
    rows = [{"text": f"t{i}", "label": i % 2} for i in range(12)]
    rows[3]["label"] = 7
    (tasks / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "labels.jinja").write_text('---\ncluster: c1\nsource: {files: rows.jsonl}\nchoices: ["a", "b"]\n'
                                        'answer: "{{ choices[label] }}"\n---\n'
                                        "{% block b %}\n{{ text }} ||| {{ answer }}\n{% endblock %}\n")
    (mixtures / "one.yaml").write_text("description: one task\ninclude: {tasks: [labels]}\n"
                                       "heldout: {tasks: [sentiment_product]}\n")
    with pytest.raises(T2TError) as info:
        train(build_config({"mixture": "one", "mixture_dir": [str(mixtures)], "task_dir": [str(tasks)],
                            "output_dir": str(tmp_path / "run"), "max_steps": 2, "batch_size": 12,
                            "eval_steps": 0, "progress": False}))
    assert str(info.value).startswith(f"{tasks / 'labels.jinja'}, task 'labels', row 3, field 'answer': ValueError: "
                                      "choices[7]: there are only 2 choices")
