"""t2t.evaluation.significance: the paired bootstrap agrees with the report, with theory, and with itself."""

from __future__ import annotations

import math
import random

import pytest

from t2t.errors import T2TError
from t2t.evaluation.report import Score, summarize
from t2t.evaluation.significance import ExampleScores, paired_bootstrap, render_markdown


def _acc(model: str, task: str, template: str, hits: list[int]) -> ExampleScores:
    return ExampleScores(model, task, template, "acc", tuple(range(len(hits))), tuple(100.0 * h for h in hits))


def _report_of(items: list[ExampleScores], models: list[str]):
    scores = [Score(i.model, i.task, i.template, i.metric, sum(i.values) / len(i.values)) for i in items]
    return summarize(scores, models=models)


def test_point_deltas_are_the_reports_and_identical_models_give_zero() -> None:
    rng = random.Random(0)
    items = []
    for task, n in (("a", 30), ("b", 50)):
        for template in ("t1", "t2", "t3"):
            base = [rng.random() < 0.5 for _ in range(n)]
            items.append(_acc("base", task, template, base))
            items.append(_acc("same", task, template, base))
            items.append(_acc("tuned", task, template, [h or rng.random() < 0.3 for h in base]))
    models = ["base", "same", "tuned"]
    report = _report_of(items, models)
    result = paired_bootstrap(items, models, report.primary, resamples=500, seed=1)
    tuned, same = result["models"]["tuned"], result["models"]["same"]
    assert tuned["overall"]["delta"] == pytest.approx(report.delta_overall("tuned"), abs=1e-3)
    for task in ("a", "b"):
        assert tuned["tasks"][task]["delta"] == pytest.approx(report.delta_task("tuned", task), abs=1e-3)
        assert same["tasks"][task] == {"metric": "acc", "delta": 0.0, "low": 0.0, "high": 0.0}
    # Never worse on any row, and better on about 30% of the misses: the interval lies above 0.
    assert 0 < tuned["overall"]["low"] <= tuned["overall"]["delta"] <= tuned["overall"]["high"]
    assert "| **all** (mean of task medians) | | +0.0 [+0.0, +0.0] |" in render_markdown(result)
    assert " *" in render_markdown(result).split("\n")[-4]  # tuned's overall cell is marked


def test_interval_width_matches_the_standard_error_of_a_paired_mean() -> None:
    """One task, one template: the bootstrap sd of the mean delta is sd(d) / sqrt(n) (n large)."""
    rng = random.Random(3)
    n = 400
    base = [int(rng.random() < 0.6) for _ in range(n)]
    tuned = [int(rng.random() < 0.65) for _ in range(n)]
    items = [_acc("base", "t", "only", base), _acc("tuned", "t", "only", tuned)]
    result = paired_bootstrap(items, ["base", "tuned"], {"t": "acc"}, resamples=4000, seed=0)
    d = [100.0 * (y - x) for x, y in zip(base, tuned, strict=True)]
    mean = sum(d) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / n / n)
    got = result["models"]["tuned"]["overall"]
    assert got["delta"] == pytest.approx(mean, abs=1e-9)
    assert got["high"] - got["low"] == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert paired_bootstrap(items, ["base", "tuned"], {"t": "acc"}, resamples=4000, seed=0) == result


def test_corpus_metrics_are_recomputed_per_resample() -> None:
    refs = (("the cat sat on the mat",), ("a dog ran in the park",), ("birds sing at dawn today",))
    good = ExampleScores("tuned", "g", "t", "bleu", (0, 1, 2), None, tuple(r[0] for r in refs), refs)
    bad = ExampleScores("base", "g", "t", "bleu", (0, 1, 2), None, ("x y z", "a dog", "nothing here"), refs)
    result = paired_bootstrap([bad, good], ["base", "tuned"], {"g": "bleu"}, resamples=50, seed=0)
    got = result["models"]["tuned"]["tasks"]["g"]
    assert got["delta"] == pytest.approx(100.0, abs=1e-6)  # BLEU 100 vs 0 on the whole corpus
    assert got["low"] > 0


def test_bad_requests() -> None:
    items = [_acc("base", "t", "x", [1, 0])]
    with pytest.raises(T2TError, match="--bootstrap must be at least 1"):
        paired_bootstrap(items, ["base", "other"], {"t": "acc"}, resamples=0)
    with pytest.raises(T2TError, match="model 'other' has no example scores for task 't'"):
        paired_bootstrap(items, ["base", "other"], {"t": "acc"}, resamples=10)
