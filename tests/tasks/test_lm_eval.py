"""lm-evaluation-harness both ways (t2t.tasks.importers.lm_eval): export t2t tasks and score them with lm-eval itself,
import lm-eval task YAML and render it as lm-eval does; --choice-scoring lm-eval reproduces lm-eval's
per-choice log-likelihoods on the exported tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from t2t.errors import T2TError, run_cli
from t2t.tasks import cli
from t2t.tasks.importers import lm_eval
from t2t.tasks.registry import TaskRegistry
from tests.conftest import printed_command, require

LIMIT = 8


@pytest.fixture(scope="module")
def registry():
    return TaskRegistry.load()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, registry):
    out = tmp_path_factory.mktemp("lm_eval_export")
    done = lm_eval.export_tasks([registry.get("compare_numbers"), registry.get("arith_sum")], out, limit=LIMIT)
    return out, done


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_writes_a_task_per_template_rows_as_t2t_renders_them(exported, registry):
    out, done = exported
    task = registry.get("compare_numbers")
    names = {f"t2t_compare_numbers__{t}" for t in task.scored_templates()}
    assert names <= set(done.rows) and "t2t_compare_numbers__ask_the_question" not in done.rows  # inverted
    assert yaml.safe_load((out / "t2t.yaml").read_text())["task"] == list(done.rows)
    config = yaml.safe_load((out / "compare_numbers__which_number.yaml").read_text())
    assert config["output_type"] == "multiple_choice" and config["doc_to_text"] == "{{input}}"
    assert config["target_delimiter"] == " " and [m["metric"] for m in config["metric_list"]] == ["acc", "acc_norm"]
    from t2t.tasks.sources import load_rows

    rows = load_rows(task, "validation").to_list()[:LIMIT]
    records = _records(Path(config["dataset_kwargs"]["data_files"]["test"]))
    assert len(records) == LIMIT
    for record, row in zip(records, rows, strict=True):
        ex = task.render(row, record["index"], "which_number")
        assert (record["input"], record["target"], tuple(record["choices"])) == (ex.input, ex.target, ex.choices)
        assert record["choices"][record["gold"]] == ex.target
    gen = yaml.safe_load((out / "arith_sum__equals.yaml").read_text())
    assert gen["output_type"] == "generate_until" and gen["doc_to_target"] == "target"
    assert gen["generation_kwargs"]["do_sample"] is False


def test_export_refuses_existing_files_and_bad_limit(exported, registry, tmp_path):
    out, _ = exported
    with pytest.raises(T2TError, match="already exists; pass --overwrite"):
        lm_eval.export_tasks([registry.get("compare_numbers")], out, limit=2)
    with pytest.raises(T2TError, match="--limit"):
        lm_eval.export_tasks([registry.get("compare_numbers")], tmp_path, limit=0)


def _lm_eval_samples(out: Path, names: list[str], model_path: str) -> dict[str, list[dict]]:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model_path, backend="seq2seq", device="cpu", batch_size=4)
    result = simple_evaluate(model=lm, tasks=names, task_manager=TaskManager(include_path=str(out)),
                             log_samples=True)
    return result["samples"]


def test_choice_scoring_lm_eval_reproduces_lm_eval_on_an_exported_task(exported, registry, tmp_path):
    """The issue's parity check: lm-eval 0.4 (HFLM, backend seq2seq) on the exported YAML and t2t.evaluate
    --choice-scoring lm-eval on the same task give the same log-likelihood for every choice; t2t's default
    (choice + EOS, no delimiter) gives other numbers. results.json records which convention was used."""
    require("lm_eval")
    from t2t.evaluation.config import build_config
    from t2t.evaluation.runner import evaluate, write_outputs
    from t2t.modeling.loading import resolve_model

    out, _ = exported
    task = registry.get("compare_numbers")
    model_path = str(resolve_model("t2t-tiny", ()))
    names = [lm_eval.lm_eval_name(task.name, t) for t in task.scored_templates()]
    theirs = _lm_eval_samples(out, names, model_path)

    def ours(convention: str):
        config = build_config({"model": "t2t-tiny", "device": "cpu", "progress": False, "limit": LIMIT,
                               "log_samples": True, "bootstrap": 0, "choice_scoring": convention})
        return evaluate(config, [task])

    result = ours("lm-eval")
    default = ours("t2t")
    compared = 0
    for template, name in zip(task.scored_templates(), names, strict=True):
        mine = {s["index"]: s for s in result.samples if s["template"] == template}
        t2t_default = {s["index"]: s for s in default.samples if s["template"] == template}
        assert len(theirs[name]) == len(mine) == LIMIT
        for sample in theirs[name]:
            got = mine[sample["doc"]["index"]]
            assert got["input"] == sample["doc"]["input"] and got["choices"] == sample["doc"]["choices"]
            lls = [resp[0][0] for resp in sample["resps"]]
            assert got["logprobs"] == pytest.approx(lls, abs=1e-4)
            assert got["acc"] == sample["acc"] and got["acc_norm"] == sample["acc_norm"]
            assert t2t_default[sample["doc"]["index"]]["logprobs"] != pytest.approx(lls, abs=1e-3)
            compared += len(lls)
    assert compared == 2 * LIMIT * len(names)
    write_outputs(result, tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["config"]["choice_scoring"] == {"convention": "lm-eval", "target": "target_delimiter + choice",
                                                 "eos": False, "target_delimiter": " ", "input_truncation": "left"}
    assert saved["config"]["resolved"]["scoring"]["choice_scoring"] == "lm-eval"
    assert default.to_dict()["config"]["choice_scoring"]["convention"] == "t2t"
    assert "Choices scored as lm-eval does" in result.markdown() and "lm-eval" not in default.markdown()


def test_evaluate_refuses_an_unknown_convention(capsys):
    from t2t.evaluate import main

    assert run_cli(main, ["--tasks", "compare_numbers", "--choice-scoring", "lm_eval"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --choice-scoring lm_eval") and len(err.splitlines()) == 1
    assert run_cli(main, ["--tasks", "compare_numbers", "--target-delimiter", "\n"]) == 2
    assert "--target-delimiter" in capsys.readouterr().err


# --- import ------------------------------------------------------------------------------------------------

ARC_ROWS = [
    {"id": "q1", "question": "Which gas do plants take in?", "answerKey": "B",
     "choices": {"text": ["oxygen", "carbon dioxide", "helium"], "label": ["A", "B", "C"]}},
    {"id": "q2", "question": "What melts ice?", "answerKey": "A",
     "choices": {"text": ["heat", "cold", "salt water", "wind"], "label": ["A", "B", "C", "D"]}},
    {"id": "q3", "question": "How many legs has a spider?", "answerKey": "C",
     "choices": {"text": ["six", "four", "eight"], "label": ["A", "B", "C"]}},
]

# lm-eval's own arc_easy.yaml (lm_eval/tasks/arc/arc_easy.yaml, 0.4), on local files instead of the hub
ARC_YAML = """\
tag:
  - ai2_arc
task: arc_local
dataset_path: json
dataset_kwargs:
  data_files:
    validation: ARC_JSONL
output_type: multiple_choice
validation_split: validation
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{choices.label.index(answerKey)}}"
doc_to_choice: "{{choices.text}}"
should_decontaminate: true
doc_to_decontamination_query: "Question: {{question}}\\nAnswer:"
num_fewshot: 0
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


@pytest.fixture()
def arc_dir(tmp_path):
    (tmp_path / "arc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ARC_ROWS))
    (tmp_path / "arc.yaml").write_text(ARC_YAML.replace("ARC_JSONL", str(tmp_path / "arc.jsonl")))
    return tmp_path


def _lm_eval_docs(yaml_dir: Path, name: str) -> list[tuple[str, list[str], object]]:
    from lm_eval.tasks import TaskManager, get_task_dict

    task = get_task_dict([name], TaskManager(include_path=str(yaml_dir)))[name]
    docs = list(task.validation_docs() if task.has_validation_docs() else task.test_docs())
    return [(task.doc_to_text(d), task.doc_to_choice(d), task.doc_to_target(d)) for d in docs]


def test_import_arc_renders_as_lm_eval_does(arc_dir):
    require("lm_eval")
    (done,) = lm_eval.import_tasks([arc_dir / "arc.yaml"], arc_dir / "out", "qa")
    assert done.name == "arc_local" and any("num_fewshot" in n for n in done.notes)
    task = TaskRegistry.load(include_builtin=False, paths=[done.path]).get("arc_local")
    assert task.template_names == [lm_eval.TEMPLATE] and task.splits == {"validation": "validation"}
    assert task.metrics == ("accuracy",) and task.cluster == "qa"
    from t2t.tasks.sources import load_rows

    rows = load_rows(task, "validation").to_list()
    theirs = _lm_eval_docs(arc_dir, "arc_local")
    assert len(rows) == len(theirs) == len(ARC_ROWS)
    for i, (row, (text, choices, gold)) in enumerate(zip(rows, theirs, strict=True)):
        ex = task.render(row, i, lm_eval.TEMPLATE)
        assert ex.input == text.strip() and list(ex.choices) == choices and ex.target == choices[gold]


def test_export_then_import_gives_back_the_same_prompts(exported, registry, tmp_path):
    out, _ = exported
    (done,) = lm_eval.import_tasks([out / "compare_numbers__pick_one.yaml"], tmp_path, "comparison", name="back")
    back = TaskRegistry.load(include_builtin=False, paths=[done.path]).get("back")
    from t2t.tasks.sources import load_rows

    rows = load_rows(back, "test").to_list()
    originals = _records(out / "data" / "compare_numbers__pick_one.jsonl")
    assert len(rows) == len(originals) == LIMIT
    for i, (row, record) in enumerate(zip(rows, originals, strict=True)):
        ex = back.render(row, i, lm_eval.TEMPLATE)
        assert (ex.input, list(ex.choices), ex.target) == (record["input"], record["choices"], record["target"])


def test_import_merges_includes(arc_dir):
    (arc_dir / "arc_other.yaml").write_text("include: arc.yaml\ntask: arc_other\n")
    (done,) = lm_eval.import_tasks([arc_dir / "arc_other.yaml"], arc_dir / "out", "qa")
    front = yaml.safe_load(done.path.read_text().split("---")[1])
    assert front["name"] == "arc_other" and front["source"]["files"]["validation"].endswith("arc.jsonl")


@pytest.mark.parametrize("extra, field", [
    ("doc_to_text: !function utils.doc_to_text\n", "doc_to_text"),
    ("process_docs: !function utils.process_docs\n", "process_docs"),
    ("process_results: !function utils.process_results\n", "process_results"),
    ("output_type: loglikelihood\n", "output_type"),
    ("filter_list:\n  - name: get-answer\n    filter:\n      - function: regex\n        regex_pattern: '(\\\\d+)'\n",
     "filter_list"),
    ("doc_to_text: \"{{ question | regex_replace('a', 'b') }}\"\n", "doc_to_text"),
    ("doc_to_choice: \"{{ choices.text }} and more\"\n", "doc_to_choice"),
    ("dataset_kwargs: {revision: main}\ndataset_path: allenai/ai2_arc\n", "dataset_kwargs"),
])
def test_import_refuses_what_it_cannot_convert_by_name(arc_dir, extra, field, capsys):
    (arc_dir / "bad.yaml").write_text((arc_dir / "arc.yaml").read_text() + extra)
    with pytest.raises(T2TError, match=f"lm-eval field '{field}' cannot be imported"):
        lm_eval.import_tasks([arc_dir / "bad.yaml"], arc_dir / "out", "qa")
    assert run_cli(cli.main, ["import-lm-eval", str(arc_dir / "bad.yaml"), "--cluster", "qa",
                              "--out", str(arc_dir / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err
    assert not (arc_dir / "out" / "arc_local.jinja").exists()


def test_cli_export_and_import(tmp_path, capsys):
    assert cli.main(["export-lm-eval", "compare_numbers", "--out", str(tmp_path / "x"), "--limit", "3"]) == 0
    printed = capsys.readouterr().out
    assert "t2t_compare_numbers__which_number: 3 rows" in printed and "--include_path" in printed
    assert cli.main(["import-lm-eval", str(tmp_path / "x" / "compare_numbers__compare.yaml"), "--cluster", "c",
                     "--out", str(tmp_path / "y")]) == 0
    assert (tmp_path / "y" / "t2t_compare_numbers__compare.jinja").exists()
    # the "check it with" command, as printed
    assert cli.main(printed_command(capsys.readouterr().out, "t2t.tasks")) == 0


# --- hostile and malformed input, clashes, staged export (issue #25, #24) ---------------------------------------


def _import_error(arc_dir: Path, text: str, capsys) -> str:
    """The one line ``import-lm-eval`` prints for ``bad.yaml`` holding ``text`` (exit status 2)."""
    (arc_dir / "bad.yaml").write_text(text, encoding="utf-8")
    assert run_cli(cli.main, ["import-lm-eval", str(arc_dir / "bad.yaml"), "--cluster", "qa",
                              "--out", str(arc_dir / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(arc_dir / "bad.yaml") in err
    assert not (arc_dir / "out").exists()
    return err


@pytest.mark.parametrize("change, message", [
    (("validation: ARC", "validation: {x: 1}\n    other: ARC"),
     "'dataset_kwargs.data_files' must be a path, a list of paths or a mapping of split name to path(s), got a "
     "mapping"),
    (("dataset_kwargs:\n  data_files:\n    validation: ARC", "dataset_kwargs: just a string\nx: ARC"),
     "'dataset_kwargs' must be a mapping"),
    (("  - metric: acc\n", "  - metric: [acc]\n"), "'metric_list[].metric' must be a metric name, got a list"),
    (("  - metric: acc\n", "  - metric: {acc: 1}\n"), "'metric_list[].metric' must be a metric name, got a mapping"),
    (("metric_list:\n", "metric_list: acc\nx:\n"), "'metric_list' must be a list"),
    (("output_type: multiple_choice", "output_type: [multiple_choice]"), "'output_type' must be multiple_choice"),
    (("doc_to_choice: \"{{choices.text}}\"", "doc_to_choice: [[a], b]"), "'doc_to_choice' must be a list of strings"),
    (("validation_split: validation", "validation_split: {a: b}"), "'validation_split' must be a split name"),
])
def test_malformed_shapes_are_one_line_naming_file_key_and_type(arc_dir, change, message, capsys):
    old, new = change
    text = ARC_YAML.replace("ARC_JSONL", str(arc_dir / "arc.jsonl"))
    assert old.replace("ARC", "") in text
    text = text.replace(old.replace("ARC", str(arc_dir / "arc.jsonl")), new.replace("ARC", str(arc_dir / "arc.jsonl")))
    assert message in _import_error(arc_dir, text, capsys)


def test_data_files_may_be_a_list_of_paths(arc_dir):
    text = (arc_dir / "arc.yaml").read_text().replace(f"    validation: {arc_dir / 'arc.jsonl'}",
                                                      f"    validation: [{arc_dir / 'arc.jsonl'}]")
    (arc_dir / "list.yaml").write_text(text)
    (done,) = lm_eval.import_tasks([arc_dir / "list.yaml"], arc_dir / "out", "qa")
    task = TaskRegistry.load(include_builtin=False, paths=[done.path]).get("arc_local")
    assert task.source["files"] == {"validation": [str(arc_dir / "arc.jsonl")]} and task.example_rows == ARC_ROWS[:1]


@pytest.mark.parametrize("text, message", [
    ("a: " + "[" * 3000 + "]" * 3000 + "\n", "not valid YAML: nested too deeply"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
     "aliases expand to more than"),
    ("- just\n- a list\n", "'(top level)' must be a mapping of lm-eval fields"),
    ("include: [a.yaml, b.yaml]\n", "'include' must be the path of one YAML file, got a list"),
])
def test_hostile_yaml_is_refused_at_once(arc_dir, text, message, capsys):
    assert message in _import_error(arc_dir, text, capsys)


def test_non_utf8_yaml_and_long_include_chains_are_one_line(arc_dir, capsys):
    (arc_dir / "bad.yaml").write_bytes(b"task: caf\xe9\n")
    assert run_cli(cli.main, ["import-lm-eval", str(arc_dir / "bad.yaml"), "--cluster", "qa"]) == 2
    assert "not UTF-8 text (invalid continuation byte at byte 9)" in capsys.readouterr().err
    for i in range(100):  # each file includes the next (the red team's chain was thousands long)
        (arc_dir / f"c{i}.yaml").write_text(f"include: c{i + 1}.yaml\n")
    (arc_dir / "c100.yaml").write_text((arc_dir / "arc.yaml").read_text())
    with pytest.raises(T2TError, match=f"include chain longer than {lm_eval.yamlsafe.MAX_INCLUDE_DEPTH} files"):
        lm_eval.import_tasks([arc_dir / "c0.yaml"], arc_dir / "out", "qa")
    (done,) = lm_eval.import_tasks([arc_dir / "c95.yaml"], arc_dir / "out", "qa")  # a short chain
    assert done.name == "arc_local"


def test_name_clashes_are_refused_or_renamed(arc_dir, capsys):
    clash = (arc_dir / "arc.yaml").read_text().replace("task: arc_local", "task: compare_numbers")  # built in
    (arc_dir / "clash.yaml").write_text(clash)
    with pytest.raises(T2TError, match=r"task 'compare_numbers' already exists \(.*compare_numbers.jinja\).*"
                                       r"--rename-clashes to name it 'compare_numbers_2'"):
        lm_eval.import_tasks([arc_dir / "clash.yaml"], arc_dir / "out", "qa")
    assert run_cli(cli.main, ["import-lm-eval", str(arc_dir / "clash.yaml"), "--cluster", "qa", "--out",
                              str(arc_dir / "out"), "--rename-clashes"]) == 0
    assert "renamed from 'compare_numbers'" in capsys.readouterr().out
    assert (arc_dir / "out" / "compare_numbers_2.jinja").exists()
    # two inputs of one name in one import: the second is the clash
    (arc_dir / "again.yaml").write_text((arc_dir / "arc.yaml").read_text())
    with pytest.raises(T2TError, match=r"again.yaml: task 'arc_local' already exists \(.*arc.yaml\)"):
        lm_eval.import_tasks([arc_dir / "arc.yaml", arc_dir / "again.yaml"], arc_dir / "out2", "qa")
    names = [d.name for d in lm_eval.import_tasks([arc_dir / "arc.yaml", arc_dir / "again.yaml"], arc_dir / "out2",
                                                  "qa", rename_clashes=True)]
    assert names == ["arc_local", "arc_local_2"]


def test_a_hub_task_passes_check_with_an_example_row(arc_dir, capsys):
    hub = ARC_YAML.replace("dataset_path: json\ndataset_kwargs:\n  data_files:\n    validation: ARC_JSONL\n",
                           "dataset_path: allenai/ai2_arc\ndataset_name: ARC-Easy\n")
    (arc_dir / "hub.yaml").write_text(hub)
    out = str(arc_dir / "out")
    assert run_cli(cli.main, ["import-lm-eval", str(arc_dir / "hub.yaml"), "--cluster", "qa", "--out", out]) == 0
    assert "re-import with --example" in capsys.readouterr().out

    def check() -> list[str]:  # what 'python -m t2t.tasks check OUT' reports (without importing datasets)
        return cli.check_tasks(TaskRegistry.load(include_builtin=False, paths=[out]))[2]

    assert "no example rows to check the templates on" in check()[0]
    assert run_cli(cli.main, ["import-lm-eval", str(arc_dir / "hub.yaml"), "--cluster", "qa", "--out", out,
                              "--overwrite", "--example", json.dumps(ARC_ROWS[1])]) == 0
    assert check() == []
    assert run_cli(cli.main, ["import-lm-eval", str(arc_dir / "hub.yaml"), "--cluster", "qa", "--out", out,
                              "--overwrite", "--example", "[1]"]) == 2
    assert "--example '[1]': 'row' must be a JSON object of fields" in capsys.readouterr().err


def test_export_refuses_an_unknown_split_and_overwrite_removes_stale_files(registry, tmp_path):
    with pytest.raises(T2TError, match=r"--split dev: task 'compare_numbers' has no such split \(its splits: "):
        lm_eval.export_tasks([registry.get("compare_numbers")], tmp_path / "x", split="dev", limit=2)
    out = tmp_path / "x"
    lm_eval.export_tasks([registry.get("compare_numbers"), registry.get("arith_sum")], out, limit=2)
    first = set(p.name for p in out.rglob("*.yaml"))
    assert any(n.startswith("arith_sum__") for n in first)
    lm_eval.export_tasks([registry.get("compare_numbers")], out, limit=2, overwrite=True)
    kept = set(p.name for p in out.rglob("*")) - {"data"}
    assert not any(n.startswith("arith_sum__") for n in kept)  # lm-eval would still register them
    assert sorted(yaml.safe_load((out / "t2t.yaml").read_text())["task"]) == [
        f"t2t_{n.removesuffix('.yaml')}" for n in sorted(kept) if n.endswith(".yaml") and n != "t2t.yaml"]
    listed = json.loads((out / lm_eval.MANIFEST).read_text())["files"]
    assert sorted(listed) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                                    if p.is_file() and p.name != lm_eval.MANIFEST)
