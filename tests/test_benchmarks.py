"""Smoke tests for benchmarks/: each runs with its smallest settings and prints the JSON it promises.

No timing is asserted (shared CI machines are too noisy); what is asserted is that every variant runs,
that t2t's batchings keep the loss equal to the unpacked loss, and that the GPU path needs no `datasets`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import rank_classification, train_throughput  # noqa: E402
from benchmarks.train_throughput import Variant, make_plan, parse_variant, synthetic_examples  # noqa: E402

QUICK_TRAIN = [
    "--shape",
    "tiny",
    "--device",
    "cpu",
    "--batch-size",
    "4",
    "--steps",
    "2",
    "--rounds",
    "1",
    "--max-input-len",
    "48",
    "--max-target-len",
    "12",
    "--threads",
    "0",
    "--variants",
    "a_sdpa,b_eager,b_sdpa,c_now_48,c_grouped_256,c_pack24_256,c_pack24_256_sdpa",
]
# The GPU machine has no `datasets`: block it, so that an import of it on the benchmark's path fails here.
NO_DATASETS = "import sys; sys.modules['datasets'] = None; sys.argv[0] = 'train_throughput'; "


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_train_throughput_prints_ratios_without_datasets() -> None:
    code = NO_DATASETS + (
        "import t2t.modeling.tiny, t2t.evaluation.scoring; from benchmarks.train_throughput import main; "
        f"main({QUICK_TRAIN!r})"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    assert result["complete"] is True
    for key in ("a", "b", "c"):
        assert result["tokens_per_s"][key] > 0
        assert result["best"][key].startswith(key)
    for key in (
        "ratio_c_a",
        "ratio_c_b",
        "ratio_c_now_a",
        "memory_ratio_a_c",
        "padding_share",
        "peak_mem_mb",
    ):
        assert key in result
    assert set(result["variants"]) == set(QUICK_TRAIN[-1].split(","))
    for name, v in result["variants"].items():
        assert v["error"] is None, (name, v["error"])
        assert 0 <= v["padding_share"] < 1 and v["tokens_per_s"] > 0
        if name.startswith("c"):
            assert v["loss_rel_diff"] < 1e-4, name  # packed / grouped loss == unpacked loss
    assert "datasets" not in proc.stderr


def test_rank_classification_agrees_with_naive(capsys: pytest.CaptureFixture[str]) -> None:
    rank_classification.main(
        [
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--n",
            "6",
            "--naive-n",
            "3",
            "--rounds",
            "1",
            "--batch-sizes",
            "4",
            "--threads",
            "0",
        ]
    )
    result = last_json(capsys.readouterr().out)
    assert set(result["examples_per_s"]) == {"t2t", "naive"}
    assert result["ratio_t2t_naive"] > 0
    assert result["same_predictions"] is True
    assert result["max_logprob_diff"] < 1e-3


def test_data_pipeline_runs(capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import data_pipeline

    assert data_pipeline.main(["--n", "200", "--tokenizer", "none"]) == 0
    result = last_json(capsys.readouterr().out)
    for key in ("task_ids_per_s", "uncached_per_s", "first_pass_per_s", "steady_per_s"):
        assert result[key] > 0


def test_plans_cover_each_step_once_within_budget() -> None:
    examples = synthetic_examples(64, 500, seed=1, max_input=200, max_target=50)
    for name in ("a_sdpa", "c_now_200", "c_grouped_512", "c_pack64_512", "c_pack128_300"):
        v = parse_variant(name)
        plan = make_plan(v, examples, batch_size=16)
        assert len(plan.steps) == 4
        for k, step in enumerate(plan.steps):
            seen = sorted(i for rows in step for row in rows for i in row)
            assert seen == list(range(16 * k, 16 * (k + 1))), name  # the stream's order, nothing lost
            if v.budget:
                for rows in step:
                    width = max(
                        sum(len(examples[i]["input_ids"]) + len(examples[i]["labels"]) for i in row)
                        for row in rows
                    )
                    assert len(rows) == 1 or len(rows) * width <= v.budget
        assert 0 < plan.real_tokens() <= plan.padded_tokens()


def test_b_draws_length_grouped_batches_from_every_stratum() -> None:
    pool = synthetic_examples(800, 500, seed=2)
    grouped = (pool, train_throughput.grouped_batches(pool, 8, seed=0))
    plan = make_plan(parse_variant("b_eager"), [], 8, grouped, steps=4, round_index=0)
    assert len(plan.steps) == 4 and all(len(step[0]) == 8 for step in plan.steps)
    spans = [
        max(len(pool[r[0]]["input_ids"]) for r in s[0]) - min(len(pool[r[0]]["input_ids"]) for r in s[0])
        for s in plan.steps
    ]
    assert max(spans) < 200  # grouped by input length, not random


def test_variant_names() -> None:
    assert parse_variant("c_pack512_8192_sdpa") == Variant("c_pack512_8192_sdpa", "t2t", "sdpa", 512, 8192)
    assert parse_variant("c_now_1024").family == "t2t_now"
    assert parse_variant("c_grouped_4096_compiled").compile
    with pytest.raises(SystemExit):
        parse_variant("d_fast")


@pytest.mark.slow
def test_gpu_check_script_runs_on_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--shape", "tiny", "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["train_tiny"]["complete"] is True and summary["train_tiny"]["ratio_c_a"] > 0
    assert summary["rank_tiny"]["ratio_t2t_naive"] > 0


def test_sni_scale_eager_and_lazy_give_the_same_first_step(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import sni_scale

    assert sni_scale.main(["--tasks", "12", "--instances", "1500", "--mixtures", "sni", "--steps", "1",
                           "--batch-size", "8"]) == 0
    result = last_json(capsys.readouterr().out)
    data = result["data"]
    assert data["instances"] == 1500 and data["tasks"] == 12 and data["train_tasks"] + data["test_tasks"] == 12
    assert 30 <= data["instances_per_task"]["min"] <= data["instances_per_task"]["max"] <= sni_scale.MAX_PER_TASK
    assert [(r["mixture"], r["mode"]) for r in result["runs"]] == [("sni", "eager"), ("sni", "lazy")]
    for r in result["runs"]:
        assert r["resolve_s"] > 0 and r["first_step_s"] > 0 and r["peak_rss_after_steps_mb"] >= r["rss_before_mb"]
        assert r["train_tasks"] == data["train_tasks"] and r["train_examples"] <= 100 * r["train_tasks"]
    assert result["ratios"]["sni"]["same_first_step"] is True


def test_sni_scale_counts_keep_sni_density() -> None:
    import numpy as np

    from benchmarks import sni_scale

    assert sni_scale.default_instances(2000) == 6_188_000  # 5M instances over 1,616 tasks
    counts = sni_scale.instance_counts(2000, 6_188_000, np.random.default_rng(0))
    assert counts.sum() == 6_188_000 and counts.max() <= sni_scale.MAX_PER_TASK and counts.min() >= 30


def test_causal_packing_runs_without_datasets() -> None:
    """Decoder-only packed vs padded vs full-logits: every variant runs, the losses agree, no `datasets`."""
    code = NO_DATASETS + (
        "from benchmarks.causal_packing import main; main(['--batch-size', '4', '--steps', '1', '--rounds', '1', "
        "'--max-input-len', '32', '--max-target-len', '8', '--row-len', '48'])"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = last_json(proc.stdout)
    assert set(out["variants"]) == {"padded", "packed", "packed_full"}
    assert out["loss_rel_diff"] < 1e-5 and out["ratio_packed_padded"] > 0 and out["ratio_full_head_step_time"] > 0


def test_contamination_finds_the_planted_rows_in_both_directions(capsys: pytest.CaptureFixture[str]) -> None:
    """The contamination benchmark on a small generated corpus (the offline suite skipped): every measure
    runs, finds exactly the planted copies and near copies, and reports rows/s and peak memory."""
    from benchmarks import contamination

    assert contamination.main(["--train-tokens", "40000", "--heldout-rows", "200", "--mixture", "none"]) == 0
    data = last_json(capsys.readouterr().out)
    assert data["planted"] == 4
    for name in ("generated", "generated_quarter", "train_indexed"):
        m = data[name]
        assert m["found_planted"] is True and m["origins_right"] is True and m["dirty"] == {"gen_heldout": 4}
        assert m["rows_per_s"] > 0 and m["rows_per_cpu_s"] > 0 and m["peak_mib"] > 0
    assert data["generated"]["train_words"] == 40000 and data["train_indexed"]["mode"] == "train-indexed"
