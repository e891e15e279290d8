"""Training checkpoints: written atomically, safetensors and JSON only, the newest K kept.

A checkpoint is a folder ``checkpoint-000100/`` holding

- ``trainable.safetensors``: every trainable parameter (the LoRA weights, or the whole model);
- ``optimizer.safetensors`` + the param groups in ``state.json``;
- ``rng-rank{R}.safetensors``: each process's torch (and CUDA) generator state;
- ``state.json``: step, scheduler, Python and NumPy RNG states, the mixture stream position, and the
  sha256 of every other file (``files``), verified on resume: a file truncated, zeroed or changed after
  it was written is refused, naming it.

Under FSDP2 (an accelerate config with ``fsdp_version: 2``) parameters and optimiser states are
DTensor shards: every rank gathers them whole for rank 0 to write (a collective), and on resume every
rank keeps its own shard of the whole tensors, so a checkpoint is the same file however it was sharded.

It is built in a hidden temporary folder and renamed into place only when every file is written and
flushed, so a crash during a save leaves the previous checkpoint as the newest complete one. No pickle
is ever written or read.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.distributed.tensor import DTensor, distribute_tensor

from t2t import atomic
from t2t.errors import T2TError
from t2t.modeling.integrity import check_safetensors, file_checksums, verify_checksums

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
SHARDED = "sharded"  # the DCP folder inside a checkpoint written under FSDP2


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """One safetensors file, written atomically and flushed (by the rank that owns it)."""
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic.write_file(path, lambda tmp: save_file(cpu, str(tmp)))


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """An FSDP2 shard (DTensor) gathered whole, any other tensor as it is. Collective: every rank calls it."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether FSDP2 has sharded ``model``'s parameters (accelerate's ``fsdp_version: 2``)."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def gathered_state(model: torch.nn.Module, trainable_only: bool) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` (only its trainable entries with ``trainable_only``) with every shard gathered
    whole, for rank 0 to save. Collective: every rank calls it."""
    trainable = set(trainable_state(model))
    out: dict[str, torch.Tensor] = {}
    gathered: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}  # tied weights stay one tensor, as unsharded
    for name, value in model.state_dict().items():
        if trainable_only and name not in trainable:
            continue
        local = value.to_local() if isinstance(value, DTensor) else value
        key = (local.data_ptr(), tuple(value.shape))
        if key not in gathered:
            gathered[key] = whole(value).detach()
        out[name] = gathered[key]
    return out


def state_bytes(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Bytes of the model's parameters (only the trainable ones with ``trainable_only``), whole: what an
    adapter or model folder takes, for the free space a full disk's message asks for. DTensor shards count
    at their global size (``numel`` of a DTensor is the whole tensor's)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad or not trainable_only)


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """About what a checkpoint takes: the trainable weights and AdamW's two moments of the same size."""
    return 3 * state_bytes(model, trainable_only=True)


def _shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """This rank's shard of ``full``, laid out as ``like`` (a DTensor); each rank holds ``full``, so no
    data moves between ranks."""
    return distribute_tensor(full.to(like.device, like.dtype), like.device_mesh, like.placements, src_data_rank=None)


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = whole(value)
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                        meta: dict[str, Any]) -> None:
    params = [p for group in optimizer.param_groups for p in group["params"]]  # the order of state's indices
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        param = params[int(idx)]
        if isinstance(param, DTensor) and value.shape == param.shape:  # Adam's moments, sharded as the param
            value = _shard_like(value, param)
        per_param.setdefault(int(idx), {})[name] = value
    for key, value in meta["scalars"].items():
        idx, name = key.split(".", 1)
        per_param.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": meta["param_groups"]})


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"python": list(map(lambda x: list(x) if isinstance(x, tuple) else x, random.getstate())),
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))


def torch_rng_tensors() -> dict[str, torch.Tensor]:
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def restore_torch_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["cpu"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT_RE.match(p.name)) and p.is_dir()
             and (p / "state.json").is_file()
             and ((p / "trainable.safetensors").is_file() or (p / SHARDED / ".metadata").is_file())]
    return sorted(found)


def _remove(path: Path) -> None:
    """Delete a checkpoint folder. It is renamed to a hidden name first (atomic), so that a kill during
    the deletion never leaves a half-deleted folder under a checkpoint's name."""
    trash = path.with_name(f".{path.name}.del")
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _sweep(root: Path) -> None:
    """Remove what an earlier kill left behind: unfinished saves, replaced or half-deleted checkpoints."""
    for leftover in root.glob(".checkpoint-*"):
        if leftover.is_dir() and leftover.suffix in (".tmp", ".old", ".del"):
            shutil.rmtree(leftover, ignore_errors=True)


def _all_files(folder: Path) -> list[str]:
    """Every file below ``folder``, as paths relative to it (a sharded checkpoint has a subfolder)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _write_weights(tmp: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int) -> dict[str, Any]:
    """The weights and optimiser states into the staged checkpoint ``tmp``; what state.json records of them.

    Sharded (FSDP2): every rank writes its own shards through DCP, nothing is gathered. Otherwise rank 0
    writes the whole tensors as safetensors."""
    if is_sharded(model):
        save_sharded(model, optimizer, tmp / SHARDED)
        return {"format": "dcp"}
    weights = {n: whole(p) for n, p in trainable_state(model).items()}
    opt_tensors, opt_meta = optimizer_to_flat(optimizer)
    if rank == 0:
        _save_tensors(weights, tmp / "trainable.safetensors")
        _save_tensors(opt_tensors, tmp / "optimizer.safetensors")
    return {"optimizer": opt_meta}


def save_checkpoint(root: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], keep: int, rank: int = 0, world_size: int = 1,
                    barrier: Any = None) -> Path:
    """Write checkpoint ``step`` atomically. Every rank writes its RNG (and, sharded, its shards); rank 0
    writes the rest. A failure while writing (a full disk) removes the half-written folder on rank 0, so
    only complete checkpoints are ever left.

    ``barrier`` (a callable) synchronises processes between the per-rank writes and the rename.
    """
    sync = barrier or (lambda: None)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"checkpoint-{step:06d}"
    tmp = atomic.staging_path(final)  # .checkpoint-NNNNNN.tmp, the same name on every rank
    if rank == 0:
        _sweep(root)
    sync()
    if rank == 0:
        tmp.mkdir(parents=True)
    sync()
    try:
        _save_tensors(torch_rng_tensors(), tmp / f"rng-rank{rank}.safetensors")
        weights = _write_weights(tmp, model, optimizer, rank)
        sync()
        if rank == 0:
            atomic.write_json(tmp / "state.json", {**state, "step": step, "world_size": world_size, **weights,
                                                   "rng": rng_state(), "files": file_checksums(tmp, _all_files(tmp))},
                              indent=1)
    except BaseException:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if rank == 0:
        # A re-run of the same step after a resume replaces it: the old one is renamed away first.
        atomic.publish_dir(tmp, final)
        for _, old_path in list_checkpoints(root)[:-keep]:
            _remove(old_path)
    sync()
    return final


def _read_state(path: Path, advice: str) -> dict[str, Any]:
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        if not isinstance(state, dict):
            raise ValueError("state.json is not a JSON object")
    except (OSError, ValueError) as exc:
        raise T2TError(f"checkpoint {path}: state.json cannot be read ({exc}); {advice}") from None
    return state


def _check_match(path: Path, saved: dict[str, tuple[int, ...]], params: dict[str, tuple[int, ...]]) -> None:
    """The checkpoint's trainable tensors (name -> shape) are the model's, or one T2TError saying which."""
    missing = sorted(set(params) - set(saved))
    unexpected = sorted(set(saved) - set(params))
    if missing or unexpected:
        raise T2TError(f"checkpoint {path} does not match the model (missing {missing[:3]}, unexpected "
                       f"{unexpected[:3]}); was it written with another --model or --method?")
    wrong = [f"{n} {saved[n]} vs {shape}" for n, shape in params.items() if saved[n] != shape]
    if wrong:
        raise T2TError(f"checkpoint {path} does not match the model's shapes ({wrong[0]}); was it written with "
                       "another --model or --lora-r?")


def _load_whole(path: Path, state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                world_size: int, advice: str) -> None:
    """Weights and optimiser states from whole-tensor safetensors (each rank keeps its shard under FSDP2)."""
    files = [path / "trainable.safetensors", path / "optimizer.safetensors"]
    for file in files:
        check_safetensors(file, f"checkpoint {path}", advice)
    try:
        weights = load_file(str(files[0]))
        opt_tensors = load_file(str(files[1]))
    except (OSError, ValueError, SafetensorError) as exc:
        raise T2TError(f"checkpoint {path} cannot be read ({exc}); {advice}") from None
    if state.get("world_size", 1) != world_size:
        raise T2TError(f"checkpoint {path} was written by {state.get('world_size')} processes, this run has "
                       f"{world_size}; resume with the same number of processes")
    params = trainable_state(model)
    _check_match(path, {n: tuple(w.shape) for n, w in weights.items()}, {n: tuple(p.shape) for n, p in params.items()})
    with torch.no_grad():
        for name, param in params.items():
            full = weights[name].to(param.device, param.dtype)
            param.copy_(_shard_like(full, param) if isinstance(param, DTensor) else full)
    optimizer_from_flat(optimizer, opt_tensors, state["optimizer"])


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int = 0,
                    world_size: int = 1) -> dict[str, Any]:
    """Restore weights, optimiser and RNG states; return the saved training state.

    Every file is checked first (its recorded sha256, then its safetensors header): a damaged checkpoint
    is one T2TError naming the file, before anything is restored. A sharded checkpoint (``format: dcp``)
    loads on any number of processes, sharded or not; a whole-tensor one needs the process count it was
    written with."""
    advice = f"delete {path} to resume from the checkpoint before it"
    state = _read_state(path, advice)
    if isinstance(state.get("files"), dict):
        verify_checksums(path, state["files"], f"checkpoint {path}", advice)
    elif state.get("format") == "dcp":  # DCP's metadata is a pickle: read only what t2t recorded a sha256 of
        raise T2TError(f"checkpoint {path}: state.json records no checksums; {advice}")
    if state.get("format") == "dcp":
        load_sharded(path / SHARDED, model, optimizer, path)
    else:
        _load_whole(path, state, model, optimizer, world_size, advice)
    rng_file = path / f"rng-rank{rank}.safetensors"
    rng = None
    if rng_file.exists():  # absent for a rank the run that wrote it did not have (a sharded checkpoint)
        check_safetensors(rng_file, f"checkpoint {path}", advice)
        try:
            rng = load_file(str(rng_file))
        except (OSError, ValueError, SafetensorError) as exc:
            raise T2TError(f"checkpoint {path} cannot be read ({exc}); {advice}") from None
    restore_rng(state["rng"])
    if rng is not None:
        restore_torch_rng(rng)
    return state


# -- sharded checkpoints (FSDP2) through torch.distributed.checkpoint -------------------------------

# torch.distributed.checkpoint is imported in the functions below: it takes about as long to import as torch
# itself (python -X importtime), and only FSDP2 runs and their resumes use it.

def _dcp_options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Only the trainable tensors (LoRA: the adapter, not the frozen base); strict=False since the frozen
    # parameters are left out on purpose (the names are checked by _check_match instead).
    return StateDictOptions(ignore_frozen_params=True, strict=False)


def _plain(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimiser inside accelerate's wrapper: DCP steps it once with zero gradients to create
    its states before a load (``_init_optim_state``), which must not go through the wrapper's step."""
    return getattr(optimizer, "optimizer", optimizer)


def save_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Every rank writes its own shards of the trainable weights and the optimiser states into ``folder``
    (``__RANK_0.distcp``; rank 0 adds ``.metadata``), nothing gathered. Collective: every rank calls it.

    DCP's API (torch 2.13, torch/distributed/checkpoint/state_dict.py and state_dict_saver.py):
    ``get_state_dict(model, optimizer, options=StateDictOptions(...))`` returns the model's and the
    optimiser's state dicts keyed by parameter name, with DTensor shards as they are; ``dcp.save`` with a
    ``FileSystemWriter`` writes each rank's local shards and fsyncs them (``sync_files=True``)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, _plain(optimizer), options=_dcp_options())
    dcp.save({"model": model_state, "optimizer": optim_state}, storage_writer=dcp.FileSystemWriter(str(folder)))


def load_sharded(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, checkpoint: Path) -> None:
    """Load a DCP checkpoint written by any number of processes into this run's model and optimiser,
    sharded as this run shards them (DCP reads the slices each rank needs) or whole on one process.
    Collective under FSDP2. The caller has verified every file's sha256 (DCP's ``.metadata`` is a pickle)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    reader = dcp.FileSystemReader(str(folder))
    saved = {key.removeprefix("model."): tuple(meta.size) for key, meta in
             reader.read_metadata().state_dict_metadata.items() if key.startswith("model.") and hasattr(meta, "size")}
    plain = _plain(optimizer)
    model_state, optim_state = get_state_dict(model, plain, options=_dcp_options())
    _check_match(checkpoint, saved, {n: tuple(t.shape) for n, t in model_state.items()})
    dcp.load({"model": model_state, "optimizer": optim_state}, storage_reader=reader)
    set_state_dict(model, plain, model_state_dict=model_state, optim_state_dict=optim_state, options=_dcp_options())
