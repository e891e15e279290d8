"""``--gradient-checkpointing``: the same loss and gradients as without it (fp32), on the tiny T5 and the tiny
Llama, LoRA with dropout on; and the blocks really run twice (forward, then recomputed in backward)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from t2t.data.batches import Batcher
from t2t.mixtures.stream import build_stream
from t2t.modeling.family import model_family
from t2t.modeling.loading import load_tokenizer, resolve_model
from t2t.modeling.loss import loss_for_model
from t2t.training.config import build_config
from t2t.training.recipe import backward_global_batch, setup_model
from tests.causal_tiny import save_model_folder


def first_block(model: torch.nn.Module) -> torch.nn.Module:
    """The first transformer block: T5's encoder.block[0] or Llama's layers[0]."""
    blocks = [m for name, m in model.named_modules() if name.endswith(("encoder.block.0", "layers.0"))]
    assert len(blocks) == 1, [name for name, _ in model.named_modules()][:40]
    return blocks[0]


def loss_and_grads(path: str, checkpointing: bool) -> tuple[float, dict[str, torch.Tensor], int]:
    from accelerate import Accelerator

    cfg = build_config({"model": path, "gradient_checkpointing": checkpointing, "lora_dropout": 0.1,
                        "max_input_len": 48, "max_target_len": 12, "packing": False})
    model = setup_model(cfg, path)
    with torch.no_grad():  # non-zero LoRA B, so that every LoRA weight gets a gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
    model.train()
    calls = []
    # a layer inside the first block: transformers checkpoints a block's forward, so its inner calls run again
    inner = next(m for m in first_block(model).modules() if isinstance(m, torch.nn.Linear))
    inner.register_forward_hook(lambda *_: calls.append(1))
    family = model_family(model)
    start = getattr(model.config, "decoder_start_token_id", None) or 0
    batcher = Batcher(load_tokenizer(path), cfg.data, start, family=family)
    examples = [d.example for d in build_stream("offline", seed=0).draws(0, 4)]
    torch.manual_seed(1)  # the same dropout masks in both runs
    loss, _ = backward_global_batch(loss_for_model(model), batcher, batcher.tokenize(examples), 1,
                                    Accelerator(cpu=True))
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), grads, len(calls)


@pytest.mark.parametrize("which", ["t2t-tiny", "tiny-llama"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(which: str, tmp_path: Path) -> None:
    path = resolve_model("t2t-tiny") if which == "t2t-tiny" else str(save_model_folder(tmp_path / "llama"))
    loss, grads, calls = loss_and_grads(path, checkpointing=False)
    loss_ckpt, grads_ckpt, calls_ckpt = loss_and_grads(path, checkpointing=True)
    assert (calls, calls_ckpt) == (1, 2)  # recomputed in the backward pass
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    assert grads.keys() == grads_ckpt.keys() and grads
    scale = max(g.abs().max().item() for g in grads.values())
    assert scale > 0
    for name in grads:
        assert torch.allclose(grads[name], grads_ckpt[name], rtol=1e-5, atol=1e-6 * scale), name
