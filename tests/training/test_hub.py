"""``--push-to-hub REPO``: create_repo + upload_folder of the saved folder with a model card, through an
injected HfApi that records the calls (no network); a failed upload leaves the run whole, one line naming
the repo. The whole path from ``python -m t2t.finetune`` is in tests/training/test_next_commands.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from t2t.errors import T2TError
from t2t.training.config import build_config
from t2t.training.hub import push_to_hub


class FakeHfApi:
    """Records create_repo and upload_folder (with the uploaded folder's files and README at that moment)."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.files: dict[str, bytes] = {}
        self.fail = fail

    def create_repo(self, **kwargs: Any) -> str:
        self.calls.append(("create_repo", kwargs))
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs: Any) -> None:
        self.calls.append(("upload_folder", kwargs))
        if self.fail is not None:
            raise self.fail
        folder = Path(kwargs["folder_path"])
        self.files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def saved_run(tmp_path: Path, method: str = "lora") -> tuple[Path, Path]:
    """A run folder as t2t.finetune leaves it, as far as the push reads it: manifest.json and the folder."""
    out = tmp_path / "run"
    folder = out / ("adapter" if method == "lora" else "model")
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "adapter_config.json").write_text("{}")
    (out / "manifest.json").write_text(json.dumps({"tasks": [{"name": "arith_sum"}, {"name": "topic_sentence"}],
                                                   "heldout": {"tasks": [{"name": "sentiment_product"}]}}))
    return out, folder


def config(**values: Any) -> Any:
    return build_config({"mixture": "small", "max_steps": 40, "push_to_hub": "me/my-adapter", **values})


def test_push_uploads_the_folder_with_a_model_card(tmp_path: Path) -> None:
    out, folder = saved_run(tmp_path)
    api = FakeHfApi()
    url = push_to_hub(config(hub_private=True), out, folder, api=api)
    assert url == "https://huggingface.co/me/my-adapter"
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][1] == {"repo_id": "me/my-adapter", "private": True, "exist_ok": True}
    assert api.calls[1][1]["repo_id"] == "me/my-adapter" and api.calls[1][1]["folder_path"] == str(folder)
    assert set(api.files) == {"adapter_model.safetensors", "adapter_config.json", "README.md"}
    card = api.files["README.md"].decode()
    assert card.startswith("---\nbase_model: t2t-tiny\nlibrary_name: peft\n")
    for fact in ("`small`", "steps: 40", "arith_sum, topic_sentence", "held-out tasks (1): sentiment_product",
                 'AutoPeftModel.from_pretrained("me/my-adapter")'):
        assert fact in card, fact


def test_a_full_model_card_says_transformers(tmp_path: Path) -> None:
    out, folder = saved_run(tmp_path, method="full")
    api = FakeHfApi()
    push_to_hub(config(method="full"), out, folder, api=api)
    card = api.files["README.md"].decode()
    assert "library_name: transformers" in card and "fully fine-tuned model" in card and "peft" not in card
    assert api.calls[0][1]["private"] is False


def test_a_failed_push_is_one_line_naming_the_repo_and_keeps_the_run(tmp_path: Path) -> None:
    out, folder = saved_run(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "README.md"}
    api = FakeHfApi(fail=OSError("401 Client Error: Unauthorized\nInvalid credentials in Authorization header"))
    with pytest.raises(T2TError) as caught:
        push_to_hub(config(), out, folder, api=api)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("--push-to-hub me/my-adapter: the upload failed (401")
    assert f"the run is saved in {out}" in message and f"hf upload me/my-adapter {folder}" in message
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "README.md"} == before


def test_bad_repo_ids_are_refused_before_training() -> None:
    with pytest.raises(T2TError, match="--push-to-hub 'a/b/c': give a hub repo id"):
        config(push_to_hub="a/b/c")
