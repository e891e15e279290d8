"""Learning curves from one run: adapter snapshots every N steps and the validation loss of each task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from t2t.errors import T2TError
from t2t.training.config import build_config
from t2t.training.recipe import train

MIXTURE = """\
description: two tasks for the snapshot tests
include: {tasks: [sentiment_movie, topic_sentence]}
heldout: {tasks: [sentiment_product]}
rate: {strategy: proportional, cap: 3000}
"""


def run(tmp_path: Path, out: Path, **overrides: object) -> dict:
    (tmp_path / "mixtures").mkdir(exist_ok=True)
    (tmp_path / "mixtures" / "two.yaml").write_text(MIXTURE)
    values = {"mixture": "two", "mixture_dir": [str(tmp_path / "mixtures")], "output_dir": str(out),
              "max_steps": 4, "batch_size": 4, "lora_dropout": 0.0, "save_steps": 0, "progress": False,
              "warmup_steps": 0, "eval_steps": 2, "eval_examples": 8, **overrides}
    return train(build_config(values))


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_snapshots_and_per_task_validation_loss(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run(tmp_path, out, snapshot_steps=2, eval_per_task=True)
    snaps = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snaps == ["step-000002", "step-000004"]
    final = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    last = load_file(str(out / "snapshots" / "step-000004" / "adapter_model.safetensors"))
    first = load_file(str(out / "snapshots" / "step-000002" / "adapter_model.safetensors"))
    assert final.keys() == last.keys() == first.keys()
    assert all(torch.equal(final[k], last[k]) for k in final)  # the last snapshot is the adapter
    assert any(not torch.equal(final[k], first[k]) for k in final)  # the earlier one is not
    val = [r for r in records(out) if "val_loss" in r]
    assert [r["step"] for r in val] == [2, 4]
    for r in val:
        per_task = {k: v for k, v in r.items() if k.startswith("val_loss/")}
        assert set(per_task) == {"val_loss/sentiment_movie", "val_loss/topic_sentence"}
        # the overall loss is the token-weighted mean of the tasks': it lies between them
        assert min(per_task.values()) - 1e-6 <= r["val_loss"] <= max(per_task.values()) + 1e-6
    # Each logged value again, from the snapshot of its step in plain peft and transformers' own loss, over
    # the examples recipe.validation_examples promises (per task, the first 8 // 2 validation rows, its
    # templates in turn): the per-task values differ by ~0.9 nats, the largest gap found is 1.1e-6.
    for r in val:
        expected = recomputed_validation_loss(out, out / "snapshots" / f"step-{r['step']:06d}", 8)
        assert set(expected) == {k for k in r if k.startswith("val_loss")}
        for key, value in expected.items():
            assert abs(r[key] - value) < 1e-5, (r["step"], key, r[key], value)


def recomputed_validation_loss(run_dir: Path, adapter_dir: Path, eval_examples: int) -> dict[str, float]:
    """``val_loss`` and ``val_loss/TASK`` of an adapter folder, computed without t2t's batching or loss:
    one example at a time, transformers' mean cross-entropy times its label tokens, summed per task."""
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from t2t.mixtures.resolve import load_mixture
    from t2t.tasks.sources import load_rows

    base = json.loads((run_dir / "config.json").read_text())["resolved_model"]
    model = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(base), str(adapter_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(adapter_dir))
    mixture = load_mixture("two", mixture_dirs=[run_dir.parent / "mixtures"])
    sums: dict[str, tuple[float, int]] = {}
    for entry in mixture.entries:
        rows, templates = load_rows(entry.task, "validation"), list(entry.templates)
        for i in range(eval_examples // len(mixture.entries)):
            ex = entry.task.render(rows[i], i, templates[i % len(templates)])
            labels = tok(ex.target, return_tensors="pt").input_ids
            with torch.no_grad():
                loss = model(**tok(ex.input, return_tensors="pt"), labels=labels).loss
            total, n = sums.get(entry.name, (0.0, 0))
            sums[entry.name] = (total + loss.item() * labels.numel(), n + labels.numel())
    values = {f"val_loss/{task}": total / n for task, (total, n) in sums.items()}
    values["val_loss"] = sum(t for t, _ in sums.values()) / sum(n for _, n in sums.values())
    return values


def test_a_snapshot_loads_in_plain_peft_and_is_what_training_had(tmp_path: Path) -> None:
    from peft import PeftModel

    from t2t.modeling.loading import load_model

    out, short = tmp_path / "run", tmp_path / "short"
    run(tmp_path, out, snapshot_steps=2, eval_steps=0, max_steps=4)
    # A run of 2 steps with the same schedule would differ (the linear decay ends at its own max_steps), so
    # the snapshot is compared with the same 4-step run stopped by reading its checkpoint of step 2.
    run(tmp_path, short, save_steps=2, keep_checkpoints=2, eval_steps=0, max_steps=4)
    ckpt = load_file(str(short / "checkpoints" / "checkpoint-000002" / "trainable.safetensors"))
    snap_dir = out / "snapshots" / "step-000002"
    model = PeftModel.from_pretrained(load_model(str(json.loads((out / "config.json").read_text())
                                                     ["resolved_model"])), str(snap_dir))
    lora = {k: v for k, v in model.named_parameters() if "lora_" in k}
    assert lora and lora.keys() == ckpt.keys()
    assert all(torch.equal(lora[k], ckpt[k]) for k in ckpt)


def test_snapshot_steps_must_not_be_negative(tmp_path: Path) -> None:
    with pytest.raises(T2TError, match="snapshot_steps"):
        build_config({"snapshot_steps": -1}).validate()
