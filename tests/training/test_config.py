"""Config: defaults, YAML, command-line overrides, errors that name the option."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from t2t.errors import T2TError
from t2t.training.config import FinetuneConfig, add_arguments, build_config, config_from_args, parse_bool_flags


def parse(argv: list[str]) -> FinetuneConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(parse_bool_flags(argv)))


def test_defaults_and_flat_and_sectioned_overrides(tmp_path: Path) -> None:
    assert parse([]) == FinetuneConfig()
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("train:\n  max_steps: 7\n  lr: 0.01\nlora_r: 4\ndata:\n  heldout: [a, b]\n")
    cfg = parse(["--config", str(cfg_file), "--max-steps", "9", "--train.seed", "3", "--resume", "--no-packing"])
    assert cfg.train.max_steps == 9 and cfg.train.lr == 0.01 and cfg.train.seed == 3
    assert cfg.tuning.lora_r == 4 and cfg.data.heldout == ("a", "b")
    assert cfg.train.resume is True and cfg.data.packing is False
    assert build_config(cfg.to_dict()) == cfg  # the saved config reproduces the run


@pytest.mark.parametrize(
    ("values", "expect"),
    [
        ({"max_stpes": 3}, "did you mean 'max_steps'"),
        ({"max_steps": "many"}, "option 'max_steps': expected int"),
        ({"method": "qlora"}, "method must be"),
        ({"precision": "fp16"}, "fp16"),
        ({"batch_size": 10, "grad_accum": 3}, "multiple of grad_accum"),
        ({"train": {"lora_r": 3}}, "unknown option 'train.lora_r'"),
    ],
)
def test_bad_values_name_the_option(values: dict, expect: str) -> None:
    with pytest.raises(T2TError, match=expect):
        build_config(values)


def test_bad_yaml_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(T2TError, match="bad.yaml: not valid YAML"):
        parse(["--config", str(bad)])
    with pytest.raises(T2TError, match="no such file"):
        parse(["--config", str(tmp_path / "missing.yaml")])


@pytest.mark.parametrize(("values", "flag"), [
    ({"weight_decay": -1}, "--weight-decay -1.0"),
    ({"warmup_steps": -5}, "--warmup-steps -5"),
    ({"lora_alpha": -32}, "--lora-alpha -32"),
    ({"max_grad_norm": -1}, "--max-grad-norm -1.0"),
    ({"micro_batch_tokens": -5}, "--micro-batch-tokens -5"),
    ({"eval_examples": -3}, "--eval-examples -3"),
    ({"eval_examples": 0, "eval_steps": 10}, "--eval-examples 0"),
    ({"pack_input_len": 0}, "--pack-input-len 0"),
    ({"pack_target_len": 1}, "--pack-target-len 1"),
])
def test_values_that_would_be_ignored_or_misread_are_refused_by_flag(values: dict, flag: str) -> None:
    with pytest.raises(T2TError) as info:
        build_config(values)
    assert str(info.value).startswith(f"bad config: {flag}: must be")
    assert "max_input_len" not in str(info.value)


def test_zero_is_still_meaningful_where_documented() -> None:
    cfg = build_config({"max_grad_norm": 0, "warmup_steps": 0, "weight_decay": 0, "micro_batch_tokens": 0,
                        "eval_steps": 0, "eval_examples": 0})
    assert (cfg.train.max_grad_norm, cfg.data.micro_batch_tokens, cfg.train.eval_examples) == (0, 0, 0)


def test_impossible_yaml_values_in_a_config_file_are_one_error(tmp_path: Path) -> None:
    bad = tmp_path / "dates.yaml"
    bad.write_text("train:\n  seed: 2024-02-30\n")
    with pytest.raises(T2TError, match="dates.yaml: not valid YAML: cannot read '2024-02-30'"):
        parse(["--config", str(bad)])
