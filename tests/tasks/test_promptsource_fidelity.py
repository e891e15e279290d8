"""Imported promptsource files render what promptsource renders.

promptsource is not installable offline, so ``reference_apply`` below re-implements its rendering from
its source, bigscience-workshop/promptsource ``promptsource/templates.py``: a plain
``jinja2.Environment`` with the ``choice`` (``random.choice``) and ``most_frequent`` filters and the
``zip`` global; ``Template.apply(example, truncate=True)`` replaces every ``}}`` of the template with
``| string | truncate(2048) }}``, replaces ``|||`` in the example's string values by
``Template.pipe_protector``, passes ``answer_choices`` from ``get_answer_choices_list`` (rendered the same
way, split on ``|||``, each choice stripped and un-protected, every position kept), splits the render on
``|||`` and un-protects and strips each part.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from t2t.errors import T2TError
from t2t.tasks.cli import main
from t2t.tasks.importers.promptsource import block_ids, import_collection, read_collection
from t2t.tasks.registry import TaskRegistry

PROTECTOR = "3ed2dface8203c4c9dfb1a5dc58e41e0"


def _most_frequent(items: Any) -> Any:
    if not items:
        return None
    counts = Counter(items).most_common()
    return [c[0] for c in counts if c[1] == counts[0][1]]


def reference_env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.BaseLoader())
    env.globals.update(zip=zip)
    env.filters["choice"] = lambda choices: random.choice(choices)
    env.filters["most_frequent"] = _most_frequent
    return env


ENV = reference_env()


def _escape(example: dict[str, Any]) -> dict[str, Any]:
    return {k: v.replace("|||", PROTECTOR) if isinstance(v, str) else v for k, v in example.items()}


def reference_choices(answer_choices: str | None, example: dict[str, Any]) -> list[str] | None:
    if answer_choices is None:
        return None
    text = ENV.from_string(answer_choices).render(**_escape(example))
    return [c.strip().replace(PROTECTOR, "|||") for c in text.split("|||")]


def reference_apply(template: dict[str, Any], example: dict[str, Any], truncate: bool = True) -> list[str]:
    jinja = template["jinja"]
    if truncate:
        jinja = jinja.replace("}}", " | string | truncate(2048) }}")
    protected = _escape(example)
    protected["answer_choices"] = reference_choices(template.get("answer_choices"), example)
    rendered = ENV.from_string(jinja).render(**protected)
    return [part.replace(PROTECTOR, "|||").strip() for part in rendered.split("|||")]


LONG = " ".join(["word"] * 700)  # 3,499 characters: promptsource cuts it to 2,048

# Templates written after real promptsource ones (named in each): fields, filters and globals they use.
COLLECTION = {
    "dataset": "fidelity", "subset": "mixed",
    "templates": {
        "t-zip": {"name": "zip options", "answer_choices": "{{ options | join(' ||| ') }}",  # qasc-like, zip
                  "jinja": "{{ question }}\n{% for l, o in zip(labels, options) %}{{ l }}) {{ o }}\n{% endfor %}"
                           "||| {{ answer_choices[label] }}",
                  "metadata": {"original_task": True, "metrics": ["Accuracy"]}},
        "t-freq": {"name": "most frequent", "answer_choices": None,  # squadshifts
                   "jinja": "{{ context }} Q: {{ question }} ||| {{ (answers.text | most_frequent)[0] }}",
                   "metadata": {"original_task": False}},
        "t-pipes": {"name": "multi news", "answer_choices": None,  # multi_news joins articles with |||||
                    "jinja": "Summarize: {{ document }} ||| {{ summary }}", "metadata": {"original_task": False}},
        "t-empty": {"name": "cosmos", "answer_choices": "{{answer0}} ||| {{answer1}} ||| {{answer2}}",
                    "jinja": "{{ context }} {{ question }} - {{ answer_choices | join(' / ') }} "
                             "||| {{ answer_choices[cosmos_label] }}",  # cosmos_qa with an empty answer1
                    "metadata": {"original_task": True}},
        "t-long": {"name": "long text", "answer_choices": "Yes ||| No",
                   "jinja": "{{ context }} {{ question }}? ||| {{ answer_choices[label] }}",
                   "metadata": {"original_task": True}},
        "t-none": {"name": "null field", "answer_choices": None,
                   "jinja": "{{ question }} (note: {{ note }}) ||| {{ context | lower }}",
                   "metadata": {"original_task": False}},
        "t-append": {"name": "built list", "answer_choices": None,  # 212 templates build lists with append
                     "jinja": "{% set xs = [] %}{% for o in options %}{% set _ = xs.append(o | upper) %}{% endfor %}"
                              "{{ xs | join(', ') }} {{ label | string }} {{ note | string }} ||| {{ summary }}",
                     "metadata": {"original_task": False}},
        "t-dup": {"name": "trec duplicate", "answer_choices": "Yes ||| No ||| Yes",  # trec
                  "jinja": "{{ question }} ||| {{ answer_choices[label] }}", "metadata": {"original_task": True}},
        "t-rand": {"name": "random pick", "answer_choices": "Yes ||| No",  # hellaswag, race, sciq
                   "jinja": "{% set order = [0, 1, 2, 3] | choice %}{% set r = range(0, 2) | choice %}"
                            "{{ question }} {{ order }} {{ r }} {{ options | list | choice }} "
                            "{{ answer_choices | choice }} {{ labels | random }} ||| {{ answer_choices[label] }}",
                   "metadata": {"original_task": True}},
    },
}
ROWS = [
    {"question": "Which one?", "options": ["red", "green", "blue"], "labels": ["A", "B", "C"], "label": 1,
     "context": "Some context.", "answers": {"text": ["x", "y", "y"]}, "document": "one ||||| two",
     "summary": "both", "answer0": "first", "answer1": "", "answer2": "third", "cosmos_label": 2, "note": None},
    {"question": "And this?", "options": ["up", "down", "left"], "labels": ["A", "B", "C"], "label": 0,
     "context": LONG, "answers": {"text": ["q", "q", "r"]}, "document": "a ||| b ||| c", "summary": "s |||| t",
     "answer0": "", "answer1": "b", "answer2": "c", "cosmos_label": 1, "note": None},
]


def _write(tmp_path: Path) -> Path:
    data = {"dataset": COLLECTION["dataset"], "subset": COLLECTION["subset"], "templates": {
        key: {**t, "id": key, "reference": ""} for key, t in COLLECTION["templates"].items()}}
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture()
def imported(tmp_path: Path) -> tuple[Any, Any]:
    done = import_collection(_write(tmp_path), tmp_path / "tasks", "mixed", examples=ROWS)
    task = TaskRegistry.load([tmp_path / "tasks"], include_builtin=False).get("fidelity_mixed")
    return done, task


def test_every_workable_template_imports_and_the_duplicate_choice_one_is_refused_alone(imported: Any) -> None:
    done, task = imported
    assert [(n, i) for n, i, _ in done.refused] == [("trec duplicate", "t-dup")]
    assert "repeat 'Yes'" in done.refused[0][2]
    assert "# refused: trec duplicate (promptsource t-dup)" in done.path.read_text()
    assert len(task.template_names) == len(COLLECTION["templates"]) - 1
    assert task.meta["promptsource"] == {"truncate": 2048}


def test_non_random_templates_render_exactly_as_promptsource(imported: Any) -> None:
    _, task = imported
    names = {v: k for k, v in block_ids(read_collection(imported[0].path.parent.parent / "templates.yaml")).items()}
    compared = equal = 0
    for key, t in COLLECTION["templates"].items():
        if key in ("t-dup", "t-rand"):
            continue
        for i, row in enumerate(ROWS):
            want = reference_apply(t, row)
            ex = task.render(row, i, names[key])
            got = [ex.input, ex.target] if ex is not None else None
            compared += 1
            equal += got == want
            assert got == want, (key, i)
            if t["answer_choices"] is not None and task.has_choices:
                assert list(task.choices_for(row, names[key], i)) == reference_choices(t["answer_choices"], row)
    assert compared == equal == 14


def test_specifics_promptsource_has(imported: Any) -> None:
    _, task = imported
    ex = task.render(ROWS[1], 1, "multi_news")
    assert ex.input == "Summarize: a ||| b ||| c" and ex.target == "s |||| t"  # row pipes kept, not split on
    long_input = task.render(ROWS[1], 1, "long_text").input
    assert long_input.endswith("... And this??") and len(long_input) < 2048 + 20  # cut as promptsource
    assert task.render(ROWS[0], 0, "null_field").input == "Which one? (note: None)"  # None prints as None
    # cosmos_qa: the empty choice keeps its place, so answer_choices[label] is the labelled one.
    assert task.choices_for(ROWS[0], "cosmos", 0) == ("first", "", "third")
    assert task.render(ROWS[0], 0, "cosmos").target == "third"  # dropping the empty one: out of range
    assert task.render(ROWS[1], 1, "cosmos").target == "b"  # dropping the empty one: "c"
    assert task.render(ROWS[0], 0, "most_frequent").target == "y"
    # Lists built in the template may change; the row (here the file's example row) never does.
    assert task.render(ROWS[0], 0, "built_list").input == "RED, GREEN, BLUE 1 None"
    assert task.example_rows[0]["options"] == ["red", "green", "blue"]
    # A template without answer choices in a task with choices gets none (promptsource's None).
    assert task.choices_for(ROWS[0], "built_list") is None and task.render(ROWS[0], 0, "built_list").choices is None


def test_random_templates_draw_what_promptsource_could_and_vary(imported: Any) -> None:
    _, task = imported
    seen = set()
    for seed in range(40):
        ex = task.render(ROWS[0], 0, "random_pick", seed=seed)
        _, order, r, option, hint, letter = ex.input.rsplit(" ", 5)
        assert int(order) in range(4) and int(r) in range(2) and option in ROWS[0]["options"]
        assert letter in ROWS[0]["labels"]
        assert hint in ("Yes", "No") and ex.target == "No"
        seen.add((order, r, option, hint, letter))
        assert task.render(ROWS[0], 0, "random_pick", seed=seed) == ex  # seeded: same seed, same text
    # Not folded at compile time: the picks vary between examples, as promptsource's do.
    assert len({s[0] for s in seen}) == 4 and len({s[1] for s in seen}) == 2 and len({s[2] for s in seen}) == 3
    assert len({s[4] for s in seen}) == 3  # Jinja's `random` filter, seeded too


def test_full_text_option_and_field_named_like_t2t_variables(tmp_path: Path) -> None:
    done = import_collection(_write(tmp_path), tmp_path / "full", "mixed", examples=ROWS, truncate=None)
    task = TaskRegistry.load([tmp_path / "full"], include_builtin=False).get("fidelity_mixed")
    assert task.meta["promptsource"] == {"truncate": False} and done.path.exists()
    want = reference_apply(COLLECTION["templates"]["t-long"], ROWS[1], truncate=False)
    ex = task.render(ROWS[1], 1, "long_text")
    assert [ex.input, ex.target] == want and LONG in ex.input
    # A row field named `options` (qasc, race) stays the row's; t2t's choices are the template's.
    z = task.render(ROWS[0], 0, "zip_options")
    assert z.input == "Which one?\nA) red\nB) green\nC) blue" and z.target == "green"
    assert z.choices == ("red", "green", "blue")


def test_every_example_row_is_rendered_at_import(tmp_path: Path) -> None:
    bad_row = {**ROWS[0], "options": 5}  # zip over an int fails: the import names that template, refuses it
    done = import_collection(_write(tmp_path), tmp_path / "t", "mixed", examples=[ROWS[0], bad_row])
    refused = {i: r for _, i, r in done.refused}
    assert "t-zip" in refused and "row 1" in refused["t-zip"]
    with pytest.raises(T2TError, match="field 'question'"):
        import_collection(_write(tmp_path), tmp_path / "u", "mixed",
                          examples=[ROWS[0], {k: v for k, v in ROWS[0].items() if k != "question"}])


def test_cli_prints_refusals_and_full_text_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    rc = main(["import", str(_write(tmp_path)), "--cluster", "mixed", "--out", str(tmp_path / "c"),
               "--no-truncate", *[a for r in ROWS for a in ("--example", json.dumps(r))]])
    out = capsys.readouterr().out
    assert rc == 0 and "(8 templates)" in out and "refused template 'trec duplicate' (promptsource t-dup)" in out
    assert "truncate: false" in (tmp_path / "c" / "fidelity_mixed.jinja").read_text()
    assert main(["check", str(tmp_path / "c")]) == 0
