"""An adapter is scored only on the base it was trained on, and only whole.

A LoRA adapter is a difference to one set of weights. Loaded onto a base of the same shapes but other
weights (another build of minilm-ed, another checkpoint of the same architecture) it loads without a
word and gives a score that belongs to neither; loaded onto a base with fewer layers, peft creates LoRA
layers only where the base has a target and drops the saved tensors that have none (peft's
``set_peft_model_state_dict`` loads with ``strict=False``), so part of the adapter is silently gone.

* :func:`check_adapter_base` compares the base's weights hash with the one its t2t.finetune run
  recorded (``<run>/provenance.json``, :mod:`t2t.modeling.provenance`; for a run from before that file,
  the hash of the base folder the run recorded in ``config.json`` when it still exists). Another base is
  refused unless the caller's ``--allow-other-base``, which turns the refusal into a note for the report.
* :func:`check_adapter_loaded` compares the tensor names in ``adapter_model.safetensors`` with the
  adapter's tensors in the loaded model and refuses, with no way round, an adapter that lost any.

Both are cheap: the base's hash is cached (:func:`t2t.modeling.cache.weights_hash`) and the second reads
only the safetensors header.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from t2t.errors import T2TError
from t2t.modeling.provenance import RUN_FILE, base_identity

ALLOW_FLAG = "--allow-other-base"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def trained_base(adapter_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The base identity the adapter's run recorded: ``provenance.json`` beside the adapter folder, else the
    hash of the ``resolved_model`` folder its ``config.json`` names (when that folder still exists)."""
    run = Path(adapter_dir).resolve().parent
    if run.name == "snapshots":  # <run>/snapshots/step-N: an adapter saved during the run
        run = run.parent
    prov = _read_json(run / RUN_FILE)
    if prov is not None and isinstance(prov.get("base"), dict) and prov["base"].get("weights_sha256"):
        return prov["base"]
    config = _read_json(run / "config.json") or {}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    resolved = config.get("resolved_model")
    if isinstance(resolved, str) and Path(resolved).is_dir():
        found = base_identity(resolved, model.get("revision"), model.get("model"))
        if found.get("weights_sha256"):
            return found
    # only the name is known: compared by name (a run of an older t2t, or one whose base folder is gone)
    return {"model": model["model"], "weights_sha256": None} if isinstance(model.get("model"), str) else None


def check_adapter_base(adapter_dir: str | os.PathLike[str], base: dict[str, Any], *,
                       allow_other_base: bool = False, flag: str = ALLOW_FLAG) -> str | None:
    """Refuse ``adapter_dir`` on a base other than the one it was trained on, unless ``allow_other_base``.

    ``base`` is :func:`t2t.modeling.provenance.base_identity` of the base about to be used. Returns None
    when the bases match, else a note for the report: the base scored on another one (allowed), or an
    adapter whose base was never recorded (an adapter t2t did not train, or a run without the record)."""
    trained = trained_base(adapter_dir)
    current = base.get("weights_sha256")
    if trained is None:
        return (f"adapter {adapter_dir}: its training base is not recorded (no {RUN_FILE} beside it), so it "
                "cannot be checked that it is scored on that base")
    if trained["weights_sha256"] is None or current is None:
        if trained.get("model") in (base.get("model"), base.get("path")):
            return (f"adapter {adapter_dir}: trained on {trained.get('model')}, but the weights hash of one side "
                    "is unknown, so it cannot be checked that they are the same weights")
        text = f"adapter {adapter_dir} was trained on --model {trained.get('model')}, not {base.get('model')}"
    elif trained["weights_sha256"] == current:
        return None
    else:
        text = (f"adapter {adapter_dir} was trained on {trained.get('model')} with weights sha256 "
                f"{trained['weights_sha256'][:16]}, but base {base.get('model')} has weights sha256 {current[:16]}")
    if not allow_other_base:
        raise T2TError(f"{text}: its scores would belong to neither; use the base it was trained on (rebuilt "
                       f"bases differ from machine to machine: docs/reliability.md), or pass {flag}")
    return f"{text} (scored anyway: {flag})"


def _saved_keys(adapter_dir: Path) -> list[str]:
    from safetensors import safe_open  # reads the header only

    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        return list(f.keys())


def check_adapter_loaded(model: Any, adapter_dir: str | os.PathLike[str], name: str) -> None:
    """Every tensor saved in the adapter is one of adapter ``name``'s tensors in ``model`` (a peft model);
    else one T2TError naming how many were dropped and the first of them.

    peft saves an adapter's tensors under the model's names without the adapter's name
    (``...q.lora_A.default.weight`` is saved as ``...q.lora_A.weight``; a ``modules_to_save`` copy loses
    ``modules_to_save.default`` too: peft's ``set_peft_model_state_dict``), so the loaded names are mapped
    the same way before comparing."""
    folder = Path(adapter_dir)
    loaded = set()
    for key, _ in [*model.named_parameters(), *model.named_buffers()]:
        parts = key.split(".")
        if name in parts:
            loaded.add(".".join(p for p in parts if p not in (name, "modules_to_save")))
    dropped = [k for k in _saved_keys(folder) if k not in loaded]
    if dropped:
        raise T2TError(f"--adapter {adapter_dir}: {len(dropped)} of its tensors have no place in this base model "
                       f"(e.g. {dropped[0]}), so peft would drop them and score part of the adapter: it was "
                       "trained on another base (fewer layers or other module names); use the --model it was "
                       "trained on")
