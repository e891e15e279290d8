"""Loading models, tokenizers and adapters: hub names, local folders and the offline tiny T5.

The model's config picks the family (:func:`t2t.modeling.family.model_family`): encoder-decoder configs
load as ``AutoModelForSeq2SeqLM``, all others as ``AutoModelForCausalLM``. A tokenizer without a pad token
(Llama, Mistral, SmolLM2-base) gets one chosen as lm-eval's ``configure_pad_token`` does (unk, else eos),
without resizing the embeddings: t2t builds attention masks and labels by length, never from pad ids.

``t2t-tiny`` is the offline default: a small T5 with a SentencePiece vocabulary trained on the offline
task suite, built once and cached as an ordinary Hugging Face model folder (see :mod:`t2t.modeling.tiny`).
Only safetensors weights are read; remote code is never trusted unless asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from t2t.errors import T2TError
from t2t.modeling.adapter_base import check_adapter_loaded
from t2t.modeling.architecture import ALL_LINEAR, lora_target_modules
from t2t.modeling.config import DEFAULT_MODEL
from t2t.modeling.family import model_family
from t2t.modeling.gguf_bases import GGUF_BASES, ensure_gguf_base
from t2t.modeling.integrity import check_safetensors, recorded_checksums, verify_checksums
from t2t.modeling.pretrained import MINILM_ED, ensure_minilm_ed, warmup_texts
from t2t.modeling.tiny import ensure_tiny_model
from t2t.tasks import sources
from t2t.tasks.registry import TaskRegistry
from t2t.tasks.registry import task_dirs as searched_dirs


def offline_corpus(task_dirs: Sequence[str] = ()) -> Iterator[str]:
    """Text of the offline suite (every generator task, train split, every template) for the tokenizer."""
    registry = TaskRegistry.load(task_dirs)
    for task in registry:
        if "generator" not in task.source or "train" not in task.splits:
            continue
        rows = sources.load_rows(task, "train")
        for i in range(min(len(rows), 400)):
            row = rows[i]
            for name in task.template_names:
                ex = task.render(row, i, name)
                if ex is not None:
                    yield ex.input
                    yield ex.target
            yield from task.choices_for(row) or ()


def corpus_recipe(task_dirs: Sequence[str] = ()) -> str:
    """A digest of everything :func:`offline_corpus` is made from: the task files (with ``_lib``) in every
    searched folder, t2t's own code and the versions of the libraries that render and read rows. Equal
    digests give equal corpora, so the cached t2t-tiny can be found without rendering the corpus again."""
    h = hashlib.sha256()
    for folder in searched_dirs(task_dirs):
        for path in sorted(folder.rglob("*.jinja")):
            h.update(f"{path.relative_to(folder)}\0".encode() + path.read_bytes() + b"\0")
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        h.update(f"{path.relative_to(package)}\0".encode() + path.read_bytes() + b"\0")
    for package in ("jinja2", "datasets", "numpy", "pyyaml"):
        try:
            h.update(f"{package}={importlib.metadata.version(package)}\0".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{package}=none\0".encode())
    return h.hexdigest()


def resolve_model(name: str, task_dirs: Sequence[str] = ()) -> str:
    """A loadable model path or hub name; ``t2t-tiny``, ``minilm-ed`` (:mod:`t2t.modeling.pretrained`) and
    the GGUF bases ``smollm2-135m`` and ``gemma3-270m`` (:mod:`t2t.modeling.gguf_bases`) are built on first
    use and cached."""
    if name == DEFAULT_MODEL:
        return str(ensure_tiny_model(lambda: offline_corpus(task_dirs), recipe=corpus_recipe(task_dirs)))
    if name == MINILM_ED:
        return str(ensure_minilm_ed(lambda: warmup_texts(task_dirs), recipe=corpus_recipe(task_dirs)))
    if name in GGUF_BASES:
        return str(ensure_gguf_base(name))
    return name


def load_tokenizer(path: str, revision: str | None = None) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise T2TError(f"--model {path}: cannot load its tokenizer ({str(exc).splitlines()[0]}); give a hub "
                       "name, a local model folder, or t2t-tiny for the offline model") from exc
    ensure_pad_token(tokenizer)
    return tokenizer


def ensure_pad_token(tokenizer: Any) -> Any:
    """Give a tokenizer without a pad token one of its own tokens: unk, else eos (lm-eval's
    ``configure_pad_token``; no new token, so no embedding resize). Safe because batches are padded by
    length and labels built by position; the pad id is only a filler value."""
    if tokenizer.pad_token is None:
        for name in ("unk_token", "eos_token"):
            if getattr(tokenizer, name, None) is not None:
                tokenizer.pad_token = getattr(tokenizer, name)
                break
    return tokenizer


def check_model_dir(path: str | Path) -> None:
    """The checks :func:`load_model` makes on a local model folder before transformers reads it.

    A folder t2t wrote (``model/`` of ``--method full``, ``merged/`` of ``--merge``) must have the sha256
    recorded when it was written (``t2t_checksums.json``), file by file; every ``*.safetensors`` file in
    any local folder must be whole (its header). Hub names and folders without checksums pass unchecked
    by sha256, as before."""
    folder = Path(path)
    if not folder.is_dir():
        return
    what = f"--model {path}"
    advice = "the model folder is damaged: restore it or train it again"
    recorded = recorded_checksums(folder, what)
    if recorded is not None:
        verify_checksums(folder, recorded, what, advice)
    for weights in sorted(folder.glob("*.safetensors")):
        check_safetensors(weights, what, advice)


def load_model(path: str, attn_implementation: str = "eager", revision: str | None = None,
               dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    check_model_dir(path)
    try:
        config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise T2TError(f"--model {path}: not a model name or folder ({str(exc).splitlines()[0]}); use a hub "
                       "name (google/flan-t5-base), a local folder, or t2t-tiny") from exc
    auto = AutoModelForSeq2SeqLM if model_family(config) == "seq2seq" else AutoModelForCausalLM
    try:
        return auto.from_pretrained(
            path, revision=revision, trust_remote_code=False, use_safetensors=True, dtype=dtype,
            attn_implementation=attn_implementation)
    except (OSError, ValueError) as exc:
        if "Unrecognized configuration class" in str(exc):
            raise T2TError(f"--model {path}: a {config.model_type} model is neither a seq2seq LM nor a causal LM "
                           "that transformers can load (T5, BART, Llama, Qwen2, Gemma, GPT-2, ...)") from exc
        raise T2TError(f"--model {path}: cannot load safetensors weights ({str(exc).splitlines()[0]}); t2t reads "
                       "only safetensors") from exc


def apply_lora(model: torch.nn.Module, r: int, alpha: int, dropout: float,
               target_modules: Sequence[str] = ()) -> torch.nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    targets = list(target_modules) or lora_target_modules(model)
    task_type = TaskType.CAUSAL_LM if model_family(model) == "causal" else TaskType.SEQ_2_SEQ_LM
    if targets == [ALL_LINEAR]:  # peft's shorthand: every linear layer but the output head
        config = LoraConfig(task_type=task_type, r=r, lora_alpha=alpha, lora_dropout=dropout,
                            target_modules=ALL_LINEAR)
        with _quiet_peft():
            return get_peft_model(model, config)
    if ALL_LINEAR in targets:
        raise T2TError(f"--target-modules {','.join(targets)}: '{ALL_LINEAR}' stands alone (every linear layer "
                       "but the output head); give it alone or list module names")
    by_name: dict[str, list[torch.nn.Module]] = {}
    for n, module in model.named_modules():
        by_name.setdefault(n.rsplit(".", 1)[-1], []).append(module)
    linear = sorted(n for n, mods in by_name.items() if n and all(_lora_supported(m) for m in mods))
    missing = [t for t in targets if t not in by_name]
    if missing:
        raise T2TError(f"--target-modules: {missing} not in this model (its linear layers include "
                       f"{linear[:12]})")
    unsupported = [t for t in targets if not all(_lora_supported(m) for m in by_name[t])]
    if unsupported:
        kinds = sorted({type(m).__name__ for t in unsupported for m in by_name[t] if not _lora_supported(m)})
        raise T2TError(f"--target-modules: {unsupported} are not linear layers here ({', '.join(kinds)}); LoRA "
                       f"adapts linear layers: choose among {linear[:12]}")
    config = LoraConfig(task_type=task_type, r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    with _quiet_peft():
        return get_peft_model(model, config)


def _lora_supported(module: torch.nn.Module) -> bool:
    """A layer peft's LoRA can adapt: linear, embedding, convolution (and GPT-2's Conv1D)."""
    return isinstance(module, (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d)) or \
        type(module).__name__ == "Conv1D"


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    # peft 0.21 asks transformers 5 for is_gradient_checkpointing, deprecated there: a FutureWarning on
    # every adapter load that users can do nothing about.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def check_adapter(adapter_dir: str | Path) -> dict[str, Any]:
    """The checks :func:`load_adapter` makes before peft reads an adapter folder; returns its config.

    Each failure is a one-line T2TError naming the file: ``adapter_config.json`` must be a JSON object;
    in a folder t2t wrote, every file must have the sha256 recorded when it was written
    (``t2t_checksums.json``); the weights must be a whole safetensors file.
    """
    path = Path(adapter_dir)
    what = f"--adapter {adapter_dir}"
    config_file, weights = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not config_file.is_file():
        raise T2TError(f"{what}: no adapter_config.json there (point at the folder that t2t.finetune printed)")
    if not weights.is_file():
        raise T2TError(f"{what}: no adapter_model.safetensors (t2t reads only safetensors)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise T2TError(f"{what}: {config_file} is not valid JSON ({str(exc).splitlines()[0]}); restore the "
                       "adapter folder or train it again") from None
    advice = "the adapter is damaged: restore the folder or train it again"
    recorded = recorded_checksums(path, what)
    if recorded is not None:
        verify_checksums(path, recorded, what, advice)
    check_safetensors(weights, what, advice)
    return config


@contextlib.contextmanager
def _adapter_errors(adapter_dir: str | Path, config: dict[str, Any]) -> Iterator[None]:
    """peft's errors on loading a checked adapter, as one line: a base of another shape, a bad config."""
    what = f"--adapter {adapter_dir}"
    try:
        with _quiet_peft():
            yield
    except RuntimeError as exc:
        if "size mismatch" not in str(exc):
            raise
        first = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
        raise T2TError(f"{what} was trained on a base model of another shape ({first[:200]}); evaluate it "
                       f"with the --model it was trained on (base_model_name_or_path in its adapter_config.json: "
                       f"{config.get('base_model_name_or_path')!r})") from None
    except (ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise T2TError(f"{what}: peft cannot load it ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                       "restore the folder or train it again") from None


def load_adapter(model: torch.nn.Module, adapter_dir: str, name: str = "default") -> torch.nn.Module:
    """Wrap a base model with a saved adapter (safetensors) for inference, after :func:`check_adapter`."""
    from peft import PeftModel

    config = check_adapter(adapter_dir)
    with _adapter_errors(adapter_dir, config):
        wrapped = PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=name, is_trainable=False)
    check_adapter_loaded(wrapped, adapter_dir, name)  # peft drops tensors with no target in this base silently
    return wrapped


def add_adapter(model: Any, adapter_dir: str, name: str) -> None:
    """Load one more adapter onto a ``PeftModel`` (peft's ``load_adapter``), after :func:`check_adapter`."""
    config = check_adapter(adapter_dir)
    with _adapter_errors(adapter_dir, config):
        model.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=False)
    check_adapter_loaded(model, adapter_dir, name)


def choose_precision(wanted: str) -> str:
    """accelerate's mixed precision for ``--precision``: bf16 autocast where the GPU has it, else none."""
    bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if wanted == "bf16" and not bf16_ok:
        raise T2TError("--precision bf16 needs a GPU with bf16 support; use auto or fp32")
    return "bf16" if (wanted == "bf16" or (wanted == "auto" and bf16_ok)) else "no"
