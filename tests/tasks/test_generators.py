"""The offline suite: generators are deterministic, split-disjoint, balanced; every task file renders."""

from __future__ import annotations

import collections
import doctest
import hashlib
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from t2t.errors import T2TError
from t2t.tasks import generators as synthetic
from t2t.tasks.generators import GENERATORS, SPLITS, generator_names, get_generator, split_of

REPO = Path(__file__).resolve().parents[2]
OFFLINE = REPO / "templates" / "offline"
SIZES = {"train": 300, "validation": 60, "test": 60}
# Generators whose split is decided by the unordered number pair, not by the whole row.
PAIR_KEYED = {"arith_sum": ("a", "b"), "arith_more": ("a", "b"), "compare_numbers": ("a", "b")}


@cache
def rows_of(name: str, split: str, n: int | None = None, seed: int = 0) -> tuple[str, ...]:
    """Rows as canonical JSON strings (hashable, and proof that they are JSON-able)."""
    rows = GENERATORS[name](split, SIZES[split] if n is None else n, seed)
    return tuple(json.dumps(r, sort_keys=True) for r in rows)


def digest_all() -> str:
    h = hashlib.sha256()
    for name in generator_names():
        for split in SPLITS:
            h.update(json.dumps(GENERATORS[name](split, 20, 3), sort_keys=True).encode())
    return h.hexdigest()


@pytest.mark.parametrize("name", generator_names())
def test_same_arguments_same_rows(name: str) -> None:
    first = GENERATORS[name]("validation", 40, 5)
    assert first == GENERATORS[name]("validation", 40, 5)
    assert first != GENERATORS[name]("validation", 40, 6)  # the seed matters
    assert json.loads(json.dumps(first)) == first  # plain JSON-able values only


def test_rows_do_not_depend_on_the_hash_seed() -> None:
    code = "from tests.tasks.test_generators import digest_all; print(digest_all())"
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                             timeout=120, check=True)
        assert out.stdout.strip() == digest_all()


@pytest.mark.parametrize("name", generator_names())
def test_sizes_are_exact_and_rows_distinct(name: str) -> None:
    for split in SPLITS:
        rows = rows_of(name, split)
        assert len(rows) == SIZES[split]
        assert len(set(rows)) == len(rows)
    assert GENERATORS[name]("test", 0, 0) == []


@pytest.mark.parametrize("name", generator_names())
def test_splits_are_disjoint_for_any_seeds(name: str) -> None:
    train = set(rows_of(name, "train")) | set(rows_of(name, "train", seed=1))
    validation = set(rows_of(name, "validation"))
    test = set(rows_of(name, "test")) | set(rows_of(name, "test", seed=2))
    assert not train & validation and not train & test and not validation & test
    if name in PAIR_KEYED:  # "3 + 9" in train must not leave "9 + 3" for test
        x, y = PAIR_KEYED[name]

        def pairs(rows: set[str]) -> set[tuple[int, int]]:
            return {tuple(sorted((r[x], r[y]))) for r in map(json.loads, rows)}

        assert not pairs(train) & pairs(test) and not pairs(train) & pairs(validation)


def test_split_assignment_depends_on_the_generator_only() -> None:
    counts = collections.Counter(split_of("sentiment_movie", i) for i in range(10_000))
    assert abs(counts["train"] - 8000) < 300 and abs(counts["test"] - 1000) < 150
    assert split_of("arith_sum", [3, 9]) == split_of("arith_sum", [3, 9])


@pytest.mark.parametrize("name", [n for n in generator_names() if "label" in GENERATORS[n]("train", 1, 0)[0]])
@pytest.mark.parametrize("n", [200, 201])
def test_labels_are_balanced(name: str, n: int) -> None:
    counts = collections.Counter(r["label"] for r in GENERATORS[name]("validation", n, 0))
    k = max(counts) + 1
    assert set(counts) == set(range(k)) and max(counts.values()) - min(counts.values()) <= 1


def test_unknown_generator_names_the_nearest() -> None:
    with pytest.raises(T2TError, match="unknown generator 'sentiment_moive'.*sentiment_movie"):
        get_generator("sentiment_moive")
    with pytest.raises(T2TError, match="known: arith_more"):
        get_generator("zzz")
    assert get_generator("word_last") is GENERATORS["word_last"]
    assert generator_names() == sorted(GENERATORS)


def test_bad_split_size_and_exhausted_space_are_user_errors() -> None:
    with pytest.raises(T2TError, match="not 'dev'"):
        GENERATORS["word_last"]("dev", 5, 0)
    with pytest.raises(T2TError, match=">= 0"):
        GENERATORS["word_last"]("train", -1, 0)
    with pytest.raises(T2TError, match="only .* distinct rows for split 'test'.*source.sizes.test"):
        GENERATORS["arith_sum"]("test", 500, 0)


def test_module_docstring_example() -> None:
    assert doctest.testmod(synthetic).failed == 0


# -- the task files ---------------------------------------------------------------------------------

@cache
def offline_tasks() -> dict:
    from t2t.tasks.registry import TaskRegistry

    registry = TaskRegistry.load()
    return {name: task for name in registry.names() if OFFLINE in (task := registry.get(name)).path.parents}


def test_suite_shape() -> None:
    tasks = offline_tasks()
    clusters = collections.defaultdict(list)
    for task in tasks.values():
        clusters[task.cluster].append(task)
    assert len(tasks) >= 15 and len(clusters) >= 5
    for cluster, members in clusters.items():
        assert len(members) >= 3, cluster
        assert any(t.templates[n].inverted for t in members for n in t.template_names), cluster
    kinds = {t.choices_for(t.example_rows[0]) is not None for t in tasks.values()}
    assert kinds == {True, False}  # both rank-classification and generation tasks
    # one task per generator, and the other way round: no generator is dead code
    assert sorted(t.source["generator"] for t in tasks.values()) == generator_names()


@pytest.mark.parametrize("name", generator_names())
def test_task_renders_every_template_on_generated_rows(name: str) -> None:
    from t2t.tasks.sources import load_rows

    task = offline_tasks()[name]
    assert 3 <= len(task.template_names) <= 5
    for split in SPLITS:
        rows = load_rows(task, split)  # also proves the file's sizes fit the generator's split space
        assert len(rows) == task.source["sizes"][split]
        for i in range(4):
            row = rows[i]
            choices = task.choices_for(row)
            for template in task.template_names:
                for options in (True, False):
                    ex = task.render(row, i, template, options=options)
                    assert ex is not None and ex.input and ex.target
                    assert "OPTIONS" not in ex.input or options
                    if choices and not task.templates[template].inverted:
                        assert ex.target in choices and ex.target == choices[row["label"]]
    generated = GENERATORS[name]("train", 1, 0)[0]
    for example in task.example_rows:
        assert sorted(example) == sorted(generated), "the file's example row must look like a generated row"
