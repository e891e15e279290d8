"""The example stream: determinism, task shares (chi-square over 200k draws), DataLoader workers,
save/restore, epochs, stop policies, template choice, declined templates and few-shot variants."""

from __future__ import annotations

import itertools
import json
import math
import pickle
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from t2t.errors import T2TError
from t2t.mixtures.resolve import load_mixture
from t2t.mixtures.stream import ExampleStream
from t2t.tasks.fewshot import FEW_SHOT_SEP, FEW_SHOT_XY

TASK = """\
---
cluster: {cluster}
source: {{files: {{train: data/{name}.jsonl}}}}
choices: ["yes", "no"]
answer: "{{{{ choices[label] }}}}"
---
{{% block one %}}
{{{{ x }}}} one? {{{{ options }}}}
|||
{{{{ answer }}}}
{{% endblock %}}
{{% block two %}}
{{{{ x }}}} two?
|||
{{{{ answer }}}}
{{% endblock %}}
{{% block odd_only %}}
{{% if label == 1 %}}{{{{ x }}}} odd?
|||
{{{{ answer }}}}{{% endif %}}
{{% endblock %}}
"""


@pytest.fixture(autouse=True)
def no_download_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    # datasets pings the hub to count every load_dataset("json"), even of local files; offline that
    # costs a DNS timeout (~5 s) per load. t2t.tasks.sources should switch it off for local files.
    import datasets

    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False)


def make(tmp_path: Path, mixture: str, sizes: dict[str, int], name: str = "m") -> tuple[Path, Path]:
    tasks, mixtures = tmp_path / "tasks", tmp_path / "mixtures"
    (tasks / "data").mkdir(parents=True, exist_ok=True)
    mixtures.mkdir(exist_ok=True)
    for task, n in sizes.items():
        (tasks / f"{task}.jinja").write_text(TASK.format(cluster=f"c_{task}", name=task))
        rows = [{"x": f"{task}-{i}", "label": i % 2} for i in range(n)]
        (tasks / "data" / f"{task}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (mixtures / f"{name}.yaml").write_text(textwrap.dedent(mixture))
    return tasks, mixtures


def stream_of(tmp_path: Path, mixture: str, sizes: dict[str, int], seed: int = 0, **kw) -> ExampleStream:
    tasks, mixtures = make(tmp_path, mixture, sizes)
    m = load_mixture("m", task_dirs=[tasks], mixture_dirs=[mixtures], include_builtin=False)
    return ExampleStream(m, seed=seed, **kw)


SMALL = {"a": 7, "b": 11, "c": 13}
TWO_TEMPLATES = """\
include: {patterns: ['*']}
templates: {subset: {a: [one, two], b: [one, two], c: [one, two]}}
"""


def key(ex) -> tuple:
    return (ex.task, ex.template, ex.index, ex.input, ex.target)


def take(iterable, n: int) -> list[tuple]:
    return [key(e) for e in itertools.islice(iterable, n)]


def test_same_seed_same_stream(tmp_path: Path) -> None:
    s1 = stream_of(tmp_path, TWO_TEMPLATES, SMALL, seed=3)
    s2 = ExampleStream(s1.mixture, seed=3)
    first = take(s1, 200)
    assert first == take(s2, 200)
    assert first != take(ExampleStream(s1.mixture, seed=4), 200)
    assert [d.position for d in s1.draws(5, 3)] == [5, 6, 7]
    assert key(s1.draw(17).example) == first[17]


def test_task_shares_match_rates_over_200k_draws(tmp_path: Path) -> None:
    stream = stream_of(tmp_path, "include: {patterns: ['*']}\n", {"a": 100, "b": 300, "c": 600, "d": 1000})
    n = 200_000
    ids = stream.task_ids(n)  # no rendering involved
    assert len(ids) == n
    observed = np.bincount(ids, minlength=4)
    expected = n * np.array([0.05, 0.15, 0.30, 0.50])
    assert stream.rates == pytest.approx(expected / n)
    # per-task binomial z-scores, and Pearson's chi-square against its p = 1e-4 critical value
    # (Wilson-Hilferty approximation of the chi-square quantile; z = 3.719 for p = 1e-4).
    z = (observed - expected) / np.sqrt(expected * (1 - expected / n))
    assert np.abs(z).max() < 4.5, z

    def critical(df: int, zq: float = 3.719) -> float:
        return df * (1 - 2 / (9 * df) + zq * math.sqrt(2 / (9 * df))) ** 3

    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < critical(3), chi2
    # the test has power: rates off by one percentage point are rejected
    wrong = n * np.array([0.06, 0.14, 0.30, 0.50])
    assert float(((observed - wrong) ** 2 / wrong).sum()) > critical(3)


def test_stream_definition_is_frozen(tmp_path: Path) -> None:
    """Golden values: if these change, runs resumed across t2t or numpy versions see other examples."""
    stream = stream_of(tmp_path, "include: {patterns: ['*']}\n", {"a": 10, "b": 30, "c": 60, "d": 100})
    golden = [3, 3, 3, 3, 1, 2, 3, 0, 3, 3, 0, 1, 1, 3, 3, 1, 3, 2, 0, 2, 2, 3, 2, 1, 3, 2, 2, 2, 2, 3]
    assert stream.task_ids(30).tolist() == golden
    rows_of_a = [d.row for d in itertools.islice(stream.draws(), 400) if d.task == "a"][:10]
    assert rows_of_a == [3, 8, 1, 2, 5, 6, 7, 9, 0, 4]


def test_each_epoch_is_a_fresh_permutation(tmp_path: Path) -> None:
    stream = stream_of(tmp_path, "include: {tasks: [a]}\n", {"a": 9})
    rows = [d.row for d in stream.draws(0, 27)]
    epochs = [rows[i:i + 9] for i in (0, 9, 18)]
    assert all(sorted(e) == list(range(9)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_dataloader_workers_give_the_single_process_stream(tmp_path: Path, workers: int) -> None:
    stream = stream_of(tmp_path, TWO_TEMPLATES, SMALL, seed=5)
    single = take(ExampleStream(stream.mixture, seed=5), 60)
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    assert take(loader, 60) == single
    # batched loading: chunk = batch_size keeps whole batches in stream order
    chunked = ExampleStream(stream.mixture, seed=5, chunk=4)
    batches = DataLoader(chunked, batch_size=4, num_workers=workers, collate_fn=list)
    assert [key(e) for batch in itertools.islice(batches, 15) for e in batch] == single
    # a finite stream ends at the same place with any number of workers
    finite = ExampleStream(stream.mixture, seed=5, stop="first_exhausted")
    assert take(DataLoader(finite, batch_size=None, num_workers=workers), 10**6) == take(
        ExampleStream(stream.mixture, seed=5, stop="first_exhausted"), 10**6)


def test_save_and_restore_mid_stream(tmp_path: Path) -> None:
    stream = stream_of(tmp_path, TWO_TEMPLATES, SMALL, seed=2)
    uninterrupted = take(ExampleStream(stream.mixture, seed=2), 120)
    it = iter(stream)
    head = take(it, 37)  # crosses several epochs of the 7-, 11- and 13-row tasks
    state = json.loads(json.dumps(stream.state_dict()))  # survives a JSON checkpoint
    assert state["position"] == 37
    resumed = ExampleStream(stream.mixture, seed=2)
    resumed.load_state_dict(state)
    assert head + take(resumed, 83) == uninterrupted
    # with DataLoader workers (or draws()) the trainer gives the position it reached
    resumed = ExampleStream(stream.mixture, seed=2)
    resumed.load_state_dict(state)
    loader = iter(DataLoader(resumed, batch_size=None, num_workers=2))
    middle = take(loader, 40)
    assert middle == uninterrupted[37:77]
    state2 = resumed.state_dict(37 + 40)
    assert state2["position"] == 77
    again = ExampleStream(stream.mixture, seed=2)
    again.load_state_dict(state2)
    assert take(again, 43) == uninterrupted[77:]


def test_restoring_into_another_stream_is_an_error(tmp_path: Path) -> None:
    stream = stream_of(tmp_path, TWO_TEMPLATES, SMALL, seed=2)
    other = ExampleStream(stream.mixture, seed=3)
    with pytest.raises(T2TError, match="resume with the same mixture"):
        other.load_state_dict(stream.state_dict())
    with pytest.raises(T2TError, match="not a stream state"):
        other.load_state_dict({"position": -1})


def test_stream_pickles_by_reloading_its_files(tmp_path: Path) -> None:
    stream = stream_of(tmp_path, TWO_TEMPLATES, SMALL, seed=1)
    take(iter(stream), 10)
    copy = pickle.loads(pickle.dumps(stream))
    assert copy.position == 10 and take(copy, 20) == take(stream, 20)


def counts_by_task(stream: ExampleStream) -> tuple[list, Counter]:
    draws = list(stream.draws())
    return draws, Counter(d.task for d in draws)


def test_stop_policies(tmp_path: Path) -> None:
    base = stream_of(tmp_path, TWO_TEMPLATES, SMALL, seed=9)
    sizes = dict(SMALL)
    draws, counts = counts_by_task(ExampleStream(base.mixture, seed=9, stop="first_exhausted"))
    # ends just before the first repeat: one task used in full, none beyond
    assert all(counts[t] <= n for t, n in sizes.items()) and any(counts[t] == n for t, n in sizes.items())
    nxt = base.task_ids(1, start=len(draws))[0]
    assert counts[base.names[nxt]] == sizes[base.names[nxt]]
    draws, counts = counts_by_task(ExampleStream(base.mixture, seed=9, stop="all_exhausted"))
    assert all(counts[t] >= n for t, n in sizes.items())
    assert counts[draws[-1].task] == sizes[draws[-1].task]  # the last draw completes the last task
    assert all({d.row for d in draws if d.task == t} == set(range(n)) for t, n in sizes.items())
    once = ExampleStream(base.mixture, seed=9, stop="all_exhausted_without_replacement")
    draws, counts = counts_by_task(once)
    assert counts == Counter(sizes) and len({(d.task, d.row) for d in draws}) == sum(sizes.values())
    assert list(itertools.islice(ExampleStream(base.mixture, seed=9).draws(), 500))[-1].position == 499
    with pytest.raises(T2TError, match="did you mean first_exhausted"):
        ExampleStream(base.mixture, stop="first_exhaust")


@pytest.mark.parametrize("stop", ["infinite", "first_exhausted", "all_exhausted",
                                  "all_exhausted_without_replacement"])
def test_random_access_matches_one_pass_across_blocks(tmp_path: Path, stop: str) -> None:
    stream = stream_of(tmp_path, "include: {patterns: ['*']}\n", {"a": 300, "b": 4000, "c": 9000}, stop=stop)
    one_pass = ExampleStream(stream.mixture, stop=stop).task_ids(40_000)
    length = len(one_pass)
    assert length > 3 * 4096 or stop == "first_exhausted"
    for start in (length - 50, 5000, 4090, 9000, 10, length - 1):  # forwards, backwards, across blocks
        start = max(0, min(start, length - 1))
        expect = one_pass[start:start + 100].tolist()  # a finite stream may end within these 100
        count = len(expect) if stop == "infinite" else 100
        assert stream.task_ids(count, start=start).tolist() == expect
    assert stream.task_ids(10, start=length).size == 0 or stop == "infinite"


def test_round_robin_random_and_declined_templates(tmp_path: Path) -> None:
    stream = stream_of(tmp_path, "include: {tasks: [a]}\n", {"a": 30}, seed=4)
    draws = stream.draws(0, 90)
    names = ["one", "two", "odd_only"]
    # round robin over the task's own draws; odd_only declines even rows and falls back to 'one'
    for d in draws:
        wanted = names[d.position % 3]
        if wanted == "odd_only" and d.row % 2 == 0:
            assert d.fallback and d.template == "one"
        else:
            assert d.template == wanted and not d.fallback
    assert stream.fallbacks["a"] == sum(d.fallback for d in draws) > 0
    rnd = stream_of(tmp_path / "r", "include: {tasks: [a]}\ntemplates: {choose: random, use: scored}\n",
                    {"a": 30}, seed=4)
    picked = Counter(d.template for d in rnd.draws(0, 300) if not d.fallback)
    assert set(picked) == set(names) and min(picked.values()) > 25


def test_a_task_whose_templates_decline_everything_is_an_error(tmp_path: Path) -> None:
    mixture = "include: {tasks: [a]}\ntemplates: {subset: {a: [odd_only]}}\n"
    tasks, mixtures = make(tmp_path, mixture, {"a": 3})
    rows = [{"x": f"a-{i}", "label": 0} for i in range(3)]
    (tasks / "data" / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    m = load_mixture("m", task_dirs=[tasks], mixture_dirs=[mixtures], include_builtin=False)
    with pytest.raises(T2TError, match="task 'a'.*declined every train row"):
        ExampleStream(m).draw(0)


def test_few_shot_and_no_options_variants(tmp_path: Path) -> None:
    stream = stream_of(tmp_path, """\
        include: {tasks: [a]}
        templates:
          subset: {a: [one]}
          variants: {zero_shot: 1, zero_shot_no_options: 1, few_shot: 2}
          few_shot_k: 3
        """, {"a": 40}, seed=6)
    draws = stream.draws(0, 400)
    share = Counter(d.variant for d in draws)
    assert abs(share["few_shot"] / 400 - 0.5) < 0.1 and share["zero_shot_no_options"] > 50
    for d in draws:
        ex = d.example
        if d.variant == "zero_shot":
            assert ex.input == f"a-{d.row} one? OPTIONS:\n- yes\n- no"
        elif d.variant == "zero_shot_no_options":
            assert ex.input == f"a-{d.row} one?"
        else:
            parts = ex.input.split(FEW_SHOT_SEP)
            assert len(parts) == 4 and parts[-1] == f"a-{d.row} one? OPTIONS:\n- yes\n- no"
            shots = [p.split(FEW_SHOT_XY) for p in parts[:-1]]
            rows = [int(s[0].split()[0].split("-")[1]) for s in shots]
            assert d.row not in rows and len(set(rows)) == 3  # never the example itself
            assert all(s[-1] == ("yes" if r % 2 == 0 else "no") for s, r in zip(shots, rows, strict=True))
        assert ex.target == ("yes" if d.row % 2 == 0 else "no")


# -- rows read on demand (t2t/tasks/jsonlines.py) ---------------------------------------------------

MIXED = """\
include: {patterns: ['*']}
train_limit: 9
templates:
  choose: random
  subset: {a: [one, two, odd_only], b: [one, two], c: [one, two]}
  variants: {zero_shot: 1, zero_shot_no_options: 1, few_shot: 2}
  few_shot_k: 2
"""


def both_streams(tmp_path: Path, mixture: str, sizes: dict[str, int], seed: int = 0
                 ) -> tuple[ExampleStream, ExampleStream]:
    tasks, mixtures = make(tmp_path, mixture, sizes)
    m = load_mixture("m", task_dirs=[tasks], mixture_dirs=[mixtures], include_builtin=False)
    return ExampleStream(m, seed=seed), ExampleStream(m, seed=seed, lazy=False)


def test_lazy_rows_give_the_eager_stream(tmp_path: Path) -> None:
    from t2t.tasks.jsonlines import JsonLinesRows

    lazy, eager = both_streams(tmp_path, MIXED, {"a": 7, "b": 30, "c": 13}, seed=4)
    assert [d.as_dict() for d in lazy.draws(0, 3000)] == [d.as_dict() for d in eager.draws(0, 3000)]
    assert lazy.fallbacks == eager.fallbacks and sum(lazy.fallbacks.values()) > 0
    assert all(isinstance(r, JsonLinesRows) for r in lazy._rows.values()) and len(lazy._rows) == 3
    assert all(isinstance(r, list) for r in eager._rows.values())
    assert [len(r) for r in lazy._rows.values()] == [len(r) for r in eager._rows.values()]
    # resuming a lazy stream mid-way continues the eager stream exactly
    resumed = ExampleStream(lazy.mixture, seed=4)
    resumed.load_state_dict(eager.state_dict(1234))
    assert take(resumed, 500) == [key(d.example) for d in eager.draws(1234, 500)]


def test_rows_datasets_would_change_are_read_through_datasets(tmp_path: Path) -> None:
    lazy, eager = both_streams(tmp_path, TWO_TEMPLATES, SMALL, seed=1)
    data = tmp_path / "tasks" / "data"
    # ints mixed with floats (Arrow makes 1 -> 1.0), a missing field (None), blank and indented lines
    (data / "a.jsonl").write_text("".join(json.dumps({"x": f"a-{i}", "label": i % 2, "w": i if i else 0.5}) + "\n"
                                          for i in range(7)))
    (data / "b.jsonl").write_text("".join(json.dumps({"x": f"b-{i}", "label": i % 2, **({"z": 1} if i == 3 else {})})
                                          + "\n" for i in range(11)))
    (data / "c.jsonl").write_text("\n  \r\n".join("  " + json.dumps({"x": f"c-{i}", "label": i % 2}) + "\r"
                                                  for i in range(13)) + "\n\n")
    lazy, eager = ExampleStream(lazy.mixture, seed=1), ExampleStream(lazy.mixture, seed=1, lazy=False)
    assert [d.as_dict() for d in lazy.draws(0, 500)] == [d.as_dict() for d in eager.draws(0, 500)]
    kinds = {lazy.names[t]: type(rows).__name__ for t, rows in lazy._rows.items()}
    assert kinds == {"a": "list", "b": "list", "c": "JsonLinesRows"}
    a, b, c = (lazy._rows[lazy.names.index(n)] for n in "abc")
    assert type(a[1]["w"]) is float and b[0]["z"] is None  # as datasets reads them
    assert list(c) == list(eager._rows[eager.names.index("c")])


def test_a_mixture_of_json_lines_resolves_and_streams_without_datasets(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    lazy, eager = both_streams(tmp_path, MIXED, {"a": 7, "b": 30, "c": 13}, seed=2)
    expected = [d.as_dict() for d in eager.draws(0, 300)]

    def refuse(*args, **kwargs):
        raise AssertionError("datasets.load_dataset called")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    tasks, mixtures = tmp_path / "tasks", tmp_path / "mixtures"
    m = load_mixture("m", task_dirs=[tasks], mixture_dirs=[mixtures], include_builtin=False)
    assert [e.examples for e in m.entries] == [7, 9, 9]  # train_limit 9
    assert [d.as_dict() for d in ExampleStream(m, seed=2).draws(0, 300)] == expected


def test_a_broken_line_found_when_its_task_is_drawn_names_file_and_line(tmp_path: Path) -> None:
    tasks, mixtures = make(tmp_path, TWO_TEMPLATES, SMALL)
    rows = (tasks / "data" / "b.jsonl").read_text().splitlines()
    rows[4] = '{"x": "b-4", "label": '
    (tasks / "data" / "b.jsonl").write_text("\n".join(rows) + "\n")
    m = load_mixture("m", task_dirs=[tasks], mixture_dirs=[mixtures], include_builtin=False)
    assert [e.examples for e in m.entries] == [7, 11, 13]  # counted, not parsed
    stream = ExampleStream(m)
    first_b = next(p for p, t in enumerate(stream.task_ids(100).tolist()) if stream.names[t] == "b")
    with pytest.raises(T2TError, match=r"b.jsonl:5: not a JSON value"):
        stream.draw(first_b)
