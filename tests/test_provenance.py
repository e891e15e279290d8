"""What a result depends on (issue #28) and adapters scored only on their base (issue #25 part 4).

The base's weights hash is the sha256sum listing's hash, computed once and cached until a file changes;
evaluate records it (results.json, report.md's header) and refuses an adapter whose run recorded other
base weights unless --allow-other-base, and an adapter that would lose tensors (a base with fewer layers)
always."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from t2t.errors import T2TError
from t2t.evaluation.config import build_config
from t2t.evaluation.runner import evaluate
from t2t.modeling import cache
from t2t.modeling.adapter_base import check_adapter_base
from t2t.modeling.provenance import CPU_FLAGS, base_identity, machine, write_run_provenance
from t2t.modeling.tiny import build_tiny_model
from t2t.tasks.registry import TaskRegistry

CORPUS = ["Is this review positive? OPTIONS: yes, no", "positive", "negative", "The film was great."] * 3


@pytest.fixture(scope="module", autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hashes are cached in a folder of this module's, not the user's ``~/.cache/t2t``."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv("T2T_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _listing(folder: Path) -> str:
    lines = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
                    for p in sorted(folder.glob("*.safetensors")))
    return hashlib.sha256(lines.encode()).hexdigest()


def test_weights_hash_is_the_sha256sum_listing_cached_until_a_file_changes(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"a": torch.arange(6.0)}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.ones(3)}, str(folder / "model-00002-of-00002.safetensors"))
    first = cache.weights_hash(folder)
    assert first["weights_sha256"] == _listing(folder) and len(first["files"]) == 2
    assert not list(folder.glob(cache.WEIGHTS_NOTE))  # a user's folder is left alone: cached in $T2T_CACHE

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"hashed {path} again")

    with monkeypatch.context() as m:
        m.setattr(cache, "sha256_file", no_hashing)
        assert cache.weights_hash(folder) == first
    save_file({"b": torch.zeros(4)}, str(folder / "model-00002-of-00002.safetensors"))
    assert cache.weights_hash(folder)["weights_sha256"] == _listing(folder) != first["weights_sha256"]


def test_machine_names_the_cpu_flags_and_threads() -> None:
    info = machine("cpu")
    assert set(info["cpu_flags"]) <= set(CPU_FLAGS) and info["torch_threads"] == torch.get_num_threads()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                      if line.startswith(("flags", "Features"))), [])
        assert info["cpu_flags"] == [f for f in CPU_FLAGS if f in flags]
    assert info["gpu"] is None


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny T5; the same with other weights (same shapes); the same with one layer per side; and an
    adapter trained (here: random LoRA B) on the first, in a run folder that recorded its provenance."""
    import peft
    from transformers import AutoModelForSeq2SeqLM, T5Config, T5ForConditionalGeneration

    root = tmp_path_factory.mktemp("bases")
    shape = {"vocab_size": 400, "d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 2, "num_layers": 2,
             "num_decoder_layers": 2}
    base = build_tiny_model(CORPUS, root / "base", **shape)
    other = Path(shutil.copytree(base, root / "other"))
    weights = load_file(str(base / "model.safetensors"))
    save_file({k: v + 0.01 for k, v in weights.items()}, str(other / "model.safetensors"))
    shallow = Path(shutil.copytree(base, root / "shallow"))
    config = T5Config.from_pretrained(base)
    config.num_layers = config.num_decoder_layers = 1
    (shallow / "model.safetensors").unlink()
    T5ForConditionalGeneration(config).save_pretrained(shallow)
    run = root / "run"
    lora = peft.LoraConfig(task_type=peft.TaskType.SEQ_2_SEQ_LM, r=2, lora_alpha=4, target_modules=["q", "v"],
                           init_lora_weights=False)
    peft.get_peft_model(AutoModelForSeq2SeqLM.from_pretrained(base), lora).save_pretrained(run / "adapter")
    write_run_provenance(run, str(base), None, str(base), "cpu", run / "adapter")
    return {"base": base, "other": other, "shallow": shallow, "adapter": run / "adapter"}


def _evaluate(model: Path, adapter: Path, **values: object):
    cfg = build_config({"model": str(model), "device": "cpu", "progress": False, "limit": 2, **values})
    return evaluate(cfg, [TaskRegistry.load(()).get("sentiment_movie")], {"run": adapter})


def test_evaluate_records_the_base_hash_and_the_adapter_hash(bases: dict[str, Path]) -> None:
    result = _evaluate(bases["base"], bases["adapter"])
    prov = result.to_dict()["provenance"]
    assert prov["base"]["weights_sha256"] == _listing(bases["base"])
    adapter_file = bases["adapter"] / "adapter_model.safetensors"
    assert prov["adapters"]["run"]["sha256"] == hashlib.sha256(adapter_file.read_bytes()).hexdigest()
    assert f"weights sha256 {_listing(bases['base'])[:16]}" in result.markdown().split("\n|")[0]
    assert not any("adapter" in note for note in result.notes)


def test_another_base_of_the_same_shapes_is_refused_unless_allowed(bases: dict[str, Path]) -> None:
    with pytest.raises(T2TError, match=r"was trained on .* weights sha256 .*--allow-other-base"):
        _evaluate(bases["other"], bases["adapter"])
    result = _evaluate(bases["other"], bases["adapter"], allow_other_base=True)
    assert any("scored anyway: --allow-other-base" in note for note in result.notes)
    assert "scored anyway" in result.markdown()


def test_an_adapter_that_would_lose_tensors_is_refused_even_when_allowed(bases: dict[str, Path]) -> None:
    with pytest.raises(T2TError, match=r"of its tensors have no place in this base model .*block\.1\."):
        _evaluate(bases["shallow"], bases["adapter"], allow_other_base=True)


def test_a_run_without_provenance_is_checked_by_its_base_name(bases: dict[str, Path], tmp_path: Path) -> None:
    adapter = Path(shutil.copytree(bases["adapter"], tmp_path / "old" / "adapter"))
    (adapter.parent / "config.json").write_text(json.dumps({"model": {"model": "t2t-tiny"}}))
    identity = base_identity(str(bases["base"]))
    with pytest.raises(T2TError, match="trained on --model t2t-tiny"):
        check_adapter_base(adapter, identity)
    assert "cannot be checked" in check_adapter_base(adapter, {**identity, "model": "t2t-tiny"})


def test_the_experiment_summary_heads_each_claim_with_its_spread_over_seeds() -> None:
    from types import SimpleNamespace

    from t2t.experiment.report import summarize_seeds, summary_markdown

    overall = {"base": 20.0, "multitask-s0": 24.0, "multitask-s1": 25.0, "multitask-s2": 29.0,
               "single-s0": 27.7, "single-s1": 20.5, "single-s2": 19.0}
    within = {"delta": 4.0, "low": 1.0, "high": 6.0}
    result = SimpleNamespace(report=SimpleNamespace(base="base", overall=overall),
                             bootstrap={"models": {"multitask-s0": {"overall": within}}},
                             provenance={"base": {"model": "m", "weights_sha256": "ab" * 32}, "machine": {},
                                         "versions": {}})
    summary = summarize_seeds(result, ["multitask", "single"], [0, 1, 2])
    multi = summary["kinds"]["multitask"]["delta"]
    assert (multi["mean"], multi["min"], multi["max"]) == (6.0, 4.0, 9.0)
    assert multi["sd"] == pytest.approx(2.6458, abs=1e-4)  # sample sd of 4, 5, 9
    text = summary_markdown(summary)
    assert text.startswith("Base m: weights sha256 abababababababab")
    assert "| multitask - base | +6.0 ± 2.6 | +4.0 .. +9.0 |" in text
    assert "| single - base | +2.4 ± 4.7 | -1.0 .. +7.7 |" in text
    assert text.index("mean ± sd over seeds") < text.index("within-run 95%")
    report = SimpleNamespace(base="base", overall={"base": 20.0, "single": 27.7})
    one = summarize_seeds(SimpleNamespace(report=report, bootstrap=None, provenance=None), ["single"], [0])
    assert one["kinds"]["single"]["delta"]["sd"] is None and "(one seed)" in summary_markdown(one)


def test_predict_checks_the_base_as_evaluate_does(bases: dict[str, Path], capsys: pytest.CaptureFixture[str]
                                                  ) -> None:
    """t2t predict applies an adapter only to the base its run recorded (issue #25 part 4), like evaluate."""
    from t2t.predict.cli import main as predict

    args = ["--adapter", str(bases["adapter"]), "--input", "a fine film", "--max-new-tokens", "2"]
    with pytest.raises(T2TError, match=r"was trained on .* weights sha256 .*--allow-other-base"):
        predict(["--model", str(bases["other"]), *args])
    assert predict(["--model", str(bases["other"]), "--allow-other-base", *args]) == 0
    out = capsys.readouterr()
    assert "note: " in out.err and "--allow-other-base" in out.err and json.loads(out.out.splitlines()[0])["input"]
    with pytest.raises(T2TError, match="of its tensors have no place in this base model"):
        predict(["--model", str(bases["shallow"]), "--allow-other-base", *args])
    capsys.readouterr()
    assert predict(["--model", str(bases["base"]), *args]) == 0
    assert "note: " not in capsys.readouterr().err
