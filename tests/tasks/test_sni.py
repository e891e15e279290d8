"""python -m t2t.tasks import-sni: Super-NaturalInstructions task JSON -> task files + JSON Lines data.

``tk_instruct_source`` re-implements how Tk-Instruct encodes an SNI instance (yizhongw/Tk-Instruct,
``src/ni_collator.py``, ``DataCollatorForNI``: definition, positive and negative examples with optional
explanations, then ``Now complete the following example -``; a line without final punctuation gets a '.')
so the imported templates are compared with it; the JSON files are small ones written for these tests.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest

from t2t.errors import T2TError, run_cli
from t2t.mixtures.resolve import heldout_split
from t2t.tasks.cli import main
from t2t.tasks.importers.sni import ENCODINGS, TEST_LIMIT, import_tasks, mixture_text, read_test_tasks
from t2t.tasks.registry import TaskRegistry
from t2t.tasks.sources import load_rows
from tests.conftest import printed_command


def tk_instruct_source(task: dict[str, Any], instance: dict[str, Any], n_pos: int, n_neg: int,
                       explanation: bool) -> str:
    def dot(s: str) -> str:
        return s if s[-1] in string.punctuation else s + "."

    definition = dot("Definition: " + task["Definition"][0].strip()) + "\n\n"
    examples = ""
    for kind, key, n in (("Positive", "Positive Examples", n_pos), ("Negative", "Negative Examples", n_neg)):
        for idx, ex in enumerate(task[key][:n]):
            s = dot(f" {kind} Example {idx + 1} -\n" + f"Input: {ex['input'].strip()}") + "\n"
            s = dot(s + f" Output: {ex['output'].strip()}") + "\n"
            if explanation and "explanation" in ex:
                s = dot(s + f" Explanation: {ex['explanation'].strip()}") + "\n"
            examples += s + "\n"
    task_input = dot("Now complete the following example -\n" + f"Input: {instance['input'].strip()}")
    return definition + examples + task_input + "\n" + "Output: "


def sni_task(category: str, n: int, definition: str = "Answer the question") -> dict[str, Any]:
    return {
        "Contributors": ["test"], "Source": ["test"], "Categories": [category], "Domains": ["Wikipedia"],
        "Input_language": ["English"], "Output_language": ["English"], "Instruction_language": ["English"],
        "Definition": [definition],
        "Positive Examples": [
            {"input": "Is fire hot", "output": "yes", "explanation": "Fire is hot"},
            {"input": "Is ice hot?", "output": "no.", "explanation": "Ice is cold."},
            {"input": "third, never shown", "output": "x", "explanation": "x"}],
        "Negative Examples": [
            {"input": "Is snow white", "output": "blue", "explanation": "Snow is white, not blue"},
            {"input": "Is \"grass\" {green}?", "output": "no", "explanation": "It is green"}],
        "Instances": [{"id": f"i-{k}", "input": f"Question {k}" + ("?" if k % 2 else ""),
                       "output": [f"answer {k}", f"reply {k}"]} for k in range(n)]
        + [{"id": "pipes", "input": "a ||| b", "output": ["c"]}],
    }


@pytest.fixture()
def sni_dir(tmp_path: Path) -> Path:
    src = tmp_path / "tasks"
    src.mkdir()
    (src / "task001_closed_qa.json").write_text(json.dumps(sni_task("Question Answering", 5)), encoding="utf-8")
    (src / "task002_entailment.json").write_text(json.dumps(sni_task("Textual Entailment", 150, "Say yes or no.")),
                                                 encoding="utf-8")
    (tmp_path / "test_tasks.txt").write_text("task002_entailment\n", encoding="utf-8")
    return tmp_path


def test_templates_are_tk_instructs_encodings_and_references_are_kept(sni_dir: Path) -> None:
    done = import_tasks(sorted((sni_dir / "tasks").glob("*.json")), sni_dir / "out", {"task002_entailment"})
    assert done.train_tasks == ["task001_closed_qa"] and done.test_tasks == ["task002_entailment"]
    assert done.skipped == {"task001_closed_qa": 1, "task002_entailment": 1}  # the '|||' instance
    registry = TaskRegistry.load([sni_dir / "out"], include_builtin=False)
    task = registry.get("task001_closed_qa")
    assert task.cluster == "question_answering" and task.tags == ("sni",) and task.metrics == ("rouge_l", "exact_match")
    assert task.template_names == list(ENCODINGS) and task.scored_templates() == list(ENCODINGS)
    raw = json.loads((sni_dir / "tasks" / "task001_closed_qa.json").read_text())
    rows = load_rows(task, "train")
    assert len(rows) == 5 and rows[0] == {"id": "i-0", "input": "Question 0", "output": ["answer 0", "reply 0"]}
    compared = 0
    for i in range(len(rows)):
        for name, enc in ENCODINGS.items():
            ex = task.render(rows[i], i, name)
            assert ex.input == tk_instruct_source(raw, raw["Instances"][i], *enc).strip()
            assert ex.references == (f"answer {i}", f"reply {i}") and ex.target in ex.references
            compared += 1
    assert compared == 15
    # Tk-Instruct draws the training target at random among the references: seeded here.
    assert {task.render(rows[0], 0, "definition", seed=s).target for s in range(20)} == {"answer 0", "reply 0"}


def test_test_tasks_score_only_their_first_100_instances_and_are_held_out(sni_dir: Path) -> None:
    done = import_tasks(sorted((sni_dir / "tasks").glob("*.json")), sni_dir / "out",
                        read_test_tasks(sni_dir / "test_tasks.txt"))
    test = TaskRegistry.load([sni_dir / "out"], include_builtin=False).get("task002_entailment")
    assert test.cluster == "textual_entailment" and test.tags == ("sni", "sni_test")
    assert test.splits == {"test": "test"} and test.limit == {"test": TEST_LIMIT}
    rows = load_rows(test, "test")
    assert len(rows) == 100 and rows[99]["id"] == "i-99"
    (sni_dir / "mix").mkdir()
    (sni_dir / "mix" / "sni.yaml").write_text(mixture_text(done), encoding="utf-8")
    split = heldout_split("sni", task_dirs=[sni_dir / "out"], mixture_dirs=[sni_dir / "mix"], include_builtin=False)
    assert [t.name for t in split.train] == ["task001_closed_qa"]
    assert [t.name for t in split.heldout] == ["task002_entailment"]


@pytest.mark.parametrize("data, expect", [
    ({"Definition": ["x"]}, "expected 'Definition' and 'Instances'"),
    ({"Definition": [""], "Instances": []}, "'Definition' must be"),
    ({"Definition": ["x"], "Instances": [{"input": "a"}]}, r"Instances\[0\] must be"),
    ({"Definition": ["x"], "Positive Examples": [{"input": 1}], "Instances": []}, "'Positive Examples' must be"),
    ({"Definition": ["a ||| b"], "Instances": [{"input": "a", "output": ["b"]}]}, "holds '|||'"),
    ({"Definition": ["x"], "Instances": [{"input": "a ||| b", "output": ["b"]}]}, "no usable instances"),
    # a string would be read letter by letter: the cluster 'a' from "Answer Generation"
    ({"Definition": ["x"], "Categories": "Answer Generation", "Instances": [{"input": "a", "output": ["b"]}]},
     "'Categories' must be a list of category names, got a string"),
    ({"Definition": ["x"], "Categories": [["QA"]], "Instances": [{"input": "a", "output": ["b"]}]},
     "'Categories' must be a list of category names, got a list"),
    ({"Definition": ["x"], "Instances": "DEEP"}, "nested more than 100 levels"),  # 5,000 levels, below
])
def test_bad_task_files_are_named(tmp_path: Path, data: dict[str, Any], expect: str) -> None:
    path = tmp_path / "task9_bad.json"
    path.write_text(json.dumps(data).replace('"DEEP"', "[" * 5000 + "]" * 5000), encoding="utf-8")
    with pytest.raises(T2TError, match=expect):
        import_tasks([path], tmp_path / "out")
    path.write_text("{", encoding="utf-8")
    with pytest.raises(T2TError, match="not a Super-NaturalInstructions task JSON"):
        import_tasks([path], tmp_path / "out")


def test_cli_writes_tasks_and_mixture_and_refuses_to_clobber(sni_dir: Path, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    args = ["import-sni", *map(str, sorted((sni_dir / "tasks").glob("*.json"))), "--out", str(sni_dir / "out"),
            "--test-tasks", str(sni_dir / "test_tasks.txt"), "--mixture", str(sni_dir / "mix" / "sni.yaml")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 train tasks, 1 test tasks" in out and "held out: 1 test tasks" in out
    assert main(printed_command(out, "t2t.tasks")) == 0  # the "check it with" command, as printed
    with pytest.raises(T2TError, match="already exists; pass --overwrite"):
        main(args)
    assert main([*args, "--overwrite"]) == 0


def test_two_inputs_of_one_task_name_are_refused_naming_both(sni_dir: Path) -> None:
    first = sni_dir / "tasks" / "task001_closed_qa.json"
    other = sni_dir / "copy" / "task001_closed_qa.json"
    other.parent.mkdir()
    other.write_text(first.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(T2TError) as info:
        import_tasks([first, other], sni_dir / "out")
    assert str(info.value).startswith(f"{first} and {other} both become task 'task001_closed_qa'")
    assert not (sni_dir / "out").exists()


def test_test_tasks_file_that_is_not_utf8_is_one_line(sni_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = sni_dir / "test_tasks.txt"
    bad.write_bytes(b"task002_entailment\n\xff\xfe\n")
    args = ["import-sni", str(sni_dir / "tasks" / "task001_closed_qa.json"), "--out", str(sni_dir / "out"),
            "--test-tasks", str(bad)]
    assert run_cli(main, args) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --test-tasks {bad}: not UTF-8 text (invalid start byte at byte 19); save it as UTF-8"
    bad.write_bytes(b"\xef\xbb\xbftask001_closed_qa\n")  # a byte order mark is dropped
    assert read_test_tasks(bad) == {"task001_closed_qa"}
