"""The training recipe behind ``python -m t2t.finetune``: setup, train, save; one screen per stage.

Loss normalisation: each micro-batch returns the *sum* of its target-token losses; the step divides by
the number of target tokens in the whole global batch (every process, every accumulation step). So one
step over 8 examples equals 4 accumulated steps over 2, and 2 processes equal 1 (DDP averages gradients
over processes, so each process multiplies by the process count).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from t2t.data.batches import Batcher, StepBatches, StepDataset, auto_workers, step_loader
from t2t.errors import T2TError
from t2t.modeling.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from t2t.modeling.loading import choose_precision
from t2t.modeling.loss import Seq2SeqLoss
from t2t.tasks.task import Example
from t2t.training.config import FinetuneConfig
from t2t.training.output import prepare_output_dir
from t2t.versions import library_versions


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def validation_examples(mixture: Any, n: int) -> list[Example]:
    """A fixed validation set: the first rows of each training task's validation split, templates in turn."""
    from t2t.tasks.sources import load_rows

    tasks = [e for e in mixture.entries if "validation" in e.task.splits]
    if not tasks or n <= 0:
        return []
    per_task = max(1, n // len(tasks))
    out: list[Example] = []
    for entry in tasks:
        try:
            rows = load_rows(entry.task, "validation")
        except T2TError:
            continue
        templates = list(entry.templates)
        for i in range(min(per_task, len(rows))):
            ex = entry.task.render(rows[i], i, templates[i % len(templates)])
            if ex is not None:
                out.append(ex)
    return out


def setup_model(cfg: FinetuneConfig, model_path: str) -> torch.nn.Module:
    from t2t.modeling.loading import apply_lora, load_model

    torch.manual_seed(cfg.train.seed)
    model = load_model(model_path, cfg.model.attn_implementation, cfg.model.revision)
    if cfg.tuning.method == "lora":
        model = apply_lora(model, cfg.tuning.lora_r, cfg.tuning.lora_alpha, cfg.tuning.lora_dropout,
                           cfg.tuning.target_modules)
    return model


def train(cfg: FinetuneConfig) -> dict[str, Any]:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    from t2t.mixtures.stream import build_stream
    from t2t.modeling.loading import load_tokenizer, resolve_model

    # -- setup -------------------------------------------------------------------------------------
    accelerator = Accelerator(mixed_precision=choose_precision(cfg), cpu=not torch.cuda.is_available())
    rank, world, is_main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    t = cfg.train
    micro_batches = world * t.grad_accum
    if t.batch_size % micro_batches:
        raise T2TError(f"--batch-size {t.batch_size} must be a multiple of processes x --grad-accum "
                       f"({world} x {t.grad_accum})")
    # The mixture is checked (held-out leakage, unknown names) before anything is written.
    stream = build_stream(cfg.data.mixture, heldout=cfg.data.heldout, seed=t.seed,
                          task_dirs=cfg.data.task_dir, mixture_dirs=cfg.data.mixture_dir)
    out = prepare_output_dir(cfg, is_main)
    accelerator.wait_for_everyone()
    ckpt_root = out / "checkpoints"
    start_step, resume_from = 0, None
    if t.resume:
        found = list_checkpoints(ckpt_root)
        if not found:
            raise T2TError(f"--resume: no complete checkpoint in {ckpt_root}; run without --resume to start")
        start_step, resume_from = found[-1]

    set_seed(t.seed)
    model_path = resolve_model(cfg.model.model, cfg.data.task_dir)
    tokenizer = load_tokenizer(model_path, cfg.model.revision)
    model = setup_model(cfg, model_path)
    base_config = getattr(model, "config", None)
    decoder_start = getattr(base_config, "decoder_start_token_id", None)
    batcher = Batcher(tokenizer, cfg.data, decoder_start if decoder_start is not None else 0)
    val_examples = validation_examples(stream.mixture, t.eval_examples) if t.eval_steps else []

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon,
                                  weight_decay=t.weight_decay)
    scheduler = get_scheduler({"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
                              [t.schedule], optimizer, num_warmup_steps=t.warmup_steps,
                              num_training_steps=t.max_steps)
    loss_module, optimizer = accelerator.prepare(Seq2SeqLoss(model), optimizer)
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimizer, rank, world)
        check_same_run(state.get("config", {}), cfg, resume_from)
        scheduler.load_state_dict(state["scheduler"])
        stream.load_state_dict(state["stream"])
        if is_main:
            print(f"resuming from {resume_from} (step {start_step})", flush=True)
    manifest = stream.manifest()
    if is_main:
        n_trainable = sum(p.numel() for p in params)
        n_total = sum(p.numel() for p in model.parameters())
        _write_json_atomic(out / "config.json", {**cfg.to_dict(), "resolved_model": model_path})
        _write_json_atomic(out / "manifest.json", manifest)
        _write_json_atomic(out / "versions.json", {**library_versions(), "processes": world,
                                                   "trainable_params": n_trainable, "total_params": n_total})

    # -- train -------------------------------------------------------------------------------------
    logger = MetricsLogger(out, is_main, t.progress, start_step, t.max_steps, t.log_steps)
    loss_module.train()
    steps = StepDataset(stream, batcher, t.batch_size, t.grad_accum, rank, world)
    on_gpu = accelerator.device.type == "cuda"
    workers = auto_workers(cfg.data.data_workers, on_gpu, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    loader = step_loader(steps, start_step, t.max_steps, workers, pin_memory=on_gpu)
    for step, prepared in zip(range(start_step, t.max_steps), loader, strict=True):
        if prepared.error is not None:
            raise T2TError(prepared.error)
        step_loss, real_tokens = backward_step(loss_module, prepared, batcher.pad_id, accelerator)
        if not torch.isfinite(step_loss):
            last = list_checkpoints(ckpt_root)
            raise T2TError(f"training stopped: the loss is {step_loss.item()} at step {step + 1}; nothing was "
                           f"saved from this step (last good checkpoint: {last[-1][1] if last else 'none'}); "
                           "lower --lr or check the data of this step")
        grad_norm = (accelerator.clip_grad_norm_(params, t.max_grad_norm) if t.max_grad_norm > 0 else None)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        logger.step(done, float(step_loss), scheduler.get_last_lr()[0],
                    float(grad_norm) if grad_norm is not None else None, real_tokens * world)
        if t.eval_steps and val_examples and (done % t.eval_steps == 0 or done == t.max_steps):
            logger.log(done, {"val_loss": evaluate_loss(loss_module, batcher, val_examples, accelerator)})
        if (t.save_steps and done % t.save_steps == 0) or done == t.max_steps:
            state = {"scheduler": scheduler.state_dict(), "stream": stream.state_dict(done * t.batch_size),
                     "config": cfg.to_dict(), "loss": float(step_loss)}
            save_checkpoint(ckpt_root, done, model, optimizer, state, t.keep_checkpoints, rank, world,
                            accelerator.wait_for_everyone if world > 1 else None)
    logger.close()

    # -- save --------------------------------------------------------------------------------------
    adapter_dir = out / ("adapter" if cfg.tuning.method == "lora" else "model")
    if is_main:
        save_final(model, tokenizer, adapter_dir, merge_dir=out / "merged" if t.merge else None)
    accelerator.wait_for_everyone()
    heldout = [h["name"] for h in manifest["heldout"]["tasks"]]
    return {"is_main": is_main, "adapter_dir": str(adapter_dir), "heldout": heldout, "output_dir": str(out)}


# Options that may change between a run and its resumption: they do not change what is computed.
RESUMABLE_CHANGES = {"resume", "overwrite", "progress", "output_dir", "data_workers"}


def check_same_run(saved: dict[str, Any], cfg: FinetuneConfig, path: Path) -> None:
    """A resumed run must use the config it was started with, or it would not continue exactly."""
    now = cfg.to_dict()
    changed = sorted(f"--{key.replace('_', '-')} {saved[section][key]!r:.40} -> {value!r:.40}"
                     for section, values in now.items() for key, value in values.items()
                     if key not in RESUMABLE_CHANGES and section in saved and key in saved[section]
                     and saved[section][key] != value)
    if changed:
        raise T2TError(f"--resume: {path} was written with other options ({'; '.join(changed)}); resume with "
                       "the original options (see config.json in the output folder) or start a new run")


def backward_global_batch(loss_module: torch.nn.Module, batcher: Batcher, tokens: Sequence[dict[str, list[int]]],
                          grad_accum: int, accelerator: Any) -> tuple[torch.Tensor, int]:
    """Accumulate the gradients of one global batch (its token ids) on this process; return (mean loss,
    real tokens). What the training loop does for one step, with the batching in this process."""
    prepared = batcher.step_batches(tokens, accelerator.process_index, accelerator.num_processes, grad_accum)
    return backward_step(loss_module, prepared, batcher.pad_id, accelerator)


def backward_step(loss_module: torch.nn.Module, prepared: StepBatches, pad_id: int,
                  accelerator: Any) -> tuple[torch.Tensor, int]:
    """Accumulate the gradients of this process's micro-batches of one global batch.

    Each micro-batch's loss sum is divided by the target tokens of the whole global batch (times the
    process count, which DDP's gradient averaging divides out again); gradients are synchronised once,
    after the last micro-batch.
    """
    world = accelerator.num_processes
    global_tokens = prepared.global_tokens
    step_loss = torch.zeros((), device=accelerator.device)
    real_tokens = 0
    for k, cpu_batch in enumerate(prepared.batches):
        # Counted on the CPU copy: int() of a GPU tensor would wait for the GPU at every micro-batch.
        real_tokens += int((cpu_batch["input_ids"] != pad_id).sum()) + int((cpu_batch["labels"] >= 0).sum())
        batch = {key: v.to(accelerator.device, non_blocking=True) for key, v in cpu_batch.items()}
        sync = contextlib.nullcontext() if k == len(prepared.batches) - 1 else accelerator.no_sync(loss_module)
        with sync, accelerator.autocast():
            loss_sum, _ = loss_module(batch)
            loss = loss_sum * (world / global_tokens)
        accelerator.backward(loss)
        step_loss += loss_sum.detach()
    return accelerator.reduce(step_loss, reduction="sum") / global_tokens, real_tokens


@torch.no_grad()
def evaluate_loss(loss_module: torch.nn.Module, batcher: Batcher, examples: Sequence[Example],
                  accelerator: Any, chunk: int = 64) -> float:
    loss_module.eval()
    total = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    tokens = 0
    rank, world = accelerator.process_index, accelerator.num_processes
    for start in range(rank * chunk, len(examples), chunk * world):
        toks = batcher.tokenize(examples[start:start + chunk])
        batch = {k: v.to(accelerator.device) for k, v in batcher.collate(toks).items()}
        with accelerator.autocast():
            loss_sum, n = loss_module(batch)
        total += loss_sum.double()
        tokens += int(n)
    loss_module.train()
    total = accelerator.reduce(total, reduction="sum")
    count = accelerator.reduce(torch.tensor(float(tokens), device=accelerator.device), reduction="sum")
    return float(total / count.clamp(min=1))


def _save_model_dir(model: torch.nn.Module, tokenizer: Any, out: Path) -> None:
    """Write a model (or adapter) folder into a temp folder, then rename it into place."""
    import shutil

    tmp, old = out.with_name(f".{out.name}.tmp"), out.with_name(f".{out.name}.old")
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    if out.exists():  # renamed away, not deleted in place: a kill never leaves a half folder under its name
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def save_final(model: torch.nn.Module, tokenizer: Any, out: Path, merge_dir: Path | None = None) -> None:
    """The adapter (or full model) folder, and with ``merge_dir`` the base with the adapter merged in."""
    _save_model_dir(model, tokenizer, out)
    if merge_dir is not None and hasattr(model, "merge_and_unload"):
        import copy

        _save_model_dir(copy.deepcopy(model).merge_and_unload(), tokenizer, merge_dir)


class MetricsLogger:
    """Progress bar (loss, tokens/s, ETA), metrics.jsonl and TensorBoard, on the main process only."""

    def __init__(self, out: Path, active: bool, progress: bool, start: int, total: int, every: int) -> None:
        self.active, self.out, self.every, self.total = active, out, every, total
        self.bar = self.tb = self.file = None
        self.t0, self.tokens, self.last_loss = time.perf_counter(), 0, math.nan
        if not active:
            return
        self.file = open(out / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))
        except ImportError:
            self.tb = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, desc="train", dynamic_ncols=True)

    def step(self, step: int, loss: float, lr: float, grad_norm: float | None, tokens: int) -> None:
        if not self.active:
            return
        self.tokens += tokens
        elapsed = time.perf_counter() - self.t0
        tps = self.tokens / max(elapsed, 1e-9)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tps:,.0f}")
        if step % self.every == 0 or step == self.total:
            self.log(step, {"loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": tps})

    def log(self, step: int, values: dict[str, float | None]) -> None:
        if not self.active:
            return
        record = {"step": step, **{k: v for k, v in values.items() if v is not None}}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if key != "step":
                    self.tb.add_scalar(f"train/{key}", value, step)
        if "val_loss" in values and self.bar is not None:
            self.bar.write(f"step {step}: val_loss {values['val_loss']:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.file is not None:
            self.file.close()
