"""Batches -> loss: the summed token cross-entropy of a seq2seq model, packed or padded.

:func:`seq2seq_loss_sum` returns the *sum* of target-token losses (fp32) and the number of target tokens,
so that the trainer divides by the target tokens of the whole global batch: gradient accumulation and the
number of processes then leave the update unchanged (T5 itself averages per micro-batch, see REFERENCE).

A packed batch (:func:`t2t.packing.collate_packed`) holds several examples per row. T5's own forward
passes the encoder mask as the cross-attention mask too, so one 4-D mask cannot serve both; instead the
encoder runs with a block-diagonal mask and the decoder with a causal-and-same-segment self mask plus a
same-segment cross mask, given through ``encoder_outputs``. The model's forward still does the rest
(including T5's ``scale_decoder_outputs``). T5's relative position bias depends only on distances, so a
segment computes exactly what it would alone. Models with absolute positions (BART, Pegasus, ...) cannot
restart positions per segment through their forward, so they train unpacked.

The model may be a plain ``*ForConditionalGeneration`` or the same model wrapped by peft (LoRA layers
live inside the modules, so the base model's encoder and forward carry them).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from t2t.errors import T2TError

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "PACKABLE_MODEL_TYPES",
    "attention_implementation",
    "lora_target_modules",
    "segment_mask",
    "seq2seq_loss_sum",
    "set_attention_implementation",
    "unwrap_model",
]

IGNORE_INDEX = -100
# Relative position bias (translation invariant) and a forward that takes encoder_outputs + 4-D masks.
PACKABLE_MODEL_TYPES = ("t5", "mt5", "umt5")
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flex_attention")
_PACKED_ATTENTION = ("eager", "sdpa")

_T5_FAMILY = ("t5", "mt5", "umt5", "longt5")
_BART_FAMILY = ("bart", "mbart", "plbart", "marian", "pegasus", "blenderbot", "blenderbot-small")
_BART_LINEAR = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def _wrappers(model: Any) -> list[Any]:
    """``model`` and every model inside it, through peft / DDP / ``torch.compile`` wrappers."""
    chain = [model]
    while True:
        if hasattr(model, "peft_config") and hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel | torch.nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return chain
        chain.append(model)


def unwrap_model(model: torch.nn.Module) -> Any:
    """The Hugging Face model inside peft / DDP / ``torch.compile`` wrappers."""
    return _wrappers(model)[-1]


def seq2seq_loss_sum(model: torch.nn.Module,
                     batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of target-token cross-entropies in fp32, number of target tokens)`` for one batch.

    Packed batches have ``encoder_segment_ids``; padded ones have ``attention_mask``. Labels are -100
    where there is no target token.
    """
    labels = batch["labels"]
    if "encoder_segment_ids" in batch:
        logits = _packed_logits(model, batch)
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=batch["decoder_input_ids"], use_cache=False).logits
    labels = labels.to(logits.device)
    targets = labels.ne(IGNORE_INDEX)
    # Only target positions reach the (vocabulary-wide) fp32 cross-entropy.
    loss_sum = F.cross_entropy(logits[targets].float(), labels[targets], reduction="sum")
    return loss_sum, targets.sum()


def segment_mask(query_segments: torch.Tensor, key_segments: torch.Tensor, causal: bool,
                 dtype: torch.dtype) -> torch.Tensor:
    """Additive ``[batch, 1, queries, keys]`` mask: 0 where a query may attend, dtype's minimum elsewhere.

    A query attends to keys of its own segment (and, if ``causal``, not later ones). Padding queries
    (segment 0) attend to every key: their outputs are never used, and a softmax row always has a visible
    key, so all-padding rows stay finite.
    """
    allowed = query_segments[:, :, None] == key_segments[:, None, :]
    if causal:
        n_q, n_k = query_segments.shape[1], key_segments.shape[1]
        allowed &= torch.ones(n_q, n_k, dtype=torch.bool, device=allowed.device).tril()
    allowed |= query_segments.eq(0)[:, :, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def _packed_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    chain = _wrappers(model)
    base = chain[-1]
    if any(getattr(getattr(m, "active_peft_config", None), "is_prompt_learning", False) for m in chain):
        raise T2TError("--packing: prompt/prefix-tuning adapters add virtual tokens that packed rows do not "
                       "mask; use LoRA, or pass --packing false")
    config = base.config
    if config.model_type not in PACKABLE_MODEL_TYPES:
        raise T2TError(f"--packing: {config.model_type} models cannot train on packed rows (their absolute "
                       "positions cannot restart per example; packing needs "
                       f"{', '.join(PACKABLE_MODEL_TYPES)}); "
                       "pass --packing false to train on padded, length-grouped batches")
    impl = config._attn_implementation
    if impl not in _PACKED_ATTENTION:
        raise T2TError(f"--packing: attention '{impl}' cannot take the packed 4-D masks; pass "
                       "--attn-implementation eager or sdpa (or --packing false)")
    dtype = base.get_input_embeddings().weight.dtype
    enc_seg, dec_seg = batch["encoder_segment_ids"], batch["decoder_segment_ids"]
    encoder_outputs = base.get_encoder()(input_ids=batch["input_ids"],
                                         attention_mask=segment_mask(enc_seg, enc_seg, False, dtype))
    # With encoder_outputs given, `attention_mask` is used only as the decoder's cross-attention mask.
    return base(encoder_outputs=encoder_outputs,
                attention_mask=segment_mask(dec_seg, enc_seg, False, dtype),
                decoder_input_ids=batch["decoder_input_ids"],
                decoder_attention_mask=segment_mask(dec_seg, dec_seg, True, dtype),
                use_cache=False).logits


def lora_target_modules(model_or_config: Any) -> list[str]:
    """Every linear layer of the architecture's blocks (peft's own default for T5 is only q and v).

    T5 v1.1 / FLAN-T5 / mT5 / UMT5 (gated FFN): q, k, v, o, wi_0, wi_1, wo; original T5: q, k, v, o, wi,
    wo; BART family: q_proj, k_proj, v_proj, out_proj, fc1, fc2.
    """
    config = getattr(unwrap_model(model_or_config), "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type in _T5_FAMILY:
        gated = getattr(config, "is_gated_act",
                        str(getattr(config, "feed_forward_proj", "")).startswith("gated"))
        return ["q", "k", "v", "o", "wi_0", "wi_1", "wo"] if gated else ["q", "k", "v", "o", "wi", "wo"]
    if model_type in _BART_FAMILY:
        return list(_BART_LINEAR)
    known = ", ".join(_T5_FAMILY + _BART_FAMILY)
    raise T2TError(f"--target-modules: no default LoRA targets for {model_type!r} models (known: {known}); "
                   "name the linear layers yourself, e.g. --target-modules q_proj,v_proj")


def attention_implementation(model: torch.nn.Module) -> str:
    """The attention kernel the model runs: ``eager``, ``sdpa`` or ``flex_attention``."""
    return unwrap_model(model).config._attn_implementation


def set_attention_implementation(model: torch.nn.Module, name: str) -> str:
    """Switch the attention kernel in place (encoder and decoder stacks included); returns the one in use.

    On CPU and for T5 shapes eager is usually at least as fast as sdpa, because T5's relative position
    bias forces sdpa onto its generic kernel (REFERENCE: eager also won on an H100 for FLAN-T5-base).
    """
    if name not in ATTENTION_IMPLEMENTATIONS:
        raise T2TError(f"--attn-implementation '{name}' is unknown; choose one of "
                       f"{', '.join(ATTENTION_IMPLEMENTATIONS)}")
    base = unwrap_model(model)
    base.set_attn_implementation(name)
    used = {m.config._attn_implementation for m in base.modules() if hasattr(m, "config")}
    if used != {name}:
        raise T2TError(f"--attn-implementation {name}: {type(base).__name__} kept {sorted(used)}; "
                       "load the model with that attn_implementation instead")
    return name
