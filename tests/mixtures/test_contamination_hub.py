"""The contamination check when the hub cannot be reached (t2t.mixtures.contamination_hub): no hub task is
retried after the first connection failure (or a failed probe), each is named with the reason and
HF_HUB_OFFLINE, local tasks are still checked; in offline mode datasets itself answers, without a probe.
No network is used: the probe and the hub reads are replaced, or offline mode is on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from t2t.errors import T2TError, run_cli
from t2t.mixture import main
from t2t.mixtures import contamination, contamination_hub
from t2t.mixtures.resolve import load_mixture
from t2t.tasks import sources

TASK = """---
cluster: {cluster}
source: {source}
splits: {{train: train, validation: validation}}
---
{{% block echo %}}
{{{{ text }}}}
|||
{{{{ answer }}}}
{{% endblock %}}
"""
ROW = "the old lighthouse keeper counted every ship that passed the rocky northern cape at dawn"
HUB = ("hub_held", "hub_a", "hub_b")


@pytest.fixture()
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A local held-out task whose row is copied in a local training task, and three hub tasks (one held
    out, two trained on, their sizes declared so that the mixture resolves without reading them)."""
    for name in ("held", "copy"):
        (tmp_path / f"{name}.jsonl").write_text(json.dumps({"text": ROW, "answer": "yes"}) + "\n")
    (tmp_path / "local_held.jinja").write_text(TASK.format(
        cluster="c1", source=json.dumps({"files": {"train": "held.jsonl", "validation": "held.jsonl"}})))
    (tmp_path / "local_train.jinja").write_text(TASK.format(
        cluster="c2", source=json.dumps({"files": {"train": "copy.jsonl"}})))
    for name, cluster in zip(HUB, ("c1", "c2", "c2"), strict=True):
        (tmp_path / f"{name}.jinja").write_text(TASK.format(cluster=cluster, source=f"{{hf: t2t-test/{name}}}"))
    (tmp_path / "hm.yaml").write_text("include: {tasks: [local_held, hub_held, local_train, hub_a, hub_b]}\n"
                                      "heldout: {tasks: [local_held, hub_held]}\nsizes: {hub_a: 5, hub_b: 5}\n")
    return tmp_path, tmp_path


@pytest.fixture()
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline mode off, whatever the environment says (both flags are read at call time)."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def _hub_reads(monkeypatch: pytest.MonkeyPatch, error: Exception | None) -> list[str]:
    """Replace hub reads (``sources.load_rows``, which ``num_rows`` and ``row_batches`` call): each is recorded
    and raises ``error`` as datasets' failure the way sources wraps it; local tasks read as usual."""
    calls: list[str] = []
    real = sources.load_rows

    def load_rows(task, split):
        if not contamination_hub.is_hub(task):
            return real(task, split)
        calls.append(task.name)
        try:
            raise error or AssertionError(f"{task.name} must not be read")
        except ConnectionError as exc:
            raise T2TError(f"task '{task.name}': could not load split '{split}' from {task.source_id}: "
                           "FileNotFoundError: not cached") from exc

    monkeypatch.setattr(sources, "load_rows", load_rows)
    return calls


def test_first_connection_error_stops_the_other_hub_reads(dirs, online, monkeypatch):
    tasks, mixtures = dirs
    monkeypatch.setattr(contamination_hub, "probe_endpoint", lambda: None)  # the endpoint answers
    calls = _hub_reads(monkeypatch, ConnectionError("Couldn't reach 't2t-test/hub_held' on the Hub (ConnectError)"))
    report = contamination.check(load_mixture("hm", task_dirs=[tasks], mixture_dirs=[mixtures]))
    assert calls == ["hub_held"]  # read once: hub_a and hub_b are not tried
    assert [(t.task, t.dirty) for t in report.tasks] == [("local_held", (0,))]  # the local side still checked
    assert report.tasks[0].origins[0].train_tasks == ("local_train",)
    assert list(report.unavailable) == ["hub_held (held out)", "hub_a (train)", "hub_b (train)"]
    first = report.unavailable["hub_held (held out)"]
    assert "Couldn't reach 't2t-test/hub_held'" in first and "HF_HUB_OFFLINE=1" in first
    for name in ("hub_a", "hub_b"):
        why = report.unavailable[f"{name} (train)"]
        assert f"hf:t2t-test/{name} not tried" in why and "hub_held could not connect" in why
        assert "HF_HUB_OFFLINE=1" in why
    assert not report.complete and "lower bounds" in report.text()


def test_unreachable_endpoint_means_no_hub_read_at_all(dirs, online, monkeypatch, capsys):
    tasks, mixtures = dirs
    probes: list[int] = []
    monkeypatch.setattr(contamination_hub, "probe_endpoint",
                        lambda: probes.append(1) or "ConnectError: [Errno -2] Name or service not known")
    calls = _hub_reads(monkeypatch, None)
    rc = run_cli(main, ["check", "hm", "--task-dir", str(tasks), "--mixture-dir", str(mixtures)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert calls == [] and probes == [1]  # one probe for the whole check
    lines = [line for line in out.out.splitlines() if line.startswith("not checked: ")]
    assert [line.split(":")[1].strip() for line in lines] == ["hub_held (held out)", "hub_a (train)",
                                                              "hub_b (train)"]
    assert all("cannot be reached (ConnectError: [Errno -2]" in line and "HF_HUB_OFFLINE=1" in line
               for line in lines)
    assert "local_held" in out.out and "1/1" in out.out


def test_offline_mode_reads_through_datasets_without_probe(dirs, monkeypatch):
    """HF_HUB_OFFLINE on (as set at import, here patched): datasets answers at once for what is not cached
    (the real load_dataset, no network); no probe is sent and nothing is skipped on the gate's account."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(contamination_hub, "probe_endpoint", lambda: pytest.fail("probed in offline mode"))
    tasks, mixtures = dirs
    start = time.perf_counter()
    report = contamination.check(load_mixture("hm", task_dirs=[tasks], mixture_dirs=[mixtures]))
    seconds = time.perf_counter() - start
    assert list(report.unavailable) == ["hub_held (held out)", "hub_a (train)", "hub_b (train)"]
    for name, why in report.unavailable.items():
        assert f"t2t-test/{name.split()[0]}" in why and "not tried" not in why and "offline mode is on" in why
    assert report.tasks[0].dirty == (0,)
    print(f"offline check with three uncached hub tasks: {seconds:.2f} s")  # no retry waits: well under 10 s


def test_connection_failure_is_found_in_the_cause_chain():
    try:
        try:
            raise ConnectionError("Couldn't reach 'x' on the Hub (LocalEntryNotFoundError)")
        except ConnectionError as inner:
            raise T2TError("could not load") from inner
    except T2TError as exc:
        assert contamination_hub.connection_failure(exc) == ("ConnectionError: Couldn't reach 'x' on the Hub "
                                                              "(LocalEntryNotFoundError)")
    assert contamination_hub.connection_failure(T2TError("no file matches")) is None
