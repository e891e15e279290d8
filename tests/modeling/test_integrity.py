"""Adapters and safetensors files that are damaged or do not fit (issue #16): one T2TError naming the file.

t2t's own adapters carry the sha256 of each file (``t2t_checksums.json``, written in the same atomic
rename), so even tensors zeroed behind an intact header are found; any adapter's safetensors header is
checked, its config must be JSON, and an adapter of another base's shape is named as such.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from t2t.errors import T2TError
from t2t.modeling.integrity import CHECKSUMS, check_safetensors
from t2t.modeling.loading import add_adapter, apply_lora, load_adapter, load_model, load_tokenizer, resolve_model
from t2t.training.recipe import save_final


@pytest.fixture(scope="module")
def tiny() -> str:
    return resolve_model("t2t-tiny")


@pytest.fixture(scope="module")
def t2t_adapter(tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter folder as t2t.finetune writes it (save_final: weights, config, tokenizer, checksums)."""
    out = tmp_path_factory.mktemp("run") / "adapter"
    torch.manual_seed(0)
    save_final(apply_lora(load_model(tiny), r=2, alpha=4, dropout=0.0), load_tokenizer(tiny), out)
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, tmp_path / folder.name))


def zero_tensors(path: Path) -> None:
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header:] = bytes(len(data) - header)
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:-100]),
    "empty": lambda p: p.write_bytes(b""),
    "zeroed": lambda p: p.write_bytes(bytes(p.stat().st_size)),
    "zeroed_tensors": zero_tensors,
}


def test_a_t2t_adapter_records_and_passes_its_checksums(t2t_adapter: Path, tiny: str) -> None:
    recorded = json.loads((t2t_adapter / CHECKSUMS).read_text())["sha256"]
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(recorded)
    assert "README.md" not in recorded  # the model card is notes: editing it breaks nothing
    (t2t_adapter / "README.md").write_text("my notes")
    load_adapter(load_model(tiny), str(t2t_adapter))


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_t2t_adapter_is_refused_naming_the_file(t2t_adapter: Path, tiny: str, tmp_path: Path,
                                                          damage: str) -> None:
    folder = copy_of(t2t_adapter, tmp_path)
    weights = folder / "adapter_model.safetensors"
    DAMAGE[damage](weights)
    with pytest.raises(T2TError) as info:
        load_adapter(load_model(tiny), str(folder))
    message = str(info.value)
    assert message.startswith(f"--adapter {folder}: {weights} is damaged")
    assert "\n" not in message


@pytest.mark.parametrize("damage", ["truncated", "empty", "zeroed"])
def test_a_damaged_plain_peft_adapter_is_refused_by_its_header(t2t_adapter: Path, tiny: str, tmp_path: Path,
                                                               damage: str) -> None:
    folder = copy_of(t2t_adapter, tmp_path)
    (folder / CHECKSUMS).unlink()  # a folder peft wrote, not t2t: no checksums to compare
    weights = folder / "adapter_model.safetensors"
    DAMAGE[damage](weights)
    with pytest.raises(T2TError) as info:
        load_adapter(load_model(tiny), str(folder))
    assert str(info.value).startswith(f"--adapter {folder}: {weights} is not a readable safetensors file")


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", "\xff"])
def test_an_adapter_config_that_is_not_json_is_refused(t2t_adapter: Path, tiny: str, tmp_path: Path,
                                                       text: str) -> None:
    folder = copy_of(t2t_adapter, tmp_path)
    (folder / "adapter_config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(T2TError) as info:
        load_adapter(load_model(tiny), str(folder))
    assert str(info.value).startswith(f"--adapter {folder}: {folder / 'adapter_config.json'} is not valid JSON")


def test_an_adapter_of_another_base_shape_says_so(tiny: str, tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    config = AutoConfig.from_pretrained(tiny)
    config.d_model *= 2
    other = AutoModelForSeq2SeqLM.from_config(config)
    apply_lora(other, r=2, alpha=4, dropout=0.0).save_pretrained(tmp_path / "other")
    with pytest.raises(T2TError) as info:
        load_adapter(load_model(tiny), str(tmp_path / "other"))
    message = str(info.value)
    assert message.startswith(f"--adapter {tmp_path / 'other'} was trained on a base model of another shape "
                              "(size mismatch for ")
    assert "lora_" in message and "\n" not in message


def test_a_second_adapter_is_checked_too(t2t_adapter: Path, tiny: str, tmp_path: Path) -> None:
    model = load_adapter(load_model(tiny), str(t2t_adapter), "first")
    folder = copy_of(t2t_adapter, tmp_path)
    zero_tensors(folder / "adapter_model.safetensors")
    with pytest.raises(T2TError, match="is damaged"):
        add_adapter(model, str(folder), "second")


def test_check_safetensors_accepts_whole_files_only(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "t.safetensors"
    save_file({"a": torch.ones(3), "b": torch.zeros(2, 2)}, str(path))
    check_safetensors(path, "test", "redo it")
    assert load_file(str(path))["a"].sum() == 3
    whole = path.read_bytes()
    for broken in (whole[:-1], whole[:8], b"\x00" * 8 + whole[8:], b"\xff" * len(whole)):
        path.write_bytes(broken)
        with pytest.raises(T2TError, match=f"test: {path} is not a readable safetensors file .*; redo it"):
            check_safetensors(path, "test", "redo it")


@pytest.fixture(scope="module")
def t2t_models(tiny: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``model/`` (--method full) and ``merged/`` (--merge) as t2t.finetune writes them (save_final)."""
    run = tmp_path_factory.mktemp("full")
    save_final(load_model(tiny), load_tokenizer(tiny), run / "model")
    torch.manual_seed(0)
    save_final(apply_lora(load_model(tiny), r=2, alpha=4, dropout=0.0), load_tokenizer(tiny), run / "adapter",
               merge_dir=run / "merged")
    return {"model": run / "model", "merged": run / "merged"}


@pytest.mark.parametrize("kind", ["model", "merged"])
def test_a_t2t_model_folder_records_and_passes_its_checksums(t2t_models: dict[str, Path], kind: str) -> None:
    folder = t2t_models[kind]
    recorded = json.loads((folder / CHECKSUMS).read_text())["sha256"]
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(recorded)
    model = load_model(str(folder))
    assert load_file(str(folder / "model.safetensors")).keys() <= model.state_dict().keys()


@pytest.mark.parametrize("kind", ["model", "merged"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_t2t_model_folder_is_refused_naming_the_file(t2t_models: dict[str, Path], tmp_path: Path,
                                                               kind: str, damage: str) -> None:
    folder = copy_of(t2t_models[kind], tmp_path)
    weights = folder / "model.safetensors"
    DAMAGE[damage](weights)
    with pytest.raises(T2TError) as info:
        load_model(str(folder))
    message = str(info.value)
    assert message.startswith(f"--model {folder}: {weights} is damaged")
    assert "restore it or train it again" in message and "\n" not in message


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
def test_a_changed_or_missing_file_of_a_t2t_model_folder_is_named(t2t_models: dict[str, Path], tmp_path: Path,
                                                                  name: str) -> None:
    folder = copy_of(t2t_models["merged"], tmp_path)
    (folder / name).write_text((folder / name).read_text().replace("a", "b", 1))
    with pytest.raises(T2TError, match=f"--model {folder}: {folder / name} is damaged"):
        load_model(str(folder))
    (folder / name).unlink()
    with pytest.raises(T2TError, match=f"--model {folder}: {folder / name} is missing"):
        load_model(str(folder))


def test_a_model_folder_without_checksums_still_loads_and_its_header_is_checked(t2t_models: dict[str, Path],
                                                                                tmp_path: Path) -> None:
    folder = copy_of(t2t_models["model"], tmp_path)
    (folder / CHECKSUMS).unlink()  # a folder plain transformers wrote
    load_model(str(folder))
    weights = folder / "model.safetensors"
    DAMAGE["truncated"](weights)
    with pytest.raises(T2TError) as info:
        load_model(str(folder))
    assert str(info.value).startswith(f"--model {folder}: {weights} is not a readable safetensors file")


def test_a_damaged_checksum_file_is_named(t2t_models: dict[str, Path], tmp_path: Path) -> None:
    folder = copy_of(t2t_models["model"], tmp_path)
    (folder / CHECKSUMS).write_text("{not json")
    with pytest.raises(T2TError, match=f"--model {folder}: {folder / CHECKSUMS} is damaged"):
        load_model(str(folder))
