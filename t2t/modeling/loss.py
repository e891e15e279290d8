"""Batches -> loss: the summed token cross-entropy of a seq2seq or causal model, packed or padded.

:func:`seq2seq_loss_sum` returns the *sum* of target-token losses (fp32) and the number of target tokens,
so that the trainer divides by the target tokens of the whole global batch: gradient accumulation and the
number of processes then leave the update unchanged (T5 itself averages per micro-batch: transformers #37766).

A packed batch (:func:`t2t.data.packing.collate_packed`) holds several examples per row. T5's own forward
passes the encoder mask as the cross-attention mask too, so one 4-D mask cannot serve both; instead the
encoder runs with a block-diagonal mask and the decoder with a causal-and-same-segment self mask plus a
same-segment cross mask, given through ``encoder_outputs``. The model's forward still does the rest
(including T5's ``scale_decoder_outputs``). T5's relative position bias depends only on distances, so a
segment computes exactly what it would alone. A BERT ``EncoderDecoderModel`` (``minilm-ed``) has absolute
positions but takes ``position_ids`` on both sides, so its packed rows restart positions at every segment
(:func:`segment_positions`) and compute what the examples compute alone, too. Other models with absolute
positions (BART, Pegasus, ...) cannot restart positions per segment through their forward, so they train
unpacked.

The model may be a plain ``*ForConditionalGeneration`` or the same model wrapped by peft (LoRA layers
live inside the modules, so the base model's encoder and forward carry them).

Causal LMs (:func:`causal_loss_sum`, batches from :mod:`t2t.data.causal`): the logits at position p
predict the label at p + 1 (shift by one, ignore -100). A packed row gets a block-diagonal causal additive
mask ``[B, 1, L, L]`` (0 / the dtype's minimum; padding queries see every key, so no softmax row is empty)
and ``position_ids`` restarting per example; transformers passes a 4-D mask through unchanged on eager
and sdpa (``masking_utils._preprocess_mask_arguments``), so each example computes what it computes alone.
Other kernels are refused for packed rows (flash-attention's varlen path cannot be tested here).

Cost: the LM head (hidden x vocabulary, the largest matmul of a small model with a big vocabulary) runs
only where a label is predicted. transformers 5 causal LMs take ``logits_to_keep`` as a boolean
``[B, L]`` mask (``modeling_utils.slice_logits_to_keep``) and return logits for those positions only,
flattened in row-major order; the model's own forward still applies its head and whatever follows it
(Gemma's final logit soft-capping, a LoRA on ``lm_head``). A model whose forward lacks ``logits_to_keep``
computes the full logits, which are then gathered at the same positions.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from t2t.errors import T2TError
from t2t.modeling.architecture import wrapper_chain
from t2t.modeling.family import model_family

__all__ = ["PACKABLE_MODEL_TYPES", "CausalLoss", "Seq2SeqLoss", "causal_loss_sum", "loss_for_model",
           "packed_causal_mask", "segment_mask", "segment_positions", "seq2seq_loss_sum"]

IGNORE_INDEX = -100
# Relative position bias (translation invariant) and a forward that takes encoder_outputs + 4-D masks.
PACKABLE_MODEL_TYPES = ("t5", "mt5", "umt5")
_PACKED_ATTENTION = ("eager", "sdpa")
# Absolute positions that restart per segment through position_ids: EncoderDecoderModel over BERT stacks.
_POSITION_PACKABLE = ("bert", "roberta", "electra")


def _packs_with_positions(config) -> bool:
    sides = (getattr(getattr(config, side, None), "model_type", None) for side in ("encoder", "decoder"))
    return config.model_type == "encoder-decoder" and all(s in _POSITION_PACKABLE for s in sides)


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
                 dtype: torch.dtype, window: int | None = None) -> torch.Tensor:
    """Additive ``[batch, 1, queries, keys]`` mask: 0 where a query may attend, dtype's minimum elsewhere.

    A query attends to keys of its own segment (and, if ``causal``, not later ones; with ``window``, only
    keys less than ``window`` positions back, transformers' sliding-window rule). Padding queries
    (segment 0) attend to every key: their outputs are never used, and a softmax row always has a visible
    key, so all-padding rows stay finite.
    """
    allowed = query_segments[:, :, None] == key_segments[:, None, :]
    if causal:
        n_q, n_k = query_segments.shape[1], key_segments.shape[1]
        allowed &= torch.ones(n_q, n_k, dtype=torch.bool, device=allowed.device).tril()
        if window is not None:
            allowed &= torch.ones(n_q, n_k, dtype=torch.bool, device=allowed.device).triu(1 - window)
    allowed |= query_segments.eq(0)[:, :, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def segment_positions(segments: torch.Tensor) -> torch.Tensor:
    """Position of each token within its segment (0, 1, ... from where the segment id changes); padding
    runs count on from their own start, which keeps them inside the position table."""
    n = segments.shape[1]
    index = torch.arange(n, device=segments.device).expand_as(segments)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    return index - torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values


def _packed_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    chain = wrapper_chain(model)
    base = chain[-1]
    if any(getattr(getattr(m, "active_peft_config", None), "is_prompt_learning", False) for m in chain):
        raise T2TError("--packing: prompt/prefix-tuning adapters add virtual tokens that packed rows do not "
                       "mask; use LoRA, or pass --packing false")
    config = base.config
    positions = _packs_with_positions(config)
    if config.model_type not in PACKABLE_MODEL_TYPES and not positions:
        raise T2TError(f"--packing: {config.model_type} models cannot train on packed rows (their absolute "
                       "positions cannot restart per example; packing needs "
                       f"{', '.join(PACKABLE_MODEL_TYPES)} or a BERT encoder-decoder); "
                       "pass --packing false to train on padded, length-grouped batches")
    impl = config._attn_implementation
    if impl not in _PACKED_ATTENTION:
        raise T2TError(f"--packing: attention '{impl}' cannot take the packed 4-D masks; pass "
                       "--attn-implementation eager or sdpa (or --packing false)")
    dtype = base.get_input_embeddings().weight.dtype
    enc_seg, dec_seg = batch["encoder_segment_ids"], batch["decoder_segment_ids"]
    enc_kw = {"position_ids": segment_positions(enc_seg)} if positions else {}
    dec_kw = {"decoder_position_ids": segment_positions(dec_seg)} if positions else {}
    encoder_outputs = base.get_encoder()(input_ids=batch["input_ids"],
                                         attention_mask=segment_mask(enc_seg, enc_seg, False, dtype), **enc_kw)
    # With encoder_outputs given, `attention_mask` is used only as the decoder's cross-attention mask.
    return base(encoder_outputs=encoder_outputs,
                attention_mask=segment_mask(dec_seg, enc_seg, False, dtype),
                decoder_input_ids=batch["decoder_input_ids"],
                decoder_attention_mask=segment_mask(dec_seg, dec_seg, True, dtype),
                use_cache=False, **dec_kw).logits


class Seq2SeqLoss(torch.nn.Module):
    """Wraps the model so that DDP sees one forward: returns (sum of token losses, target tokens)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return seq2seq_loss_sum(self.model, batch)


def causal_loss_sum(model: torch.nn.Module,
                    batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of target-token cross-entropies in fp32, number of predicted target tokens)`` for a causal LM.

    Padded batches (:func:`t2t.data.causal.collate_causal_padded`) have ``attention_mask``; packed ones
    (:func:`t2t.data.causal.collate_causal_packed`) have ``segment_ids`` and ``position_ids``.
    """
    chain = wrapper_chain(model)
    base = chain[-1]
    labels = batch["labels"]
    # Position p predicts label p + 1: keep the positions whose next label counts.
    targets = labels[:, 1:].ne(IGNORE_INDEX)
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets
    kwargs: dict[str, torch.Tensor] = {}
    if "segment_ids" in batch:
        _check_packable(chain)
        dtype = base.get_input_embeddings().weight.dtype
        kwargs = {"attention_mask": packed_causal_mask(base.config, batch["segment_ids"], dtype),
                  "position_ids": batch["position_ids"]}
    else:
        kwargs = {"attention_mask": batch["attention_mask"]}
    if _takes_logits_to_keep(base):
        logits = base(input_ids=batch["input_ids"], use_cache=False, logits_to_keep=keep, **kwargs).logits
        if logits.dim() != 2:  # a model that slices logits_to_keep itself, without the boolean-mask case
            raise T2TError(f"{type(base).__name__} does not take a boolean logits_to_keep mask (logits of shape "
                           f"{tuple(logits.shape)}); t2t needs transformers >= 5.25 for causal LMs")
    else:
        logits = base(input_ids=batch["input_ids"], use_cache=False, **kwargs).logits[keep]
    target_ids = labels[:, 1:][targets].to(logits.device)
    return F.cross_entropy(logits.float(), target_ids, reduction="sum"), targets.sum()


def packed_causal_mask(config, segments: torch.Tensor,
                       dtype: torch.dtype) -> torch.Tensor | dict[str, torch.Tensor]:
    """The block-diagonal causal mask of packed rows, with the model's sliding window where it has one.

    transformers uses a 4-D mask as given, so a sliding window (Mistral; Gemma 2/3 and Qwen's sliding
    layers) must be in it. Models that mix full and sliding layers take a mask per layer type.
    """
    full = segment_mask(segments, segments, True, dtype)
    window = getattr(config, "sliding_window", None)
    types = set(getattr(config, "layer_types", None) or ())
    if not window or window >= segments.shape[1] or types == {"full_attention"}:
        return full  # no key of a row is as far back as the window
    sliding = segment_mask(segments, segments, True, dtype, window=window)
    if "full_attention" in types:
        return {"full_attention": full, "sliding_attention": sliding}
    return sliding


def _takes_logits_to_keep(model: torch.nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def _check_packable(chain: list[torch.nn.Module]) -> None:
    if any(getattr(getattr(m, "active_peft_config", None), "is_prompt_learning", False) for m in chain):
        raise T2TError("--packing: prompt/prefix-tuning adapters add virtual tokens that packed rows do not "
                       "mask; use LoRA, or pass --packing false")
    impl = chain[-1].config._attn_implementation
    if impl not in _PACKED_ATTENTION:
        raise T2TError(f"--packing: attention '{impl}' cannot take the packed 4-D block-diagonal mask of a causal "
                       "LM; pass --attn-implementation eager or sdpa (or --packing false)")


class CausalLoss(torch.nn.Module):
    """:class:`Seq2SeqLoss` for causal LMs: one forward for DDP/FSDP, (sum of token losses, target tokens)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return causal_loss_sum(self.model, batch)


def loss_for_model(model: torch.nn.Module) -> torch.nn.Module:
    """The loss wrapper for the model's family (:func:`t2t.modeling.family.model_family`)."""
    return CausalLoss(model) if model_family(model) == "causal" else Seq2SeqLoss(model)
