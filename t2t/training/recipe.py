"""The training recipe behind ``python -m t2t.finetune``: setup, train, save; one screen per step.

Loss normalisation: each micro-batch returns the *sum* of its target-token losses; the step divides by
the number of target tokens in the whole global batch (every process, every accumulation step). So one
step over 8 examples equals 4 accumulated steps over 2, and 2 processes equal 1 (DDP averages gradients
over processes, so each process multiplies by the process count).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from t2t import config as configs
from t2t.atomic import write_dir, write_json
from t2t.data.batches import Batcher, StepBatches, StepDataset, auto_workers, batch_tokens, step_loader
from t2t.errors import Stopped, T2TError
from t2t.mixtures.rowcheck import check_training_rows
from t2t.mixtures.stream import build_stream
from t2t.modeling.checkpoint import (
    checkpoint_bytes,
    gathered_state,
    is_sharded,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    state_bytes,
)
from t2t.modeling.family import model_family
from t2t.modeling.integrity import record_checksums
from t2t.modeling.loading import apply_lora, choose_precision, load_adapter, load_model, load_tokenizer, resolve_model
from t2t.modeling.loss import loss_for_model
from t2t.modeling.provenance import write_run_provenance
from t2t.outputs import write_error
from t2t.tasks import sources
from t2t.tasks.task import Example
from t2t.training.config import FinetuneConfig, warmup_swallows_run
from t2t.training.distributed import start_accelerator
from t2t.training.monitor import MetricsLogger, truncate_metrics
from t2t.training.output import prepare_output_dir, retire_previous_run
from t2t.versions import library_versions


def validation_examples(mixture: Any, n: int) -> list[Example]:
    """A fixed validation set: the first rows of each training task's validation split, templates in turn."""
    tasks = [e for e in mixture.entries if "validation" in e.task.splits]
    if not tasks or n <= 0:
        return []
    per_task = max(1, n // len(tasks))
    out: list[Example] = []
    for entry in tasks:
        try:
            rows = sources.load_rows(entry.task, "validation")
        except T2TError as exc:  # never skipped silently: the validation loss would cover fewer tasks
            raise T2TError(f"validation examples (--eval-steps): {exc} (--eval-steps 0 turns validation "
                           "off)") from None
        templates = list(entry.templates)
        for i in range(min(per_task, len(rows))):
            ex = entry.task.render(rows[i], i, templates[i % len(templates)])
            if ex is not None:
                out.append(ex)
    return out


def setup_model(cfg: FinetuneConfig, model_path: str) -> torch.nn.Module:
    """The base model from ``model_path`` with LoRA applied (or all of it trainable for ``--method full``)."""
    torch.manual_seed(cfg.train.seed)
    model = load_model(model_path, cfg.model.attn_implementation, cfg.model.revision)
    if cfg.train.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if cfg.tuning.method == "lora":
        model = apply_lora(model, cfg.tuning.lora_r, cfg.tuning.lora_alpha, cfg.tuning.lora_dropout,
                           cfg.tuning.target_modules)
    return model


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Activations recomputed in the backward pass (transformers' ``activation_checkpointing_enable``, called
    ``gradient_checkpointing_enable`` before transformers 5: each decoder/encoder block's ``forward`` is run
    through ``torch.utils.checkpoint``).

    Non-reentrant ``torch.utils.checkpoint`` (``use_reentrant=False``, what the torch docs recommend): it
    computes gradients of the checkpointed blocks' parameters even when no input requires a gradient, so a
    LoRA model over a frozen embedding needs no ``enable_input_require_grads`` (peft calls it for the
    reentrant variant only, in ``prepare_model_for_kbit_training``); the RNG state is restored for the
    recomputation, so dropout masks and hence loss and gradients equal those without checkpointing."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise T2TError(f"--gradient-checkpointing: {type(model).__name__} does not support gradient "
                       "checkpointing in transformers; leave the option off")
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5 renamed it (the old name warns)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False  # a KV cache is useless in training and clashes with recomputation


class FinetuneRecipe:
    """One run of ``python -m t2t.finetune``, in torchtune's shape: :meth:`setup`, :meth:`train`,
    :meth:`save`. Everything a step needs is built in setup; the loop only trains, logs and checkpoints."""

    def __init__(self, cfg: FinetuneConfig) -> None:
        self.cfg, self.t = cfg, cfg.train

    # -- setup -------------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, t = self.cfg, self.t
        on_cpu = cfg.model.device == "cpu" or not torch.cuda.is_available()
        if cfg.model.device == "cuda" and on_cpu:
            raise T2TError("--device cuda: CUDA is not available here; use --device auto or cpu")
        try:
            self.accelerator = start_accelerator(t.dist_timeout, cpu=on_cpu, mixed_precision="no" if
                                                 cfg.model.device == "cpu" else choose_precision(cfg.model.precision))
        except RuntimeError as exc:  # accelerate's FSDP1 plugin looks for a GPU as it is built
            if not fsdp_requested():
                raise
            raise T2TError(f"the accelerate config asks for FSDP, which cannot start here ({exc})") from None
        acc = self.accelerator
        check_fsdp(acc)
        self.rank, self.world, self.is_main = acc.process_index, acc.num_processes, acc.is_main_process
        if t.batch_size % (self.world * t.grad_accum):
            raise T2TError(f"--batch-size {t.batch_size} must be a multiple of processes x --grad-accum "
                           f"({self.world} x {t.grad_accum})")
        # The mixture is checked (held-out leakage, unknown names) before anything is written.
        self.stream = build_stream(cfg.data.mixture, heldout=cfg.data.heldout, seed=t.seed,
                                   task_dirs=cfg.data.task_dir, mixture_dirs=cfg.data.mixture_dir)
        if self.is_main and t.check_rows:  # a bad row ends the run here; the launcher stops the other processes
            start = time.monotonic()
            checked = check_training_rows(self.stream, t.check_rows, t.check_seconds)
            print(f"{checked.summary(t.check_seconds)} ({time.monotonic() - start:.1f} s)", flush=True)
        # Checked, writable and locked against a second writer; nothing old is removed yet.
        self.out, self.lock = prepare_output_dir(cfg, self.is_main,
                                                 acc.wait_for_everyone if self.world > 1 else None)
        acc.wait_for_everyone()
        self.ckpt_root = self.out / "checkpoints"
        self.start_step, resume_from = self._resume_point()
        if warmup_swallows_run(t, smoke=True) and self.is_main:
            print(f"warning: --warmup-steps {t.warmup_steps} >= --max-steps {t.max_steps}: this short run is all "
                  f"warm-up (the learning rate never reaches --lr); --warmup-steps 0 avoids it", file=sys.stderr)
        self._setup_model()
        if resume_from is not None:
            self._restore(resume_from)
        self.manifest = self.stream.manifest()
        if self.is_main:
            with self._writing("the run files"):
                if t.overwrite and not t.resume:
                    # The new run has its model, tokenizer and data: only now is the old one removed.
                    retire_previous_run(self.out)
                if resume_from is not None:
                    truncate_metrics(self.out, self.start_step)  # the steps after it are logged again
                self._write_run_files()
        acc.wait_for_everyone()

    @contextlib.contextmanager
    def _writing(self, what: str, step: int | None = None, needed: int | None = None,
                 folder: Path | None = None) -> Iterator[None]:
        """An OSError while writing (a full disk, a folder gone read-only) as one T2TError that says what
        was kept. Every write is atomic, so the files already there are whole. A full disk names ``folder``
        and the space the write needs (``needed``, estimated by the caller: t2t.outputs.write_error)."""
        try:
            yield
        except OSError as exc:
            last = list_checkpoints(self.ckpt_root)
            at = f" at step {step}" if step is not None else ""
            kept = f"the last complete checkpoint is {last[-1][1]}" if last else "no checkpoint was written yet"
            reason = write_error(exc, folder or self.out, needed)
            raise T2TError(f"--output-dir {self.out}: cannot write {what}{at} ({reason}); nothing "
                           f"written before was damaged and {kept}; free space (or fix the folder) and run again"
                           f"{f' with: {resume_command(self.out)}' if last else ''}") from None

    def _resume_point(self) -> tuple[int, Path | None]:
        if not self.t.resume:
            return 0, None
        found = list_checkpoints(self.ckpt_root)
        if not found:
            raise T2TError(f"--resume: no complete checkpoint in {self.ckpt_root}; run without --resume to start")
        return found[-1]

    def _setup_model(self) -> None:
        from accelerate.utils import set_seed
        from transformers import get_scheduler

        cfg, t = self.cfg, self.t
        set_seed(t.seed)
        self.model_path = resolve_model(cfg.model.model, cfg.data.task_dir)
        self.tokenizer = load_tokenizer(self.model_path, cfg.model.revision)
        self.model = setup_model(cfg, self.model_path)
        decoder_start = getattr(getattr(self.model, "config", None), "decoder_start_token_id", None)
        # The model's config picks the feature layout and the loss (seq2seq or causal).
        self.family = model_family(self.model)
        if self.family == "seq2seq" and cfg.data.chat_template:
            raise T2TError(f"--chat-template: {self.model_path} is a seq2seq model; chat templates are for "
                           "decoder-only (causal) models: leave --chat-template off")
        self.batcher = Batcher(self.tokenizer, cfg.data, decoder_start if decoder_start is not None else 0,
                               family=self.family)
        self.val_examples = validation_examples(self.stream.mixture, t.eval_examples) if t.eval_steps else []
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.params, lr=t.lr, betas=(t.adam_beta1, t.adam_beta2),
                                      eps=t.adam_epsilon, weight_decay=t.weight_decay)
        self.scheduler = get_scheduler({"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
                                       [t.schedule], optimizer, num_warmup_steps=t.warmup_steps,
                                       num_training_steps=t.max_steps)
        self.loss_module, self.optimizer = self.accelerator.prepare(loss_for_model(self.model), optimizer)
        # FSDP2 replaces the parameters by sharded ones (the optimiser follows): clip those
        self.params = [p for p in self.model.parameters() if p.requires_grad]

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path, self.model, self.optimizer, self.rank, self.world)
        check_same_run(state.get("config", {}), self.cfg, path, self.start_step)
        # The scheduler's lambdas are rebuilt for this run's --max-steps (a LambdaLR state holds only the step
        # count; transformers' schedules are partials with no state): a new --max-steps re-plans the schedule.
        self.scheduler.load_state_dict(state["scheduler"])
        self.stream.load_state_dict(state["stream"])
        if self.is_main:
            print(f"resuming from {path} (step {self.start_step})", flush=True)
            saved_steps = state.get("config", {}).get("train", {}).get("max_steps", self.t.max_steps)
            if saved_steps != self.t.max_steps:
                print(replan_message(saved_steps, self.t, self.start_step, self.scheduler.get_last_lr()[0]),
                      flush=True)

    def _write_run_files(self) -> None:
        n_trainable = sum(p.numel() for p in self.params)
        n_total = sum(p.numel() for p in self.model.parameters())
        configs.save(self.cfg, self.out / "config.yaml")  # what --config accepts back: the same run
        write_json(self.out / "config.json", {**self.cfg.to_dict(), "resolved_model": self.model_path,
                                              "model_family": self.family}, default=str)
        write_json(self.out / "manifest.json", self.manifest, default=str)
        write_json(self.out / "versions.json", {**library_versions(), "processes": self.world,
                                                "trainable_params": n_trainable, "total_params": n_total},
                   default=str)
        # the base's weights hash and the machine: what the adapter's numbers depend on (evaluate checks the base)
        write_run_provenance(self.out, self.model_path, self.cfg.model.revision, self.cfg.model.model,
                             str(self.accelerator.device))

    # -- train -------------------------------------------------------------------------------------
    def train(self) -> None:
        t, acc = self.t, self.accelerator
        with self._writing("metrics.jsonl and tb/"):
            logger = MetricsLogger(self.out, self.is_main, t.progress, self.start_step, t.max_steps, t.log_steps,
                                   resumed=t.resume, report_to=t.report_to, config=self.cfg.to_dict())
        self.loss_module.train()
        steps = StepDataset(self.stream, self.batcher, t.batch_size, t.grad_accum, self.rank, self.world)
        on_gpu = acc.device.type == "cuda"
        workers = auto_workers(self.cfg.data.data_workers, on_gpu, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        loader = step_loader(steps, self.start_step, t.max_steps, workers, pin_memory=on_gpu)
        try:
            with stop_signals() as stop:
                for step, prepared in zip(range(self.start_step, t.max_steps), loader, strict=True):
                    with self._writing("metrics or a checkpoint", step + 1):
                        self._step(step + 1, prepared, logger)
                        if step + 1 < t.max_steps and self._stop_requested(stop):
                            self._stop(step + 1, stop.signum)
        finally:
            with contextlib.suppress(OSError):
                logger.close()

    def _stop_requested(self, stop: StopSignals) -> bool:
        """Whether a stop signal arrived (on any process: every process must stop at the same step)."""
        if self.world == 1:
            return stop.signum is not None
        flag = torch.tensor(float(stop.signum or 0), device=self.accelerator.device)
        signum = int(self.accelerator.reduce(flag, reduction="sum").item())
        if signum and stop.signum is None:
            stop.signum = signal.SIGTERM
        return bool(signum)

    def _stop(self, done: int, signum: int) -> None:
        """SIGINT/SIGTERM: a checkpoint of step ``done`` (unless one was just written), then :class:`Stopped`."""
        t = self.t
        if not (t.save_steps and done % t.save_steps == 0):
            self._save_checkpoint(done, self.last_loss)
        self.accelerator.wait_for_everyone()
        name = signal.Signals(signum).name
        message = (f"stopped by {name} after step {done} of {t.max_steps}: checkpoint saved in "
                   f"{self.ckpt_root / f'checkpoint-{done:06d}'}; continue it (its options are in its config.yaml) "
                   f"with:\n  {resume_command(self.out)}")
        raise Stopped(message, 128 + signum)

    def _save_checkpoint(self, done: int, loss: float) -> None:
        t, acc = self.t, self.accelerator
        state = {"scheduler": self.scheduler.state_dict(), "stream": self.stream.state_dict(done * t.batch_size),
                 "config": self.cfg.to_dict(), "loss": loss}
        with self._writing(f"checkpoint-{done:06d}", done, checkpoint_bytes(self.model), self.ckpt_root):
            save_checkpoint(self.ckpt_root, done, self.model, self.optimizer, state, t.keep_checkpoints,
                            self.rank, self.world, acc.wait_for_everyone if self.world > 1 else None)

    def _step(self, done: int, prepared: StepBatches, logger: MetricsLogger) -> None:
        """Optimiser step number ``done`` (1-based): backward, checks, update, logs, checkpoint."""
        t, acc = self.t, self.accelerator
        if prepared.error is not None:
            raise T2TError(prepared.error)
        step_loss, real_tokens = backward_step(self.loss_module, prepared, self.batcher.pad_id, acc)
        if not torch.isfinite(step_loss):
            last = list_checkpoints(self.ckpt_root)
            raise T2TError(f"training stopped: the loss is {step_loss.item()} at step {done}; nothing was "
                           f"saved from this step (last good checkpoint: {last[-1][1] if last else 'none'}); "
                           "lower --lr or check the data of this step")
        grad_norm = acc.clip_grad_norm_(self.params, t.max_grad_norm) if t.max_grad_norm > 0 else None
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        logger.step(done, float(step_loss), self.scheduler.get_last_lr()[0],
                    float(grad_norm) if grad_norm is not None else None, real_tokens * self.world)
        if t.eval_steps and self.val_examples and (done % t.eval_steps == 0 or done == t.max_steps):
            logger.log(done, self._validation())
        self.last_loss = float(step_loss)
        if (t.save_steps and done % t.save_steps == 0) or done == t.max_steps:
            self._save_checkpoint(done, self.last_loss)
        if t.snapshot_steps and (done % t.snapshot_steps == 0 or done == t.max_steps):
            self._save_snapshot(done)

    def _validation(self) -> dict[str, float]:
        """``val_loss`` over the validation examples; with ``eval_per_task`` also ``val_loss/TASK`` for each
        task, over the same examples of that task (so two runs that share a task's rows share its curve)."""
        acc = self.accelerator
        values = {"val_loss": evaluate_loss(self.loss_module, self.batcher, self.val_examples, acc)}
        if self.t.eval_per_task:
            by_task: dict[str, list[Example]] = {}
            for ex in self.val_examples:
                by_task.setdefault(ex.task, []).append(ex)
            for task, examples in by_task.items():
                values[f"val_loss/{task}"] = evaluate_loss(self.loss_module, self.batcher, examples, acc)
        return values

    def _save_snapshot(self, done: int) -> None:
        """The adapter as it is after step ``done``: ``snapshots/step-NNNNNN``, a folder peft (and
        ``t2t.evaluate --adapter``) loads. Rewritten whole on a resumed run."""
        state = gathered_state(self.model, trainable_only=True) if is_sharded(self.model) else None
        if self.is_main:
            needed = state_bytes(self.model, trainable_only=True)
            with self._writing("a snapshot", done, needed, self.out / "snapshots"):
                save_final(self.model, self.tokenizer, self.out / "snapshots" / f"step-{done:06d}", state_dict=state)
        self.accelerator.wait_for_everyone()

    # -- save --------------------------------------------------------------------------------------
    def save(self) -> dict[str, Any]:
        """The tuned weights: ``adapter/`` for LoRA, ``model/`` for full fine-tuning (and ``merged/``)."""
        lora = self.cfg.tuning.method == "lora"
        tuned_dir = self.out / ("adapter" if lora else "model")
        # FSDP2: every rank gathers the shards (collective), rank 0 saves them
        state = gathered_state(self.model, trainable_only=lora) if is_sharded(self.model) else None
        if self.is_main:
            needed = state_bytes(self.model, trainable_only=lora) + (state_bytes(self.model) if self.t.merge else 0)
            with self._writing(f"{tuned_dir.name}/", needed=needed):
                save_final(self.model, self.tokenizer, tuned_dir,
                           merge_dir=self.out / "merged" if self.t.merge else None, state_dict=state)
                write_run_provenance(self.out, self.model_path, self.cfg.model.revision, self.cfg.model.model,
                                     str(self.accelerator.device), tuned_dir)
        self.accelerator.wait_for_everyone()
        heldout = [h["name"] for h in self.manifest["heldout"]["tasks"]]
        return {"is_main": self.is_main, "tuned_dir": str(tuned_dir), "heldout": heldout,
                "output_dir": str(self.out), "family": self.family}


def train(cfg: FinetuneConfig) -> dict[str, Any]:
    """Run the recipe; returns where the tuned weights are (``tuned_dir``), the held-out tasks and the run."""
    recipe = FinetuneRecipe(cfg)
    try:
        recipe.setup()
        recipe.train()
        return recipe.save()
    finally:
        lock = getattr(recipe, "lock", None)
        if lock is not None:
            lock.release()


class StopSignals:
    """SIGINT and SIGTERM while training: the first one asks the loop to stop at the next step boundary
    (with a checkpoint); a second SIGINT interrupts at once, as before."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.pid = os.getpid()

    def handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:
            return  # a data worker forked with this handler (Ctrl-C reaches it too): the main process decides
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this step, with a checkpoint (Ctrl-C again to "
              "stop at once, without one)", file=sys.stderr, flush=True)


@contextlib.contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """Install :class:`StopSignals` for SIGINT and SIGTERM (main thread only), restore the old handlers after."""
    stop = StopSignals()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, stop.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# Options that may change between a run and its resumption: they do not change what is computed
# (checkpointing recomputes the same activations; trackers and the hub only receive what was computed).
# --max-steps may change too (:func:`check_same_run`): the schedule is then re-planned.
RESUMABLE_CHANGES = {"resume", "overwrite", "progress", "output_dir", "data_workers", "max_steps",
                     "gradient_checkpointing", "report_to", "push_to_hub", "hub_private"}


def resume_command(out: Path) -> str:
    """What continues the run in ``out``: its options come from ``out/config.yaml``."""
    return f"python -m t2t.finetune --output-dir {shlex.quote(str(out))} --resume"


def replan_message(old_steps: int, t: Any, step: int, lr: float) -> str:
    """The log line of a resume with another ``--max-steps``: what the learning rate does from here."""
    warm = (f"warm-up ({t.warmup_steps} steps) finished" if step >= t.warmup_steps else
            f"warm-up goes on to step {t.warmup_steps}")
    decay = "constant after it" if t.schedule == "constant" else f"{t.schedule} decay to 0 at step {t.max_steps}"
    return (f"--max-steps {old_steps} -> {t.max_steps}: the learning-rate schedule is re-planned as for a run of "
            f"{t.max_steps} steps, continued at step {step}: {warm}, {decay}; lr {lr:.3g} for step {step + 1}")


def check_same_run(saved: dict[str, Any], cfg: FinetuneConfig, path: Path, step: int | None = None) -> None:
    """A resumed run must use the config it was started with, or it would not continue exactly; only
    ``--max-steps`` may change, to more than the checkpoint's ``step``."""
    # max_steps == step is a resume that only writes the adapter (after a full disk at the adapter's save)
    if step is not None and cfg.train.max_steps < step:
        raise T2TError(f"--resume --max-steps {cfg.train.max_steps}: {path} is at step {step} already; give "
                       f"--max-steps {step} or more")
    now = cfg.to_dict()
    changed = sorted(f"--{key.replace('_', '-')} {saved[section][key]!r:.40} -> {value!r:.40}"
                     for section, values in now.items() for key, value in values.items()
                     if key not in RESUMABLE_CHANGES and section in saved and key in saved[section]
                     and saved[section][key] != value)
    if changed:
        raise T2TError(f"--resume: {path} was written with other options ({'; '.join(changed)}); resume with "
                       "the original options (--config the config.yaml in the output folder) or start a new run")


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
        real_tokens += batch_tokens(cpu_batch, pad_id)
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


def _save_model_dir(model: torch.nn.Module, tokenizer: Any, out: Path,
                    state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """A model (or adapter) folder, built beside ``out`` and renamed into place whole."""
    with write_dir(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True, **({"state_dict": state_dict} if state_dict else {}))
        tokenizer.save_pretrained(str(tmp))
        record_checksums(tmp)  # verified when evaluate loads the adapter (t2t.modeling.integrity)


def save_final(model: torch.nn.Module, tokenizer: Any, out: Path, merge_dir: Path | None = None,
               state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """The adapter (or full model) folder, and with ``merge_dir`` the base with the adapter merged in.

    ``state_dict``: the weights gathered whole from FSDP2 shards (:func:`gathered_state`); a sharded model
    cannot be merged in place, so the merge is made on the base read again with the adapter just saved."""
    _save_model_dir(model, tokenizer, out, state_dict)
    if merge_dir is not None and hasattr(model, "merge_and_unload"):
        if state_dict is None:
            merged = copy.deepcopy(model).merge_and_unload()
        else:
            merged = load_adapter(load_model(model.peft_config["default"].base_model_name_or_path), str(out))
            merged = merged.merge_and_unload()
        _save_model_dir(merged, tokenizer, merge_dir)


def fsdp_requested() -> bool:
    """Whether ``accelerate launch`` was given an FSDP config (it passes the config on in the environment)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def check_fsdp(accelerator: Any) -> None:
    """An FSDP config runs as FSDP2 or not at all. accelerate (1.15) keeps FSDP for accelerators: on CPU
    processes it drops the plugin and trains with DDP, which would be reported as FSDP. And t2t gathers
    checkpoints and adapters from FSDP2's DTensor shards; FSDP1's flat parameters it cannot save."""
    if not fsdp_requested():
        return
    import accelerate
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        raise T2TError(f"the accelerate config asks for FSDP, but accelerate {accelerate.__version__} runs FSDP "
                       f"only on GPUs and would train with {accelerator.distributed_type.name} here; on CPU launch "
                       "without FSDP (torchrun, or an accelerate config with distributed_type: MULTI_CPU)")
    if not accelerator.is_fsdp2:
        raise T2TError("the accelerate config asks for FSDP version 1; t2t saves checkpoints and adapters from "
                       "FSDP2 shards: set fsdp_version: 2 in its fsdp_config (see docs/scale-out.md)")
