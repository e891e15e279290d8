"""Loss sums: packed == padded (plain and LoRA models, loss and gradients), parity with HF's loss."""

from __future__ import annotations

import random

import pytest
import torch

from t2t.data.packing import collate_packed, collate_padded
from t2t.errors import T2TError
from t2t.modeling.architecture import attention_implementation, lora_target_modules, set_attention_implementation
from t2t.modeling.loss import segment_mask, seq2seq_loss_sum

VOCAB = 64


def tiny_t5(model_type: str = "t5", attn: str = "eager", seed: int = 0) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    config = AutoConfig.for_model(
        model_type, vocab_size=VOCAB, d_model=32, d_ff=48, d_kv=8, num_layers=2, num_decoder_layers=2,
        num_heads=4, feed_forward_proj="gated-gelu", dropout_rate=0.0, decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=1, relative_attention_num_buckets=8, relative_attention_max_distance=16)
    torch.manual_seed(seed)
    return AutoModelForSeq2SeqLM.from_config(config, attn_implementation=attn).eval()


def packed_rows(seed: int = 0) -> list[list[dict[str, list[int]]]]:
    """Rows of 2, 3, 4 and 2 segments of varied lengths (some longer than T5's exact buckets)."""
    rng = random.Random(seed)

    def ex(n_in: int, n_out: int) -> dict[str, list[int]]:
        return {"input_ids": [rng.randrange(3, VOCAB) for _ in range(n_in - 1)] + [1],
                "labels": [rng.randrange(3, VOCAB) for _ in range(n_out - 1)] + [1]}

    return [[ex(9, 3), ex(14, 6)], [ex(1, 1), ex(7, 4), ex(20, 2)], [ex(5, 2), ex(3, 5), ex(6, 1), ex(2, 3)],
            [ex(25, 7), ex(4, 4)]]


def batches(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    rows = packed_rows(seed)
    packed = collate_packed(rows + [[]], pad_to=(40, 16))  # plus a row that is all padding
    padded = collate_padded([ex for row in rows for ex in row])
    return packed, padded


def loss_and_grads(model: torch.nn.Module, batch: dict[str, torch.Tensor]):
    model.zero_grad()
    loss, n = seq2seq_loss_sum(model, batch)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), n, grads


def assert_packed_equals_padded(model: torch.nn.Module) -> None:
    packed, padded = batches()
    loss_p, n_p, grads_p = loss_and_grads(model, packed)
    loss_u, n_u, grads_u = loss_and_grads(model, padded)
    assert n_p == n_u == padded["labels"].ne(-100).sum()
    assert torch.isfinite(loss_p)
    assert abs(loss_p - loss_u) / loss_u < 1e-5
    assert grads_p.keys() == grads_u.keys() and grads_p
    for name in grads_p:
        assert torch.isfinite(grads_p[name]).all(), name
        scale = grads_u[name].abs().max()
        assert (grads_p[name] - grads_u[name]).abs().max() <= 1e-5 * scale, name


@pytest.mark.parametrize("model_type,attn",
                         [("t5", "eager"), ("t5", "sdpa"), ("mt5", "eager"), ("umt5", "sdpa")])
def test_packed_loss_and_grads_equal_padded(model_type: str, attn: str) -> None:
    model = tiny_t5(model_type, attn)
    assert attention_implementation(model) == attn
    assert_packed_equals_padded(model)


def test_packed_equals_padded_under_lora() -> None:
    from peft import LoraConfig, TaskType, get_peft_model

    base = tiny_t5()
    config = LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=4, lora_alpha=8, lora_dropout=0.0,
                        target_modules=lora_target_modules(base), init_lora_weights=False)  # B != 0
    model = get_peft_model(base, config).eval()
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert_packed_equals_padded(model)
    # The adapter changes the loss, so the packed path really ran through the LoRA layers.
    packed, _ = batches()
    with model.disable_adapter():
        plain = seq2seq_loss_sum(model, packed)[0]
    assert abs(plain - seq2seq_loss_sum(model, packed)[0]) > 1e-3


@pytest.mark.parametrize("tie", [True, False])  # T5 scales decoder outputs only when tied (original T5)
def test_padded_loss_matches_hf_mean_loss(tie: bool) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=VOCAB, d_model=32, d_ff=48, d_kv=8, num_layers=2, num_heads=4,
                      feed_forward_proj="gated-gelu", dropout_rate=0.0, decoder_start_token_id=0,
                      tie_word_embeddings=tie)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config).eval()
    packed, padded = batches(seed=1)
    loss_sum, n = seq2seq_loss_sum(model, padded)
    reference = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                      labels=padded["labels"]).loss
    torch.testing.assert_close(loss_sum / n, reference, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(seq2seq_loss_sum(model, packed)[0], loss_sum, rtol=1e-5, atol=1e-5)


def test_bart_trains_padded_and_refuses_packing() -> None:
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, max_position_embeddings=64, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    model = BartForConditionalGeneration(config).eval()
    packed, _ = batches()
    padded = collate_padded([ex for row in packed_rows() for ex in row], pad_id=config.pad_token_id,
                            decoder_start_id=config.decoder_start_token_id)
    loss_sum, n = seq2seq_loss_sum(model, padded)
    reference = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"],
                      labels=padded["labels"]).loss
    torch.testing.assert_close(loss_sum / n, reference, rtol=1e-6, atol=1e-6)
    with pytest.raises(T2TError, match="--packing false"):
        seq2seq_loss_sum(model, packed)
    assert lora_target_modules(model) == ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def test_empty_targets_give_zero_not_nan() -> None:
    model = tiny_t5()
    packed = collate_packed([[]], pad_to=(4, 3))
    loss, n = seq2seq_loss_sum(model, packed)
    assert n == 0 and loss == 0


def test_segment_mask_blocks() -> None:
    q = torch.tensor([[1, 1, 2, 0]])
    allowed = segment_mask(q, q, causal=True, dtype=torch.float32)[0, 0] == 0
    assert allowed.tolist() == [[True, False, False, False],
                                [True, True, False, False],
                                [False, False, True, False],
                                [True, True, True, True]]  # padding query: sees everything, never NaN
    cross = segment_mask(q, torch.tensor([[2, 1, 1]]), causal=False, dtype=torch.bfloat16)
    assert cross.dtype == torch.bfloat16 and cross.shape == (1, 1, 4, 3)
    assert (cross[0, 0] == 0).tolist() == [[False, True, True], [False, True, True], [True, False, False],
                                           [True, True, True]]


def test_attention_implementation_switch() -> None:
    model = tiny_t5(attn="sdpa")
    assert set_attention_implementation(model, "eager") == "eager"
    # The encoder and decoder stacks hold their own config copies; they must follow.
    assert {m.config._attn_implementation for m in model.modules() if hasattr(m, "config")} == {"eager"}
    with pytest.raises(T2TError, match="attn-implementation"):
        set_attention_implementation(model, "flash")
    set_attention_implementation(model, "flex_attention")
    with pytest.raises(T2TError, match="eager or sdpa"):
        seq2seq_loss_sum(model, batches()[0])


def test_lora_target_modules_per_architecture() -> None:
    from transformers import BartConfig, GPT2Config, MBartConfig, MT5Config, Phi3Config, T5Config

    gated = ["q", "k", "v", "o", "wi_0", "wi_1", "wo"]
    assert lora_target_modules(T5Config(feed_forward_proj="gated-gelu")) == gated
    assert lora_target_modules(T5Config()) == ["q", "k", "v", "o", "wi", "wo"]  # original T5: relu FFN
    assert lora_target_modules(MT5Config()) == gated
    assert lora_target_modules(MBartConfig()) == lora_target_modules(BartConfig())
    assert lora_target_modules(GPT2Config()) == ["c_attn", "c_proj", "c_fc"]
    with pytest.raises(T2TError, match="target-modules"):  # fused qkv_proj: no default, the user names them
        lora_target_modules(Phi3Config())
    model = tiny_t5()
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    assert set(lora_target_modules(model)) <= names
