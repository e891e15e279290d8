"""The built-in hub mixtures (task_registry/: hub, flan2021, flan2021_loco, t0_train), resolved offline from
the train sizes the hub mixture declares: FLAN's NLI split with paraphrase kept out, leave-one-cluster-out for
every cluster, T0's per-template cap and held-out clusters, and what ``show`` prints."""

from __future__ import annotations

import pytest

from t2t.mixtures.resolve import resolve
from t2t.mixtures.spec import MixtureRegistry
from t2t.tasks.registry import TaskRegistry


@pytest.fixture(autouse=True)
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub mixtures must resolve from their declared sizes: counting a hub task is a failure."""
    import t2t.tasks.sources

    real = t2t.tasks.sources.num_rows

    def num_rows(task, split):
        assert "hf" not in task.source, f"hub task {task.name} was counted, not declared"
        return real(task, split)

    monkeypatch.setattr(t2t.tasks.sources, "num_rows", num_rows)


@pytest.fixture(scope="module")
def builtin() -> tuple[TaskRegistry, MixtureRegistry]:
    return TaskRegistry.load(), MixtureRegistry.load()


def resolve_builtin(name: str, builtin, **kw):
    tasks, mixtures = builtin
    return resolve(name, tasks, mixtures, **kw)


def test_hub_sizes_cover_every_hub_task(builtin) -> None:
    tasks, mixtures = builtin
    hub = [t for t in tasks if "hub" in t.tags]
    assert len(hub) >= 43 and len({t.source_id for t in hub}) >= 40  # 40 datasets (ANLI rounds and SQuAD shared)
    declared = mixtures.get("hub").sizes
    assert set(declared) == {t.name for t in hub}
    for t in hub:  # every hub task is offline-safe: never selected by the offline mixtures
        assert "offline" not in t.tags and "hf" in t.source


def test_flan2021_holds_out_nli_and_keeps_paraphrase_out(builtin) -> None:
    m = resolve_builtin("flan2021", builtin)
    tasks = builtin[0]
    assert {t.cluster for t in m.heldout} == {"nli"}
    assert {t.name for t in m.heldout} == {t.name for t in tasks.by_cluster("nli") if "hub" in t.tags}
    assert {t.cluster for t in m.excluded} == {"paraphrase"} and m.related_clusters == ("paraphrase",)
    trained = {e.task.cluster for e in m.entries}
    assert "nli" not in trained and "paraphrase" not in trained and len(trained) >= 9
    assert all(e.examples <= 30000 and e.limit == 30000 for e in m.entries)
    # proportional with cap 3000: every task above 3000 rows has the same, largest rate
    big = [e.rate for e in m.entries if e.examples >= 3000]
    assert big and max(big) == pytest.approx(min(big)) and max(e.rate for e in m.entries) == pytest.approx(big[0])
    variants = m.entries[0].policy.variants
    assert set(variants) == {"zero_shot", "zero_shot_no_options", "few_shot", "few_shot_no_options"}


def test_flan2021_loco_every_cluster(builtin) -> None:
    tasks = builtin[0]
    clusters = sorted({t.cluster for t in tasks if "hub" in t.tags})
    assert len(clusters) >= 10
    for c in clusters:
        m = resolve_builtin("flan2021_loco", builtin, heldout=[c])
        assert {t.cluster for t in m.heldout} == {c}
        trained = {e.task.cluster for e in m.entries}
        assert c not in trained and not trained & set(m.related_clusters)
        assert m.related_clusters == (("paraphrase",) if c == "nli" else ())
        held_sources = {t.source_id for t in m.heldout}
        assert not {e.task.source_id for e in m.entries} & held_sources  # same-source tasks on one side


def test_t0_train_caps_per_template_and_holds_out_t0s_clusters(builtin) -> None:
    m = resolve_builtin("t0_train", builtin)
    held = {t.name for t in m.heldout}
    assert {"rte", "cb", "anli_r1", "anli_r2", "anli_r3", "wsc", "winogrande", "copa", "wic"} <= held
    assert not {"nli", "coreference", "word_sense"} & {e.task.cluster for e in m.entries}
    assert "copa" not in m.rates and "paraphrase" in {e.task.cluster for e in m.entries}
    raw = {e.name: min(e.examples, 500_000 / len(e.templates)) for e in m.entries}
    total = sum(raw.values())
    assert m.rates == pytest.approx({k: v / total for k, v in raw.items()})
    # wmt16 de-en (4.5M rows) is capped at 500k / its templates; cola (8,551 rows) is not capped
    assert raw["wmt16_de_en"] == pytest.approx(500_000 / len(m.entries[[e.name for e in m.entries].index(
        "wmt16_de_en")].templates))
    assert raw["cola"] == 8551


def test_show_prints_rates_draws_and_the_heldout_split_offline(builtin, capsys) -> None:
    from t2t.mixture import main

    assert main(["show", "flan2021"]) == 0
    out = capsys.readouterr().out
    assert "per 1k draws" in out and "held out (" in out and "clusters: nli" in out
    assert "not trained, related to a held-out cluster (paraphrase): mrpc (paraphrase)" in out
    assert main(["show", "flan2021_loco", "--heldout", "coreference"]) == 0
    out = capsys.readouterr().out
    assert "cap 3000, train rows <= 30000" in out and "clusters: coreference" in out
    assert main(["show", "t0_train"]) == 0
    assert "cap 500000 / templates" in capsys.readouterr().out


def test_declared_sizes_are_the_ones_each_task_file_cites(builtin) -> None:
    """hub.yaml's size of a task is the train size its front matter cites from the dataset card."""
    tasks, mixtures = builtin
    for name, n in mixtures.get("hub").sizes.items():
        task = tasks.get(name)
        front = task.path.read_text(encoding="utf-8").split("\n---\n", 1)[0]
        source_train = task.splits["train"]
        assert f"{source_train} {n:,}" in " ".join(front.replace("#", " ").split()), (name, source_train, n)
