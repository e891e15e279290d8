"""Every command t2t.finetune prints for the user to run next is run here, as printed, and works.

The evaluate command after a LoRA run on an own mixture and task folder (seq2seq, with ``--push-to-hub`` to a
recording HfApi; and causal), after ``--method full`` (a plain model folder: ``--model``), and the resume
command printed on a stop. Each is split with shlex as a shell would and run in-process through the
command's ``main``; only ``--limit`` and ``--bootstrap`` are appended to keep the evaluations small.
"""

from __future__ import annotations

import json
import shlex
import signal
from pathlib import Path

import pytest
import yaml

from t2t import evaluate, finetune
from t2t.errors import run_cli
from t2t.training.recipe import FinetuneRecipe
from tests.causal_tiny import save_model_folder
from tests.training.test_hub import FakeHfApi

ECHO = """---
cluster: echo_t
source: {files: {train: echo_train.jsonl, validation: echo_val.jsonl}}
answer: "{{ word }}"
metrics: [exact_match]
---
{% block repeat %}
Repeat the word: {{ word }}
|||
{{ answer }}
{% endblock %}
"""
PICK = """---
cluster: pick_t
source: {files: {train: pick_train.jsonl, validation: pick_val.jsonl}}
choices: ["red", "blue"]
answer: "{{ choices[label] }}"
---
{% block which %}
Which color is the {{ word }}? {{ options }}
|||
{{ answer }}
{% endblock %}
"""
WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "candle"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An own task folder (two tasks, one held out) and mixture folder, and a tiny T5 over their words."""
    from t2t.modeling.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("next")
    tasks, mixtures = root / "my tasks", root / "my mixtures"  # spaces: the printed command must quote them
    tasks.mkdir()
    mixtures.mkdir()
    (tasks / "echo.jinja").write_text(ECHO)
    (tasks / "pick.jinja").write_text(PICK)
    for split, rows in (("train", range(16)), ("val", range(16, 20))):
        (tasks / f"echo_{split}.jsonl").write_text("".join(json.dumps({"word": WORDS[i % 8] + str(i)}) + "\n"
                                                           for i in rows))
        (tasks / f"pick_{split}.jsonl").write_text("".join(json.dumps({"word": WORDS[i % 8], "label": i % 2})
                                                           + "\n" for i in rows))
    (mixtures / "mine.yaml").write_text("include: {clusters: [echo_t, pick_t]}\nheldout: {clusters: [pick_t]}\n")
    corpus = [f"Repeat the word: {w}{i}" for i, w in enumerate(WORDS * 3)] + \
        [f"Which color is the {w}? red blue" for w in WORDS] + WORDS
    model = build_tiny_model(corpus, root / "tiny-t5", vocab_size=320, d_model=16, d_ff=32, d_kv=8, num_heads=2,
                             num_layers=1, num_decoder_layers=1)
    return {"root": root, "tasks": tasks, "mixtures": mixtures, "t5": model}


def finetune_args(folders: dict[str, Path], out: Path, model: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--mixture", "mine", "--mixture-dir", str(folders["mixtures"]),
            "--task-dir", str(folders["tasks"]), "--output-dir", str(out), "--max-steps", "2", "--batch-size",
            "4", "--warmup-steps", "0", "--eval-steps", "0", "--save-steps", "0", "--no-progress",
            "--max-input-len", "32", "--max-target-len", "8", *extra]


def printed_command(stdout: str, module: str) -> list[str]:
    """The one command line of ``module`` that the output shows, split as a shell splits it."""
    lines = [line.strip() for line in stdout.splitlines() if f" -m {module} " in line]
    assert len(lines) == 1, stdout
    argv = shlex.split(lines[0])
    assert argv[1:3] == ["-m", module], argv
    return argv[3:]


def run_evaluate(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    rc = run_cli(evaluate.main, [*argv, "--limit", "2", "--bootstrap", "0", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return captured.out + captured.err


def test_lora_run_prints_an_evaluate_command_that_runs(folders: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Also --push-to-hub, through a recording HfApi: the saved adapter is what is uploaded."""
    import huggingface_hub

    api = FakeHfApi()
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: api)
    out = tmp_path / "lora run"
    assert run_cli(finetune.main, finetune_args(folders, out, folders["t5"], "--push-to-hub", "me/mine")) == 0
    stdout = capsys.readouterr().out
    assert f"adapter saved in {out / 'adapter'}" in stdout and "pushed" in stdout
    assert api.files["adapter_model.safetensors"] == (out / "adapter" / "adapter_model.safetensors").read_bytes()
    assert "mine" in api.files["README.md"].decode() and "held-out tasks (1): pick" in api.files["README.md"].decode()
    argv = printed_command(stdout, "t2t.evaluate")
    assert "--mixture-dir" in argv and "--task-dir" in argv
    report = run_evaluate(argv, capsys)
    assert "pick" in report and "lora run" in report  # the held-out task, scored with the adapter
    assert (out / "eval" / "results.json").is_file()


def test_full_run_says_model_saved_and_prints_a_model_command(folders: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "full"
    args = finetune_args(folders, out, folders["t5"], "--method", "full", "--report-to", "none")
    assert run_cli(finetune.main, args) == 0
    assert not (out / "tb").exists() and (out / "metrics.jsonl").is_file()  # --report-to none
    stdout = capsys.readouterr().out
    assert f"model saved in {out / 'model'}" in stdout and "adapter saved" not in stdout
    argv = printed_command(stdout, "t2t.evaluate")
    assert argv[argv.index("--model") + 1] == str(out / "model") and "--adapter" not in argv
    report = run_evaluate(argv, capsys)
    assert "fully fine-tuned model" in report  # said at the top and in the report
    results = json.loads((out / "eval" / "results.json").read_text())
    assert any("fully fine-tuned" in note for note in results["notes"])


def test_causal_run_prints_an_evaluate_command_that_runs(folders: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    llama = save_model_folder(tmp_path / "tiny llama")
    out = tmp_path / "causal"
    args = finetune_args(folders, out, llama, "--attn-implementation", "sdpa", "--target-delimiter", " => ")
    assert run_cli(finetune.main, args) == 0
    argv = printed_command(capsys.readouterr().out, "t2t.evaluate")
    run_evaluate(argv, capsys)
    saved = yaml.safe_load((out / "eval" / "config.yaml").read_text())
    assert saved["scoring"]["target_delimiter"] == " => "  # the run's prompt format, carried


def test_stop_prints_a_resume_command_that_continues_the_run(folders: dict[str, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM after step 1 (simulated at the step boundary) prints ``--output-dir RUN --resume`` only;
    run as printed, from the run's config.yaml, it trains steps 2-3 and saves the adapter."""
    out = tmp_path / "stopped run"
    real = FinetuneRecipe._stop_requested

    def stop_after_first(self: FinetuneRecipe, stop: object) -> bool:
        stop.signum = signal.SIGTERM  # type: ignore[attr-defined]
        return True

    monkeypatch.setattr(FinetuneRecipe, "_stop_requested", stop_after_first)
    args = finetune_args(folders, out, folders["t5"], "--max-steps", "3", "--log-steps", "1")
    assert run_cli(finetune.main, args) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    monkeypatch.setattr(FinetuneRecipe, "_stop_requested", real)
    argv = printed_command(err, "t2t.finetune")
    assert argv == ["--output-dir", str(out), "--resume"]
    assert run_cli(finetune.main, argv) == 0, capsys.readouterr().err
    assert "resuming from" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3] and (out / "adapter" / "adapter_model.safetensors").is_file()


def test_evaluate_without_a_demo_run_prints_a_finetune_command_that_starts(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m t2t.evaluate`` with no options and no demo adapter says to run ``python -m t2t.finetune``
    first: that command (the offline demo, 300 steps) starts and trains; stopped here after its first step."""
    from t2t.evaluation.config import EvaluateConfig

    monkeypatch.chdir(tmp_path)
    evaluate.demo_config(EvaluateConfig())
    hint = capsys.readouterr().err
    assert "run python -m t2t.finetune first" in hint
    argv = shlex.split(hint.split("run ", 1)[1].split(" first")[0])
    assert argv[:3] == ["python", "-m", "t2t.finetune"]

    def stop_at_once(self: FinetuneRecipe, stop: object) -> bool:
        stop.signum = signal.SIGTERM  # type: ignore[attr-defined]
        return True

    monkeypatch.setattr(FinetuneRecipe, "_stop_requested", stop_at_once)
    assert run_cli(finetune.main, [*argv[3:], "--no-progress"]) == 128 + signal.SIGTERM
    assert (tmp_path / "runs" / "offline-demo" / "checkpoints" / "checkpoint-000001").is_dir()
