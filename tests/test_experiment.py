"""python -m t2t.experiment: adapters per seed, one evaluation, a summary over seeds; its config composes
the finetune and evaluate ones."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from t2t import config as configs
from t2t.errors import T2TError, run_cli
from t2t.evaluation.config import EvaluateConfig
from t2t.experiment import (
    EVALUATE_SETS,
    FINETUNE_SETS,
    ExperimentConfig,
    build_experiment,
    build_parser,
    config_from_args,
    main,
)
from t2t.training.config import FinetuneConfig, TrainConfig


def test_two_seeds_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exp"
    args = ["--max-steps", "2", "--batch-size", "4", "--limit", "2", "--seeds", "0,1", "--bootstrap", "50",
            "--parts", "unseen", "--output-dir", str(out)]
    assert main(args) == 0
    for seed in (0, 1):
        for kind in ("multitask", "single-sentiment_movie"):
            assert (out / f"seed-{seed}" / kind / "adapter" / "adapter_model.safetensors").is_file()
    summary = json.loads((out / "summary.json").read_text())
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["models"][1:] == ["multitask-s0", "single-sentiment_movie-s0", "multitask-s1",
                                     "single-sentiment_movie-s1"]
    multi = summary["kinds"]["multitask"]
    assert multi["overall"] == [pytest.approx(results["overall"][f"multitask-s{s}"]["mean"], abs=1e-3) for s in (0, 1)]
    assert multi["mean"] == pytest.approx(sum(multi["overall"]) / 2, abs=1e-3) and multi["sd"] is not None
    interval = multi["delta_intervals"][0]
    assert interval["low"] <= interval["delta"] <= interval["high"]
    assert interval == results["paired_bootstrap"]["models"]["multitask-s0"]["overall"]
    assert "| multitask |" in (out / "summary.md").read_text()
    # The resolved configs beside the outputs: the experiment's, and the evaluation's with its adapters.
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["experiment"] == {"single_task": "sentiment_movie", "seeds": [0, 1], "output_dir": str(out),
                                   "overwrite": False, "parts": ["unseen"], "curve_points": 6, "curve_rows": 32,
                                   "specialists": "task", "curve_heldout": []}
    assert saved["finetune"]["train"]["max_steps"] == 2 and saved["finetune"]["train"]["save_steps"] == 0
    assert build_experiment(saved) == config_from_args(build_parser().parse_args(args))  # reproduces
    evaluated = yaml.safe_load((out / "eval" / "config.yaml").read_text())
    assert evaluated["model"]["adapter"] == [f"multitask-s0={out}/seed-0/multitask/adapter",
                                             f"single-sentiment_movie-s0={out}/seed-0/single-sentiment_movie/adapter",
                                             f"multitask-s1={out}/seed-1/multitask/adapter",
                                             f"single-sentiment_movie-s1={out}/seed-1/single-sentiment_movie/adapter"]
    assert evaluated["tasks"]["limit"] == 2 and evaluated["tasks"]["mixture"] == "offline"
    assert evaluated["scoring"]["bootstrap"] == 50 and results["config"]["resolved"] == evaluated
    trained = json.loads((out / "seed-1" / "multitask" / "config.json").read_text())
    assert trained["train"]["seed"] == 1 and trained["train"]["batch_size"] == 4
    # A second run does not replace the results without --overwrite, and says so before training.
    with pytest.raises(T2TError, match="--overwrite"):
        main(args)
    with pytest.raises(T2TError, match="option 'seeds': expected whole numbers separated by commas"):
        main(["--seeds", "x", "--output-dir", str(tmp_path / "other")])
    assert not (tmp_path / "other").exists()


def _differences(a: object, b: object) -> dict[str, tuple]:
    """Flat option name -> (a's value, b's value), for the fields where two command configs differ."""
    flat = {}
    for section, part in configs.to_dict(a).items():
        for name, value in part.items():
            other = configs.to_dict(b)[section][name]
            if value != other:
                flat[name] = (value, other)
    return flat


def test_config_composes_the_finetune_and_evaluate_defaults() -> None:
    cfg = ExperimentConfig()
    # the commands' own defaults, except what the experiment sets on purpose
    assert _differences(cfg.finetune, FinetuneConfig()) == {"save_steps": (0, TrainConfig().save_steps)}
    assert _differences(cfg.evaluate, EvaluateConfig()) == {"limit": (100, None)}
    assert set(FINETUNE_SETS) == {"save_steps"} and set(EVALUATE_SETS) == {"limit"}
    assert config_from_args(build_parser().parse_args([])) == cfg
    run = cfg.finetune_run(3, "multitask")
    assert _differences(run, FinetuneConfig()) == {
        "save_steps": (0, 100), "seed": (3, 0), "output_dir": ("runs/experiment/seed-3/multitask", "runs/offline-demo")}


def test_a_finetune_default_changed_is_the_experiments_default(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    defaults = list(TrainConfig.__init__.__defaults__)
    defaults[names.index("max_steps")] = 123
    monkeypatch.setattr(TrainConfig.__init__, "__defaults__", tuple(defaults))
    assert FinetuneConfig().train.max_steps == 123
    assert ExperimentConfig().finetune.train.max_steps == 123
    assert "optimiser steps (default: 123)" in " ".join(build_parser().format_help().split())


def test_yaml_sections_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("seeds: 2,1,2\nmax_steps: 7\nfinetune:\n  lora_r: 4\n  train: {lr: 0.01}\n"
                    "  model: {precision: fp32}\nevaluate:\n  num_shots: 1\n  scoring: {bootstrap: 10}\n")
    cfg = config_from_args(build_parser().parse_args(["--config", str(path), "--max-steps", "9", "--model", "m",
                                                      "--limit", "5", "--overwrite"]))
    assert cfg.experiment.seeds == (2, 1) and cfg.experiment.overwrite is True
    f, e = cfg.finetune, cfg.evaluate
    assert f.train.max_steps == 9 and f.train.lr == 0.01 and f.tuning.lora_r == 4
    assert f.model.model == "m" and f.model.precision == "fp32"  # --model kept the model: section's precision
    assert f.train.save_steps == 0 and f.train.batch_size == TrainConfig().batch_size
    assert e.scoring.num_shots == 1 and e.scoring.bootstrap == 10 and e.tasks.limit == 5
    assert build_experiment(json.loads(json.dumps(configs.to_dict(cfg)))) == cfg  # the saved form round-trips
    evaluation = cfg.evaluate_run({"multitask": "runs/x/adapter"})
    assert evaluation.model.model == "m" and evaluation.model.adapter == ("multitask=runs/x/adapter",)
    assert evaluation.tasks.mixture == "offline" and evaluation.output.output_dir == "runs/experiment/eval"
    assert evaluation.output.overwrite is True and evaluation.scoring.num_shots == 1


@pytest.mark.parametrize(("values", "expect"), [
    ({"finetune": {"lora_rr": 4}}, "(finetune): unknown option 'lora_rr' (did you mean 'lora_r'?)"),
    ({"evaluate": {"num_shot": 1}}, "(evaluate): unknown option 'num_shot' (did you mean 'num_shots'?)"),
    ({"single_tsk": "x"}, "unknown option 'single_tsk' (did you mean 'single_task'?)"),
    ({"experiment": {"seed": [1]}}, "unknown option 'experiment.seed' (did you mean 'seeds'?)"),
    ({"finetune": {"train": {"seed": 3}}}, "finetune option 'seed' is set by the experiment for each run (--seeds)"),
    ({"evaluate": {"tasks": ["a"]}}, "evaluate option 'tasks' is set by the experiment"),
    ({"evaluate": {"batch_size": -1}}, "--batch-size must be at least 1"),
    ({"finetune": {"lr": 0}}, "lr must be positive"),
    ({"finetune": {"method": "full"}}, "the experiment compares LoRA adapters"),
    ({"seeds": ""}, "--seeds: give at least one seed"),
    ({"finetune": 3}, "'finetune' must be a mapping of options"),
    ({"parts": "unseen,overfit"},
     "--parts unseen,overfit: use one or more of unseen, overfitting, one_vs_many, clusters"),
    ({"specialists": "tasks"}, "--specialists tasks: use task or cluster"),
    ({"curve_points": 400}, "--curve-points 400: must be between 1 and --max-steps (300)"),
    ({"curve_rows": 0}, "--curve-rows 0: must be at least 1"),
])
def test_bad_experiment_options_name_the_option(values: dict, expect: str) -> None:
    with pytest.raises(T2TError) as info:
        build_experiment(values)
    assert expect in str(info.value)


def test_cli_unknown_flag_exits_2_with_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = run_cli(main, ["--max-step", "3", "--output-dir", str(tmp_path / "never"), "--single_task", "x"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "unknown option '--single_task' (did you mean '--single-task'?)" in err
    assert not (tmp_path / "never").exists()


SMALL = """\
description: three training tasks in two clusters for the experiment tests
include: {tasks: [sentiment_movie, sentiment_product, topic_sentence]}
heldout: {tasks: [sentiment_restaurant]}
rate: {strategy: proportional, cap: 3000}
"""


def _small(tmp_path: Path, *extra: str) -> tuple[Path, list[str]]:
    (tmp_path / "mixtures").mkdir(exist_ok=True)
    (tmp_path / "mixtures" / "small.yaml").write_text(SMALL)
    (tmp_path / "exp.yaml").write_text(f"finetune:\n  mixture_dir: [{tmp_path / 'mixtures'}]\n")
    out = tmp_path / "exp"
    return out, ["--config", str(tmp_path / "exp.yaml"), "--mixture", "small", "--max-steps", "4",
                 "--batch-size", "4", "--limit", "4", "--bootstrap", "20", "--output-dir", str(out), *extra]


def test_overfitting_and_one_vs_many_parts(tmp_path: Path) -> None:
    out, args = _small(tmp_path, "--parts", "overfitting,one_vs_many", "--curve-points", "2", "--curve-rows", "3")
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "kinds" not in summary and not (out / "eval").exists()  # part 1 was not asked for
    assert set(summary["runs"]) == {"multitask", "single-sentiment_movie", "single-sentiment_product",
                                    "single-topic_sentence"}
    o = summary["overfitting"]
    assert o["task"] == "sentiment_movie" and o["steps"] == [2, 4]
    for lab in ("multitask", "single-sentiment_movie"):
        folder = out / "seed-0" / lab
        assert sorted(p.name for p in (folder / "snapshots").iterdir()) == ["step-000002", "step-000004"]
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        logged = {r["step"]: r["val_loss/sentiment_movie"] for r in records if "val_loss/sentiment_movie" in r}
        assert [p["val_loss"] for p in o["curves"][lab]["points"]] == pytest.approx([logged[2], logged[4]], abs=1e-4)
    # every snapshot was scored: the evaluation holds the base and 2 runs x 2 steps
    scored = json.loads((out / "overfitting" / "eval" / "results.json").read_text())
    assert scored["models"] == ["t2t-tiny", "multitask@2", "multitask@4", "single-sentiment_movie@2",
                                "single-sentiment_movie@4"]
    v = summary["one_vs_many"]
    rows = {r["task"]: r for r in v["tasks"]}
    assert list(rows) == ["sentiment_movie", "sentiment_product", "topic_sentence"]  # by cluster, then name
    assert {r["specialist"] for r in rows.values()} == {f"single-{t}" for t in rows}
    # the last snapshot is the adapter: scored on the same rows, the two parts agree
    assert rows["sentiment_movie"]["multitask_score"] == pytest.approx(o["curves"]["multitask"]["points"][-1]["score"])
    assert rows["sentiment_movie"]["specialist_score"] == pytest.approx(
        o["curves"]["single-sentiment_movie"]["points"][-1]["score"])
    cost = v["cost"]
    assert cost["specialists"]["adapters"] == 3 and cost["multitask"]["adapters"] == 1
    assert cost["specialists"]["trainable_params"] == 3 * cost["multitask"]["trainable_params"] > 0
    assert cost["specialists"]["weights_bytes"] == 3 * cost["multitask"]["weights_bytes"]
    assert cost["specialists"]["train_seconds"] > 0
    text = (out / "summary.md").read_text()
    assert "## Overfitting: sentiment_movie over steps" in text and "## One model vs many" in text


def test_chat_template_trains_and_scores_every_model_through_it(tmp_path: Path) -> None:
    """--chat-template reaches the training runs and, through them, the evaluation: the base is scored with
    the same prompt format as the adapters (one evaluation, one format)."""
    from tests.causal_tiny import save_model_folder

    model = save_model_folder(tmp_path / "llama", chat=True)
    out, args = _small(tmp_path, "--parts", "unseen", "--model", str(model), "--chat-template", "--max-steps", "2",
                       "--limit", "2")
    assert main(args) == 0
    for kind in ("multitask", "single-sentiment_movie"):
        trained = json.loads((out / "seed-0" / kind / "config.json").read_text())
        assert trained["data"]["chat_template"] is True and trained["model_family"] == "causal"
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["config"]["resolved"]["scoring"]["chat_template"] is True
    assert "chat template on" in (out / "eval" / "report.md").read_text()


def test_the_loss_curve_rows_are_the_same_in_both_runs(tmp_path: Path) -> None:
    """The overfitting part compares the two runs' val_loss/TASK: they must be over the same examples."""
    from t2t.experiment import single_task_mixture
    from t2t.mixtures.resolve import load_mixture
    from t2t.training.recipe import validation_examples

    multi = load_mixture("offline")
    name = single_task_mixture(tmp_path, multi, "sentiment_movie", [t.name for t in multi.heldout])
    single = load_mixture(name, mixture_dirs=[tmp_path])
    n_val = sum(1 for e in multi.entries if "validation" in e.task.splits)
    a = [e for e in validation_examples(multi, 5 * n_val) if e.task == "sentiment_movie"]
    b = validation_examples(single, 5)
    assert len(a) == 5 and a == b
    assert [t.name for t in single.heldout] == [t.name for t in multi.heldout]


def test_cluster_specialists(tmp_path: Path) -> None:
    out, args = _small(tmp_path, "--parts", "one_vs_many", "--specialists", "cluster")
    assert main(args) == 0
    v = json.loads((out / "summary.json").read_text())["one_vs_many"]
    assert v["by"] == "cluster"
    assert {r["task"]: r["specialist"] for r in v["tasks"]} == {
        "sentiment_movie": "cluster-sentiment", "sentiment_product": "cluster-sentiment",
        "topic_sentence": "cluster-topic"}
    assert v["cost"]["specialists"]["adapters"] == 2
    spec = yaml.safe_load((out / "mixtures" / "cluster_sentiment.yaml").read_text())
    assert spec["include"] == {"tasks": ["sentiment_movie", "sentiment_product"]}
    assert spec["heldout"] == {"tasks": ["sentiment_restaurant"]} and spec["rate"]["cap"] == 3000


CURVE = """\
description: three clusters for the clusters-curve test
include: {tasks: [sentiment_movie, sentiment_product, topic_sentence, compare_numbers, compare_ages]}
heldout: {tasks: [sentiment_restaurant]}
rate: {strategy: proportional, cap: 3000}
"""


def test_clusters_curve_adds_clusters_by_size_then_name(tmp_path: Path) -> None:
    (tmp_path / "mixtures").mkdir()
    (tmp_path / "mixtures" / "curve.yaml").write_text(CURVE)
    (tmp_path / "exp.yaml").write_text(f"finetune:\n  mixture_dir: [{tmp_path / 'mixtures'}]\n")
    out = tmp_path / "exp"
    args = ["--config", str(tmp_path / "exp.yaml"), "--mixture", "curve", "--max-steps", "2", "--batch-size", "4",
            "--limit", "4", "--bootstrap", "20", "--output-dir", str(out), "--parts", "clusters",
            "--curve-heldout", "sentiment"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    # only the curve's runs are trained: the clusters part needs neither (a) nor (b)
    assert set(summary["runs"]) == {"clusters-1", "clusters-2"}
    # comparison has 2 tasks, topic 1: the bigger cluster first; sentiment_restaurant, held out by the
    # mixture, is a task of the held-out cluster like the two trained ones
    one = yaml.safe_load((out / "mixtures" / "clusters_1.yaml").read_text())
    two = yaml.safe_load((out / "mixtures" / "clusters_2.yaml").read_text())
    assert one["include"] == {"tasks": ["compare_ages", "compare_numbers"]}
    assert two["include"] == {"tasks": ["compare_ages", "compare_numbers", "topic_sentence"]}
    held = ["sentiment_movie", "sentiment_product", "sentiment_restaurant"]
    assert one["heldout"] == two["heldout"] == {"tasks": held}
    c = summary["clusters"]
    assert c["tasks"] == held and c["heldout_clusters"] == ["sentiment"]
    assert [(p["clusters"], p["added"], p["training_tasks"]) for p in c["points"]] == [
        (0, None, 0), (1, "comparison", 2), (2, "topic", 3)]
    scored = json.loads((out / "clusters" / "eval" / "results.json").read_text())
    assert scored["models"] == ["t2t-tiny", "clusters-1", "clusters-2"]
    # each point is the evaluation's overall score of that model
    assert [p["overall"] for p in c["points"]] == pytest.approx(
        [scored["overall"][m]["mean"] for m in scored["models"]], abs=1e-4)
    assert "## Held-out score as training clusters are added" in (out / "summary.md").read_text()


@pytest.mark.parametrize("extra, expect", [
    (["--parts", "clusters"], "--parts clusters: name the clusters to hold out whole with --curve-heldout"),
    (["--parts", "clusters", "--curve-heldout", "toppic"], "--curve-heldout toppic: no such cluster"),
    (["--parts", "clusters", "--curve-heldout", "sentiment,topic,comparison"], "every cluster is held out"),
])
def test_clusters_curve_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                    expect: str) -> None:
    (tmp_path / "mixtures").mkdir()
    (tmp_path / "mixtures" / "curve.yaml").write_text(CURVE)
    (tmp_path / "exp.yaml").write_text(f"finetune:\n  mixture_dir: [{tmp_path / 'mixtures'}]\n")
    from t2t.errors import run_cli
    code = run_cli(main, ["--config", str(tmp_path / "exp.yaml"), "--mixture", "curve", "--output-dir",
                          str(tmp_path / "exp"), *extra])
    assert code == 2 and expect in capsys.readouterr().err
    assert not (tmp_path / "exp" / "seed-0").exists()
