"""The hub catalog: docs/catalog.md's table is what the task files say (this test fails when it is stale), the
catalog's shape (tasks, clusters, templates, sources named), and the ``catalog`` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2t.builtin import builtin_dir
from t2t.errors import run_cli
from t2t.tasks.catalog import END, START, catalog_rows, current_table, markdown, replace_table
from t2t.tasks.cli import main
from t2t.tasks.registry import TaskRegistry

CATALOG = Path(__file__).resolve().parents[2] / "docs" / "catalog.md"
FLAN_CLUSTERS = {"nli", "sentiment", "paraphrase", "closed_book_qa", "reading_comprehension",
                 "reading_comprehension_commonsense", "commonsense", "coreference", "struct_to_text",
                 "summarization", "translation", "misc", "topic_classification"}

# GLUE and SuperGLUE test splits (labels -1) and other test splits whose answers are withheld, per the cards.
HIDDEN_TEST = {"rte", "mnli", "sst2", "qqp", "cola", "stsb", "qnli", "wnli", "cb", "copa", "wic", "wsc", "multirc",
               "record", "commonsense_qa", "winogrande", "common_gen"}


@pytest.fixture(scope="module")
def registry() -> TaskRegistry:
    return TaskRegistry.load()


def test_docs_catalog_is_not_stale(registry: TaskRegistry) -> None:
    if not CATALOG.is_file():  # an installed wheel has no docs/: the check is for the checkout
        pytest.skip("no docs/catalog.md beside the package")
    assert current_table(CATALOG.read_text(encoding="utf-8")) == markdown(catalog_rows(registry)), (
        "docs/catalog.md's catalog table is stale: run python -m t2t.tasks catalog --write docs/catalog.md")


def test_catalog_shape(registry: TaskRegistry) -> None:
    rows = catalog_rows(registry)
    hub = [t for t in registry if {"hub", "cot"} & set(t.tags)]
    assert [r["name"] for r in rows] == sorted((t.name for t in hub), key=lambda n: (registry.get(n).cluster, n))
    assert len({r["source_id"] for r in rows}) >= 40
    assert len({r["cluster"] for r in rows} & FLAN_CLUSTERS) >= 10
    for task in hub:
        assert len(task.templates) >= 5, task.name
        assert task.source["hf"].count("/") == 1, f"{task.name}: use the owner-namespaced hub id"
        assert not task.source.get("trust_remote_code"), f"{task.name}: no loading scripts"
        text = task.path.read_text(encoding="utf-8")
        front = text.split("\n---\n", 1)[0]
        assert "# Facts:" in front, f"{task.name}: name the card or script the facts come from"
        assert task.example_rows, f"{task.name}: example rows render every template offline"
        if task.has_choices:  # classification: FLAN's options in the prompt, and an inversion
            assert any(t.inverted for t in task.templates.values()), task.name
        if task.name in HIDDEN_TEST:  # a split whose labels are hidden is never mapped
            assert "test" not in task.splits, task.name


def test_source_ids_group_tasks_over_one_dataset(registry: TaskRegistry) -> None:
    ids = {t.name: t.source_id for t in registry if "hub" in t.tags}
    assert ids["anli_r1"] == ids["anli_r2"] == ids["anli_r3"] == "hf:facebook/anli"
    assert ids["squad"] == ids["squad_question_generation"] == "hf:rajpurkar/squad"
    assert len({ids["mnli"], ids["rte"], ids["qqp"]}) == 3  # GLUE configs are different datasets


def test_fixed_splits_map_only_labelled_splits(registry: TaskRegistry) -> None:
    splits = {n: registry.get(n).splits for n in ("mnli", "rte", "sst2", "qqp", "boolq", "squad")}
    assert splits["mnli"] == {"train": "train", "validation": "validation_matched"}
    for name in ("rte", "sst2", "qqp", "boolq", "squad"):
        assert splits[name] == {"train": "train", "validation": "validation"}, name
    assert registry.get("mrpc").splits["test"] == "test"  # GLUE's one labelled test split


def test_catalog_command_prints_checks_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(main, ["catalog"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{len(out.splitlines()) - 4} tasks over") and "| rte | nli | `nyu-mll/glue` (rte) |" in out
    stale = tmp_path / "README.md"
    stale.write_text(f"# x\n\n{START}\n| old | table |\n{END}\n\nafter\n", encoding="utf-8")
    assert run_cli(main, ["catalog", "--check", str(stale)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is stale" in err and "--write docs/catalog.md" in err
    assert run_cli(main, ["catalog", "--write", str(stale)]) == 0
    capsys.readouterr()
    text = stale.read_text(encoding="utf-8")
    assert text.startswith("# x\n\n") and text.endswith(f"{END}\n\nafter\n") and "| old |" not in text
    assert run_cli(main, ["catalog", "--check", str(stale)]) == 0
    none = tmp_path / "none.md"
    none.write_text("no markers\n", encoding="utf-8")
    assert run_cli(main, ["catalog", "--check", str(none)]) == 2
    assert "no catalog markers" in capsys.readouterr().err
    assert replace_table(f"a{START}{END}b", "T") == f"a{START}\nT\n{END}b"


def test_builtin_dir_has_the_catalog() -> None:
    assert len(list((builtin_dir("templates") / "hub").glob("*.jinja"))) >= 43
