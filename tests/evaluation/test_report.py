"""Report aggregation and rendering on hand-made numbers."""

from __future__ import annotations

import json
import math

import pytest

from t2t.atomic import write_json
from t2t.errors import T2TError
from t2t.evaluation.report import Score, plot_bars, read_json, render_markdown, summarize, to_dict

CLUSTERS = {"rte": "nli", "cb": "nli", "copa": "commonsense"}


def hand_scores() -> list[Score]:
    table = {
        # (model, task, metric): values per template t1, t2, ...
        ("base", "rte", "accuracy"): [50, 60, 70],
        ("lora", "rte", "accuracy"): [90, 70, 80],
        ("base", "rte", "acc_norm"): [58],
        ("lora", "rte", "acc_norm"): [62],
        ("base", "cb", "accuracy"): [40, 50],
        ("lora", "cb", "accuracy"): [50, 70],
        ("base", "copa", "accuracy"): [55],
        ("lora", "copa", "accuracy"): [65],
    }
    return [
        Score(model, task, f"t{i + 1}", metric, float(v))
        for (model, task, metric), values in table.items()
        for i, v in enumerate(values)
    ]


def test_task_medians_spread_and_deltas():
    report = summarize(hand_scores(), clusters=CLUSTERS)
    assert report.models == ["base", "lora"]
    rte = report.task("base", "rte")
    assert (rte.median, rte.min, rte.max, rte.n_templates) == (60.0, 50.0, 70.0, 3)
    assert rte.std == pytest.approx(math.sqrt(200 / 3))  # population std of 50, 60, 70
    assert report.task("lora", "rte").median == 80.0
    assert report.task("base", "cb").median == 45.0  # median of an even count: mean of the middle two
    assert report.task("lora", "copa").std == 0.0
    assert report.delta_task("lora", "rte") == 20.0
    assert report.delta_task("lora", "rte", "acc_norm") == 4.0


def test_cluster_and_overall_means_use_primary_metric():
    report = summarize(hand_scores(), clusters=CLUSTERS)
    assert report.primary == {"rte": "accuracy", "cb": "accuracy", "copa": "accuracy"}
    assert report.clusters["base"] == {"commonsense": 55.0, "nli": 52.5}  # (60 + 45) / 2
    assert report.clusters["lora"] == {"commonsense": 65.0, "nli": 70.0}  # (80 + 60) / 2
    assert report.delta_cluster("lora", "nli") == 17.5
    assert report.overall["base"] == pytest.approx(160 / 3)  # (60 + 45 + 55) / 3
    assert report.overall["lora"] == pytest.approx(205 / 3)
    assert report.delta_overall("lora") == pytest.approx(15.0)
    # choosing acc_norm as rte's primary metric changes the means
    other = summarize(hand_scores(), clusters=CLUSTERS, primary={"rte": "acc_norm"})
    assert other.clusters["base"]["nli"] == pytest.approx((58 + 45) / 2)


def test_markdown_rows():
    markdown = render_markdown(summarize(hand_scores(), clusters=CLUSTERS))
    lines = markdown.splitlines()
    assert lines[0] == "| cluster | task | metric | base | lora | Δ lora |"
    assert lines[1] == "|---|---|---|---:|---:|---:|"
    assert "| nli | rte | accuracy | 60.0 ±8.2 (50.0–70.0) | 80.0 ±8.2 (70.0–90.0) | +20.0 |" in lines
    assert "| nli | rte | acc_norm | 58.0 ±0.0 (58.0–58.0) | 62.0 ±0.0 (62.0–62.0) | +4.0 |" in lines
    assert "| nli | cb | accuracy | 45.0 ±5.0 (40.0–50.0) | 60.0 ±10.0 (50.0–70.0) | +15.0 |" in lines
    assert "| **nli** | *mean* |  | 52.5 | 70.0 | +17.5 |" in lines
    assert "| **commonsense** | *mean* |  | 55.0 | 65.0 | +10.0 |" in lines
    assert lines[-1] == "| **all** | *mean* |  | 53.3 | 68.3 | +15.0 |"
    # rows grouped by cluster, primary metric first within a task
    tasks = [line.split(" | ")[1] for line in lines[2:6]]
    assert tasks == ["copa", "cb", "rte", "rte"]


def test_three_models_order_and_dict_input():
    scores = [
        {"model": m, "task": "rte", "template": "t1", "metric": "accuracy", "value": v}
        for m, v in [("tuned_a", 70.0), ("base", 50.0), ("tuned_b", 40.0)]
    ]
    report = summarize(scores, models=["base", "tuned_a", "tuned_b"])
    assert report.cluster_of == {"rte": "unclustered"}
    header = render_markdown(report).splitlines()[0]
    assert header == "| cluster | task | metric | base | tuned_a | tuned_b | Δ tuned_a | Δ tuned_b |"
    assert (
        render_markdown(report).splitlines()[-1]
        == "| **all** | *mean* |  | 50.0 | 70.0 | 40.0 | +20.0 | -10.0 |"
    )


def test_report_files_and_json_round_trip(tmp_path):
    """What the evaluate command writes: the table, ``to_dict`` as results.json, the bar chart."""
    report = summarize(hand_scores(), clusters=CLUSTERS)
    png = plot_bars(report, tmp_path / "eval" / "report.png", tasks=["rte", "copa"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert render_markdown(report).startswith("| cluster | task | metric | base | lora | Δ lora |\n")
    results = write_json(tmp_path / "eval" / "results.json", to_dict(report))
    data = json.loads(results.read_text(encoding="utf-8"))
    assert data["base"] == "base"
    assert data["clusters"]["lora"]["nli"] == {"mean": 70.0, "delta": 17.5}
    assert data["overall"]["lora"]["delta"] == pytest.approx(15.0)
    rte = next(
        t for t in data["tasks"] if (t["model"], t["task"], t["metric"]) == ("lora", "rte", "accuracy")
    )
    assert (rte["median"], rte["delta"], rte["cluster"]) == (80.0, 20.0, "nli")
    again = read_json(results)
    assert (
        again.tasks == report.tasks and again.clusters == report.clusters and again.overall == report.overall
    )


def test_user_errors(tmp_path):
    scores = hand_scores()
    with pytest.raises(T2TError, match="scored twice"):
        summarize(scores + [scores[0]])
    with pytest.raises(T2TError, match="missing.*lora/copa/accuracy"):
        summarize([s for s in scores if (s.model, s.task) != ("lora", "copa")])
    with pytest.raises(T2TError, match="finite"):
        summarize([Score("base", "rte", "t1", "accuracy", float("nan"))])
    with pytest.raises(T2TError, match="keys"):
        summarize([{"model": "base", "task": "rte", "score": 1.0}])
    with pytest.raises(T2TError, match="do not match"):
        summarize(scores, models=["base"])
    with pytest.raises(T2TError, match="primary metric 'bleu'"):
        summarize(scores, primary={"rte": "bleu"})
    with pytest.raises(T2TError, match="no scores"):
        summarize([])
    report = summarize(scores)
    with pytest.raises(T2TError, match="cannot plot"):
        plot_bars(report, tmp_path / "report.png", tasks=["boolq"])
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(T2TError, match="not a t2t evaluation report"):
        read_json(tmp_path / "other.json")
