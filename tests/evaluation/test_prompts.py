"""t2t.evaluation.prompts: the split to evaluate, zero-shot and k-shot prompts (FLAN's format), exemplar draws."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest

from t2t.errors import T2TError
from t2t.evaluation.prompts import Exemplars, Prompt, build_prompts, pick_split
from t2t.tasks.fewshot import FEW_SHOT_SEP, FEW_SHOT_XY, few_shot_input
from t2t.tasks.sandbox import T2TSandbox
from t2t.tasks.task import Task

TRAIN = [{"x": f"train question {i}", "label": i % 2} for i in range(12)]
VALIDATION = [{"x": f"validation question {i}", "label": i % 2} for i in range(6)]

BODY = """\
{% block ask %}
{{ x }}? {{ options }}
|||
{{ answer }}
{% endblock %}

{% block only_yes %}
{% if label == 0 %}
Yes-only: {{ x }}
|||
{{ answer }}
{% endif %}
{% endblock %}

{% block noisy %}
{{ x }} #{{ randint(0, 10**9) }}
|||
{{ answer }}
{% endblock %}
"""


@pytest.fixture(autouse=True)
def no_download_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)


def make_task(folder: Path, source: str, name: str = "yn", extra: str = "") -> Task:
    path = folder / f"{name}.jinja"
    path.write_text(f"---\ncluster: qa\nsource: {source}\n{extra}choices: [\"yes\", \"no\"]\n"
                    f"answer: \"{{{{ choices[label] }}}}\"\n---\n{BODY}")
    return Task(path, T2TSandbox([folder]))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def task(tmp_path: Path) -> Task:
    write_jsonl(tmp_path / "data" / "train.jsonl", TRAIN)
    write_jsonl(tmp_path / "data" / "validation.jsonl", VALIDATION)
    return make_task(tmp_path, "{files: {train: data/train.jsonl, validation: data/validation.jsonl}}")


def shots_of(task: Task, prompt: Prompt, template: str, seed: int, rows: list[dict[str, Any]] = TRAIN) -> list:
    """The exemplars a prompt holds, rendered independently from its train row numbers."""
    return [task.render(rows[r], r, template, seed=seed) for r in prompt.shots]


# -- pick_split -------------------------------------------------------------------------------------

def test_pick_split_falls_back_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = make_task(tmp_path, "{generator: arith_sum}", name="all3")
    assert pick_split(gen, "test") == "test" and pick_split(gen, "train") == "train"
    assert capsys.readouterr().err == ""
    assert pick_split(gen, "dev") == "validation"
    assert capsys.readouterr().err == "warning: task 'all3' has no split 'dev'; evaluating its 'validation' split\n"
    no_val = make_task(tmp_path, "{generator: arith_sum}", name="noval", extra="splits: {train: train, test: test}\n")
    assert pick_split(no_val, "validation") == "test"
    only_train = make_task(tmp_path, "{generator: arith_sum}", name="tr", extra="splits: {train: train}\n")
    assert pick_split(only_train, "validation") == "train"
    assert "has no split 'validation'; evaluating its 'train' split" in capsys.readouterr().err


def test_pick_split_without_any_known_split(tmp_path: Path) -> None:
    task = make_task(tmp_path, "{generator: arith_sum}", name="odd", extra="splits: {dev: validation}\n")
    assert pick_split(task, "dev") == "dev"
    with pytest.raises(T2TError) as info:
        pick_split(task, "validation")
    assert str(info.value) == (f"task 'odd' has no split to evaluate (splits: dev); see the 'splits' field of "
                               f"{task.path}")


# -- zero-shot --------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 7])
def test_zero_shot_prompts_are_task_render(task: Task, seed: int) -> None:
    for template in task.template_names:
        prompts, skipped = build_prompts(task, VALIDATION, "validation", template, seed=seed)
        expected = [task.render(row, i, template, seed=seed) for i, row in enumerate(VALIDATION)]
        assert [p.example for p in prompts] == [e for e in expected if e is not None]
        assert all(p.shots == () for p in prompts)
        assert skipped == sum(e is None for e in expected)
    noisy = [build_prompts(task, VALIDATION, "validation", "noisy", seed=s)[0][0].example.input for s in (0, 1)]
    assert noisy[0] != noisy[1]  # the seed reaches the template's helpers


def test_declined_rows_are_counted_not_prompted(task: Task) -> None:
    prompts, skipped = build_prompts(task, VALIDATION, "validation", "only_yes")
    assert skipped == 3 and [p.example.index for p in prompts] == [0, 2, 4]  # indices are the rows'
    prompts, skipped = build_prompts(task, VALIDATION, "validation", "only_yes", num_shots=2)
    assert skipped == 3 and [p.example.index for p in prompts] == [0, 2, 4]


# -- k-shot -----------------------------------------------------------------------------------------

def test_k_shot_prompts_use_flans_format(task: Task) -> None:
    prompts, skipped = build_prompts(task, VALIDATION, "validation", "ask", num_shots=3, seed=1)
    assert skipped == 0 and len(prompts) == len(VALIDATION)
    for i, prompt in enumerate(prompts):
        query = task.render(VALIDATION[i], i, "ask", seed=1)
        shots = shots_of(task, prompt, "ask", 1)
        assert len(shots) == 3 and len(set(prompt.shots)) == 3
        assert prompt.example.input == few_shot_input([(s.input, s.target) for s in shots], query.input)
        assert prompt.example.input == "".join(f"{s.input}\n\n{s.target}\n\n\n" for s in shots) + query.input
        # Only the input changes: target, choices, references and index stay the query's.
        assert (prompt.example.target, prompt.example.choices, prompt.example.references, prompt.example.index) == (
            query.target, query.choices, query.references, i)
    assert (FEW_SHOT_XY, FEW_SHOT_SEP) == ("\n\n", "\n\n\n")


def test_exemplars_come_from_the_train_split(task: Task) -> None:
    # Without exemplars given, build_prompts reads the task's train split itself.
    prompts, _ = build_prompts(task, VALIDATION, "validation", "ask", num_shots=2, seed=3)
    assert all(0 <= r < len(TRAIN) for p in prompts for r in p.shots)
    assert all("train question" in s.input for p in prompts for s in shots_of(task, p, "ask", 3))
    given = Exemplars(task, 3, rows=TRAIN)
    assert build_prompts(task, VALIDATION, "validation", "ask", num_shots=2, seed=3, exemplars=given)[0] == prompts


def test_never_the_example_itself(task: Task) -> None:
    rows = [*TRAIN, dict(TRAIN[4])]  # row 12 duplicates row 4: the same input, never its exemplar
    for seed in range(4):
        prompts, _ = build_prompts(task, rows, "train", "ask", num_shots=4, seed=seed,
                                   exemplars=Exemplars(task, seed, rows=rows))
        for i, prompt in enumerate(prompts):
            assert i not in prompt.shots and len(prompt.shots) == 4
            query = task.render(rows[i], i, "ask", seed=seed)
            assert all(s.input != query.input for s in shots_of(task, prompt, "ask", seed, rows))
    # Evaluating another split over the same rows: the same row renders the same input, so it is skipped too.
    for seed in range(4):
        prompts, _ = build_prompts(task, TRAIN, "validation", "ask", num_shots=len(TRAIN) - 1, seed=seed)
        assert all(i not in p.shots and len(p.shots) == len(TRAIN) - 1 for i, p in enumerate(prompts))


def test_k_above_the_train_rows_gives_what_there_is(task: Task) -> None:
    small = TRAIN[:3]
    prompts, _ = build_prompts(task, small, "train", "ask", num_shots=5, exemplars=Exemplars(task, 0, rows=small))
    assert [sorted(p.shots) for p in prompts] == [[1, 2], [0, 2], [0, 1]]
    empty, _ = build_prompts(task, VALIDATION[:2], "validation", "ask", num_shots=2,
                             exemplars=Exemplars(task, 0, rows=[]))
    assert [p.example.input for p in empty] == [task.render(r, i, "ask").input for i, r in enumerate(VALIDATION[:2])]


def test_declined_exemplars_are_not_used(task: Task) -> None:
    prompts, _ = build_prompts(task, VALIDATION, "validation", "only_yes", num_shots=3)
    assert all(len(p.shots) == 3 and all(TRAIN[r]["label"] == 0 for r in p.shots) for p in prompts)


def test_draws_are_seeded_and_deterministic(task: Task) -> None:
    def shots(seed: int, split: str = "validation", template: str = "ask") -> list[tuple[int, ...]]:
        return [p.shots for p in build_prompts(task, VALIDATION, split, template, num_shots=3, seed=seed)[0]]

    assert shots(0) == shots(0)
    assert shots(0) != shots(1)
    # Drawn per (seed, task, template, split, row): another split or template draws other rows.
    assert shots(0, "test") != shots(0)
    assert shots(0, template="noisy") != shots(0)
    # Each row draws its own exemplars.
    assert len(set(shots(0))) > 1


def test_fits_drops_the_farthest_exemplars_first(task: Task) -> None:
    full, _ = build_prompts(task, VALIDATION, "validation", "ask", num_shots=3, seed=2)
    seen: list[str] = []

    def fits(text: str) -> bool:
        seen.append(text)
        return text.count(FEW_SHOT_SEP) <= 1

    short, skipped = build_prompts(task, VALIDATION, "validation", "ask", num_shots=3, seed=2, fits=fits)
    assert skipped == 0
    for long_prompt, prompt in zip(full, short, strict=True):
        assert prompt.shots == long_prompt.shots[-1:]  # the exemplar next to the query stays
        [shot] = shots_of(task, prompt, "ask", 2)
        query = task.render(VALIDATION[prompt.example.index], prompt.example.index, "ask", seed=2)
        assert prompt.example.input == f"{shot.input}\n\n{shot.target}\n\n\n{query.input}"
    assert len(seen) == 3 * len(VALIDATION)  # 3, then 2, then 1 exemplar per prompt
    assert [t.count(FEW_SHOT_SEP) for t in seen[:3]] == [3, 2, 1]
    never, _ = build_prompts(task, VALIDATION, "validation", "ask", num_shots=3, seed=2, fits=lambda text: False)
    assert [p.shots for p in never] == [()] * len(VALIDATION)  # down to zero-shot, not dropped
    assert [p.example for p in never] == [p.example for p in build_prompts(task, VALIDATION, "validation", "ask",
                                                                           seed=2)[0]]


def test_k_shot_needs_a_train_split(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "validation.jsonl", VALIDATION)
    task = make_task(tmp_path, "{files: {validation: data/validation.jsonl, test: data/validation.jsonl}}",
                     name="notrain")
    assert build_prompts(task, VALIDATION, "validation", "ask")[1] == 0  # zero-shot needs none
    with pytest.raises(T2TError) as info:
        build_prompts(task, VALIDATION, "validation", "ask", num_shots=1)
    assert str(info.value) == ("--num-shots: task 'notrain' has no train split to draw exemplars from "
                               "(splits: validation, test); use --num-shots 0 for it")
