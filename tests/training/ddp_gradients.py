"""Run under torchrun: one global batch through backward_global_batch, rank 0 saves the gradients.

Used by tests/test_finetune.py to compare 2 processes (gloo, CPU) with 1 process on the same batch.
"""

from __future__ import annotations

import sys

import torch
from accelerate import Accelerator
from safetensors.torch import save_file

from t2t.data.batches import Batcher
from t2t.mixtures.stream import build_stream
from t2t.modeling.loading import load_tokenizer, resolve_model
from t2t.modeling.loss import Seq2SeqLoss
from t2t.training.config import build_config
from t2t.training.recipe import backward_global_batch, setup_model


def main(mixture_dir: str, out: str, grad_accum: int) -> None:
    accelerator = Accelerator(cpu=True)
    cfg = build_config({"grad_accum": grad_accum, "batch_size": 8, "lora_dropout": 0.0})
    path = resolve_model("t2t-tiny")
    model = setup_model(cfg, path)
    with torch.no_grad():  # non-zero LoRA B so that every LoRA weight gets a gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
    module = accelerator.prepare(Seq2SeqLoss(model))
    batcher = Batcher(load_tokenizer(path), cfg.data, 0)
    stream = build_stream("small", mixture_dirs=[mixture_dir], seed=0)
    tokens = batcher.tokenize([d.example for d in stream.draws(0, 8)])
    loss, _ = backward_global_batch(module, batcher, tokens, grad_accum, accelerator)
    if accelerator.is_main_process:
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        save_file({**grads, "loss": loss.reshape(1)}, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
