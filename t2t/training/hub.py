"""``--push-to-hub REPO``: the saved adapter (or ``model/``) uploaded to the Hugging Face hub, with a model card.

Done by the main process after the run is saved, so that a failed upload costs nothing: the run folder is
whole before the first byte leaves, and the error is one line naming the repo and how to push again.
Through ``huggingface_hub.HfApi``: ``create_repo(repo_id, private=..., exist_ok=True)`` then
``upload_folder(repo_id=..., folder_path=...)`` (one commit of the whole folder). The token is found as
huggingface_hub finds it (``HF_TOKEN``, else the one ``hf auth login`` stored); none is read here.

The model card is the folder's ``README.md`` (peft writes a template there; integrity checksums leave
``.md`` files out, :mod:`t2t.modeling.integrity`): base model, method, mixture, training and held-out
tasks, steps, and the command that evaluates it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from t2t.atomic import write_text
from t2t.errors import T2TError
from t2t.training.config import FinetuneConfig


def model_card(cfg: FinetuneConfig, out: Path, folder: Path) -> str:
    """The README.md of an uploaded folder: YAML metadata the hub reads, then what the run was."""
    manifest = _read_json(out / "manifest.json")
    train_tasks = [t.get("name", "?") for t in manifest.get("tasks", [])]
    heldout = [t.get("name", "?") for t in manifest.get("heldout", {}).get("tasks", [])]
    lora = cfg.tuning.method == "lora"
    meta = [f"base_model: {cfg.model.model}", f"library_name: {'peft' if lora else 'transformers'}",
            "tags:", "- t2t", "- instruction-tuning", *(["- lora"] if lora else [])]
    lines = [
        "---", *meta, "---", "",
        f"# {folder.parent.name}: {'LoRA adapter' if lora else 'fully fine-tuned model'}", "",
        f"Trained with t2t (`python -m t2t.finetune`) on the mixture `{cfg.data.mixture}`.", "",
        f"- base model: `{cfg.model.model}`" + (f" (revision `{cfg.model.revision}`)" if cfg.model.revision else ""),
        f"- method: {cfg.tuning.method}" + (f" (r {cfg.tuning.lora_r}, alpha {cfg.tuning.lora_alpha})" if lora else ""),
        f"- steps: {cfg.train.max_steps} of {cfg.train.batch_size} examples, peak lr {cfg.train.lr:g}, "
        f"{cfg.train.schedule} schedule, seed {cfg.train.seed}",
        f"- training tasks ({len(train_tasks)}): {', '.join(train_tasks) or 'see manifest.json'}",
        f"- held-out tasks ({len(heldout)}): {', '.join(heldout) or 'none'}", "",
    ]
    if lora:
        lines += ["Load it with peft:", "", "```python", "from peft import AutoPeftModel",
                  "model = AutoPeftModel.from_pretrained(\"REPO\")".replace("REPO", cfg.train.push_to_hub or ""),
                  "```", ""]
    return "\n".join(lines)


def push_to_hub(cfg: FinetuneConfig, out: Path, folder: Path, api: Any = None) -> str:
    """Upload ``folder`` (with its model card) to ``--push-to-hub``; returns the repo's URL. ``api``: an
    ``HfApi`` (tests pass one that records the calls)."""
    repo = cfg.train.push_to_hub
    assert repo, "push_to_hub called without --push-to-hub"
    write_text(folder / "README.md", model_card(cfg, out, folder))
    try:
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi()  # token: HF_TOKEN or the stored login, as huggingface_hub resolves it
        url = api.create_repo(repo_id=repo, private=cfg.train.hub_private, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(folder),
                          commit_message=f"t2t.finetune: {folder.name}/ after {cfg.train.max_steps} steps")
    # Any failure (no token, no network, a refused name, an HTTP error of whichever client library): the
    # run is saved already; the one line says so and how to push again.
    except Exception as exc:  # noqa: BLE001
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise T2TError(f"--push-to-hub {repo}: the upload failed ({reason[:200]}); the run is saved in {out}; "
                       f"push it later with: hf upload {repo} {folder}") from None
    return str(url)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
