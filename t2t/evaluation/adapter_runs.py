"""An adapter folder given to ``t2t.evaluate`` and, when t2t.finetune wrote it, the run behind it.

A t2t.finetune run folder holds ``adapter/`` beside ``manifest.json`` (training tasks, held-out split)
and ``config.json``; evaluation reads them to default to the run's held-out tasks and to refuse scoring
a task the adapter trained on (or one built from the same source dataset) as held-out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from t2t.errors import T2TError
from t2t.tasks.task import Task


@dataclass(frozen=True)
class AdapterRun:
    """An adapter folder and, when t2t.finetune wrote it, its run's manifest and resolved config."""

    label: str
    path: Path
    manifest: dict | None = None
    config: dict | None = None

    @property
    def run_dir(self) -> Path | None:
        return self.path.parent if self.manifest is not None else None

    @property
    def trained(self) -> dict[str, str | None]:
        """Training task name -> source id, from the manifest."""
        return {t["name"]: t.get("source_id") for t in (self.manifest or {}).get("tasks", [])}

    @property
    def base_model(self) -> str | None:
        model = (self.config or {}).get("model")
        return model.get("model") if isinstance(model, dict) else None

    @property
    def base_revision(self) -> str | None:
        """The hub revision of the base model the run trained on (None: the default revision)."""
        model = (self.config or {}).get("model")
        revision = model.get("revision") if isinstance(model, dict) else None
        return str(revision) if revision is not None else None


def _read_json(path: Path, what: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise T2TError(f"{path}: cannot read the {what} ({exc}); fix or remove that file") from None
    if not isinstance(data, dict):
        raise T2TError(f"{path}: the {what} must be a JSON object")
    return data


def read_adapter(spec: str) -> AdapterRun:
    """``DIR`` or ``LABEL=DIR``. The label defaults to the folder's name, or to the run folder's name
    when the folder is called ``adapter`` (what t2t.finetune writes)."""
    label, sep, path_text = spec.partition("=")
    if not sep or not label or Path(spec).exists():
        label, path_text = "", spec
    path = Path(path_text)
    if not path.is_dir():
        raise T2TError(f"--adapter {path_text}: no such folder (give the adapter folder that t2t.finetune "
                       "printed, e.g. runs/offline-demo/adapter)")
    for name, why in (("adapter_config.json", "not a peft adapter folder"),
                      ("adapter_model.safetensors", "t2t reads only safetensors")):
        if not (path / name).is_file():
            raise T2TError(f"--adapter {path_text}: no {name} there ({why})")
    from t2t.modeling.loading import check_adapter  # torch: only once an adapter is given

    check_adapter(path_text)  # damaged files are refused before any model is scored
    resolved = path.resolve()
    label = label or (resolved.parent.name if resolved.name == "adapter" else resolved.name)
    manifest = _read_json(path.parent / "manifest.json", "run manifest")
    if manifest is not None and isinstance(manifest.get("mixture"), dict):
        manifest = manifest["mixture"]  # tolerate a manifest that nests the mixture's under "mixture"
    config = _read_json(path.parent / "config.json", "run config") if manifest is not None else None
    return AdapterRun(label, path, manifest, config)


def check_not_trained(tasks: Sequence[Task], adapters: Sequence[AdapterRun], allow: bool = False
                      ) -> dict[str, list[str]]:
    """Adapter label -> selected tasks its run trained on (by name or source dataset).

    Raises unless ``allow``: such a score is not a held-out score.
    """
    found: dict[str, list[str]] = {}
    for run in adapters:
        trained = run.trained
        sources = {s: n for n, s in trained.items() if s}
        overlap_ok = bool((run.manifest or {}).get("heldout", {}).get("allow_source_overlap"))
        for task in tasks:
            if task.name in trained:
                found.setdefault(run.label, []).append(task.name)
            elif not overlap_ok and task.source_id in sources:
                twin = sources[task.source_id]
                found.setdefault(run.label, []).append(f"{task.name} (same source as {twin})")
    if found and not allow:
        label, names = next(iter(found.items()))
        run = next(r for r in adapters if r.label == label)
        raise T2TError(f"--adapter {run.path} was trained on {', '.join(names)} "
                       f"({run.path.parent}/manifest.json), so it cannot be reported as held-out; "
                       "drop those tasks or pass --allow-train-tasks")
    return found
