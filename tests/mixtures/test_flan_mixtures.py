"""The mixture features behind flan2021 and t0_train: FLAN's related-cluster rule (``related:``), T0's
per-template cap (``rate.cap_per_template``), FLAN's per-task train limit (``train_limit``) and declared
sizes (``sizes`` / ``sizes_from``); then the built-in hub mixtures themselves, resolved offline, and flan2022's
submix weights, caps and held-out hygiene."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import t2t.tasks.sources
from t2t.errors import T2TError
from t2t.mixtures.resolve import load_mixture, resolve
from t2t.mixtures.spec import COT_VARIANTS, MixtureRegistry
from t2t.mixtures.stream import ExampleStream
from t2t.tasks.registry import TaskRegistry

TASK = """\
---
cluster: {cluster}
source: {{files: {{train: data/{name}.jsonl}}}}
choices: ["yes", "no"]
answer: "{{{{ choices[label] }}}}"
---
{blocks}
"""
BLOCK = """{{% block t{i} %}}
{{{{ x }}}} ({i}) {{{{ options }}}}
|||
{{{{ answer }}}}
{{% endblock %}}
"""


def write_suite(root: Path, tasks: dict[str, tuple[str, int, int]]) -> Path:
    """root/tasks: name -> (cluster, rows, templates)."""
    folder = root / "tasks"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for name, (cluster, n, k) in tasks.items():
        blocks = "".join(BLOCK.format(i=i) for i in range(k))
        (folder / f"{name}.jinja").write_text(TASK.format(cluster=cluster, name=name, blocks=blocks))
        rows = [{"x": f"{name}-{i}", "label": i % 2} for i in range(n)]
        (folder / "data" / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def write_mixtures(root: Path, **files: str) -> None:
    folder = root / "mixtures"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))


SUITE = {"nli_a": ("nli", 100, 2), "nli_b": ("nli", 300, 2), "para_a": ("paraphrase", 200, 2),
         "sent_a": ("sentiment", 400, 4), "sent_b": ("sentiment", 50, 1), "qa_a": ("qa", 1000, 5)}


@pytest.fixture(autouse=True)
def no_download_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path, SUITE)


def load(tmp_path: Path, tasks: Path, name: str, **kw):
    return load_mixture(name, task_dirs=[tasks], mixture_dirs=[tmp_path / "mixtures"], include_builtin=False,
                        **kw)


ALL = "include: {tasks: [nli_a, nli_b, para_a, sent_a, sent_b, qa_a]}\n"


# -- related clusters (FLAN: holding out NLI also keeps paraphrase out) -----------------------------

def test_related_cluster_rule_excludes_without_holding_out(tmp_path: Path, suite: Path) -> None:
    write_mixtures(tmp_path, flan=ALL + "related: {nli: [paraphrase]}\nheldout: {clusters: [nli]}\n",
                   loco=ALL + "related: {nli: [paraphrase]}\n",
                   nested="mixtures: {loco: 1.0}\nheldout: {clusters: [nli]}\n")
    m = load(tmp_path, suite, "flan")
    assert {t.name for t in m.heldout} == {"nli_a", "nli_b"}
    assert [t.name for t in m.excluded] == ["para_a"] and m.related_clusters == ("paraphrase",)
    assert set(m.rates) == {"sent_a", "sent_b", "qa_a"}
    manifest = m.manifest()
    assert manifest["heldout"]["excluded"] == [{"name": "para_a", "cluster": "paraphrase"}]
    assert manifest["heldout"]["related"] == {"nli": ["paraphrase"]}
    # The rule is one-way and fires only for a held-out cluster, given by the file or by --heldout.
    loco = load(tmp_path, suite, "loco")
    assert not loco.excluded and "para_a" in loco.rates
    para = load(tmp_path, suite, "loco", heldout=["paraphrase"])
    assert not para.excluded and "nli_a" in para.rates
    assert [t.name for t in load(tmp_path, suite, "loco", heldout=["nli"]).excluded] == ["para_a"]
    # A related cluster that is itself held out is held out (evaluated), not merely excluded.
    both = load(tmp_path, suite, "loco", heldout=["nli", "paraphrase"])
    assert not both.excluded and {t.name for t in both.heldout} == {"nli_a", "nli_b", "para_a"}
    # A nested mixture's rules apply to the mixture that nests it.
    nested = load(tmp_path, suite, "nested")
    assert [t.name for t in nested.excluded] == ["para_a"] and set(nested.rates) == set(m.rates)
    # An intra-cluster held-out task does not trigger the rule.
    assert not load(tmp_path, suite, "loco", heldout=["task:nli_a"]).excluded


@pytest.mark.parametrize("text, expect", [
    ("related: {nli: paraphrase}\n", "t2t"),  # a bare name is a one-item list
    ("related: {nli: [nope]}\n", "field 'related.nli': unknown cluster 'nope'"),
    ("related: {nli: [nli]}\n", "field 'related.nli': a cluster is not related to itself"),
    ("related: [nli]\n", "field 'related': must map a cluster"),
])
def test_related_errors_name_the_field(tmp_path: Path, suite: Path, text: str, expect: str) -> None:
    write_mixtures(tmp_path, m=ALL + text)
    if expect == "t2t":
        assert not load(tmp_path, suite, "m").excluded
        return
    with pytest.raises(T2TError, match=expect.replace("(", r"\(")):
        load(tmp_path, suite, "m")


# -- T0's cap: 500k examples per dataset divided by its number of templates ------------------------

def test_cap_per_template_is_t0s_rule(tmp_path: Path, suite: Path) -> None:
    write_mixtures(tmp_path, t0=ALL + "rate: {cap_per_template: 1000}\n",
                   both=ALL + "rate: {cap_per_template: 1000, cap: 150}\n",
                   scored=ALL + "rate: {cap_per_template: 1000}\ntemplates: {subset: {qa_a: [t0, t1]}}\n")
    m = load(tmp_path, suite, "t0")
    # caps: nli_a 1000/2=500 (n 100), nli_b 500 (300), para_a 500 (200), sent_a 1000/4=250 (400 -> 250),
    # sent_b 1000/1 (50), qa_a 1000/5=200 (1000 -> 200): rate = capped size
    raw = {"nli_a": 100, "nli_b": 300, "para_a": 200, "sent_a": 250, "sent_b": 50, "qa_a": 200}
    total = sum(raw.values())
    assert m.rates == pytest.approx({k: v / total for k, v in raw.items()})
    assert m.manifest()["rate"]["cap_per_template"] == 1000
    # With a plain cap as well, the smaller cap holds.
    raw2 = {k: min(v, 150) for k, v in raw.items()}
    assert load(tmp_path, suite, "both").rates == pytest.approx({k: v / sum(raw2.values()) for k, v in raw2.items()})
    # The number of templates is the number the mixture trains the task with.
    raw3 = {**raw, "qa_a": 500}
    assert load(tmp_path, suite, "scored").rates["qa_a"] == pytest.approx(500 / sum(raw3.values()))


def test_cap_per_template_errors(tmp_path: Path, suite: Path) -> None:
    for text, expect in [("rate: {cap_per_template: 0}\n", "rate.cap_per_template': must be positive"),
                         ("rate: {cap_per_template: 1.5}\n", "rate.cap_per_template': must be an integer"),
                         ("rate: {strategy: equal, cap_per_template: 5}\n", "takes no cap")]:
        write_mixtures(tmp_path, m=ALL + text)
        with pytest.raises(T2TError, match=expect):
            load(tmp_path, suite, "m")


# -- FLAN's 30k: at most the first N train rows per task --------------------------------------------

def test_train_limit_caps_sizes_and_the_stream_reads_only_those_rows(tmp_path: Path, suite: Path) -> None:
    write_mixtures(tmp_path, m=ALL + "train_limit: 120\nrate: {strategy: equal}\n")
    m = load(tmp_path, suite, "m")
    sizes = {e.name: e.examples for e in m.entries}
    assert sizes == {"nli_a": 100, "nli_b": 120, "para_a": 120, "sent_a": 120, "sent_b": 50, "qa_a": 120}
    assert all(e.limit == 120 for e in m.entries) and m.manifest()["rate"]["train_limit"] == 120
    stream = ExampleStream(m, seed=0)
    rows = {int(d.example.input.split(" ")[0].split("-")[-1]) for d in stream.draws(0, 600)
            if d.example.task == "qa_a"}
    assert rows and max(rows) < 120  # only the first 120 rows of qa_a's 1000 are ever drawn
    write_mixtures(tmp_path, m=ALL + "train_limit: 0\n")
    with pytest.raises(T2TError, match="field 'train_limit': must be positive"):
        load(tmp_path, suite, "m")


# -- declared sizes: hub mixtures resolve offline --------------------------------------------------

def test_declared_sizes_replace_counting(tmp_path: Path, suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import t2t.tasks.sources

    counted: list[str] = []
    real = t2t.tasks.sources.num_rows

    def num_rows(task, split):
        counted.append(task.name)
        return real(task, split)

    monkeypatch.setattr(t2t.tasks.sources, "num_rows", num_rows)
    write_mixtures(tmp_path, base=ALL + "sizes: {qa_a: 90000, sent_a: 400}\n",
                   user=ALL + "sizes_from: [base]\nsizes: {sent_a: 401}\ntrain_limit: 30000\n",
                   wrong=ALL + "sizes: {nope: 3}\n", cycle="include: {tasks: [qa_a]}\nsizes_from: [cycle2]\n",
                   cycle2="include: {tasks: [qa_a]}\nsizes_from: [cycle]\n")
    m = load(tmp_path, suite, "user")
    sizes = {e.name: e.examples for e in m.entries}
    assert sizes["qa_a"] == 30000 and sizes["sent_a"] == 401  # own sizes over sizes_from; train_limit after
    assert "qa_a" not in counted and "sent_a" not in counted and "nli_a" in counted
    with pytest.raises(T2TError, match="field 'sizes': unknown task 'nope'"):
        load(tmp_path, suite, "wrong")
    with pytest.raises(T2TError, match="field 'sizes_from': a cycle"):
        load(tmp_path, suite, "cycle")
    # A wrong declaration is caught when the stream reads the rows.
    write_mixtures(tmp_path, bad="include: {tasks: [sent_b]}\nsizes: {sent_b: 49}\n")
    stream = ExampleStream(load(tmp_path, suite, "bad"), seed=0)
    with pytest.raises(T2TError, match="declared size"):
        stream.draws(0, 1)


# -- flan2022: the Flan Collection's submixes over the hub and CoT catalog -----------------------------

def test_flan2022_weights_caps_and_heldout_hygiene(monkeypatch: pytest.MonkeyPatch) -> None:
    """flan2022 resolves offline (every size declared), each submix gets its published weight renormalised over
    flan .40 / t0 .32 / cot .05, each submix's cap holds, and the held-out NLI cluster (paraphrase with it) is
    trained on by no submix; holding out commonsense also keeps ECQA (CommonsenseQA's questions) out."""
    def num_rows(task, split):
        raise AssertionError(f"task {task.name} was counted, not declared")

    monkeypatch.setattr(t2t.tasks.sources, "num_rows", num_rows)
    tasks, mixtures = TaskRegistry.load(), MixtureRegistry.load()
    m = resolve("flan2022", tasks, mixtures)
    by = {e.name: e for e in m.entries}
    cot = {t.name for t in tasks if "cot" in t.tags}
    t0 = {"amazon_polarity", "dbpedia_14", "sciq"}
    flan = set(by) - cot - t0
    assert cot <= set(by) and t0 <= set(by) and len(flan) >= 25
    for names, weight in ((flan, 0.40), (t0, 0.32), (cot, 0.05)):
        assert sum(by[n].rate for n in names) == pytest.approx(weight / 0.77)
    # caps: T0 20k (amazon_polarity 3.6M and dbpedia_14 560k both capped), CoT 100k (not reached), Flan 30k
    assert by["amazon_polarity"].rate == pytest.approx(by["dbpedia_14"].rate)
    assert by["sciq"].rate / by["dbpedia_14"].rate == pytest.approx(11679 / 20000)
    assert by["cot_aqua_rat"].rate / by["cot_gsm8k"].rate == pytest.approx(97467 / 7473)
    assert by["squad"].rate == pytest.approx(by["nq_open"].rate)
    assert by["arc_easy"].rate / by["squad"].rate == pytest.approx(2251 / 30000)
    # variants: CoT tasks draw the CoT settings, the others FLAN's four
    for name, e in by.items():
        assert (set(e.policy.variants) <= set(COT_VARIANTS)) == (name in cot), name
    held = {t.name for t in m.heldout}
    assert held == {t.name for t in tasks if t.cluster == "nli" and "hub" in t.tags}
    trained = {by[n].task.cluster for n in by}
    assert not {"nli", "paraphrase"} & trained
    assert not {by[n].task.source_id for n in by} & {t.source_id for t in m.heldout}
    # the CoT tasks' declared train sizes are the ones their task files cite
    for name, n in mixtures.get("flan2022_cot").sizes.items():
        assert f"{n:,}" in tasks.get(name).path.read_text(encoding="utf-8").split("\n---\n", 1)[0], name
    m = resolve("flan2022", tasks, mixtures, heldout=["commonsense"])
    assert "cot_ecqa" in {t.name for t in m.heldout} and "cot_ecqa" not in {e.name for e in m.entries}
