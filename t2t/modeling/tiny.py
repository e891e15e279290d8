"""``t2t-tiny``: the offline default model, a small random-init T5 v1.1 built from a config.

No download: a SentencePiece unigram vocabulary is trained on the offline task suite's text, a FLAN-style
T5 (gated-GELU FFN, so LoRA finds q, k, v, o, wi_0, wi_1, wo) is initialised from a fixed seed, and both
are saved as an ordinary Hugging Face folder that ``AutoTokenizer`` / ``AutoModelForSeq2SeqLM`` load::

    path = ensure_tiny_model(lambda: corpus_texts)   # ~/.cache/t2t/models/t2t-tiny-<hash>
    tok = AutoTokenizer.from_pretrained(path); model = AutoModelForSeq2SeqLM.from_pretrained(path)

The folder name hashes the corpus and every setting, so a changed task suite builds a new model; the
build happens in a temporary folder that is renamed into place, so a crash never leaves half a model.
Same corpus, seed and shape give byte-identical files.

Tokenizer: T5's conventions (pad 0, eos 1, unk 2, 100 ``<extra_id_N>`` sentinels at the end of the
vocabulary), digits split one per token, unknown characters as UTF-8 byte tokens, no normaliser: any
text round-trips through encode/decode unchanged. It is saved as a ``tokenizers`` ``tokenizer.json``
(class ``TokenizersBackend``, i.e. ``PreTrainedTokenizerFast``); transformers' ``T5Tokenizer`` would
rebuild its own pipeline on load and drop byte fallback and digit splitting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from t2t import atomic
from t2t.errors import T2TError
from t2t.modeling.cache import build_into, cached_model

__all__ = ["TINY_MODEL_NAME", "TinyShape", "build_tiny_model", "ensure_tiny_model", "tiny_model_key",
           "train_tokenizer"]

log = logging.getLogger(__name__)

TINY_MODEL_NAME = "t2t-tiny"
# Bump when the build changes what it writes, so that old caches are not reused.
BUILD_VERSION = 2  # 2: scaled tied LM head (1 was unscaled and did not train)
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


@dataclasses.dataclass(frozen=True)
class TinyShape:
    """Size of t2t-tiny: ~5M parameters with the offline suite's ~1.3k-token vocabulary. A LoRA step
    (r 16, all linear layers) on 8 packed rows of 128/32 tokens (~40 examples) takes ~0.1 s on 2 idle
    CPU cores. Of 256x3, 256x2, 128x2 and 384x2 (d_model x layers per side), 256x3 reached the lowest
    validation loss after 300 such steps on the offline suite."""

    vocab_size: int = 4096  # SentencePiece pieces at most (fewer on a small corpus), sentinels extra
    extra_ids: int = 100
    d_model: int = 256
    d_ff: int = 512
    d_kv: int = 64
    num_heads: int = 4
    num_layers: int = 3
    num_decoder_layers: int = 3
    dropout_rate: float = 0.0  # the base is frozen under LoRA; peft's lora_dropout regularises the adapter


def _sentinels(extra_ids: int) -> list[str]:
    # T5 order: <extra_id_0> has the largest id.
    return [f"<extra_id_{i}>" for i in reversed(range(extra_ids))]


def _training_stream(texts: Sequence[str]) -> Iterable[str]:
    """Each text, then its word, number and punctuation runs as sentences of their own.

    SentencePiece seeds its unigram vocabulary with substrings that are followed by more than one
    different character. In template text a word is often always followed by the same thing (" " or
    ":"), so it would never become a piece and the model would see letters. Pieces never cross
    whitespace, so the extra sentences add the missing contexts without changing which pieces can exist.
    """
    runs = re.compile(r"[^\W\d_]+|\d+|[^\w\s]+")
    for text in texts:
        yield text
        yield from runs.findall(text)


def train_tokenizer(texts: Iterable[str], out_dir: str | os.PathLike[str], vocab_size: int = 4096,
                    extra_ids: int = 100, model_max_length: int = 1024) -> Any:
    """Train a SentencePiece unigram model on ``texts`` and save it as a Hugging Face tokenizer."""
    # Imported here, like torch and transformers below: heavy, and a cached model needs none of them.
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    corpus = [t for t in texts if t and t.strip()]
    if not corpus:
        raise T2TError("t2t-tiny: the tokenizer corpus is empty; the offline task suite produced no text "
                       "(check that templates/offline has generator tasks with a train split)")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(_training_stream(corpus)), model_writer=model, model_type="unigram",
            vocab_size=vocab_size, hard_vocab_limit=False, split_digits=True, byte_fallback=True,
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece=PAD, eos_piece=EOS, unk_piece=UNK,
            # identity + kept spaces: lossless text; one thread, no sampling: deterministic.
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
            max_sentence_length=1 << 16, minloglevel=2)
    except RuntimeError as exc:
        raise T2TError(f"t2t-tiny: SentencePiece training failed ({exc}); try a different vocab_size") \
            from exc
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    sentinels = _sentinels(extra_ids)
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    vocab += [(s, 0.0) for s in sentinels]

    tok = Tokenizer(Unigram(vocab, unk_id=2, byte_fallback=True))
    # SentencePiece's own pipeline: dummy prefix, spaces as "▁", digits one per piece.
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Digits(individual_digits=True)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                       special_tokens=[(EOS, 1)])
    specials = [PAD, EOS, UNK, *sentinels]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                 extra_special_tokens=sentinels, model_max_length=model_max_length)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out)
    atomic.write_bytes(out / "spiece.model", model.getvalue())  # the SentencePiece original, for reference
    return hf


def tiny_model_key(texts: Sequence[str], seed: int = 0, shape: TinyShape | None = None) -> str:
    """SHA-256 over the build version, seed, shape and every corpus text (in order)."""
    h = hashlib.sha256()
    settings = {"build": BUILD_VERSION, "seed": seed, "shape": dataclasses.asdict(shape or TinyShape())}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for text in texts:
        data = text.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def build_tiny_model(texts: Iterable[str], out_dir: str | os.PathLike[str], seed: int = 0,
                     **shape: Any) -> Path:
    """Train the tokenizer, initialise the T5 from ``seed`` and save both to ``out_dir``."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    try:
        dims = TinyShape(**shape)
    except TypeError as exc:
        names = ", ".join(f.name for f in dataclasses.fields(TinyShape))
        raise T2TError(f"t2t-tiny: unknown shape option ({exc}); the options are {names}") from None
    corpus = list(texts)
    out = Path(out_dir)
    tokenizer = train_tokenizer(corpus, out, vocab_size=dims.vocab_size, extra_ids=dims.extra_ids)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=dims.d_model, d_ff=dims.d_ff, d_kv=dims.d_kv,
        num_heads=dims.num_heads, num_layers=dims.num_layers, num_decoder_layers=dims.num_decoder_layers,
        dropout_rate=dims.dropout_rate, feed_forward_proj="gated-gelu",
        # The LM head is the (tied) embedding, so with random weights its logits must be scaled by
        # d_model**-0.5 (original T5); unscaled (v1.1) they start ~sqrt(d_model) too large and a frozen
        # base never recovers under LoRA.
        tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
    model.save_pretrained(out)
    manifest = {"name": TINY_MODEL_NAME, "build": BUILD_VERSION, "seed": seed,
                "shape": dataclasses.asdict(dims),
                "key": tiny_model_key(corpus, seed, dims), "corpus_texts": len(corpus),
                "vocab_size": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters())}
    atomic.write_json(out / "t2t_tiny.json", manifest, sort_keys=True)
    return out


def ensure_tiny_model(texts_fn: Callable[[], Iterable[str]], cache_dir: str | os.PathLike[str] | None = None,
                      seed: int = 0, recipe: str | None = None, **shape: Any) -> Path:
    """The cached t2t-tiny folder for this corpus and settings, built on first use.

    The folder is named by a hash of the corpus; ``recipe`` lets a later call skip producing the corpus
    (the rules: :mod:`t2t.modeling.cache`).
    """
    try:
        dims = TinyShape(**shape)
    except TypeError as exc:
        names = ", ".join(f.name for f in dataclasses.fields(TinyShape))
        raise T2TError(f"t2t-tiny: unknown shape option ({exc}); the options are {names}") from None
    settings = {"build": BUILD_VERSION, "seed": seed, "shape": dataclasses.asdict(dims)}
    return cached_model(TINY_MODEL_NAME, texts_fn, lambda texts: tiny_model_key(texts, seed, dims),
                        lambda final, texts: _build_into(final, texts, seed, dims), settings=settings,
                        cache_dir=cache_dir, recipe=recipe)


def _build_into(final: Path, texts: list[str], seed: int, dims: TinyShape) -> None:
    log.info("building %s in %s (once; cached)", TINY_MODEL_NAME, final)
    build_into(final, TINY_MODEL_NAME, lambda tmp: build_tiny_model(texts, tmp, seed=seed, **dataclasses.asdict(dims)))
