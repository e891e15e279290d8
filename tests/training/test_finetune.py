"""python -m t2t.finetune: loss normalisation, packing, resume, DDP parity, outputs, guards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from t2t.errors import T2TError
from t2t.training.config import build_config
from t2t.training.recipe import FinetuneRecipe, train
from tests.causal_tiny import save_model_folder
from tests.training import ddp_gradients

REPO = Path(__file__).resolve().parents[2]
MIXTURE = """\
description: a small mixture for tests
include: {tasks: [sentiment_movie, topic_sentence, arith_sum, extract_person]}
heldout: {tasks: [sentiment_product]}
rate: {strategy: proportional, cap: 3000}
"""


@pytest.fixture(scope="module")
def mixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mixtures")
    (folder / "small.yaml").write_text(MIXTURE)
    return folder


def run(mixture_dir: Path, out: Path, **overrides: object) -> dict:
    values = {"mixture": "small", "mixture_dir": [str(mixture_dir)], "output_dir": str(out), "max_steps": 2,
              "batch_size": 8, "lora_dropout": 0.0, "eval_steps": 0, "save_steps": 0, "progress": False,
              "warmup_steps": 0, **overrides}
    return train(build_config(values))


def adapter(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_accumulation_and_packing_do_not_change_the_gradient(mixture_dir: Path) -> None:
    """One batch of 8 = 4 accumulated micro-batches of 2 = many small token-budget batches = 8 unpacked rows:
    same loss, same gradient."""
    from accelerate import Accelerator

    from t2t.data.batches import Batcher
    from t2t.mixtures.stream import build_stream
    from t2t.modeling.loading import load_tokenizer, resolve_model
    from t2t.modeling.loss import Seq2SeqLoss
    from t2t.training.recipe import backward_global_batch, setup_model

    stream = build_stream("small", mixture_dirs=[str(mixture_dir)], seed=0)
    path = resolve_model("t2t-tiny")
    tok = load_tokenizer(path)
    accelerator = Accelerator(cpu=True)
    results = []
    settings = [(1, True, 100_000, 512), (4, True, 0, 512), (1, True, 64, 512), (1, False, 0, 512),
                (8, False, 0, 512), (1, True, 0, 24)]  # rows of 24/6 tokens: long examples get rows of their own
    for accum, packing, budget, row in settings:
        cfg = build_config({"grad_accum": accum, "packing": packing, "batch_size": 8, "lora_dropout": 0.0,
                            "micro_batch_tokens": budget, "pack_input_len": row, "pack_target_len": row // 4})
        model = setup_model(cfg, path)
        with torch.no_grad():  # non-zero LoRA B, so that every LoRA weight gets a gradient
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
        batcher = Batcher(tok, cfg.data, 0)
        tokens = batcher.tokenize([d.example for d in stream.draws(0, 8)])
        loss, _ = backward_global_batch(Seq2SeqLoss(model), batcher, tokens, accum, accelerator)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.item(), grads))
    ref_loss, ref = results[0]
    scale = max(g.abs().max().item() for g in ref.values())
    assert scale > 0
    for loss, grads in results[1:]:
        assert abs(loss - ref_loss) < 1e-5 * ref_loss
        assert max_diff(ref, grads) < 1e-5 * scale


def logged_losses(out: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def test_resume_continues_exactly(mixture_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The resumed run starts at the step-2 checkpoint and trains steps 3-6 only, to the same adapter.

    Training is deterministic, so the adapter alone would also match a resume that silently restarted
    from step 0: where it started and which steps ran are asserted as well."""
    options = {"max_steps": 6, "save_steps": 2, "keep_checkpoints": 5, "lora_dropout": 0.1, "log_steps": 1}
    full = tmp_path / "full"
    run(mixture_dir, full, **options)
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    # Make it look as if the run had died after the step-2 checkpoint (metrics of steps 1-2 written).
    for name in ("checkpoint-000004", "checkpoint-000006"):
        shutil.rmtree(resumed / "checkpoints" / name)
    shutil.rmtree(resumed / "adapter")
    lines = (full / "metrics.jsonl").read_text().splitlines(keepends=True)
    (resumed / "metrics.jsonl").write_text("".join(line for line in lines if json.loads(line)["step"] <= 2))
    with pytest.raises(T2TError, match="other options.*--lr 0.003 -> 0.001"):
        run(mixture_dir, resumed, **options, resume=True, lr=1e-3)
    steps_run: list[int] = []
    real_step = FinetuneRecipe._step

    def counted(self: FinetuneRecipe, done: int, *args: object) -> None:
        steps_run.append(done)
        real_step(self, done, *args)

    monkeypatch.setattr(FinetuneRecipe, "_step", counted)
    capsys.readouterr()
    run(mixture_dir, resumed, **options, resume=True)
    out = capsys.readouterr().out
    assert f"resuming from {resumed / 'checkpoints' / 'checkpoint-000002'} (step 2)" in out, out
    assert steps_run == [3, 4, 5, 6]
    assert max_diff(adapter(full), adapter(resumed)) == 0.0
    # one loss per step, steps 3-6 appended after the dead run's 1-2, each the uninterrupted run's
    assert [step for step, _ in logged_losses(resumed)] == [1, 2, 3, 4, 5, 6]
    assert logged_losses(resumed) == logged_losses(full)


def test_data_workers_prepare_the_same_steps(mixture_dir: Path, tmp_path: Path) -> None:
    """Steps rendered, tokenised and batched ahead in 2 worker processes train exactly what the training
    process alone does (dropout on), and a resume with workers continues the same run."""
    run(mixture_dir, tmp_path / "w0", max_steps=4, lora_dropout=0.1, data_workers=0)
    run(mixture_dir, tmp_path / "w2", max_steps=4, lora_dropout=0.1, data_workers=2, save_steps=2,
        keep_checkpoints=2)
    assert max_diff(adapter(tmp_path / "w0"), adapter(tmp_path / "w2")) == 0.0
    shutil.rmtree(tmp_path / "w2" / "checkpoints" / "checkpoint-000004")
    shutil.rmtree(tmp_path / "w2" / "adapter")
    run(mixture_dir, tmp_path / "w2", max_steps=4, lora_dropout=0.1, data_workers=2, save_steps=2,
        keep_checkpoints=2, resume=True)
    assert max_diff(adapter(tmp_path / "w0"), adapter(tmp_path / "w2")) == 0.0


def test_stream_end_in_a_worker_is_one_clear_error(tmp_path: Path) -> None:
    """A finite mixture that runs out while a worker prepares a step: the user error names the step and
    the stop policy (not a worker traceback), and the checkpoint written before it stays intact."""
    tasks, mixtures = tmp_path / "tasks", tmp_path / "mixtures"
    (tasks / "data").mkdir(parents=True)
    mixtures.mkdir()
    (tasks / "few.jinja").write_text(
        '---\ncluster: c\nsource: {files: {train: data/few.jsonl}}\n---\n'
        '{% block only %}\nrepeat {{ x }}\n|||\n{{ x }}\n{% endblock %}\n')
    (tasks / "data" / "few.jsonl").write_text("".join(f'{{"x": "w{i}"}}\n' for i in range(20)))
    (mixtures / "finite.yaml").write_text("include: {tasks: [few]}\nstop: first_exhausted\n")
    with pytest.raises(T2TError, match=r"stream ended at step 2 \(stop policy 'first_exhausted'\)"):
        train(build_config({"mixture": "finite", "task_dir": [str(tasks)], "mixture_dir": [str(mixtures)],
                            "output_dir": str(tmp_path / "out"), "max_steps": 5, "batch_size": 8,
                            "eval_steps": 0, "save_steps": 1, "progress": False, "data_workers": 2}))
    assert [p.name for p in sorted((tmp_path / "out" / "checkpoints").iterdir())] == [
        "checkpoint-000001", "checkpoint-000002"]


def test_outputs_load_with_plain_transformers_and_peft(mixture_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from t2t.evaluation.scoring import generate
    from t2t.modeling.loading import load_adapter, load_model, load_tokenizer

    out = tmp_path / "run"
    result = run(mixture_dir, out, max_steps=3, merge=True, lr=1e-2)
    config = json.loads((out / "config.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert [t["name"] for t in manifest["heldout"]["tasks"]] == ["sentiment_product"] == result["heldout"]
    assert {t["name"] for t in manifest["tasks"]} == {"sentiment_movie", "topic_sentence", "arith_sum",
                                                     "extract_person"}
    adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    base_path = adapter_cfg["base_model_name_or_path"]
    assert base_path == config["resolved_model"]
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))  # safetensors only

    # Plain transformers + peft, as a user would load it.
    tok = AutoTokenizer.from_pretrained(out / "adapter")
    plain = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(base_path), out / "adapter").eval()
    inputs = ["12 + 7 =", "The match was won by the home team. Topic?"]
    enc = tok(inputs, return_tensors="pt", padding=True)
    with torch.no_grad():
        plain_ids = plain.generate(**enc, max_new_tokens=8, do_sample=False)
    plain_text = tok.batch_decode(plain_ids, skip_special_tokens=True)
    # t2t's own loading and generation give the same text.
    ours = load_adapter(load_model(base_path), str(out / "adapter"))
    assert generate(ours, load_tokenizer(str(out / "adapter")), inputs, max_new_tokens=8) == plain_text
    # The merged model is a plain model with the same outputs.
    merged = AutoModelForSeq2SeqLM.from_pretrained(out / "merged").eval()
    with torch.no_grad():
        merged_ids = merged.generate(**enc, max_new_tokens=8, do_sample=False)
    assert tok.batch_decode(merged_ids, skip_special_tokens=True) == plain_text


def test_output_dir_is_never_clobbered(mixture_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(T2TError, match="not empty; pass --resume .* or --overwrite"):
        run(mixture_dir, out)
    with pytest.raises(T2TError, match="no complete checkpoint"):
        run(mixture_dir, tmp_path / "fresh", resume=True)
    assert (out / "precious.txt").read_text() == "keep me"


def test_nan_loss_stops_and_keeps_last_good_checkpoint(mixture_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from t2t.modeling import loss as finetune_loss

    out = tmp_path / "run"
    real_forward = finetune_loss.Seq2SeqLoss.forward
    calls = {"n": 0}

    def poisoned(self: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        calls["n"] += 1
        loss, n = real_forward(self, batch)
        return (loss * float("nan") if calls["n"] > 2 else loss), n

    monkeypatch.setattr(finetune_loss.Seq2SeqLoss, "forward", poisoned)
    with pytest.raises(T2TError, match="loss is nan at step 3.*checkpoint-000002"):
        run(mixture_dir, out, max_steps=4, save_steps=1)
    assert not (out / "adapter").exists()  # no poisoned adapter
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-000001", "checkpoint-000002"]


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: a rendezvous on a free port, so that two test runs on one machine never collide
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


@pytest.fixture(scope="module")
def family_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Model family -> a model of it: t2t-tiny and the tiny random Llama of tests/causal_tiny.py."""
    return {"seq2seq": "t2t-tiny", "causal": str(save_model_folder(tmp_path_factory.mktemp("tiny-llama")))}


@pytest.fixture(scope="module")
def two_process_gradients(mixture_dir: Path, family_models: dict[str, str],
                          tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path]]:
    """Family -> (model, the gradients 2 processes x accumulation 2 computed), both families in one launch."""
    folder = tmp_path_factory.mktemp("ddp-gradients")
    saved = {family: folder / f"{family}.safetensors" for family in family_models}
    pairs = [arg for family, model in family_models.items() for arg in (model, str(saved[family]))]
    done = torchrun(str(REPO / "tests" / "training" / "ddp_gradients.py"), str(mixture_dir), "2", *pairs)
    assert done.returncode == 0, done.stderr[-3000:]
    return {family: (model, saved[family]) for family, model in family_models.items()}


@pytest.mark.parametrize("family", ["seq2seq", "causal"])
def test_two_processes_give_the_gradient_of_one(two_process_gradients: dict[str, tuple[str, Path]],
                                                mixture_dir: Path, family: str) -> None:
    """The same global batch of 8: 2 DDP processes x 2 accumulated micro-batches (torchrun, gloo) and 1
    process x 4 (here, no DDP) give the same loss and gradients; the causal path with packed rows."""
    model, saved = two_process_gradients[family]
    two = load_file(str(saved))
    one = ddp_gradients.gradients(model, str(mixture_dir), 4, Accelerator(cpu=True))
    assert one.pop("examples_per_row").item() > 1 and two.pop("examples_per_row").item() > 1  # packed rows
    scale = max(g.abs().max().item() for g in one.values())
    assert abs(one["loss"].item() - two["loss"].item()) < 1e-6 * one["loss"].item()
    assert max_diff(one, two) < 1e-5 * scale


@pytest.mark.parametrize("family", ["seq2seq", "causal"])
def test_torchrun_finetune_matches_one_process(mixture_dir: Path, family_models: dict[str, str], tmp_path: Path,
                                               family: str) -> None:
    """Two processes train the adapter of one, to float noise, on any CPU: t2t-tiny, and the tiny causal
    Llama on packed rows (its training settings in ddp_gradients.py).

    With Adam's default epsilon (1e-8) the first updates are lr * sign(g): reassociation noise in a
    near-zero gradient can flip a sign and move a weight by up to 2 lr, however small the noise, and how
    often that happens depends on the CPU's kernels (max gap 8.9e-5 on an AMD EPYC, 9.5e-4 on an Intel
    Xeon, for updates of 4.5e-3), while a global gradient-scale error (a wrong loss normaliser) does not
    show at all. With epsilon far above the gradients and no clipping, an update is lr / eps times the
    (bias-corrected) momentum: linear in the gradient, at most lr / eps per unit of gradient noise. The
    gradients of 1 and 2 processes agree to 1e-5 of the largest one (the test above; 7e-8 measured), so
    after two steps the adapters agree to about 2e-5 of the largest update (6e-7 measured), whatever
    the CPU. Real errors move them by far more: a gradient scaled by 1.01 by 1e-2, another seed (data and
    init) by 1.1, half of the batch by 1.2.
    """
    args = ["--mixture", "small", "--mixture-dir", str(mixture_dir), "--max-steps", "2", "--batch-size", "8",
            "--lora-dropout", "0", "--eval-steps", "0", "--no-progress", "--warmup-steps", "0",
            "--lr", "1", "--adam-epsilon", "1", "--max-grad-norm", "0", "--model", family_models[family]]
    causal = ddp_gradients.CAUSAL_DATA if family == "causal" else {}
    for key, value in causal.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    done = torchrun("-m", "t2t.finetune", *args, "--output-dir", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "versions.json").read_text())["processes"] == 2
    run(mixture_dir, tmp_path / "one", lr=1.0, adam_epsilon=1.0, max_grad_norm=0.0, model=family_models[family],
        **causal)
    losses = [[json.loads(x)["loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
              for d in ("one", "two")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    one, two = adapter(tmp_path / "one"), adapter(tmp_path / "two")
    # LoRA B starts at zero, so its largest entry is the largest update either run made
    update = max(w.abs().max().item() for k, w in one.items() if "lora_B" in k)
    assert update > 1e-2
    assert max_diff(one, two) < 1e-4 * update


def test_cli_help_and_user_errors() -> None:
    done = subprocess.run([sys.executable, "-m", "t2t.finetune", "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0
    for option in ("--model", "--mixture", "--heldout", "--output-dir", "--max-steps", "--save-steps",
                   "--resume", "--method", "--seed", "(default: 300)"):
        assert option in done.stdout
    done = subprocess.run([sys.executable, "-m", "t2t.finetune", "--max-stpes", "3"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2 and "max-stpes" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "t2t.finetune", "--mixture", "nope"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2 and "nope" in done.stderr and done.stderr.count("\n") == 1
