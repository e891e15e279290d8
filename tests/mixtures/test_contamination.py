"""The n-gram contamination report (t2t.mixtures.contamination): constructed overlaps with exact counts, both
streaming directions, lm-eval's n-gram normalisation, ``python -m t2t.mixture check`` and the clean/dirty
split of ``python -m t2t.evaluate --contamination`` on t2t-tiny."""

from __future__ import annotations

import io
import json
import string
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t2t.errors import run_cli
from t2t.mixture import main
from t2t.mixtures import contamination
from t2t.mixtures.resolve import load_mixture
from tests.conftest import require

TASK = """---
cluster: {cluster}
source: {{files: {files}}}
---
{{% block echo %}}
{{{{ text }}}} Is this sentence about a place?
|||
{{{{ answer }}}}
{{% endblock %}}
"""

# a row's text is its fields, here text then answer ("yes" for every held-out row): the short row has
# 11 + 1 words, so no 13-gram; the others have more than 13
HELD = [
    "the old lighthouse keeper counted every ship that passed the rocky northern cape at dawn",  # copied
    "a quiet village baker sold warm bread to travellers crossing the mountain pass each winter",  # near copy
    "seven small boats drifted slowly past the harbour wall while gulls",  # short, copied: 12 words
    "an engineer repaired the broken water pump beside the school before the heavy autumn rains came",  # clean
]
TRAIN = [
    {"text": "Filler words here. " + HELD[0] + " and more after it", "answer": "yes"},
    {"text": "A Quiet village baker, sold WARM bread; to travellers crossing the Mountain Pass each winter!",
     "answer": "no"},
    {"text": HELD[2], "answer": "yes"},  # the same 12 words
    {"text": "an engineer repaired the broken water pump beside the school before the storms", "answer": "x"},
]


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path.name


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> tuple[Path, Path]:
    """A held-out task of four validation rows and a training task holding a copy, a near copy (case,
    punctuation), a copy of the short row and a row that shares only 12 words with the clean one; a second
    training task shares the near copy's last 13 words."""
    root = tmp_path_factory.mktemp("contamination")
    tasks, mixtures = root / "tasks", root / "mixtures"
    tasks.mkdir()
    mixtures.mkdir()
    held = {"train": _jsonl(tasks / "held_train.jsonl", [{"text": "unrelated row", "answer": "no"}]),
            "validation": _jsonl(tasks / "held_val.jsonl", [{"text": t, "answer": "yes"} for t in HELD])}
    train = {"train": _jsonl(tasks / "train_a.jsonl", TRAIN)}
    # train_b shares only the last 13 words of the near-copied row (its first 13 are in train_a alone)
    other = {"train": _jsonl(tasks / "train_b.jsonl", [{"text": "nothing in common at all", "answer": "no"}] * 2
                             + [{"text": " ".join(HELD[1].split()[2:]), "answer": "no"}])}
    for name, cluster, files in (("held", "c1", held), ("train_a", "c2", train), ("train_b", "c2", other)):
        (tasks / f"{name}.jinja").write_text(TASK.format(cluster=cluster, files=json.dumps(files)))
    (mixtures / "cmix.yaml").write_text("include: {tasks: [held, train_a, train_b]}\nheldout: {tasks: [held]}\n")
    return tasks, mixtures


def test_constructed_overlaps_exact_counts_both_directions(dirs):
    tasks, mixtures = dirs
    mixture = load_mixture("cmix", task_dirs=[tasks], mixture_dirs=[mixtures])
    # 4 held-out rows against 7 training rows: the held-out side is indexed, the training side streamed
    report = contamination.check(mixture)
    assert report.mode == "heldout-indexed"
    (held,) = report.tasks
    assert (held.task, held.split, held.rows) == ("held", "validation", 4)
    assert held.dirty == (0, 1)  # the copy and the near copy; not the short row, not the 12-word overlap
    assert held.short == 1 and held.percent == 50.0
    assert report.train_rows == 7 and report.complete and not report.unavailable
    # with a 12-word n-gram, the short row and the fourth row's 12 shared words are dirty too
    assert contamination.check(mixture, n=12).tasks[0].dirty == (0, 1, 2, 3)
    # the other direction: hold out the training tasks too (via --heldout), so the held-out side is larger
    bigger = load_mixture("cmix", heldout=["train_a"], task_dirs=[tasks], mixture_dirs=[mixtures])
    other = contamination.check(bigger, [mixture.heldout[0]])
    assert other.mode == "train-indexed" and other.train_rows == 3
    assert other.tasks[0].dirty == (1,) and other.tasks[0].short == 1
    assert other.tasks[0].origins == (contamination.DirtyRow(1, ("train_b",), " ".join(HELD[1].split()[2:])),)
    for mode in contamination.MODES:  # either direction finds the same rows
        forced = contamination.check(mixture, n=12, mode=mode)
        assert forced.mode == mode and forced.tasks[0].dirty == (0, 1, 2, 3) and forced.tasks[0].short == 0
    text = report.text()
    assert "held" in text and "2/4" in text and "50.0%" in text


def test_dirty_rows_name_their_training_tasks_and_first_shared_ngram(dirs):
    """Row 0 is copied into train_a; row 1 is near-copied into train_a and its last 13 words are in train_b:
    each dirty row names every training task it overlaps and its first shared 13-gram (normalised words),
    the same in both streaming directions."""
    tasks, mixtures = dirs
    mixture = load_mixture("cmix", task_dirs=[tasks], mixture_dirs=[mixtures])
    first13 = [" ".join(contamination.words(t)[:13]) for t in HELD[:2]]
    expect = (contamination.DirtyRow(0, ("train_a",), first13[0]),
              contamination.DirtyRow(1, ("train_a", "train_b"), first13[1]))
    for mode in contamination.MODES:
        report = contamination.check(mixture, mode=mode)
        assert report.tasks[0].origins == expect, mode
        assert report.by_train_task() == {"train_a": 2, "train_b": 1}
    data = report.as_dict()
    assert data["dirty_by_train_task"] == {"train_a": 2, "train_b": 1}
    assert data["tasks"][0]["dirty_origins"][1] == {"row": 1, "train_tasks": ["train_a", "train_b"],
                                                    "ngram": first13[1]}
    text = report.text()
    assert "train_a 2, train_b 1" in text and f'e.g. held row 0 and train_a: "{first13[0]}"' in text


def test_unreadable_tasks_are_listed_not_fatal(dirs, tmp_path):
    tasks, mixtures = dirs
    broken = tmp_path / "tasks"
    broken.mkdir()
    (broken / "gone.jinja").write_text(TASK.format(cluster="c3", files=json.dumps({"train": "missing.jsonl"})))
    (tmp_path / "m.yaml").write_text("include: {tasks: [held, train_a, gone]}\nheldout: {tasks: [held]}\n"
                                     "sizes: {gone: 5}\n")
    mixture = load_mixture("m", task_dirs=[tasks, broken], mixture_dirs=[tmp_path])
    report = contamination.check(mixture)
    assert report.tasks[0].dirty == (0, 1)
    assert list(report.unavailable) == ["gone (train)"] and "missing.jsonl" in report.unavailable["gone (train)"]
    assert not report.complete and "lower bounds" in report.text()


def test_cli_json(dirs, capsys):
    tasks, mixtures = dirs
    rc = run_cli(main, ["check", "cmix", "--task-dir", str(tasks), "--mixture-dir", str(mixtures), "--json",
                        "--n", "12"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    data = json.loads(out.out)
    assert data["n"] == 12 and data["mixture"] == "cmix"
    (held,) = data["tasks"]
    assert {k: v for k, v in held.items() if k not in ("dirty_origins", "dirty_by_train_task")} == {
        "task": "held", "split": "validation", "rows": 4, "dirty": 4, "clean": 0, "percent": 100.0, "short": 0,
        "dirty_rows": [0, 1, 2, 3]}
    assert [o["row"] for o in held["dirty_origins"]] == [0, 1, 2, 3]
    assert all(len(o["ngram"].split()) == 12 for o in held["dirty_origins"])
    rc = run_cli(main, ["check", "cmix", "--task-dir", str(tasks), "--mixture-dir", str(mixtures), "--ngram", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--ngram 0" in err


def _lm_eval_ngrams(text: str, n: int) -> list[str]:
    require("lm_eval")
    with redirect_stdout(io.StringIO()):  # it prints a warning when its C++ helper is not built
        from lm_eval.decontamination.janitor import Janitor, word_ngrams
    return list(word_ngrams(Janitor(ngram_n=n).normalize_string(text), n))


ASCII_TEXT = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + " \t\n", max_size=200)


@settings(max_examples=60, deadline=None)
@given(text=ASCII_TEXT, n=st.integers(1, 6))
def test_ngrams_match_lm_eval_janitor(text, n):
    """GPT-3's normalisation as lm-eval implements it (lowercase, string.punctuation deleted, whitespace
    words): the same n-grams, and one hash per n-gram occurrence."""
    assert contamination.ngrams(text, n) == _lm_eval_ngrams(text, n)
    hashes, owners = contamination.gram_hashes([text, text.upper()], n)
    half = len(contamination.ngrams(text, n))
    assert len(hashes) == 2 * half and list(owners) == [0] * half + [1] * half
    assert list(hashes[:half]) == list(hashes[half:])  # case does not matter


def test_hashes_never_span_two_rows():
    a, b = "one two three", "four five six"
    hashes, owners = contamination.gram_hashes([a, b], 3)
    joined, _ = contamination.gram_hashes([f"{a} {b}"], 3)
    assert len(hashes) == 2 and list(owners) == [0, 1]
    assert set(hashes.tolist()) == {joined[0], joined[-1]} and len(joined) == 4


def test_row_text_takes_strings_in_field_order():
    row = {"q": "Who?", "label": 3, "choices": ["a b", {"x": "c"}], "ok": True, "none": None}
    assert contamination.row_text(row) == "Who? a b c"


def test_evaluate_splits_clean_and_dirty_on_t2t_tiny(tmp_path, capsys):
    """On the offline suite at n=5 a few held-out rows of topic_question and sentiment_restaurant share
    5-grams with training rows; each subset's score is recomputed here from the logged samples."""
    from t2t.evaluate import main as evaluate_main

    out_dir = tmp_path / "eval"
    rc = run_cli(evaluate_main, ["--model", "t2t-tiny", "--mixture", "offline", "--contamination",
                                 "--contamination-ngram", "5", "--limit", "4", "--output-dir", str(out_dir),
                                 "--no-progress", "--bootstrap", "0", "--log-samples", "--device", "cpu"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    data = json.loads((out_dir / "results.json").read_text())
    report = data["contamination"]["report"]
    dirty = {t["task"]: {r for r in t["dirty_rows"] if r < 4} for t in report["tasks"]}
    assert report["n"] == 5 and any(dirty.values())
    medians = {(t["model"], t["task"]): t["median"] for t in data["tasks"] if t["metric"] == data["primary"][t["task"]]}
    for s in data["contamination"]["scores"]:
        task, metric = s["task"], s["metric"]
        assert s["all"] == pytest.approx(medians[(s["model"], task)])
        assert s["dirty_rows"] == len(dirty[task]) and s["clean_rows"] == 4 - len(dirty[task])
        if metric in ("acc",):
            per_template: dict[str, list[float]] = {}
            for x in data["samples"]:
                if x["task"] == task and x["index"] in dirty[task]:
                    per_template.setdefault(x["template"], []).append(x["acc"])
            if per_template:
                import statistics

                expect = statistics.median(100 * sum(v) / len(v) for v in per_template.values())
                assert s["dirty"] == pytest.approx(expect)
    assert "## Contamination: 5-gram overlap with mixture offline" in out.out
    for t in report["tasks"]:  # every dirty row names training tasks of the mixture and a 5-gram
        assert [o["row"] for o in t["dirty_origins"]] == t["dirty_rows"]
        for o in t["dirty_origins"]:
            assert o["train_tasks"] and set(o["train_tasks"]) <= set(report["train_tasks"])
            assert len(o["ngram"].split()) == 5
    first = next(t for t in report["tasks"] if t["dirty_origins"])
    example = first["dirty_origins"][0]
    assert f'| {first["task"]} | {first["dirty"]} | ' in out.out
    assert f'row {example["row"]}: "{example["ngram"]}"' in out.out
