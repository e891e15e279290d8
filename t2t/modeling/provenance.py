"""What a reported number depends on: the base model's weights, the adapter's, the machine and the libraries.

A score is a function of the weights it was computed with and of the machine that computed it: the same
command builds ``minilm-ed`` with other weights on another CPU (its 300-step warm-up runs on the user's
CPU, and different kernels round differently; issue #28), so every training run (``provenance.json``),
evaluation report (``results.json``, ``report.md``) and experiment summary records
:func:`record`: the identity of the base (:func:`base_identity`), of each adapter, of the machine
(:func:`machine`) and the library versions.

The base's identity is ``weights_sha256``: the sha256 of the ``sha256sum``-style listing of its
``*.safetensors`` files, sorted by name, which a user can recompute with
``cd MODEL && sha256sum *.safetensors | LC_ALL=C sort -k2 | sha256sum``; each file's own sha256 is kept
beside it (``files``). Hashing takes seconds (gemma3-270m's 1.07 GB: 3.6 s of CPU, measured 2026-12-07),
so it is done once per folder and cached with each file's size and modification time (a file that changed
is hashed again):

* beside the base, ``t2t_weights.json``, for the bases t2t builds in its model cache (t2t-tiny,
  minilm-ed, the GGUF bases: :func:`t2t.modeling.cache.build_into` writes it in the same rename as the
  weights);
* in ``$T2T_CACHE/weights/`` for any other folder, keyed by its resolved path; for a hub model by its
  resolved snapshot folder (which names the commit) and the revision asked for, so nothing is written
  into a user's model folder or the Hugging Face cache.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from t2t import atomic
from t2t.errors import T2TError
from t2t.modeling.cache import weights_hash
from t2t.modeling.integrity import recorded_checksums, sha256_file
from t2t.versions import library_versions

RUN_FILE = "provenance.json"  # in a t2t.finetune run folder, beside versions.json
# Instruction-set flags from /proc/cpuinfo that decide which kernels torch (oneDNN, its own vectorised
# code) dispatches to, and so how a float sum is rounded.
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2")


def hub_snapshot(name: str, revision: str | None = None) -> Path | None:
    """The local snapshot folder of a hub model already downloaded (huggingface_hub's cache), else None."""
    try:
        from huggingface_hub import snapshot_download  # only for a hub name: a second's import

        folder = snapshot_download(name, revision=revision, local_files_only=True, allow_patterns=["*.safetensors"])
    except (OSError, ValueError, ImportError):
        return None
    return Path(folder)


def base_identity(path: str, revision: str | None = None, name: str | None = None) -> dict[str, Any]:
    """The base model's identity: its name, where its weights were read and their hash (None, with ``why``,
    for a model whose safetensors are not found locally)."""
    out: dict[str, Any] = {"model": name or path, "path": str(path), "revision": revision}
    folder = Path(path) if Path(path).is_dir() else hub_snapshot(path, revision)
    if folder is None:
        return {**out, "weights_sha256": None, "why": "no local safetensors files found for it"}
    if folder != Path(path):
        out["snapshot"] = str(folder)
    hashed = weights_hash(folder, revision)
    if hashed["weights_sha256"] is None:
        return {**out, "weights_sha256": None, "why": f"no *.safetensors file in {folder}"}
    return {**out, **hashed}


def adapter_sha256(adapter_dir: str | os.PathLike[str]) -> str | None:
    """sha256 of ``adapter_model.safetensors``: the one t2t recorded (verified when the adapter loads), else
    computed (an adapter is small)."""
    folder = Path(adapter_dir)
    weights = folder / "adapter_model.safetensors"
    recorded = {}
    with contextlib.suppress(T2TError):  # the loader reports a damaged checksum file; here it is a shortcut
        recorded = recorded_checksums(folder, str(folder)) or {}
    if recorded.get(weights.name):
        return recorded[weights.name]
    return sha256_file(weights) if weights.is_file() else None


def _cpuinfo() -> dict[str, Any]:
    """The first processor's model name, family and the :data:`CPU_FLAGS` it has (Linux), else platform's."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                if fields:
                    break  # one processor's block is enough: they are alike
                continue
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {"cpu": fields.get("model name") or platform.processor() or platform.machine(),
            "cpu_family": fields.get("cpu family"), "cpu_flags": [f for f in CPU_FLAGS if f in flags]}


def machine(device: str | None = None) -> dict[str, Any]:
    """The CPU (model, family, instruction-set flags), torch's CPU kernel level and threads, the GPU's name
    when ``device`` is a CUDA device, the platform and Python."""
    import torch  # the caller has loaded a model: torch is imported already

    out: dict[str, Any] = {**_cpuinfo(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    with contextlib.suppress(AttributeError, RuntimeError):
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # AVX512, AVX2, DEFAULT, ...
    out["gpu"] = None
    if device and device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    out["platform"] = platform.platform()
    out["python"] = sys.version.split()[0]
    return out


def record(base_path: str, revision: str | None = None, name: str | None = None,
           adapters: Mapping[str, str | os.PathLike[str]] | None = None, device: str | None = None,
           ) -> dict[str, Any]:
    """Everything a result depends on: base identity, adapters' sha256 (label -> {path, sha256}), machine,
    library versions."""
    return {"base": base_identity(base_path, revision, name),
            "adapters": {label: {"path": str(p), "sha256": adapter_sha256(p)} for label, p in (adapters or {}).items()},
            "machine": machine(device), "versions": library_versions()}


def summary_line(prov: Mapping[str, Any]) -> str:
    """One line for a report's header: the base's hash prefix, the machine, torch and its threads."""
    base, m, v = prov.get("base") or {}, prov.get("machine") or {}, prov.get("versions") or {}
    digest = base.get("weights_sha256")
    weights = f"weights sha256 {digest[:16]}" if digest else f"weights hash unknown ({base.get('why', '-')})"
    family = f" family {m['cpu_family']}" if m.get("cpu_family") else ""
    where = m.get("gpu") or f"{m.get('cpu')}{family}, torch CPU kernels {m.get('torch_cpu_capability', '?')}"
    return (f"Base {base.get('model')}: {weights}; machine: {where}, {m.get('torch_threads')} torch threads; "
            f"torch {v.get('torch')}, transformers {v.get('transformers')}, peft {v.get('peft')}.")


def write_run_provenance(run_dir: Path, base_path: str, revision: str | None, name: str | None,
                         device: str | None, tuned_dir: Path | None = None) -> dict[str, Any]:
    """``<run>/provenance.json`` of a t2t.finetune run: :func:`record` of its base and machine, written when
    the run starts; with ``tuned_dir`` (once the adapter or model is saved), its sha256 too."""
    prov = record(base_path, revision, name, device=device)
    if tuned_dir is not None:
        if (tuned_dir / "adapter_model.safetensors").is_file():
            prov["adapters"] = {tuned_dir.name: {"path": str(tuned_dir), "sha256": adapter_sha256(tuned_dir)}}
        else:  # --method full: the whole model, hashed as a base is
            prov["tuned_model"] = {"path": str(tuned_dir), **weights_hash(tuned_dir)}
    atomic.write_json(run_dir / RUN_FILE, prov, default=str)
    return prov
