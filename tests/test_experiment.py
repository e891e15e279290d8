"""python -m t2t.experiment: adapters per seed, one evaluation, a summary over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t2t.errors import T2TError
from t2t.experiment import main


def test_two_seeds_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exp"
    args = ["--max-steps", "2", "--batch-size", "4", "--limit", "2", "--seeds", "0,1", "--bootstrap", "50",
            "--output-dir", str(out)]
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
    # A second run does not replace the results without --overwrite, and says so before training.
    with pytest.raises(T2TError, match="--overwrite"):
        main(args)
    with pytest.raises(T2TError, match="--seeds x: give whole numbers"):
        main(["--seeds", "x", "--output-dir", str(tmp_path / "other")])
