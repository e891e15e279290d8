"""python -m t2t.finetune on a decoder-only model: LoRA, --merge, --method full, --chat-template, validation loss,
gradient accumulation and packing, outputs that load in plain transformers + peft."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from t2t.training.config import build_config
from t2t.training.recipe import train
from tests.causal_tiny import save_model_folder

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


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model_folder(tmp_path_factory.mktemp("tiny-llama"))


def run(model: Path, mixture_dir: Path, out: Path, **overrides: object) -> dict:
    values = {"model": str(model), "mixture": "small", "mixture_dir": [str(mixture_dir)], "output_dir": str(out),
              "max_steps": 2, "batch_size": 4, "lora_dropout": 0.0, "eval_steps": 0, "save_steps": 0,
              "progress": False, "warmup_steps": 0, "max_input_len": 48, "max_target_len": 12, "lr": 1e-2,
              "attn_implementation": "sdpa", **overrides}
    return train(build_config(values))


def test_lora_adapter_and_merged_model_load_in_plain_transformers(llama_dir: Path, mixture_dir: Path,
                                                                  tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    run(llama_dir, mixture_dir, out, merge=True, eval_steps=2, eval_examples=8)
    config = json.loads((out / "config.json").read_text())
    assert config["model_family"] == "causal"
    assert {k: config["data"][k] for k in ("chat_template", "target_delimiter", "loss_on")} == \
        {"chat_template": False, "target_delimiter": " ", "loss_on": "target"}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in m and 0 < m["val_loss"] < 20 for m in metrics)
    adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["task_type"] == "CAUSAL_LM"
    assert set(adapter_cfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"}

    tok = AutoTokenizer.from_pretrained(out / "adapter")
    tok.padding_side = "left"  # batched generation with a decoder-only model
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(llama_dir), out / "adapter").eval()
    enc = tok(["Review: the film was great fun.", "Question: sum of 3 and 4?"], return_tensors="pt",
              padding=True)
    with torch.no_grad():
        ids = plain.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
        merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
        merged_ids = merged.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
        torch.testing.assert_close(merged(**enc).logits, plain(**enc).logits, rtol=1e-4, atol=1e-4)
    assert ids.shape[0] == 2 and enc["input_ids"].shape[1] < ids.shape[1] <= enc["input_ids"].shape[1] + 4
    assert torch.equal(ids, merged_ids)
    # The adapter changed the model: its LoRA B weights moved away from zero.
    assert any(p.abs().sum() > 0 for n, p in plain.named_parameters() if "lora_B" in n)


def test_full_finetuning_saves_a_plain_model(llama_dir: Path, mixture_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / "full"
    run(llama_dir, mixture_dir, out, method="full", lr=1e-3)
    tuned = AutoModelForCausalLM.from_pretrained(out / "model")
    base = AutoModelForCausalLM.from_pretrained(llama_dir)
    changed = [n for n, p in tuned.state_dict().items() if not torch.equal(p, base.state_dict()[n])]
    assert changed and any("embed_tokens" in n for n in changed)


def test_packing_and_accumulation_give_the_same_gradient(llama_dir: Path, mixture_dir: Path) -> None:
    """One batch of 8 packed = 4 accumulated micro-batches = padded = tiny token budgets: same loss and gradient."""
    from accelerate import Accelerator

    from t2t.data.batches import Batcher
    from t2t.mixtures.stream import build_stream
    from t2t.modeling.loading import load_tokenizer
    from t2t.modeling.loss import loss_for_model
    from t2t.training.recipe import backward_global_batch, setup_model

    stream = build_stream("small", mixture_dirs=[str(mixture_dir)], seed=0)
    tok = load_tokenizer(str(llama_dir))
    accelerator = Accelerator(cpu=True)
    results = []
    for accum, packing, budget in [(1, True, 100_000), (4, True, 0), (1, False, 0), (1, True, 64)]:
        cfg = build_config({"model": str(llama_dir), "grad_accum": accum, "packing": packing, "batch_size": 8,
                            "lora_dropout": 0.0, "micro_batch_tokens": budget, "max_input_len": 48,
                            "max_target_len": 12, "pack_input_len": 96, "pack_target_len": 32,
                            "attn_implementation": "sdpa"})
        model = setup_model(cfg, str(llama_dir))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
        batcher = Batcher(tok, cfg.data, 0, family="causal")
        tokens = batcher.tokenize([d.example for d in stream.draws(0, 8)])
        loss, _ = backward_global_batch(loss_for_model(model), batcher, tokens, accum, accelerator)
        results.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    loss0, grads0 = results[0]
    for loss, grads in results[1:]:
        assert loss == pytest.approx(loss0, rel=1e-5)
        for name, g in grads.items():
            torch.testing.assert_close(g, grads0[name], rtol=1e-4, atol=1e-7)


def test_chat_template_trains(mixture_dir: Path, tmp_path: Path) -> None:
    model = save_model_folder(tmp_path / "chat-model", chat=True)
    out = tmp_path / "chat"
    run(model, mixture_dir, out, chat_template=True, loss_on="target")
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["chat_template"] is True
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_chat_template_without_a_template_is_one_line_error(llama_dir: Path, mixture_dir: Path,
                                                              tmp_path: Path) -> None:
    from t2t.errors import T2TError

    with pytest.raises(T2TError, match="no chat template"):
        run(llama_dir, mixture_dir, tmp_path / "x", chat_template=True)


def test_gpt2_shaped_model_trains_lora_from_the_command_line(mixture_dir: Path, tmp_path: Path) -> None:
    model = save_model_folder(tmp_path / "gpt2", style="gpt2_style", arch="gpt2")
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "t2t.finetune", "--model", str(model), "--mixture", "small", "--mixture-dir",
           str(mixture_dir), "--output-dir", str(out), "--max-steps", "2", "--batch-size", "4", "--eval-steps",
           "0", "--save-steps", "0", "--no-progress", "--max-input-len", "48", "--max-target-len", "12",
           "--attn-implementation", "eager"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert set(adapter_cfg["target_modules"]) == {"c_attn", "c_proj", "c_fc"}
    assert adapter_cfg["task_type"] == "CAUSAL_LM"
