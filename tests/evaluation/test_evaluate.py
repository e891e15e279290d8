"""python -m t2t.evaluate on a tiny random T5, three small file-backed tasks and LoRA adapters made here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t2t.errors import T2TError, run_cli
from t2t.evaluate import build_parser, main
from t2t.evaluation.adapter_runs import check_not_trained, read_adapter
from t2t.evaluation.config import EvaluateConfig, build_config, config_from_args, parse_bool_flags
from t2t.evaluation.prompts import Exemplars, build_prompts
from t2t.evaluation.runner import evaluate
from t2t.tasks.registry import TaskRegistry

WORDS = "cat dog bird fish tree house river stone cloud apple lamp chair".split()
COLORS = ["red", "green", "blue"]

YESNO = """---
cluster: nli_t
source: {files: {train: yesno_train.jsonl, validation: yesno_val.jsonl}}
choices: ["yes", "no"]
answer: "{{ choices[label] }}"
templates: {make_claim: {inverted: true}}
---
{% block is_it %}
{{ premise }} Is it true that {{ claim }}? {{ options }}
|||
{{ answer }}
{% endblock %}
{% block does_follow %}
Premise: {{ premise }}
Does "{{ claim }}" follow? Answer yes or no.
|||
{{ answer }}
{% endblock %}
{% block make_claim %}
{{ premise }} Write a claim that is {{ answer }}.
|||
{{ claim }}
{% endblock %}
"""

COLOR = """---
cluster: qa_t
source: {files: {train: color_train.jsonl, validation: color_val.jsonl}}
choices: ["red", "green", "blue"]
answer: "{{ choices[label] }}"
---
{% block which_color %}
What color is the {{ obj }}? {{ options }}
|||
{{ answer }}
{% endblock %}
{% block color_of %}
The {{ obj }} is painted. Its color:
|||
{{ answer }}
{% endblock %}
"""

ECHO = """---
cluster: gen_t
source: {files: {train: echo_train.jsonl, test: echo_test.jsonl}}
answer: "{{ word }}"
metrics: [exact_match, rouge_l]
---
{% block repeat %}
Repeat the word: {{ word }}
|||
{{ answer }}
{% endblock %}
{% block say %}
Say "{{ word }}" back.
|||
{{ answer }}
{% endblock %}
"""

MIXTURE = "include: {clusters: [nli_t, qa_t, gen_t]}\nheldout: {clusters: [qa_t]}\n"


def _rows(kind: str, n: int, offset: int) -> list[dict]:
    out = []
    for i in range(offset, offset + n):
        a, b = WORDS[i % len(WORDS)], WORDS[(3 * i + 1) % len(WORDS)]
        if kind == "yesno":
            premise, claim = f"the {a} is near the {b}.", f"the {a} is near a {b}"
            out.append({"premise": premise, "claim": claim, "label": i % 2})
        elif kind == "color":
            out.append({"obj": f"{a} {b}", "label": i % 3})
        else:
            out.append({"word": f"{a}{b}"})
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices on shared cores: one torch thread is many times faster than several contending."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Task and mixture folders, a tiny T5 folder, and two adapters: random LoRA (in a run with a
    manifest) and zero-initialised LoRA (identical to the base)."""
    import peft
    from transformers import AutoModelForSeq2SeqLM

    from t2t.mixtures.resolve import load_mixture
    from t2t.modeling.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("evaluate")
    tasks, mixtures = root / "tasks", root / "mixtures"
    tasks.mkdir()
    mixtures.mkdir()
    for name, text in (("yesno", YESNO), ("color", COLOR), ("echo", ECHO)):
        (tasks / f"{name}.jinja").write_text(text)
    for kind, split, n, offset in (("yesno", "train", 12, 0), ("yesno", "val", 8, 40),
                                   ("color", "train", 12, 0), ("color", "val", 6, 40),
                                   ("echo", "train", 10, 0), ("echo", "test", 5, 40)):
        lines = [json.dumps(r) for r in _rows(kind, n, offset)]
        (tasks / f"{kind}_{split}.jsonl").write_text("\n".join(lines) + "\n")
    (mixtures / "tmix.yaml").write_text(MIXTURE)

    registry = TaskRegistry.load([tasks])
    corpus = []
    for task in (registry.get("yesno"), registry.get("color"), registry.get("echo")):
        for split in task.splits:
            from t2t.tasks.sources import load_rows

            for i, row in enumerate(load_rows(task, split).to_list()):
                for template in task.template_names:
                    ex = task.render(row, i, template)
                    corpus += [ex.input, ex.target] if ex else []
    model_dir = build_tiny_model(corpus + WORDS + COLORS, root / "tiny", vocab_size=300, d_model=32, d_ff=64,
                                 d_kv=8, num_heads=2, num_layers=2, num_decoder_layers=2)

    def adapter(folder: Path, random_init: bool) -> Path:
        base = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
        config = peft.LoraConfig(task_type=peft.TaskType.SEQ_2_SEQ_LM, r=4, lora_alpha=8,
                                 target_modules=["q", "v", "wo"], init_lora_weights=not random_init)
        peft.get_peft_model(base, config).save_pretrained(folder)
        return folder

    run = root / "run"
    lora = adapter(run / "adapter", random_init=True)
    manifest = load_mixture("tmix", task_dirs=[tasks], mixture_dirs=[mixtures]).manifest(seed=0)
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "config.json").write_text(json.dumps({"model": {"model": str(model_dir)},
                                                 "data": {"mixture": "tmix", "task_dir": [str(tasks)]}}))
    zero = adapter(root / "zero", random_init=False)
    return {"root": root, "tasks": tasks, "mixtures": mixtures, "registry": registry, "model": str(model_dir),
            "lora": lora, "zero": zero, "run": run}


def _samples(result, model):
    return {(s["task"], s["template"], s["index"]): s for s in result.samples if s["model"] == model}


def _config(env, **values) -> EvaluateConfig:
    return build_config({"model": env["model"], "device": "cpu", "progress": False, **values})


def test_batch_size_does_not_change_scores(env):
    reg = env["registry"]
    kwargs = {"limit": 8, "log_samples": True}
    tasks = [reg.get("yesno"), reg.get("echo")]
    one = evaluate(_config(env, batch_size=1, **kwargs), tasks, {"lora": env["lora"]})
    many = evaluate(_config(env, batch_size=32, **kwargs), tasks, {"lora": env["lora"]})
    assert one.settings["batch_size"] == 1 and many.settings["batch_size"] == 32
    assert len(one.samples) == len(many.samples) == 2 * (8 * 2 + 5 * 2)
    for model in ("lora", env["model"]):
        a, b = _samples(one, model), _samples(many, model)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key]["prediction"] == b[key]["prediction"]
            for x, y in zip(a[key].get("logprobs", []), b[key].get("logprobs", []), strict=True):
                assert abs(x - y) < 1e-4
    for x, y in zip(one.report.scores, many.report.scores, strict=True):
        assert (x.model, x.task, x.template, x.metric) == (y.model, y.task, y.template, y.metric)
        assert abs(x.value - y.value) < 1e-9


def test_adapters_side_by_side_with_deltas(env):
    reg = env["registry"]
    tasks = [reg.get("yesno"), reg.get("color"), reg.get("echo")]
    # LoRA first, then the zero adapter: the zero one must score exactly as the base, which shows that
    # the base is scored unadapted and that switching adapters replaces the previous one.
    result = evaluate(_config(env, limit=6, log_samples=True), tasks, {"lora": env["lora"], "zero": env["zero"]})
    report = result.report
    base = env["model"]
    assert report.models == [base, "lora", "zero"]
    b, lo, z = _samples(result, base), _samples(result, "lora"), _samples(result, "zero")
    diffs = []
    for key in b:
        if "logprobs" in b[key]:
            assert b[key]["logprobs"] == pytest.approx(z[key]["logprobs"], abs=1e-5)
            diffs += [abs(x - y) for x, y in zip(b[key]["logprobs"], lo[key]["logprobs"], strict=True)]
        else:
            assert b[key]["prediction"] == z[key]["prediction"]
    assert max(diffs) > 1e-3, "a LoRA adapter with non-zero weights must change the scores"
    # acc and acc_norm for choice tasks, the task file's metrics for generation; only scored templates.
    assert {(t, m) for t, m in report.task_keys()} == {
        ("yesno", "acc"), ("yesno", "acc_norm"), ("color", "acc"), ("color", "acc_norm"),
        ("echo", "exact_match"), ("echo", "rouge_l")}
    assert {s.template for s in report.scores if s.task == "yesno"} == {"is_it", "does_follow"}
    assert report.delta_task("lora", "yesno") == pytest.approx(
        report.task("lora", "yesno").median - report.task(base, "yesno").median)
    markdown = result.markdown()
    assert "Δ lora" in markdown and "Δ zero" in markdown
    assert result.tasks["echo"]["split"] == "test"  # no validation split: falls back to test
    assert result.tasks["echo"]["max_new_tokens"] >= 1
    data = result.to_dict()
    assert data["config"]["models"]["lora"] == str(env["lora"]) and "torch" in data["versions"]
    # Paired bootstrap: point deltas are the report's; the zero adapter is the base on every resample.
    boot = data["paired_bootstrap"]
    assert boot["base"] == base and boot["resamples"] == 1000
    assert boot["models"]["lora"]["overall"]["delta"] == pytest.approx(report.delta_overall("lora"), abs=1e-3)
    for task, got in boot["models"]["zero"]["tasks"].items():
        assert (got["delta"], got["low"], got["high"]) == (0.0, 0.0, 0.0), task
    assert "## Paired bootstrap: model - " in markdown


def test_k_shot_prompts_never_hold_the_example_itself(env):
    task = env["registry"].get("yesno")
    rows = _rows("yesno", 5, 0)
    rows.append(dict(rows[0]))  # a duplicate of row 0: same rendered input, so never row 0's exemplar
    shots_seen = set()
    for seed in range(5):
        exemplars = Exemplars(task, seed, rows=rows)
        prompts, skipped = build_prompts(task, rows, "train", "is_it", num_shots=3, seed=seed,
                                         exemplars=exemplars)
        assert skipped == 0 and len(prompts) == len(rows)
        for i, p in enumerate(prompts):
            own = task.render(rows[i], i, "is_it", seed=seed)
            assert p.example.index == i and i not in p.shots and len(p.shots) == 3
            blocks = p.example.input.split("\n\n\n")
            assert blocks[-1] == own.input and len(blocks) == 4
            assert f"{own.input}\n\n{own.target}" not in blocks[:-1]
            assert all(rows[r] != rows[i] for r in p.shots)
            shots_seen.add(p.shots)
    assert len(shots_seen) > 1  # seeded: the draw changes with the seed
    # Prompts that do not fit lose their farthest exemplars first.
    short, _ = build_prompts(task, rows, "train", "is_it", num_shots=3,
                             exemplars=Exemplars(task, 0, rows=rows),
                             fits=lambda text: text.count("\n\n\n") <= 1)
    assert all(len(p.shots) == 1 for p in short)


def _cli(args, capsys):
    rc = run_cli(main, [str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_mixture_heldout_never_reports_a_training_task(env, capsys):
    from t2t.mixtures.resolve import heldout_split

    dirs = ["--task-dir", env["tasks"], "--mixture-dir", env["mixtures"]]
    split = heldout_split("tmix", heldout=["gen_t"], task_dirs=[env["tasks"]], mixture_dirs=[env["mixtures"]])
    assert not {t.name for t in split.train} & {t.name for t in split.heldout}
    out_dir = env["root"] / "eval-mixture"
    rc, out, err = _cli(["--model", env["model"], "--mixture", "tmix", "--heldout", "gen_t", *dirs,
                         "--limit", 2, "--output-dir", out_dir, "--no-progress"], capsys)
    assert rc == 0, err
    data = json.loads((out_dir / "results.json").read_text())
    reported = set(data["cluster_of"])
    assert reported == {"color", "echo"} == {t.name for t in split.heldout}
    assert not reported & set(data["config"]["selection"]["train_tasks"])
    assert "| qa_t | color | acc |" in out


def test_manifest_guard_refuses_trained_tasks(env, capsys):
    adapter = env["run"] / "adapter"
    # The run trained on yesno and echo; color is its held-out task.
    rc, _, err = _cli(["--adapter", adapter, "--tasks", "yesno"], capsys)
    assert rc == 2 and err.count("\n") == 1
    assert "trained on yesno" in err and "--allow-train-tasks" in err
    rc, _, err = _cli(["--adapter", adapter, "--mixture", "tmix", "--heldout", "gen_t",
                       "--mixture-dir", env["mixtures"]], capsys)
    assert rc == 2 and "echo" in err
    run = read_adapter(str(adapter))
    reg = env["registry"]
    assert check_not_trained([reg.get("color")], [run]) == {}
    with pytest.raises(T2TError, match="trained on echo"):
        check_not_trained([reg.get("echo")], [run])
    out_dir = env["root"] / "eval-allowed"
    rc, out, err = _cli(["--adapter", adapter, "--tasks", "yesno", "--allow-train-tasks", "--limit", 2,
                         "--output-dir", out_dir, "--no-progress"], capsys)
    assert rc == 0, err
    assert "note: run was trained on yesno: not held-out" in (out_dir / "report.md").read_text()


def test_cli_defaults_from_the_run_and_outputs(env, capsys):
    adapter = env["run"] / "adapter"
    # No --model, no tasks: the base model, task folder and held-out tasks come from the run.
    rc, out, err = _cli(["--adapter", adapter, "--limit", 3, "--log-samples", "--no-progress"], capsys)
    assert rc == 0, err
    out_dir = env["run"] / "eval"
    for name in ("report.md", "results.json", "report.png", "config.yaml"):
        assert (out_dir / name).stat().st_size > 0
    assert not [p.name for p in out_dir.iterdir() if p.name.startswith(".")]  # no staged file left behind
    assert (out_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out_dir / "results.json").read_text())
    assert data["models"] == [env["model"], "run"]
    assert set(data["cluster_of"]) == {"color"}
    assert data["config"]["selection"]["heldout_of"].endswith("manifest.json")
    assert {"torch", "transformers", "peft"} <= set(data["versions"])
    assert len(data["samples"]) == 2 * 2 * 3  # models x templates x examples
    assert "| qa_t | color | acc |" in out and "Δ run" in out
    # config.yaml beside the report: the options with what came from the run filled in, also in results.json.
    import yaml

    saved = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert saved == data["config"]["resolved"]
    assert saved["model"] == {"model": env["model"], "attn_implementation": "eager", "precision": "fp32",
                              "revision": None, "device": "auto", "adapter": [str(adapter)],
                              "allow_revision_mismatch": False, "allow_other_base": False}
    assert saved["tasks"]["task_dir"] == [str(env["tasks"])] and saved["tasks"]["limit"] == 3
    assert saved["scoring"]["log_samples"] is True and saved["output"]["progress"] is False
    assert saved["output"]["output_dir"] == str(out_dir)
    # ... and --config it evaluates the same again.
    again = env["root"] / "eval-again"
    rc, out_again, err = _cli(["--config", out_dir / "config.yaml", "--output-dir", again], capsys)
    assert rc == 0, err
    redo = json.loads((again / "results.json").read_text())
    assert redo["overall"] == data["overall"] and redo["samples"] == data["samples"]
    assert (again / "report.md").read_text() == (out_dir / "report.md").read_text()
    # Earlier results are never replaced silently.
    rc, _, err = _cli(["--adapter", adapter, "--limit", 3, "--no-progress"], capsys)
    assert rc == 2 and "--overwrite" in err and err.count("\n") == 1
    rc, _, err = _cli(["--adapter", adapter, "--limit", 3, "--no-progress", "--overwrite"], capsys)
    assert rc == 0, err


@pytest.mark.parametrize("args, message", [
    (["--tasks", "yesnoo"], "unknown task 'yesnoo'; did you mean yesno"),
    (["--adapter", "no/such/adapter", "--tasks", "yesno"], "--adapter no/such/adapter: no such folder"),
    (["--tasks", "yesno", "--mixture", "tmix"], "not both"),
    (["--clusters", "no_such_cluster"], "unknown cluster 'no_such_cluster'"),
])
def test_cli_bad_options_exit_2_with_one_line(env, capsys, args, message):
    rc, out, err = _cli([*args, "--task-dir", env["tasks"], "--output-dir", env["root"] / "never"], capsys)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (env["root"] / "never").exists()


def test_no_arguments_evaluate_the_demo_run(env, capsys, monkeypatch):
    import shutil

    import t2t.evaluate

    demo = env["root"] / "demo"
    shutil.copytree(env["run"], demo, ignore=shutil.ignore_patterns("eval*"))
    monkeypatch.setattr(t2t.evaluate, "DEMO_ADAPTER", demo / "adapter")
    rc, out, err = _cli([], capsys)
    assert rc == 0, err
    assert f"no options: evaluating --model t2t-tiny --adapter {demo / 'adapter'}" in err
    data = json.loads((demo / "eval" / "results.json").read_text())
    assert data["models"] == [env["model"], "demo"] and set(data["cluster_of"]) == {"color"}


def _parse(argv: list[str]) -> EvaluateConfig:
    return config_from_args(build_parser().parse_args(parse_bool_flags(argv)))


def test_options_defaults_then_yaml_then_flags(tmp_path):
    assert _parse([]) == EvaluateConfig()
    assert EvaluateConfig().scoring.bootstrap == 1000 and EvaluateConfig().tasks.split == "validation"
    path = tmp_path / "eval.yaml"
    path.write_text("limit: 5\nnum_shots: 2\ntasks: a,b\nscoring: {seed: 3, batch_size: 4}\n"
                    "model: {adapter: [x=runs/x/adapter]}\nprogress: false\n")
    from_yaml = _parse(["--config", str(path)])
    assert from_yaml.tasks.limit == 5 and from_yaml.scoring.num_shots == 2 and from_yaml.scoring.seed == 3
    assert from_yaml.tasks.tasks == ("a", "b") and from_yaml.model.adapter == ("x=runs/x/adapter",)
    assert from_yaml.output.progress is False and from_yaml.scoring.max_input_len == 1024  # default kept
    cfg = _parse(["--config", str(path), "--limit", "7", "--tasks", "c", "--tasks", "d,e", "--scoring.seed", "9",
                  "--adapter", "y=runs/y/adapter", "--adapter", "runs/z/adapter", "--log-samples", "--overwrite",
                  "--progress", "--num-shots", "0", "--allow-train-tasks", "false"])
    assert cfg.tasks.limit == 7 and cfg.tasks.tasks == ("c", "d", "e") and cfg.scoring.seed == 9
    assert cfg.model.adapter == ("y=runs/y/adapter", "runs/z/adapter")
    assert cfg.scoring.log_samples is True and cfg.output.overwrite is True and cfg.output.progress is True
    assert cfg.scoring.num_shots == 0 and cfg.tasks.allow_train_tasks is False
    assert cfg.scoring.batch_size == 4  # from the YAML, no flag
    assert _parse(["--no-progress"]).output.progress is False
    assert build_config(cfg.to_dict()) == cfg  # the saved config gives the same config back
    assert build_config({"batch_size": 0}).scoring.batch_size == 0  # 0 = by device, like the default


@pytest.mark.parametrize("args, message", [
    (["--batchsize", "3"], "unknown option '--batchsize' (did you mean '--batch-size'?)"),
    (["--max_new_tokens", "3"], "(did you mean '--max-new-tokens'?)"),
    (["--config", "{yaml}"], "unknown option 'max_new_token' (did you mean 'max_new_tokens'?)"),
    (["--batch-size", "-1"], "--batch-size must be at least 1, got -1"),
    (["--limit", "0"], "--limit must be at least 1, got 0"),
    (["--num-shots", "-2"], "--num-shots must be at least 0, got -2"),
    (["--bootstrap", "-1"], "--bootstrap must be at least 0"),
    (["--num-beams", "0"], "--num-beams must be at least 1"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["--max-input-len", "1"], "--max-input-len must be at least 2"),
    (["--split", "dev"], "--split dev: use validation, test or train"),
    (["--precision", "fp16"], "--precision fp16: use fp32 or bf16"),
    (["--limit", "many"], "option 'limit': expected int, got 'many'"),
    (["--log-samples", "maybe"], "option 'log_samples': expected bool"),
])
def test_bad_option_values_exit_2_with_one_line_naming_the_flag(tmp_path, capsys, args, message):
    (tmp_path / "bad.yaml").write_text("max_new_token: 3\n")
    args = [a.format(yaml=tmp_path / "bad.yaml") for a in args]
    rc, out, err = _cli([*args, "--tasks", "yesno", "--output-dir", tmp_path / "never"], capsys)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "never").exists()
