"""Property-based fuzzing of the importers' inputs (hypothesis): whatever an lm-eval task YAML or an SNI task JSON
holds, ``import-lm-eval`` and ``import-sni`` end in a clean import or a :class:`T2TError` (one line, exit 2), never
another exception, and a refused import leaves the target folder as it was.

Inputs are a valid file with some fields replaced by arbitrary JSON-like values (shapes the red team tried: a list
where a path is expected, a string for a mapping, unhashable entries, deep nesting), or arbitrary text and bytes.
Derandomized, few examples: a CI run stays within seconds and sees the same inputs every time.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from t2t import atomic
from t2t.errors import T2TError
from t2t.tasks.importers import lm_eval, sni

FUZZ = settings(max_examples=20, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False, width=16) | st.text(
    st.sampled_from("ab {}|%_-:\\/.0\x00\u200b"), max_size=8)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text("abmetricdata_files", min_size=1, max_size=6), inner, max_size=3), max_leaves=8)
deep = st.integers(1, 400).map(lambda n: json.loads("[" * n + "]" * n))  # past every depth budget at the top


@pytest.fixture(autouse=True, scope="module")
def no_fsync() -> Iterator[None]:
    """Flushing to disk is not what is fuzzed here, and it was most of an import's time on a busy disk."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(atomic, "fsync_file", lambda path: None)
        patch.setattr(atomic, "fsync_dir", lambda path: None)
        yield


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="t2t-fuzz-"))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _imports_or_refuses(run: Any, out: Path) -> None:
    """``run()`` imports, or raises a T2TError after which ``out`` is unchanged."""
    before = _files(out) if out.exists() else {}
    try:
        run()
    except T2TError as exc:
        assert "\n" not in str(exc).strip() or "task file error(s)" in str(exc)
        assert (_files(out) if out.exists() else {}) == before


def _lm_eval_base(folder: Path) -> dict[str, Any]:
    data = folder / "rows.jsonl"
    data.write_text(json.dumps({"question": "Is it?", "label": 0, "choices": ["yes", "no"]}) + "\n",
                    encoding="utf-8")
    return {"task": "fuzzed", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
            "doc_to_target": "label", "doc_to_choice": "{{choices}}", "metric_list": [{"metric": "acc"}]}


LM_EVAL_KEYS = st.sampled_from(["task", "dataset_path", "dataset_kwargs", "dataset_name", "test_split",
                                "validation_split", "output_type", "doc_to_text", "doc_to_target", "doc_to_choice",
                                "metric_list", "filter_list", "target_delimiter", "include", "process_docs"])


@FUZZ
@given(changes=st.dictionaries(LM_EVAL_KEYS, values | deep, max_size=3), overwrite=st.booleans())
def test_lm_eval_import_of_any_config_is_clean_or_one_error(changes: dict[str, Any], overwrite: bool) -> None:
    import yaml

    folder = _folder()
    config = {**_lm_eval_base(folder), **changes}
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    out = folder / "out"
    _imports_or_refuses(lambda: lm_eval.import_tasks([path], out, "qa", overwrite=overwrite), out)


@FUZZ
@given(text=st.lists(st.sampled_from(list("ab:-[]{}&*!|>'\"#%@ \n\t\\\x00\ufeff") + [
    "include: ", "task: x\n", "&a ", "*a", "!function f", "<<: "]), max_size=40).map("".join))
def test_lm_eval_import_of_any_text_is_clean_or_one_error(text: str) -> None:
    folder = _folder()
    path = folder / "task.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    (folder / "x").write_text("task: y\n", encoding="utf-8")  # a target for 'include: x'
    out = folder / "out"
    _imports_or_refuses(lambda: lm_eval.import_tasks([path], out, "qa"), out)


def _sni_base() -> dict[str, Any]:
    return {"Definition": ["Answer."], "Categories": ["Question Answering"],
            "Positive Examples": [{"input": "1+1", "output": "2", "explanation": "sum"}], "Negative Examples": [],
            "Instances": [{"id": "a", "input": "2+2", "output": ["4"]}]}


SNI_KEYS = st.sampled_from(["Definition", "Categories", "Positive Examples", "Negative Examples", "Instances"])


@FUZZ
@given(changes=st.dictionaries(SNI_KEYS, values | deep, max_size=3), raw=st.binary(max_size=30) | st.none())
def test_sni_import_of_any_json_is_clean_or_one_error(changes: dict[str, Any], raw: bytes | None) -> None:
    folder = _folder()
    path = folder / "task1_fuzzed.json"
    path.write_bytes(raw if raw is not None else json.dumps({**_sni_base(), **changes}).encode("utf-8"))
    (folder / "out").mkdir()
    (folder / "out" / "task1_fuzzed.jinja").write_text("an earlier import", encoding="utf-8")
    out = folder / "out"
    _imports_or_refuses(lambda: sni.import_tasks([path], out, overwrite=True), out)
