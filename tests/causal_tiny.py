"""Tiny random decoder-only models and tokenizers for the causal tests, built offline in well under a second.

The tokenizer is a byte-level BPE (every text encodes, and decodes back unchanged) trained on a fixed
text, wrapped as a ``PreTrainedTokenizerFast``: ``llama_style`` adds BOS like Llama/Gemma tokenizers and
has no pad token; ``gpt2_style`` adds nothing (GPT-2/Qwen); ``pad_is_eos`` sets pad = eos (SmolLM2).
A ChatML-like template (``<|im_start|>``/``<|im_end|>``, EOS = ``<|im_end|>``) stands for an instruct
model's chat template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

BOS, EOS, UNK, IM_START, IM_END = "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_CORPUS = ("Review: the film was great fun and the actors were good. Sentiment: positive negative neutral\n"
           "Question: what is the sum of 3 and 4? Answer: 7. Topic: sports politics science business\n"
           "Who is mentioned in the sentence? The person is Alice. Options: yes no maybe true false\n") * 4


def make_tokenizer(style: str = "llama_style", chat: bool = False, pad_is_eos: bool = False) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [UNK, BOS, EOS] + ([IM_START, IM_END] if chat else [])
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([_CORPUS], trainer)
    if style == "llama_style":
        tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                           special_tokens=[(BOS, tok.token_to_id(BOS))])
    eos = IM_END if chat else EOS
    kwargs: dict[str, Any] = {"bos_token": BOS, "eos_token": eos, "unk_token": UNK}
    if pad_is_eos:
        kwargs["pad_token"] = eos
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    if chat:
        hf.chat_template = CHATML
    return hf


def make_llama(vocab_size: int, seed: int = 0, attn: str = "sdpa", tie: bool = False) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.set_attn_implementation(attn)
    return model.eval()


def make_gpt2(vocab_size: int, seed: int = 0) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=512, bos_token_id=1,
                        eos_token_id=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config).eval()


def save_model_folder(out: Path, style: str = "llama_style", chat: bool = False, arch: str = "llama") -> Path:
    """A model folder (safetensors + tokenizer) that ``--model`` accepts."""
    tok = make_tokenizer(style, chat=chat)
    model = make_llama(len(tok)) if arch == "llama" else make_gpt2(len(tok))
    model.config.bos_token_id, model.config.eos_token_id = tok.bos_token_id, tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
