"""Mixture files: the rate formula on hand-worked numbers, caps, temperature, nesting, explicit weights,
held-out splits and leakage errors, file errors, the manifest and the command line."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest

from t2t.errors import T2TError, run_cli
from t2t.mixture import main
from t2t.mixtures.resolve import heldout_split, load_mixture, mixing_rates, task_rate
from t2t.mixtures.spec import MixtureRegistry
from t2t.mixtures.stream import build_stream

TASK = """\
---
cluster: {cluster}
source: {{files: {{train: data/{data}.jsonl}}}}
choices: ["yes", "no"]
answer: "{{{{ choices[label] }}}}"
---
{{% block first %}}
{{{{ x }}}} is it yes? {{{{ options }}}}
|||
{{{{ answer }}}}
{{% endblock %}}
{{% block second %}}
Say yes or no: {{{{ x }}}}
|||
{{{{ answer }}}}
{{% endblock %}}
"""


def write_suite(root: Path, tasks: dict[str, tuple[str, int]], shared: dict[str, str] | None = None) -> Path:
    """Task files under root/tasks: name -> (cluster, rows); ``shared`` maps a task to the data of another."""
    folder = root / "tasks"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    shared = shared or {}
    for name, (cluster, n) in tasks.items():
        data = shared.get(name, name)
        (folder / f"{name}.jinja").write_text(TASK.format(cluster=cluster, data=data))
        if name not in shared:
            rows = [{"x": f"{name}-{i}", "label": i % 2} for i in range(n)]
            (folder / "data" / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def write_mixtures(root: Path, **files: str) -> Path:
    folder = root / "mixtures"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    return folder


@pytest.fixture(autouse=True)
def no_download_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    # datasets pings the hub to count every load_dataset("json"), even of local files; offline that
    # costs a DNS timeout (~5 s) per load. t2t.tasks.sources should switch it off for local files.
    import datasets

    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)


SUITE = {"a": ("nli", 100), "b": ("nli", 300), "c": ("qa", 200), "d": ("qa", 50), "e": ("sent", 400)}


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path, SUITE)


def load(tmp_path: Path, tasks: Path, name: str, **kw):
    return load_mixture(name, task_dirs=[tasks], mixture_dirs=[tmp_path / "mixtures"], include_builtin=False,
                        **kw)


# -- the formula ----------------------------------------------------------------------------------

def test_rates_on_hand_worked_numbers() -> None:
    sizes = {"a": 100, "b": 1000, "c": 50000}
    prop = mixing_rates(sizes, "proportional")
    assert prop == pytest.approx({"a": 100 / 51100, "b": 1000 / 51100, "c": 50000 / 51100})
    capped = mixing_rates(sizes, "proportional", cap=3000)
    assert capped == pytest.approx({"a": 100 / 4100, "b": 1000 / 4100, "c": 3000 / 4100})
    assert capped["c"] == pytest.approx(0.7317, abs=1e-4)
    # scale multiplies before the cap (seqio): a 200, b 1000 (capped), c 1000 (capped).
    assert mixing_rates(sizes, "proportional", cap=1000, scale=2) == pytest.approx(
        {"a": 200 / 2200, "b": 1000 / 2200, "c": 1000 / 2200})
    # temperature T=2 after the cap: sqrt(100)=10, sqrt(1000)=31.623, sqrt(3000)=54.772.
    warm = mixing_rates(sizes, "temperature", cap=3000, temperature=2.0)
    total = 10 + math.sqrt(1000) + math.sqrt(3000)
    assert warm == pytest.approx({"a": 10 / total, "b": math.sqrt(1000) / total,
                                  "c": math.sqrt(3000) / total})
    assert warm["a"] == pytest.approx(0.1037, abs=1e-4)
    assert mixing_rates(sizes, "equal") == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    for rates in (prop, capped, warm):
        assert sum(rates.values()) == pytest.approx(1.0)
    assert task_rate(0, "equal") == 0.0  # an empty task is never drawn, whatever the strategy


def test_temperature_limits() -> None:
    sizes = {"small": 10, "mid": 1000, "big": 100000}
    proportional = mixing_rates(sizes, "proportional")
    assert mixing_rates(sizes, "temperature", temperature=1.0) == pytest.approx(proportional)
    biggest = [mixing_rates(sizes, "temperature", temperature=t)["big"] for t in (1, 2, 4, 16, 1e3)]
    assert biggest == sorted(biggest, reverse=True)  # hotter is flatter
    assert mixing_rates(sizes, "temperature", temperature=1e6) == pytest.approx(
        mixing_rates(sizes, "equal"), abs=1e-4)


@pytest.mark.parametrize(("kwargs", "expect"), [
    ({"strategy": "propotional"}, "did you mean proportional"),
    ({"strategy": "proportional", "temperature": 2.0}, "use strategy: temperature"),
    ({"strategy": "temperature", "temperature": 0.0}, "must be positive"),
    ({"strategy": "proportional", "cap": -1}, "must be positive"),
])
def test_rate_errors(kwargs: dict, expect: str) -> None:
    with pytest.raises(T2TError, match=expect):
        mixing_rates({"a": 1}, **kwargs)
    with pytest.raises(T2TError, match="no task has training examples"):
        mixing_rates({"a": 0}, "proportional")


# -- mixtures over task files ---------------------------------------------------------------------

def test_selection_caps_and_weights(tmp_path: Path, suite: Path) -> None:
    write_mixtures(tmp_path, capped="""\
        include: {clusters: [nli], tasks: [c], patterns: ["e*"]}
        exclude: {tasks: [b]}
        rate: {strategy: proportional, cap: 150}
        weights: {d: 300}
        """, warm="""\
        include: {clusters: [nli, qa]}
        rate: {strategy: temperature, temperature: 2}
        """)
    m = load(tmp_path, suite, "capped")
    # a 100, c min(200, 150), e min(400, 150), d explicit 300 (named only in weights) -> total 700
    assert m.rates == pytest.approx({"a": 100 / 700, "c": 150 / 700, "d": 300 / 700, "e": 150 / 700})
    assert {e.name: e.examples for e in m.entries} == {"a": 100, "c": 200, "d": 50, "e": 400}
    warm = load(tmp_path, suite, "warm")
    assert warm.rates == pytest.approx(mixing_rates({"a": 100, "b": 300, "c": 200, "d": 50}, "temperature",
                                                    temperature=2))


def test_nested_rates_follow_seqio(tmp_path: Path, suite: Path) -> None:
    write_mixtures(tmp_path, inner="""\
        include: {tasks: [a, b]}
        """, outer="""\
        include: {tasks: [c]}
        mixtures: {inner: 200}
        """, both="""\
        include: {tasks: [a]}
        mixtures: {inner: 100}
        rate: {strategy: equal}
        """, top="""\
        mixtures: {outer: 0.75, inner: 0.25}
        """)
    # inner: a 100/400 = .25, b .75. outer: c 200 + 200 * (.25, .75) -> c 200, a 50, b 150 over 400.
    assert load(tmp_path, suite, "outer").rates == pytest.approx({"c": 0.5, "a": 0.125, "b": 0.375})
    # a task both direct and nested adds up (seqio): a = 1 + 100 * .25, b = 100 * .75 over 101.
    assert load(tmp_path, suite, "both").rates == pytest.approx({"a": 26 / 101, "b": 75 / 101})
    # two levels: .75 * outer + .25 * inner.
    assert load(tmp_path, suite, "top").rates == pytest.approx(
        {"c": 0.375, "a": 0.75 * 0.125 + 0.25 * 0.25, "b": 0.75 * 0.375 + 0.25 * 0.75})


def test_heldout_split_is_disjoint_and_overrides_add(tmp_path: Path, suite: Path) -> None:
    write_mixtures(tmp_path, intra="""\
        include: {patterns: ["*"]}
        heldout: {tasks: [a, d]}
        """, loco="""\
        include: {patterns: ["*"]}
        heldout: [qa]
        """, nest="""\
        mixtures: {intra: 1}
        """)
    m = load(tmp_path, suite, "intra")
    assert sorted(m.rates) == ["b", "c", "e"] and [t.name for t in m.heldout] == ["a", "d"]
    train, held = heldout_split("intra", heldout=["sent"], task_dirs=[suite],
                                mixture_dirs=[tmp_path / "mixtures"], include_builtin=False)
    assert [t.name for t in train] == ["b", "c"] and [t.name for t in held] == ["a", "d", "e"]
    assert not {t.name for t in train} & {t.name for t in held}
    assert sorted(load(tmp_path, suite, "loco").rates) == ["a", "b", "e"]
    assert sorted(load(tmp_path, suite, "loco", heldout=["task:e"]).rates) == ["a", "b"]
    # a nested mixture's held-out tasks stay held out in the parent
    assert [t.name for t in load(tmp_path, suite, "nest").heldout] == ["a", "d"]
    with pytest.raises(T2TError, match="no training task is left"):
        load(tmp_path, suite, "loco", heldout=["nli,sent"])
    with pytest.raises(T2TError, match="'nlii' is neither a cluster nor a task; did you mean nli"):
        load(tmp_path, suite, "intra", heldout=["nlii"])
    # A held-out cluster is the part of it that the mixture selects: tasks of the cluster outside the
    # mixture are neither trained nor reported as its held-out part; a cluster with none is an error.
    write_mixtures(tmp_path, qa_only="include: {clusters: [qa, nli]}\nexclude: {tasks: [b]}\n")
    m = load(tmp_path, suite, "qa_only", heldout=["nli"])
    assert sorted(m.rates) == ["c", "d"] and [t.name for t in m.heldout] == ["a"]
    with pytest.raises(T2TError, match="held-out cluster 'sent' has no task in this mixture.*nli, qa"):
        load(tmp_path, suite, "qa_only", heldout=["sent"])


def test_source_overlap_is_an_error_naming_both(tmp_path: Path) -> None:
    tasks = write_suite(tmp_path, {"rte": ("nli", 40), "rte_para": ("paraphrase", 40), "other": ("qa", 40)},
                        shared={"rte_para": "rte"})
    write_mixtures(tmp_path, all="""\
        include: {patterns: ["*"]}
        heldout: {clusters: [nli]}
        """, allowed="""\
        include: {patterns: ["*"]}
        heldout: {clusters: [nli]}
        allow_source_overlap: true
        """)
    with pytest.raises(T2TError) as info:
        load(tmp_path, tasks, "all")
    msg = str(info.value)
    assert "training task 'rte_para'" in msg and "held-out task 'rte'" in msg and "all.yaml" in msg
    assert "allow_source_overlap" in msg
    m = load(tmp_path, tasks, "allowed")
    assert sorted(m.rates) == ["other", "rte_para"] and m.source_overlaps == (("rte_para", "rte"),)
    manifest = load(tmp_path, tasks, "all", allow_source_overlap=True).manifest()
    assert manifest["heldout"]["source_overlaps"] == [["rte_para", "rte"]]


@pytest.mark.parametrize(("text", "expect"), [
    ("include: {tasks: [a]}\nrates: {}\n", "field 'rates': unknown field; did you mean rate"),
    ("include: {task: [a]}\n", "field 'include.task': unknown selector; did you mean tasks"),
    ("include: {tasks: [aa]}\n", "field 'include': unknown task 'aa'; did you mean a"),
    ("include: {clusters: [nl]}\n", "unknown cluster 'nl'"),
    ("include: {patterns: ['zz*']}\n", "'zz*' matches no task"),
    ("include: {tasks: [a]}\nrate: {strategy: temprature}\n", "did you mean temperature"),
    ("include: {tasks: [a]}\nrate: {cap: 0}\n", "field 'rate.cap': must be positive"),
    ("include: {tasks: [a]}\nstop: first\n", "field 'stop'"),
    ("include: {tasks: [a]}\nmixtures: {nope: 1}\n", "unknown mixture 'nope'"),
    ("include: {tasks: [a]}\nweights: {bad: 1}\n", "'bad' is a mixture, not a task; nest it with mixtures:"),
    ("include: {tasks: [a]}\nmixtures: {bad: 1}\n", "cycle: bad -> bad"),
    ("include: {tasks: [a]}\ntemplates: {subset: {a: [frist]}}\n", "no template 'frist'; did you mean first"),
    ("include: {tasks: [a]}\ntemplates: {variants: {few_shots: 1}}\n", "did you mean few_shot"),
    ("include: {tasks: [a]}\nheldout: {tasks: [zzz]}\n", "field 'heldout.tasks': unknown task 'zzz'"),
    ("description: nothing\n", "selects no task"),
    ("include: {tasks: [a]}\nexclude: {tasks: [a]}\n", "the mixture selects no task"),  # was "after holding out "
    ("include: [a\n", "bad.yaml:2: bad YAML"),
])
def test_mixture_file_errors_name_file_and_field(tmp_path: Path, suite: Path, text: str, expect: str) -> None:
    write_mixtures(tmp_path, bad=text)
    with pytest.raises(T2TError, match="bad.yaml") as info:
        load(tmp_path, suite, "bad")
    assert expect in str(info.value)


def test_registry_search_path_and_duplicates(tmp_path: Path, suite: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    write_mixtures(tmp_path, mine="include: {tasks: [a]}\n")
    monkeypatch.setenv("T2T_MIXTURE_PATH", str(tmp_path / "mixtures"))
    assert "mine" in MixtureRegistry.load(include_builtin=False).names()
    with pytest.raises(T2TError, match="unknown mixture 'mien'; did you mean mine"):
        MixtureRegistry.load(include_builtin=False).get("mien")
    (tmp_path / "dup").mkdir()
    (tmp_path / "dup" / "mine.yml").write_text("include: {tasks: [b]}\n")
    with pytest.raises(T2TError, match="also defined in"):
        MixtureRegistry.load([tmp_path / "dup"], include_builtin=False)


def test_manifest_is_json_and_complete(tmp_path: Path, suite: Path) -> None:
    write_mixtures(tmp_path, m="""\
        include: {clusters: [nli, qa]}
        heldout: {tasks: [d]}
        templates: {choose: random, variants: {zero_shot: 3, few_shot: 1}, few_shot_k: 3}
        """)
    stream = build_stream("m", seed=7, task_dirs=[suite], mixture_dirs=[tmp_path / "mixtures"],
                          include_builtin=False)
    manifest = json.loads(json.dumps(stream.manifest()))
    assert manifest["seed"] == 7 and manifest["stop"] == "infinite" and manifest["mixture"] == "m"
    assert [t["name"] for t in manifest["tasks"]] == ["a", "b", "c"]
    assert manifest["tasks"][0]["variants"] == {"zero_shot": 0.75, "few_shot": 0.25}
    assert manifest["tasks"][0]["choose"] == "random" and manifest["tasks"][0]["few_shot_k"] == 3
    assert manifest["heldout"]["tasks"][0]["name"] == "d"
    assert manifest["stream"]["fingerprint"] == stream.state_dict()["fingerprint"]


# -- command line ---------------------------------------------------------------------------------

def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_cli(main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_list_show_sample(tmp_path: Path, suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # (tasks a-d are the suite's nli and qa clusters; by name, because the built-in hub tasks share
    # those cluster names and this command searches the built-in folder too)
    write_mixtures(tmp_path, m='description: demo\ninclude: {patterns: ["[a-d]"]}\nheldout: {tasks: [d]}\n')
    dirs = ["--task-dir", str(suite), "--mixture-dir", str(tmp_path / "mixtures")]
    code, out, _ = cli(capsys, "list", *dirs[2:])
    assert code == 0 and any(line.split()[:2] == ["m", "demo"] for line in out.splitlines())
    code, out, _ = cli(capsys, "show", "m", "--heldout", "a", *dirs)
    assert code == 0 and "per 1k draws" in out and "held out (2 tasks" in out and "a (nli), d (qa)" in out
    row = next(line.split() for line in out.splitlines() if line.startswith("b "))
    assert row[:5] == ["b", "nli", "300", "0.6000", "600.0"]
    code, out, _ = cli(capsys, "show", "m", "--json", *dirs)
    shown = json.loads(out)
    assert [(t["name"], round(t["per_1000"], 1)) for t in shown["tasks"]] == [
        ("a", 166.7), ("b", 500.0), ("c", 333.3)]
    code, out, _ = cli(capsys, "sample", "m", "--n", "3", "--seed", "1", "--json", *dirs)
    draws = json.loads(out)
    assert code == 0 and [d["position"] for d in draws] == [0, 1, 2]
    assert all(d["task"] in "abc" and d["example"]["target"] in ("yes", "no") for d in draws)
    code, out, err = cli(capsys, "show", "nope", *dirs)
    assert code == 2 and out == "" and err.count("\n") == 1 and "unknown mixture 'nope'" in err


def test_every_builtin_mixture_shows_offline(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Every built-in mixture resolves; hub tasks get a stand-in size (there is no network here), so
    nothing but the generator tasks is ever loaded."""
    import t2t.tasks.sources
    real_num_rows = t2t.tasks.sources.num_rows
    loaded = []

    def num_rows(task, split):
        if "hf" in task.source:
            loaded.append(task.name)
            return 10_000
        return real_num_rows(task, split)

    monkeypatch.setattr(t2t.tasks.sources, "num_rows", num_rows)
    names = MixtureRegistry.load().names()
    assert {"offline", "offline_loco", "t0_mini"} <= set(names)
    for name in names:
        code, out, err = cli(capsys, "show", name, "--json")
        assert code == 0, err
        shown = json.loads(out)
        assert sum(t["rate"] for t in shown["tasks"]) == pytest.approx(1.0)
        train = {t["name"] for t in shown["tasks"]}
        held = {t["name"] for t in shown["heldout"]["tasks"]}
        assert train and not train & held
    offline = json.loads(cli(capsys, "show", "offline", "--json")[1])
    clusters = {t["cluster"] for t in offline["tasks"]}
    # intra-cluster FLAN split: exactly one held-out task per cluster, every cluster still trained on
    assert sorted(t["cluster"] for t in offline["heldout"]["tasks"]) == sorted(clusters)
    # The offline mixtures never touch a hub task, even for a cluster that hub tasks share.
    loaded.clear()
    loco = json.loads(cli(capsys, "show", "offline_loco", "--heldout", "sentiment", "--json")[1])
    assert {t["name"] for t in loco["heldout"]["tasks"]} == {
        "sentiment_movie", "sentiment_product", "sentiment_restaurant"}
    assert not loaded and all(t["source_id"].startswith("generator:") for t in loco["tasks"])
    # T0's split: NLI held out entirely, paraphrase still trained.
    t0 = json.loads(cli(capsys, "show", "t0_mini", "--json")[1])
    assert {t["name"] for t in t0["heldout"]["tasks"]} == {"rte", "mnli", "anli_r1"}
    assert {"paraphrase", "sentiment", "qa"} <= {t["cluster"] for t in t0["tasks"]}
    assert "nli" not in {t["cluster"] for t in t0["tasks"]}
