"""Loading models, tokenizers and adapters: hub names, local folders and the offline tiny T5.

``t2t-tiny`` is the offline default: a small T5 with a SentencePiece vocabulary trained on the offline
task suite, built once and cached as an ordinary Hugging Face model folder (see :mod:`t2t.modeling.tiny`).
Only safetensors weights are read; remote code is never trusted unless asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from t2t.errors import T2TError
from t2t.modeling.architecture import lora_target_modules
from t2t.modeling.config import DEFAULT_MODEL
from t2t.modeling.pretrained import MINILM_ED, ensure_minilm_ed, warmup_texts
from t2t.modeling.tiny import ensure_tiny_model
from t2t.tasks.registry import TaskRegistry
from t2t.tasks.registry import task_dirs as searched_dirs


def offline_corpus(task_dirs: Sequence[str] = ()) -> Iterator[str]:
    """Text of the offline suite (every generator task, train split, every template) for the tokenizer."""
    from t2t.tasks.sources import load_rows  # pulls in datasets: only when the corpus is built

    registry = TaskRegistry.load(task_dirs)
    for task in registry:
        if "generator" not in task.source or "train" not in task.splits:
            continue
        rows = load_rows(task, "train")
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
    """A loadable model path or hub name; ``t2t-tiny`` and ``minilm-ed`` (:mod:`t2t.modeling.pretrained`)
    are built on first use and cached."""
    if name == DEFAULT_MODEL:
        return str(ensure_tiny_model(lambda: offline_corpus(task_dirs), recipe=corpus_recipe(task_dirs)))
    if name == MINILM_ED:
        return str(ensure_minilm_ed(lambda: warmup_texts(task_dirs), recipe=corpus_recipe(task_dirs)))
    return name


def load_tokenizer(path: str, revision: str | None = None) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise T2TError(f"--model {path}: cannot load its tokenizer ({str(exc).splitlines()[0]}); give a hub "
                       "name, a local model folder, or t2t-tiny for the offline model") from exc


def load_model(path: str, attn_implementation: str = "eager", revision: str | None = None,
               dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    try:
        config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise T2TError(f"--model {path}: not a model name or folder ({str(exc).splitlines()[0]}); use a hub "
                       "name (google/flan-t5-base), a local folder, or t2t-tiny") from exc
    if not getattr(config, "is_encoder_decoder", False):
        raise T2TError(f"--model {path}: a {config.model_type} model is not encoder-decoder; t2t trains seq2seq "
                       "LMs (T5, FLAN-T5, mT5, BART)")
    try:
        return AutoModelForSeq2SeqLM.from_pretrained(
            path, revision=revision, trust_remote_code=False, use_safetensors=True, dtype=dtype,
            attn_implementation=attn_implementation)
    except (OSError, ValueError) as exc:
        raise T2TError(f"--model {path}: cannot load safetensors weights ({str(exc).splitlines()[0]}); t2t reads "
                       "only safetensors") from exc


def apply_lora(model: torch.nn.Module, r: int, alpha: int, dropout: float,
               target_modules: Sequence[str] = ()) -> torch.nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    targets = list(target_modules) or lora_target_modules(model)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise T2TError(f"--target-modules: {missing} not in this model (its linear layers include "
                       f"{sorted(n for n in names if n)[:12]})")
    config = LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=targets)
    with _quiet_peft():
        return get_peft_model(model, config)


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    # peft 0.21 asks transformers 5 for is_gradient_checkpointing, deprecated there: a FutureWarning on
    # every adapter load that users can do nothing about.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def load_adapter(model: torch.nn.Module, adapter_dir: str, name: str = "default") -> torch.nn.Module:
    """Wrap a base model with a saved adapter (safetensors) for inference."""
    from peft import PeftModel

    path = Path(adapter_dir)
    if not (path / "adapter_config.json").is_file():
        raise T2TError(f"--adapter {adapter_dir}: no adapter_config.json there (point at the folder "
                       "that t2t.finetune printed)")
    if not (path / "adapter_model.safetensors").is_file():
        raise T2TError(f"--adapter {adapter_dir}: no adapter_model.safetensors (t2t reads only safetensors)")
    with _quiet_peft():
        return PeftModel.from_pretrained(model, str(path), adapter_name=name, is_trainable=False)


def choose_precision(wanted: str) -> str:
    """accelerate's mixed precision for ``--precision``: bf16 autocast where the GPU has it, else none."""
    bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if wanted == "bf16" and not bf16_ok:
        raise T2TError("--precision bf16 needs a GPU with bf16 support; use auto or fp32")
    return "bf16" if (wanted == "bf16" or (wanted == "auto" and bf16_ok)) else "no"
