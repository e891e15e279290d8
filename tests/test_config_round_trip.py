"""One config system for every command: the config.yaml a run saves is what --config accepts back, unchanged.

For each command: finetune (a run's config.yaml trains the same adapter again), evaluate, experiment,
mixture and tasks (--save-config, as they print and write no folder); then the pieces they share: layers
that replace field by field, the shared model options and evaluate's revision rule, the output-folder
policy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from t2t import config as configs
from t2t.errors import T2TError, run_cli
from t2t.evaluation.adapter_runs import AdapterRun
from t2t.evaluation.config import EvaluateConfig
from t2t.evaluation.config import config_from_args as evaluate_from_args
from t2t.evaluation.selection import resolve_from_runs
from t2t.experiment import ExperimentConfig, build_experiment, build_parser
from t2t.experiment import config_from_args as experiment_from_args
from t2t.mixtures.config import MixtureConfig
from t2t.outputs import FolderLock, check_output_dir
from t2t.tasks.config import TasksConfig
from t2t.training.config import FinetuneConfig, build_config
from t2t.training.config import config_from_args as finetune_from_args

ROOTS = [FinetuneConfig, EvaluateConfig, ExperimentConfig, MixtureConfig, TasksConfig]

SMALL = """\
include: {tasks: [sentiment_movie, topic_sentence]}
heldout: {tasks: [sentiment_restaurant]}
rate: {strategy: proportional, cap: 3000}
"""


def parsed(root: type, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configs.add_arguments(parser, root)
    return parser.parse_args(configs.parse_bool_flags(argv, root))


@pytest.mark.parametrize("root", ROOTS, ids=lambda r: r.__name__)
def test_every_commands_defaults_survive_the_yaml(root: type, tmp_path: Path) -> None:
    path = configs.save(root(), tmp_path / "config.yaml")
    assert configs.build(root, yaml.safe_load(path.read_text())) == root()
    assert configs.from_args(root, parsed(root, ["--config", str(path)]), "t2t.x") == root()


def test_finetune_config_yaml_trains_the_same_adapter_again(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from t2t.finetune import main

    (tmp_path / "mixtures").mkdir()
    (tmp_path / "mixtures" / "small.yaml").write_text(SMALL)
    first, second = tmp_path / "first", tmp_path / "second"
    argv = ["--mixture", "small", "--mixture-dir", str(tmp_path / "mixtures"), "--output-dir", str(first),
            "--max-steps", "2", "--batch-size", "4", "--lora-r", "4", "--eval-steps", "0", "--save-steps", "0",
            "--warmup-steps", "0", "--no-progress", "--seed", "3"]
    assert main(argv) == 0
    wanted = finetune_from_args(parsed(FinetuneConfig, argv))
    assert finetune_from_args(parsed(FinetuneConfig, ["--config", str(first / "config.yaml")])) == wanted
    # config.json stays for the code that reads it: the same options, plus what the run resolved
    recorded = json.loads((first / "config.json").read_text())
    assert recorded["model"] == configs.to_dict(wanted)["model"] and Path(recorded["resolved_model"]).is_dir()
    # the saved file names the output folder too: as it is, it is refused there (not silently reused)
    with pytest.raises(T2TError, match="is not empty"):
        main(["--config", str(first / "config.yaml")])
    assert main(["--config", str(first / "config.yaml"), "--output-dir", str(second)]) == 0
    a, b = (load_file(str(out / "adapter" / "adapter_model.safetensors")) for out in (first, second))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_evaluate_and_experiment_configs_reload_unchanged(tmp_path: Path) -> None:
    cfg = evaluate_from_args(parsed(EvaluateConfig, [
        "--model", "m", "--revision", "r1", "--attn-implementation", "sdpa", "--adapter", "a=x/adapter",
        "--tasks", "rte,copa", "--limit", "5", "--num-shots", "2", "--log-samples", "--output-dir", "o"]))
    path = configs.save(cfg, tmp_path / "evaluate.yaml")
    assert evaluate_from_args(parsed(EvaluateConfig, ["--config", str(path)])) == cfg
    argv = ["--seeds", "2,1", "--max-steps", "9", "--model", "m", "--limit", "5", "--overwrite", "--parts", "unseen"]
    experiment = experiment_from_args(build_parser().parse_args(argv))
    path = configs.save(experiment, tmp_path / "experiment.yaml")
    assert experiment_from_args(build_parser().parse_args(["--config", str(path)])) == experiment
    assert build_experiment(yaml.safe_load(path.read_text())) == experiment


def test_mixture_save_config_shows_the_same_draws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from t2t.mixture import main

    saved = tmp_path / "sample.yaml"
    assert run_cli(main, ["sample", "offline", "--n", "3", "--seed", "4", "--start", "2", "--heldout", "arith_sum",
                          "--json", "--save-config", str(saved)]) == 0
    first = capsys.readouterr().out
    assert yaml.safe_load(saved.read_text())["sample"] == {"n": 3, "seed": 4, "start": 2, "stop": None}
    assert run_cli(main, ["sample", "--config", str(saved), "--json"]) == 0
    assert capsys.readouterr().out == first and len(json.loads(first)) == 3
    # a flag still wins over the file; no mixture at all is one clear error
    assert run_cli(main, ["sample", "--config", str(saved), "--n", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert run_cli(main, ["show"]) == 2
    assert "name the mixture" in capsys.readouterr().err


def test_tasks_save_config_lists_the_same_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from t2t.tasks.cli import main

    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "mine.jinja").write_text("---\ncluster: mine\nsource: {generator: arith_sum}\n---\n"
                                      "{% block t %}\n{{ question }}\n|||\n{{ answer }}\n{% endblock %}\n")
    saved = tmp_path / "tasks.yaml"
    assert run_cli(main, ["list", "--task-dir", str(extra), "--json", "--save-config", str(saved)]) == 0
    first = capsys.readouterr().out
    assert "mine" in {t["name"] for t in json.loads(first)}
    assert yaml.safe_load(saved.read_text()) == {"registry": {"task_dir": [str(extra)]}}
    assert run_cli(main, ["list", "--config", str(saved), "--json"]) == 0
    assert capsys.readouterr().out == first


def test_a_later_layer_replaces_exactly_the_fields_it_names() -> None:
    yaml_layer = {"train": {"max_steps": 7, "lr": 0.01}, "max_steps": 8}
    cfg = configs.build_layers(FinetuneConfig, [(yaml_layer, "--config c.yaml"), ({"max_steps": 9}, "options")],
                               "t2t.finetune")
    assert cfg.train.max_steps == 9 and cfg.train.lr == 0.01
    # a part's own keys, flat, by section or dotted, land on the same field
    for values in ({"finetune": {"lr": 0.5}}, {"finetune": {"train": {"lr": 0.5}}}, {"finetune.train.lr": 0.5},
                   {"lr": 0.5}):
        assert build_experiment(values).finetune.train.lr == 0.5
    with pytest.raises(T2TError, match=r"\(finetune\): unknown option 'train.lrr' \(did you mean 'lr'\?\)"):
        build_experiment({"finetune.train.lrr": 1})


def test_model_options_are_one_config() -> None:
    from t2t.modeling.config import ModelConfig

    shared = {"model", "revision", "precision", "device", "attn_implementation"}
    for root in (FinetuneConfig, EvaluateConfig):
        assert shared <= set(configs.to_dict(root())["model"])
        assert issubclass(configs.sections(root)["model"], ModelConfig)
    exp = build_experiment({"finetune": {"model": {"revision": "r7"}}})
    assert exp.evaluate_run({"a": "x"}).model.revision == "r7"  # every evaluation on the trained revision
    for values, message in [({"device": "cuda:1"}, "device must be auto, cpu or cuda"),
                            ({"device": "cpu", "precision": "bf16"}, "with device cpu use auto or fp32")]:
        with pytest.raises(T2TError, match=message):
            build_config(values)


def run_on(revision: str | None, label: str = "run") -> AdapterRun:
    return AdapterRun(label, Path(f"/runs/{label}/adapter"), {"tasks": []},
                      {"model": {"model": "base", "revision": revision}})


def test_evaluate_defaults_to_the_adapter_runs_revision_and_refuses_another() -> None:
    cfg = resolve_from_runs(EvaluateConfig(), [run_on("r1")])
    assert (cfg.model.model, cfg.model.revision) == ("base", "r1")
    with pytest.raises(T2TError) as info:
        resolve_from_runs(EvaluateConfig().override(revision="r2"), [run_on("r1")])
    text = str(info.value)
    assert "--revision r2: adapter run was trained on revision r1 of base" in text
    assert "--revision r1" in text and "--allow-revision-mismatch" in text
    with pytest.raises(T2TError, match="trained on the default revision"):
        resolve_from_runs(EvaluateConfig().override(revision="r2"), [run_on(None)])
    with pytest.raises(T2TError, match="different revisions of base"):
        resolve_from_runs(EvaluateConfig(), [run_on("r1", "a"), run_on(None, "b")])
    allowed = resolve_from_runs(EvaluateConfig().override(revision="r2", allow_revision_mismatch=True),
                                [run_on("r1")])
    assert allowed.model.revision == "r2"
    # another base model altogether: its revision is the user's business (a warning names the base)
    other = resolve_from_runs(EvaluateConfig().override(model="other", revision="r2"), [run_on("r1")])
    assert other.model.revision == "r2"


def test_one_output_folder_policy(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert check_output_dir(out, ("report.md",)) == [] and not out.exists()
    out.mkdir()
    (out / "report.md").write_text("old")
    with pytest.raises(T2TError, match=r"already holds results \(report.md\); pass --overwrite"):
        check_output_dir(out, ("report.md",))
    assert check_output_dir(out, ("report.md",), overwrite=True) == ["report.md"]
    with pytest.raises(T2TError, match="is not empty; pass --resume"):
        check_output_dir(out, None, resume=False)
    with FolderLock(out, "t2t.experiment"):
        with pytest.raises(T2TError, match="another t2t.experiment .* is writing to this folder"):
            FolderLock(out, "t2t.experiment").acquire()
    FolderLock(out).acquire().release()  # released when the holder is done
