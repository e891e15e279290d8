"""causal_loss_sum: packed = padded (loss and gradients), = transformers' own loss, LM head only where a label
is predicted, LoRA targets for causal architectures, refused kernels."""

from __future__ import annotations

import pytest
import torch

from t2t.data.causal import collate_causal_packed, collate_causal_padded, tokenize_causal
from t2t.errors import T2TError
from t2t.modeling import loss as loss_mod
from t2t.modeling.architecture import lora_target_modules, set_attention_implementation
from t2t.modeling.family import model_family
from t2t.modeling.loading import apply_lora
from t2t.modeling.loss import CausalLoss, Seq2SeqLoss, causal_loss_sum, loss_for_model
from tests.causal_tiny import make_gpt2, make_llama, make_tokenizer

PAIRS = [("Review: the film was great fun.\n", "positive"), ("Question: what is the sum of 3 and 4?", "7"),
         ("Topic: sports politics", "sports"), ("Who is mentioned in the sentence? The person is Alice.", "Alice"),
         ("", "yes"), ("Options: yes no maybe", "maybe not")]


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer("llama_style", pad_is_eos=True)  # SmolLM2's convention: pad == eos


def examples(tok, loss_on: str = "target") -> list[dict]:
    return tokenize_causal(tok, [i for i, _ in PAIRS], [t for _, t in PAIRS], 48, 8, loss_on=loss_on)


def rows(exs: list[dict]) -> list[list[dict]]:
    return [exs[0:3], exs[3:5], exs[5:]]  # rows of unequal length: padding in the packed batch too


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("loss_on", ["target", "all"])
def test_packed_loss_and_gradients_equal_padded(tok, attn: str, loss_on: str) -> None:
    model = make_llama(len(tok), attn=attn)
    exs = examples(tok, loss_on)
    results = []
    for batch in (collate_causal_padded(exs, tok.pad_token_id), collate_causal_packed(rows(exs), tok.pad_token_id)):
        model.zero_grad()
        loss, n = causal_loss_sum(model, batch)
        loss.backward()
        results.append((loss.detach(), int(n), grads(model)))
    (padded, n_pad, g_pad), (packed, n_pack, g_pack) = results
    assert n_pad == n_pack == sum(sum(1 for x in e["labels"] if x != -100) for e in exs)
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)
    assert g_pad.keys() == g_pack.keys() and len(g_pad) == len(list(model.parameters()))
    for name in g_pad:
        torch.testing.assert_close(g_pack[name], g_pad[name], rtol=1e-4, atol=1e-6, msg=name)


def test_packed_rows_do_not_see_each_other(tok) -> None:
    """Changing example 0's tokens leaves the loss of example 1 (packed behind it) unchanged."""
    model = make_llama(len(tok))
    exs = examples(tok)[:2]
    base = collate_causal_packed([exs], tok.pad_token_id)
    changed = {k: v.clone() for k, v in base.items()}
    first = changed["segment_ids"][0] == 1
    changed["input_ids"][0][first] = (changed["input_ids"][0][first] + 7) % len(tok)
    changed["labels"][0][first] = -100
    only_second = {k: v.clone() for k, v in base.items()}
    only_second["labels"][0][first] = -100
    a, _ = causal_loss_sum(model, only_second)
    b, _ = causal_loss_sum(model, changed)
    torch.testing.assert_close(a, b)


def test_loss_equals_transformers_own_loss(tok) -> None:
    """An independent reference: LlamaForCausalLM(input_ids, attention_mask, labels).loss is the mean over
    the shifted labels; times their count it is our sum."""
    model = make_llama(len(tok))
    batch = collate_causal_padded(examples(tok), tok.pad_token_id)
    with torch.no_grad():
        ours, n = causal_loss_sum(model, batch)
        theirs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       labels=batch["labels"]).loss
    torch.testing.assert_close(ours, theirs * n, rtol=1e-5, atol=1e-5)


def head_rows(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, int]:
    seen: list[int] = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda m, args, out: seen.append(args[0].reshape(-1, args[0].shape[-1]).shape[0]))
    try:
        with torch.no_grad():
            loss, _ = causal_loss_sum(model, batch)
    finally:
        hook.remove()
    return loss, seen[0]


@pytest.mark.parametrize("packed", [False, True])
def test_lm_head_only_at_loss_positions_gives_the_full_logits_loss(tok, packed: bool,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_llama(len(tok))
    exs = examples(tok)
    batch = collate_causal_packed(rows(exs), 0) if packed else collate_causal_padded(exs, 0)
    n_labels = int(batch["labels"].ne(-100).sum())
    fast, fast_rows = head_rows(model, batch)
    monkeypatch.setattr(loss_mod, "_takes_logits_to_keep", lambda model: False)
    full, full_rows = head_rows(model, batch)
    assert fast_rows == n_labels < full_rows == batch["input_ids"].numel()
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)


def test_model_post_head_processing_is_kept(tok, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gemma's final logit soft-capping runs inside the model's forward, after the head: kept on the fast path."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, final_logit_softcapping=0.5,
                          attn_implementation="eager")
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config).eval()
    batch = collate_causal_packed(rows(examples(tok)), 0)
    with torch.no_grad():
        fast, n = causal_loss_sum(model, batch)
        monkeypatch.setattr(loss_mod, "_takes_logits_to_keep", lambda model: False)
        full, _ = causal_loss_sum(model, batch)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    model.config.final_logit_softcapping = None
    with torch.no_grad():
        uncapped, _ = causal_loss_sum(model, batch)
    assert abs(float(uncapped - fast)) > 1e-3  # the capping matters here, so the equality above means something


def test_lora_on_lm_head_is_trained_through_the_fast_path(tok, monkeypatch: pytest.MonkeyPatch) -> None:
    model = apply_lora(make_llama(len(tok)), r=4, alpha=8, dropout=0.0,
                       target_modules=["q_proj", "v_proj", "lm_head"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    batch = collate_causal_packed(rows(examples(tok)), 0)
    loss, _ = causal_loss_sum(model, batch)
    loss.backward()
    head = {n: p.grad for n, p in model.named_parameters() if "lm_head" in n and "lora" in n}
    assert head and all(g is not None and g.abs().sum() > 0 for g in head.values())
    monkeypatch.setattr(loss_mod, "_takes_logits_to_keep", lambda model: False)
    with torch.no_grad():
        full, _ = causal_loss_sum(model, batch)
    torch.testing.assert_close(loss.detach(), full, rtol=1e-5, atol=1e-5)


def test_gpt2_default_lora_targets_and_packing(tok) -> None:
    model = make_gpt2(len(tok))
    assert model_family(model) == "causal"
    assert lora_target_modules(model) == ["c_attn", "c_proj", "c_fc"]
    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0)
    assert peft_model.peft_config["default"].task_type == "CAUSAL_LM"
    adapted = {n.split(".")[-4] for n, _ in peft_model.named_parameters() if "lora_A" in n}
    assert adapted == {"c_attn", "c_proj", "c_fc"}
    exs = examples(tok)
    with torch.no_grad():
        padded, _ = causal_loss_sum(peft_model, collate_causal_padded(exs, 0))
        packed, _ = causal_loss_sum(peft_model, collate_causal_packed(rows(exs), 0))
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)


def test_llama_default_targets_and_all_linear(tok) -> None:
    model = apply_lora(make_llama(len(tok)), r=4, alpha=8, dropout=0.0)
    adapted = {n.split(".")[-4] for n, _ in model.named_parameters() if "lora_A" in n}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    everything = apply_lora(make_llama(len(tok)), r=4, alpha=8, dropout=0.0, target_modules=["all-linear"])
    assert {n.split(".")[-4] for n, _ in everything.named_parameters() if "lora_A" in n} == adapted  # no lm_head
    with pytest.raises(T2TError, match="all-linear"):
        apply_lora(make_llama(len(tok)), r=4, alpha=8, dropout=0.0, target_modules=["all-linear", "lm_head"])


def test_packed_rows_refuse_other_attention_kernels(tok) -> None:
    model = make_llama(len(tok))
    set_attention_implementation(model, "flex_attention")
    batch = collate_causal_packed(rows(examples(tok)), 0)
    with pytest.raises(T2TError, match="eager or sdpa"):
        causal_loss_sum(model, batch)


def test_loss_wrapper_follows_the_family(tok) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    assert isinstance(loss_for_model(make_llama(len(tok))), CausalLoss)
    t5 = T5ForConditionalGeneration(T5Config(d_model=16, d_ff=32, d_kv=4, num_heads=2, num_layers=1, vocab_size=32))
    assert isinstance(loss_for_model(t5), Seq2SeqLoss)


@pytest.mark.parametrize("arch", ["gemma2", "mistral"])
def test_sliding_window_models_pack_exactly(tok, arch: str) -> None:
    """A window shorter than the examples: Gemma 2 mixes sliding and full layers (a mask per layer type),
    Mistral slides in every layer. Packed = padded, loss and gradients."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, MistralConfig, MistralForCausalLM

    dims = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=8, sliding_window=3, attn_implementation="eager")
    torch.manual_seed(0)
    model = (Gemma2ForCausalLM(Gemma2Config(**dims)) if arch == "gemma2" else
             MistralForCausalLM(MistralConfig(**dims))).eval()
    exs = examples(tok)
    results = []
    for batch in (collate_causal_padded(exs, 0), collate_causal_packed(rows(exs), 0)):
        model.zero_grad()
        loss, _ = causal_loss_sum(model, batch)
        loss.backward()
        results.append((loss.detach(), grads(model)))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-5)
    for name, g in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], g, rtol=1e-4, atol=1e-6, msg=name)
    model.config.sliding_window = 512  # the window matters here: wider, the loss differs
    with torch.no_grad():
        unwindowed, _ = causal_loss_sum(model, collate_causal_padded(exs, 0))
    assert abs(float(unwindowed - results[0][0])) > 1e-4
