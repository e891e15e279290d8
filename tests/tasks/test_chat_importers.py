"""import-alpaca, import-sharegpt, import-messages: small constructed files in each format, good and broken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t2t.errors import run_cli
from t2t.tasks.cli import main
from t2t.tasks.registry import TaskRegistry
from tests.conftest import printed_command

# tatsu-lab/stanford_alpaca train.py, PROMPT_DICT: the prompt the 'alpaca' template must reproduce
PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                "Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:")
PROMPT_NO_INPUT = ("Below is an instruction that describes a task. "
                   "Write a response that appropriately completes the request.\n\n"
                   "### Instruction:\n{instruction}\n\n### Response:")

ALPACA = [{"instruction": "Give a tip for staying healthy.", "input": "", "output": "Sleep eight hours."},
          {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"}]
SHAREGPT = [{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                               {"from": "gpt", "value": "Hello!"}, {"from": "human", "value": "2+2?"},
                               {"from": "gpt", "value": "4"}]},
            {"conversations": [{"from": "human", "value": "Capital of France?"}, {"from": "gpt", "value": "Paris"}]}]
MESSAGES = [{"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hey", "weight": 0},
                          {"role": "user", "content": "Sky colour?"}, {"role": "assistant", "content": "Blue"}]}]


def jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def run(*argv: str) -> int:
    return run_cli(main, list(argv))


def rendered(out: Path, name: str) -> list[tuple[str, str, str]]:
    task = TaskRegistry.load(include_builtin=False, paths=[out / f"{name}.jinja"]).get(name)
    rows = [json.loads(line) for line in (out / "data" / f"{name}.jsonl").read_text().splitlines()]
    return [(t, ex.input, ex.target) for i, row in enumerate(rows) for t in task.template_names
            if (ex := task.render(row, i, t)) is not None]


def test_alpaca_json_array_renders_stanford_prompt_and_passes_check(tmp_path: Path, capsys) -> None:
    source = tmp_path / "alpaca_data.json"
    source.write_text(json.dumps(ALPACA, indent=1), encoding="utf-8")
    out = tmp_path / "out"
    assert run("import-alpaca", str(source), "--out", str(out), "--name", "alp", "--cluster", "instruct") == 0
    printed = capsys.readouterr().out
    assert "2 rows from 2 records" in printed
    renders = rendered(out, "alp")
    assert ("alpaca", PROMPT_NO_INPUT.format(**ALPACA[0]), "Sleep eight hours.") in renders
    assert ("alpaca", PROMPT_INPUT.format(**ALPACA[1]), "Bonjour") in renders
    assert ("instruction", "Translate to French.\n\nGood morning", "Bonjour") in renders
    assert run(*printed_command(printed, "t2t.tasks")) == 0  # the "check it with" command, as printed


def test_sharegpt_one_row_per_assistant_turn_with_history_and_system(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run("import-sharegpt", str(jsonl(tmp_path / "sg.jsonl", SHAREGPT)), "--out", str(out), "--name", "sg",
               "--cluster", "chat") == 0
    renders = rendered(out, "sg")
    assert [target for _, _, target in renders] == ["Hello!", "4", "Paris"]
    assert renders[1][1] == "Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: 2+2?\nAssistant:"
    assert renders[2][1] == "User: Capital of France?\nAssistant:"  # no system prompt: none printed
    assert run("check", str(out)) == 0


def test_messages_weight_zero_turn_is_context_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run("import-messages", str(jsonl(tmp_path / "m.jsonl", MESSAGES)), "--out", str(out), "--name", "m",
               "--cluster", "chat") == 0
    assert rendered(out, "m") == [("chat", "You are terse.\n\nUser: Hi\n\nAssistant: Hey\n\nUser: Sky colour?\n"
                                           "Assistant:", "Blue")]


def test_separator_in_a_response_is_left_out_and_counted(tmp_path: Path, capsys) -> None:
    records = ALPACA + [{"instruction": "Split", "input": "", "output": "a ||| b"}]
    out = tmp_path / "out"
    assert run("import-alpaca", str(jsonl(tmp_path / "a.jsonl", records)), "--out", str(out), "--name", "a",
               "--cluster", "c") == 0
    assert "left out 1 rows" in capsys.readouterr().out
    assert len((out / "data" / "a.jsonl").read_text().splitlines()) == 2


BROKEN = [
    ("alpaca", '{"instruction": "x", "output": "y"}\n{"instruction": "x", "output": \n', "a.jsonl:2: not a JSON"),
    ("alpaca", '{"instruction": "x", "input": ""}\n', "a.jsonl:1: field 'output' must be non-empty text, got missing"),
    ("alpaca", '[1]', "a.jsonl: record 1: a record must be a JSON object"),
    ("alpaca", '{"instruction": "x", "output": "y", "history": [["q", "a"]]}\n', "a.jsonl:1: field 'history'"),
    ("alpaca", "", "a.jsonl: no records"),
    ("sharegpt", '{"conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]}\n',
     "a.jsonl:1: turns must alternate user, assistant"),
    ("sharegpt", '{"conversations": [{"from": "human", "value": "x"}, {"from": "function_call", "value": "{}"}]}\n',
     "a.jsonl:1, conversations[1]: tool turns ('function_call') are not imported"),
    ("sharegpt", '{"conversations": [{"from": "bot", "value": "x"}]}\n', "unknown 'from' value 'bot'"),
    ("messages", '{"messages": [{"role": "user", "content": "x"}]}\n',
     "a.jsonl:1: turns must alternate user, assistant, ... and end with an assistant turn"),
    ("messages", '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": null}]}\n',
     "a.jsonl:1, messages[1]: field 'content' must be non-empty text"),
    ("messages", '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", '
     '"weight": 0}]}\n', "no assistant turn to train on"),
]


@pytest.mark.parametrize(("fmt", "text", "message"), BROKEN, ids=[m[:40] for _, _, m in BROKEN])
def test_malformed_file_is_one_line_exit_2_nothing_written(tmp_path: Path, capsys, fmt: str, text: str,
                                                           message: str) -> None:
    source = tmp_path / "a.jsonl"
    source.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    assert run(f"import-{fmt}", str(source), "--out", str(out), "--cluster", "c") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists() or not any(out.rglob("*"))


def test_names_of_existing_tasks_and_files_are_refused(tmp_path: Path, capsys) -> None:
    source = jsonl(tmp_path / "a.jsonl", ALPACA)
    out = tmp_path / "out"
    assert run("import-alpaca", str(source), "--out", str(out), "--name", "sentiment_movie", "--cluster", "c") == 2
    assert "task name 'sentiment_movie' is already taken by" in capsys.readouterr().err
    other = tmp_path / "other"
    assert run("import-alpaca", str(source), "--out", str(other), "--name", "mine", "--cluster", "c") == 0
    assert run("import-alpaca", str(source), "--out", str(out), "--name", "mine", "--cluster", "c",
               "--task-dir", str(other)) == 2
    assert f"already taken by {other / 'mine.jinja'}" in capsys.readouterr().err
    before = (other / "mine.jinja").read_text()
    assert run("import-alpaca", str(source), "--out", str(other), "--name", "mine", "--cluster", "c") == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert run("import-alpaca", str(source), "--out", str(other), "--name", "mine", "--cluster", "d",
               "--overwrite") == 0
    assert (other / "mine.jinja").read_text() == before.replace("cluster: c", "cluster: d")


def test_an_unwritable_output_is_one_line_and_leaves_no_stage(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the folder should be")
    assert run("import-alpaca", str(jsonl(tmp_path / "a.jsonl", ALPACA)), "--out", str(blocker), "--name", "a",
               "--cluster", "c") == 2
    assert "cannot write there" in capsys.readouterr().err
    assert blocker.read_text() == "a file where the folder should be"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "out"]
