"""``python -m t2t.finetune``: LoRA (or full) fine-tuning of one seq2seq model over a whole mixture.

With no arguments it runs the offline demo: the ``offline`` mixture over the built-in task suite, its
held-out split, the tiny T5 built from a config, a few minutes on a laptop CPU. Then it prints where the
adapter is and the command that evaluates it (runnable as printed: mixture and task folders carried,
``--model`` for a full fine-tuning's ``model/``).

The recipe, top to bottom (one screen per stage):

1. config: defaults < ``--config`` YAML < flags; checked before anything is written;
2. output folder: refuses to overwrite (``--overwrite``), resumes (``--resume``), checks it can write;
3. data: the mixture's seeded stream of rendered examples, split by held-out clusters/tasks;
4. model: base model + LoRA (peft) or full fine-tuning; loss summed per token, normalised by the
   target tokens of the *global* batch, so accumulation and process count do not change the update;
5. loop: packed micro-batches, AdamW, warm-up + decay, clipping, bf16 autocast on GPUs that have it,
   NaN guard, JSONL + TensorBoard metrics, validation loss, atomic checkpoints;
6. outputs: ``adapter/`` (adapter_model.safetensors + adapter_config.json + tokenizer) that plain
   ``peft.PeftModel.from_pretrained`` loads, ``merged/`` with ``--merge``.

Distributed: ``accelerate launch -m t2t.finetune`` or ``torchrun --nproc-per-node N -m t2t.finetune``
(DDP through accelerate; FSDP / DeepSpeed through an accelerate config). Every process reads the same
global batch from the stream and trains on its share of the micro-batches.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2t import config as configs
from t2t.errors import run_cli
from t2t.training.config import COMMAND, FinetuneConfig, add_arguments, config_from_args, parse_bool_flags


def _python() -> str:
    """The interpreter that ran this, as a command a user can paste (``.venv/bin/python`` after make)."""
    rel = os.path.relpath(sys.executable)
    return rel if not rel.startswith("..") else sys.executable


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=configs.program("t2t.finetune"), description=__doc__.split("\n\n")[0],
        epilog="Every option also reads from --config YAML (flat or under model/tuning/data/train).")
    add_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    args = configs.parse_args(parser, parse_bool_flags(sys.argv[1:] if argv is None else argv), COMMAND)
    cfg = config_from_args(args)
    # The recipe pulls in torch, transformers and datasets: imported once the options are known to be
    # good, so that --help and option errors answer at once.
    from t2t.training.recipe import train

    result = train(cfg)
    if result.get("is_main"):
        tuned = result["tuned_dir"]
        what = "adapter" if cfg.tuning.method == "lora" else "model"
        print(f"\n{what} saved in {tuned}" + (f" (and merged into the base in {result['output_dir']}/merged)"
                                             if cfg.train.merge and what == "adapter" else ""))
        heldout = ", ".join(result.get("heldout") or [])
        if heldout:
            print(f"evaluate it on the held-out tasks ({heldout}) with:\n  {evaluate_command(cfg, result)}")
        else:
            print("the mixture holds no task out: evaluate it on tasks of your choice with python -m t2t.evaluate "
                  f"{'--adapter' if what == 'adapter' else '--model'} {shlex.quote(tuned)} --tasks ...")
        if cfg.train.push_to_hub:
            from t2t.training.hub import push_to_hub

            # after the save and the next-step hint: a failed upload leaves the run whole and says so
            url = push_to_hub(cfg, Path(result["output_dir"]), Path(tuned))
            print(f"pushed {tuned} to {url}")
    return 0


def evaluate_command(cfg: FinetuneConfig, result: dict[str, Any]) -> str:
    """The ``t2t.evaluate`` command that scores what this run saved on its held-out tasks, runnable as
    printed: an adapter's run (base model, revision, task folders, causal prompt format) is read back from
    its ``config.json`` by evaluate; a full model is a plain model folder, so those go on the command line."""
    q = shlex.quote
    cmd = [_python(), "-m", "t2t.evaluate"]
    if cfg.tuning.method == "lora":
        cmd += ["--adapter", q(result["tuned_dir"])]
        if cfg.model.model != "t2t-tiny":
            cmd += ["--model", q(cfg.model.model)]
    else:  # what evaluate scores without an adapter: --model FOLDER, its results in the run's eval/
        cmd += ["--model", q(result["tuned_dir"]), "--output-dir", q(str(Path(result["output_dir"]) / "eval"))]
        if result.get("family") == "causal":
            cmd += ["--chat-template"] if cfg.data.chat_template else []
            if cfg.data.target_delimiter != " ":
                cmd += ["--target-delimiter", q(cfg.data.target_delimiter)]
    if cfg.data.mixture:
        cmd += ["--mixture", q(cfg.data.mixture)]
    if cfg.data.heldout:
        cmd += ["--heldout", q(",".join(cfg.data.heldout))]
    for option, folders in (("--mixture-dir", cfg.data.mixture_dir), ("--task-dir", cfg.data.task_dir)):
        for folder in folders:
            cmd += [option, q(folder)]
    return " ".join(cmd)

if __name__ == "__main__":
    sys.exit(run_cli(main))

