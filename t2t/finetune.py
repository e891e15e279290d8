"""``python -m t2t.finetune``: LoRA (or full) fine-tuning of one seq2seq model over a whole mixture.

With no arguments it runs the offline demo: the ``offline`` mixture over the built-in task suite, its
held-out split, the tiny T5 built from a config, a few minutes on a laptop CPU. Then it prints where the
adapter is and the command that evaluates it.

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
import sys
from collections.abc import Sequence

from t2t import config as configs
from t2t.errors import run_cli
from t2t.training.config import COMMAND, add_arguments, config_from_args, parse_bool_flags


def _python() -> str:
    """The interpreter that ran this, as a command a user can paste (``.venv/bin/python`` after make)."""
    rel = os.path.relpath(sys.executable)
    return rel if not rel.startswith("..") else sys.executable


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m t2t.finetune", description=__doc__.split("\n\n")[0],
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
        adapter = result["tuned_dir"]
        heldout = ",".join(result["heldout"]) if result.get("heldout") else ""
        print(f"\nadapter saved in {adapter}")
        cmd = f"{_python()} -m t2t.evaluate --adapter {adapter}"
        if cfg.data.mixture:
            cmd += f" --mixture {cfg.data.mixture}"
        if cfg.data.heldout:
            cmd += f" --heldout {','.join(cfg.data.heldout)}"
        if cfg.model.model != "t2t-tiny":
            cmd += f" --model {cfg.model.model}"
        print(f"evaluate it on the held-out tasks ({heldout or 'see manifest'}) with:\n  {cmd}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

