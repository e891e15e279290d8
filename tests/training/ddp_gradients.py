"""The gradients of one global batch through ``backward_global_batch``, for the seq2seq and the causal path.

tests/training/test_finetune.py runs this file once under torchrun (2 processes, gloo on CPU) for every model
it names, rank 0 saving each model's gradients, and calls :func:`gradients` in its own process (1 process,
no DDP) for the reference: one launch serves both model families, since starting the processes costs far
more than the two backward passes.

    torchrun --standalone --nproc-per-node 2 tests/training/ddp_gradients.py MIXTURE_DIR GRAD_ACCUM \\
        MODEL OUT.safetensors [MODEL OUT.safetensors ...]
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import save_file
from transformers import AutoConfig

from t2t.data.batches import Batcher
from t2t.mixtures.stream import build_stream
from t2t.modeling.family import model_family
from t2t.modeling.loading import load_tokenizer, resolve_model
from t2t.modeling.loss import loss_for_model
from t2t.training.config import build_config
from t2t.training.recipe import backward_global_batch, setup_model

# The causal model's examples are cut to 48 + 12 tokens and packed into rows of 128 (the tiny Llama's
# training settings in tests/training/test_causal_finetune.py): a micro-batch's examples share a row, so the
# block-diagonal masks and restarted positions are part of what is compared. t2t-tiny keeps the defaults.
CAUSAL_DATA = {"max_input_len": 48, "max_target_len": 12, "pack_input_len": 96, "pack_target_len": 32,
               "attn_implementation": "sdpa"}


def gradients(model_name: str, mixture_dir: str, grad_accum: int, accelerator: Any) -> dict[str, torch.Tensor]:
    """This process's LoRA gradients of the first 8 examples of the ``small`` mixture, with ``loss`` (the
    global batch's mean token loss) and ``examples_per_row`` (the most examples in one of this process's
    packed rows)."""
    path = resolve_model(model_name)
    tokenizer = load_tokenizer(path)
    causal = model_family(AutoConfig.from_pretrained(path)) == "causal"
    cfg = build_config({"model": path, "grad_accum": grad_accum, "batch_size": 8, "lora_dropout": 0.0,
                        **(CAUSAL_DATA if causal else {})})
    model = setup_model(cfg, path)
    with torch.no_grad():  # non-zero LoRA B so that every LoRA weight gets a gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
    module = accelerator.prepare(loss_for_model(model))
    start = getattr(model.config, "decoder_start_token_id", None)  # as the recipe reads it
    batcher = Batcher(tokenizer, cfg.data, start or 0, family=model_family(model))
    stream = build_stream("small", mixture_dirs=[mixture_dir], seed=0)
    tokens = batcher.tokenize([d.example for d in stream.draws(0, 8)])
    segments = "segment_ids" if causal else "encoder_segment_ids"
    prepared = batcher.step_batches(tokens, accelerator.process_index, accelerator.num_processes, grad_accum)
    per_row = max(int(b[segments].max()) for b in prepared.batches)
    loss, _ = backward_global_batch(module, batcher, tokens, grad_accum, accelerator)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return {**grads, "loss": loss.detach().reshape(1), "examples_per_row": torch.tensor([per_row])}


def main(mixture_dir: str, grad_accum: int, pairs: list[str]) -> None:
    accelerator = Accelerator(cpu=True)
    for model_name, out in zip(pairs[::2], pairs[1::2], strict=True):
        result = gradients(model_name, mixture_dir, grad_accum, accelerator)
        if accelerator.is_main_process:
            save_file(result, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
