"""Hub tasks through the real loading path, without the network.

For a handful of catalog tasks a local copy of the hub dataset is written the way the hub repo lays it out
(a README whose ``configs`` map each config's splits to ``CONFIG/SPLIT-00000-of-00001.parquet`` or
``data/SPLIT-...``, parquet files with the card's features: class labels, sequences of structs, translations,
booleans), a few rows written here. ``datasets.load_dataset`` is pointed at the copy (the hub id is mapped to
the folder; nothing in t2t changes), so :func:`t2t.tasks.sources.load_rows` loads it exactly as it would load
the hub dataset: same config name, same split names, same features. Every split the task maps is loaded and
every template renders every row; the rows carry the fields the task's example rows carry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pytest

from t2t.tasks.registry import TaskRegistry
from t2t.tasks.sources import load_rows

F = datasets.Features
V = datasets.Value
C = datasets.ClassLabel


def _rte(i: int, split: str) -> dict[str, Any]:
    return {"sentence1": f"A dog runs in park {i}.", "sentence2": "An animal moves.", "idx": i,
            "label": -1 if split == "test" else i % 2}


def _anli(i: int, split: str) -> dict[str, Any]:
    return {"uid": f"u{i}", "premise": f"Lake {i} is in the Alps.", "hypothesis": "The lake is in Europe.",
            "label": i % 3, "reason": ""}


def _arc(i: int, split: str) -> dict[str, Any]:
    labels = ["A", "B", "C", "D"] if i % 2 else ["1", "2", "3"]
    return {"id": f"q{i}", "question": f"Question {i}?", "choices": {"text": [f"opt{j}" for j in range(len(labels))],
                                                                   "label": labels},
            "answerKey": labels[i % len(labels)]}


def _csqa(i: int, split: str) -> dict[str, Any]:
    labels = ["A", "B", "C", "D", "E"]
    return {"id": f"c{i}", "question": f"Where is thing {i}?", "question_concept": "thing",
            "choices": {"label": labels, "text": ["box", "bag", "car", "sea", "sky"]},
            "answerKey": "" if split == "test" else labels[i % 5]}


def _wmt(i: int, split: str) -> dict[str, Any]:
    return {"translation": {"ro": f"Propozitia {i}.", "en": f"Sentence {i}."}}


def _boolq(i: int, split: str) -> dict[str, Any]:
    return {"question": f"is {i} even", "answer": i % 2 == 0, "passage": f"{i} is a number."}


# hub id -> (config folders: {config: features}, how files are laid out, splits, row maker, task names)
MIRRORS: dict[str, dict[str, Any]] = {
    "nyu-mll/glue": {
        "configs": {"rte": F({"sentence1": V("string"), "sentence2": V("string"),
                              "label": C(names=["entailment", "not_entailment"]), "idx": V("int32")})},
        "layout": "{config}/{split}-00000-of-00001.parquet", "splits": ["train", "validation", "test"],
        "row": _rte, "tasks": ["rte"]},
    "facebook/anli": {
        "configs": {"plain_text": F({"uid": V("string"), "premise": V("string"), "hypothesis": V("string"),
                                     "label": C(names=["entailment", "neutral", "contradiction"]),
                                     "reason": V("string")})},
        "layout": "{config}/{split}-00000-of-00001.parquet",
        "splits": [f"{s}_r{r}" for r in (1, 2, 3) for s in ("train", "dev", "test")],
        "row": _anli, "tasks": ["anli_r1", "anli_r2", "anli_r3"]},
    "allenai/ai2_arc": {
        "configs": {c: F({"id": V("string"), "question": V("string"),
                          "choices": datasets.Sequence({"text": V("string"), "label": V("string")}),
                          "answerKey": V("string")}) for c in ("ARC-Challenge", "ARC-Easy")},
        "layout": "{config}/{split}-00000-of-00001.parquet", "splits": ["train", "validation", "test"],
        "row": _arc, "tasks": ["arc_easy", "arc_challenge"]},
    "tau/commonsense_qa": {
        "configs": {"default": F({"id": V("string"), "question": V("string"), "question_concept": V("string"),
                                  "choices": datasets.Sequence({"label": V("string"), "text": V("string")}),
                                  "answerKey": V("string")})},
        "layout": "data/{split}-00000-of-00001.parquet", "splits": ["train", "validation", "test"],
        "row": _csqa, "tasks": ["commonsense_qa"]},
    "wmt/wmt16": {
        "configs": {"ro-en": F({"translation": datasets.Translation(languages=["ro", "en"])})},
        "layout": "{config}/{split}-00000-of-00001.parquet", "splits": ["train", "validation", "test"],
        "row": _wmt, "tasks": ["wmt16_ro_en"]},
    "google/boolq": {
        "configs": {"default": F({"question": V("string"), "answer": V("bool"), "passage": V("string")})},
        "layout": "data/{split}-00000-of-00001.parquet", "splits": ["train", "validation"],
        "row": _boolq, "tasks": ["boolq"]},
}
ROWS = 6


def write_mirror(root: Path, hub_id: str, spec: dict[str, Any]) -> Path:
    """A local folder laid out as the hub repo: README ``configs`` + one parquet file per config and split."""
    folder = root / hub_id
    card = ["---", "configs:"]
    for config, features in spec["configs"].items():
        card += [f"- config_name: {config}", "  data_files:"]
        for split in spec["splits"]:
            rel = spec["layout"].format(config=config, split=split)
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = [spec["row"](i, split) for i in range(ROWS)]
            datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
            card += [f"  - split: {split}", f"    path: {rel.replace('-00000-of-00001', '-*')}"]
    (folder / "README.md").write_text("\n".join(card + ["---", f"# {hub_id} (local test copy)", ""]),
                                      encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def mirror_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    for hub_id, spec in MIRRORS.items():
        write_mirror(root, hub_id, spec)
    return root


@pytest.fixture
def local_hub(mirror_root: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """``datasets.load_dataset(HUB_ID, ...)`` reads the local copy; every call is recorded."""
    real = datasets.load_dataset
    calls: list[tuple] = []

    def load_dataset(path: str, name: str | None = None, **kwargs: Any):
        calls.append((path, name, kwargs.get("split")))
        if path in MIRRORS:
            return real(str(mirror_root / path), name, **kwargs)
        return real(path, name, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)
    return calls


@pytest.mark.parametrize("task_name", [t for spec in MIRRORS.values() for t in spec["tasks"]])
def test_hub_task_loads_and_renders_through_load_rows(task_name: str, local_hub: list[tuple]) -> None:
    task = TaskRegistry.load().get(task_name)
    example_fields = {k for row in task.example_rows for k in row}
    for split, source_split in task.splits.items():
        ds = load_rows(task, split)
        assert local_hub[-1] == (task.source["hf"], task.source.get("config"), source_split)
        assert len(ds) == ROWS
        assert set(ds.column_names) == example_fields, f"{task_name}: example rows and the card's features differ"
        for i, row in enumerate(ds.to_list()):
            for name in task.template_names:
                ex = task.render(row, i, name)
                info = task.templates[name]
                if ex is not None and ex.choices is not None and not info.inverted:
                    assert ex.target in ex.choices
        rendered = sum(task.render(row, i, name) is not None for i, row in enumerate(ds.to_list())
                       for name in task.scored_templates())
        assert rendered > 0, f"{task_name}/{split}: every row was declined"


def test_example_rows_have_the_card_types(local_hub: list[tuple]) -> None:
    """The example rows in the front matter have the types the loaded rows have (they stand in for them)."""
    registry = TaskRegistry.load()
    for spec in MIRRORS.values():
        for name in spec["tasks"]:
            task = registry.get(name)
            loaded = load_rows(task, "train").to_list()[0]
            for example in task.example_rows:
                for key, value in loaded.items():
                    assert type(example[key]) is type(value), (name, key, example[key], value)
                    if isinstance(value, dict):
                        assert set(example[key]) == set(value), (name, key)
