"""What t2t needs to know of a model's architecture: its wrappers, its linear layers, its attention kernel.

One place per model family: LoRA targets (every linear layer of the blocks, per family), the Hugging Face
model inside peft / DDP / ``torch.compile`` wrappers, and switching the attention implementation.
"""

from __future__ import annotations

from typing import Any

import torch

from t2t.errors import T2TError

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flex_attention")


_T5_FAMILY = ("t5", "mt5", "umt5", "longt5")


_BART_FAMILY = ("bart", "mbart", "plbart", "marian", "pegasus", "blenderbot", "blenderbot-small")


_BART_LINEAR = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


# EncoderDecoderModel over BERT-style stacks (minilm-ed): self- and cross-attention query/key/value, and
# every "dense" (attention output, intermediate, output, the LM head's transform).
_BERT_FAMILY = ("bert", "roberta", "electra")


_BERT_LINEAR = ["query", "key", "value", "dense"]


# Decoder-only: attention and MLP projections (peft's own defaults adapt only q_proj, v_proj / c_attn /
# query_key_value). SmolLM2 is a llama model. Names checked in transformers 5.25's modeling files.
_LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "smollm3")
_LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_CAUSAL_LINEAR = {"gpt2": ["c_attn", "c_proj", "c_fc"],
                  "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]}

# peft's shorthand for every linear layer except the output head (``get_output_embeddings()``).
ALL_LINEAR = "all-linear"


def wrapper_chain(model: Any) -> list[Any]:
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
    return wrapper_chain(model)[-1]


def lora_target_modules(model_or_config: Any) -> list[str]:
    """Every linear layer of the architecture's blocks (peft's own default for T5 is only q and v).

    T5 v1.1 / FLAN-T5 / mT5 / UMT5 (gated FFN): q, k, v, o, wi_0, wi_1, wo; original T5: q, k, v, o, wi,
    wo; BART family: q_proj, k_proj, v_proj, out_proj, fc1, fc2; a BERT encoder-decoder (minilm-ed):
    query, key, value (self- and cross-attention), dense. Decoder-only: llama / mistral / qwen2 / qwen3 /
    gemma / gemma2 / gemma3_text / smollm3: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
    gpt2: c_attn, c_proj, c_fc; gpt_neox: query_key_value, dense, dense_h_to_4h, dense_4h_to_h. Any other
    model: ``--target-modules`` names them (or ``all-linear``).
    """
    config = getattr(unwrap_model(model_or_config), "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type in _T5_FAMILY:
        gated = getattr(config, "is_gated_act",
                        str(getattr(config, "feed_forward_proj", "")).startswith("gated"))
        return ["q", "k", "v", "o", "wi_0", "wi_1", "wo"] if gated else ["q", "k", "v", "o", "wi", "wo"]
    if model_type in _BART_FAMILY:
        return list(_BART_LINEAR)
    if model_type == "encoder-decoder" and {getattr(getattr(config, side, None), "model_type", None)
                                            for side in ("encoder", "decoder")} <= set(_BERT_FAMILY):
        return list(_BERT_LINEAR)
    if model_type in _LLAMA_FAMILY:
        return list(_LLAMA_LINEAR)
    if model_type in _CAUSAL_LINEAR:
        return list(_CAUSAL_LINEAR[model_type])
    known = ", ".join(_T5_FAMILY + _BART_FAMILY + ("encoder-decoder (BERT)",) + _LLAMA_FAMILY + tuple(_CAUSAL_LINEAR))
    raise T2TError(f"--target-modules: no default LoRA targets for {model_type!r} models (known: {known}); "
                   f"name the linear layers yourself, e.g. --target-modules q_proj,v_proj, or {ALL_LINEAR}")


def attention_implementation(model: torch.nn.Module) -> str:
    """The attention kernel the model runs: ``eager``, ``sdpa`` or ``flex_attention``."""
    return unwrap_model(model).config._attn_implementation


def set_attention_implementation(model: torch.nn.Module, name: str) -> str:
    """Switch the attention kernel in place (encoder and decoder stacks included); returns the one in use.

    On CPU and for T5 shapes eager is usually at least as fast as sdpa, because T5's relative position
    bias forces sdpa onto its generic kernel (eager also won on an H100 for FLAN-T5-base: docs/references.md).
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
