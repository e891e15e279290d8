"""Named mixtures: which tasks to train on, how often each is drawn, and what is held out.

A mixture is one YAML file in ``task_registry/`` (more folders: ``--mixture-dir DIR``, repeatable, and
``T2T_MIXTURE_PATH``); its name is the file name. Every field is optional except a selection::

    description: Sentiment and comparison; one task per cluster held out (FLAN intra-cluster).
    include:                      # any of: tasks, clusters, patterns (globs over task names), tags
      clusters: [sentiment, comparison]
    exclude: {tasks: [compare_prices]}
    mixtures: {other_mixture: 0.25}       # nested mixtures and their weights (seqio)
    rate: {strategy: proportional, cap: 3000, temperature: 1.0, scale: 1.0}
    weights: {sentiment_movie: 500}       # explicit rates: replace the strategy's for these tasks
    heldout: {tasks: [sentiment_product]} # and/or clusters: [...]
    allow_source_overlap: false
    templates:
      choose: round_robin                 # or random (seeded)
      use: all                            # or scored (skip inverted templates)
      subset: {sentiment_movie: [review_polarity, sentiment_of]}
      variants: {zero_shot: 0.7, zero_shot_no_options: 0.1, few_shot: 0.2}
      few_shot_k: 2
    stop: infinite                # first_exhausted | all_exhausted | all_exhausted_without_replacement

Rates follow seqio: per task ``r = min(n * scale, cap) ** (1 / T)`` (``proportional`` is T = 1,
``equal`` is r = 1), where n is the task's number of training rows after its own ``limit``; an explicit
weight replaces r. A nested mixture with weight w adds ``w * r_sub / total_sub`` to each of its tasks.
The shares are the rates normalised to sum to 1. Worked example, sizes a=100, b=1000, c=50000:

    proportional, cap 3000   raw 100, 1000, 3000    shares .0244 .2439 .7317
    temperature T=2, cap 3000  raw 10, 31.62, 54.77   shares .1037 .3281 .5682
    equal                    raw 1, 1, 1            shares .3333 .3333 .3333

Held out: the mixture's ``heldout`` (of itself and of every nested mixture) plus any names given on the
command line (``--heldout``, clusters or tasks; ``cluster:X`` / ``task:X`` when a name is both). A
held-out cluster holds out every task of that cluster in the task registry. Held-out tasks are never in
training, and a training task with the same ``source_id`` as a held-out task is an error naming both,
unless ``allow_source_overlap: true`` (or ``--allow-source-overlap``).

    python -m t2t.mixture list
    python -m t2t.mixture show NAME [--heldout C] [--json]
    python -m t2t.mixture sample NAME [--n N] [--seed S] [--heldout C] [--json]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml

from t2t import yamlsafe
from t2t.errors import T2TError, run_cli
from t2t.registry import TaskRegistry, search_dirs, suggest
from t2t.templates import Task

if TYPE_CHECKING:
    from t2t.stream import ExampleStream

BUILTIN_MIXTURES = Path(__file__).resolve().parent.parent / "task_registry"
STRATEGIES = ("proportional", "temperature", "equal")
STOP_POLICIES = ("infinite", "first_exhausted", "all_exhausted", "all_exhausted_without_replacement")
VARIANTS = ("zero_shot", "zero_shot_no_options", "few_shot", "few_shot_no_options")
CHOOSE = ("round_robin", "random")
TRAIN_SPLIT = "train"

_FIELDS = {"description", "include", "exclude", "mixtures", "rate", "weights", "heldout",
           "allow_source_overlap", "templates", "stop"}
_SELECT_FIELDS = {"tasks", "clusters", "patterns", "tags"}
_RATE_FIELDS = {"strategy", "cap", "temperature", "scale"}
_TEMPLATE_FIELDS = {"choose", "use", "subset", "variants", "few_shot_k"}


# -- rates ----------------------------------------------------------------------------------------

def task_rate(n: int, strategy: str = "proportional", cap: int | None = None, temperature: float = 1.0,
              scale: float = 1.0) -> float:
    """seqio's unnormalised rate of a task with n training examples (0 for an empty task)."""
    if strategy not in STRATEGIES:
        raise T2TError(f"unknown mixing strategy '{strategy}'{suggest(strategy, STRATEGIES)} "
                       f"(strategies: {', '.join(STRATEGIES)})")
    if strategy == "proportional" and temperature != 1.0:
        raise T2TError(f"strategy 'proportional' takes no temperature (got {temperature}); "
                       "use strategy: temperature")
    if not temperature > 0 or not scale > 0 or (cap is not None and not cap > 0):
        raise T2TError(f"temperature, scale and cap must be positive (got temperature={temperature}, "
                       f"scale={scale}, cap={cap})")
    if n <= 0:
        return 0.0
    if strategy == "equal":
        return 1.0
    rate = n * scale
    if cap is not None:
        rate = min(rate, float(cap))
    return rate ** (1.0 / temperature) if strategy == "temperature" else rate


def mixing_rates(sizes: Mapping[str, int], strategy: str, cap: int | None = None, temperature: float = 1.0,
                 scale: float = 1.0) -> dict[str, float]:
    """Normalised mixing rates (they sum to 1) of tasks with the given numbers of training examples.

    >>> mixing_rates({"a": 100, "b": 1000, "c": 50000}, "proportional", cap=3000)["c"]  # 3000 / 4100
    0.7317073170731707
    """
    raw = {name: task_rate(int(n), strategy, cap, temperature, scale) for name, n in sizes.items()}
    total = sum(raw.values())
    if total <= 0:
        raise T2TError(f"no task has training examples (sizes: {dict(sizes)})")
    return {name: r / total for name, r in raw.items()}


def _is_number(value: Any) -> bool:
    """A finite number of sane size: .inf, .nan or a 400-digit cap would break the rate arithmetic."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 1e15  # false for nan too


# -- mixture files --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Selection:
    tasks: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tasks or self.clusters or self.patterns or self.tags)

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in vars(self).items() if v}


@dataclass(frozen=True)
class TemplatePolicy:
    """Which template renders each draw, and the FLAN v2 variant shares (normalised)."""

    choose: str = "round_robin"
    use: str = "all"
    subset: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    variants: Mapping[str, float] = field(default_factory=lambda: {"zero_shot": 1.0})
    few_shot_k: int = 2

    def templates_for(self, task: Task, where: str) -> tuple[str, ...]:
        if task.name in self.subset:
            names = self.subset[task.name]
            for n in names:
                if n not in task.templates:
                    raise T2TError(f"{where}, field 'templates.subset.{task.name}': task '{task.name}' has "
                                   f"no template '{n}'{suggest(n, task.template_names)} "
                                   f"(templates: {', '.join(task.template_names)})")
            return tuple(names)
        names = task.template_names if self.use == "all" else task.scored_templates()
        if not names:
            raise T2TError(f"{where}: task '{task.name}' has no template to train on with templates.use: "
                           f"{self.use}; use 'all' or list a subset")
        return tuple(names)

    def as_dict(self) -> dict[str, Any]:
        return {"choose": self.choose, "use": self.use,
                "subset": {k: list(v) for k, v in self.subset.items()},
                "variants": dict(self.variants), "few_shot_k": self.few_shot_k}


@dataclass(frozen=True)
class MixtureSpec:
    """One mixture file, checked but not resolved against the task registry."""

    name: str
    path: Path
    description: str = ""
    include: Selection = Selection()
    exclude: Selection = Selection()
    mixtures: Mapping[str, float] = field(default_factory=dict)
    strategy: str = "proportional"
    cap: int | None = None
    temperature: float = 1.0
    scale: float = 1.0
    weights: Mapping[str, float] = field(default_factory=dict)
    heldout: tuple[str, ...] = ()
    heldout_clusters: tuple[str, ...] = ()
    heldout_tasks: tuple[str, ...] = ()
    allow_source_overlap: bool = False
    templates: TemplatePolicy = TemplatePolicy()
    stop: str = "infinite"

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> MixtureSpec:
        path = Path(path)
        try:
            data = yamlsafe.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(exc, "problem", None) or exc
            raise T2TError(f"{where}: bad YAML in mixture file: {problem}") from None
        except UnicodeDecodeError as exc:
            raise T2TError(f"{path}: mixture file is not UTF-8 text ({exc.reason} at byte {exc.start})"
                           ) from None
        except OSError as exc:
            raise T2TError(f"{path}: cannot read the mixture file: {exc.strerror or exc}") from None
        return cls.from_dict(data if data is not None else {}, path.stem, path)

    @classmethod
    def from_dict(cls, data: Any, name: str, path: Path | None = None) -> MixtureSpec:
        path = path or Path(f"<{name}>")
        where = f"{path}: mixture '{name}'"

        def err(key: str, message: str) -> T2TError:
            return T2TError(f"{where}, field '{key}': {message}")

        if not isinstance(data, dict):
            raise T2TError(f"{where}: a mixture file is a YAML mapping (include:, rate:, heldout:, ...)")
        unknown = sorted(set(map(str, data)) - _FIELDS)
        if unknown:
            raise err(unknown[0], f"unknown field{suggest(unknown[0], _FIELDS)} "
                                  f"(fields: {', '.join(sorted(_FIELDS))})")

        def names(key: str, value: Any) -> tuple[str, ...]:
            if value is None:
                return ()
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise err(key, "must be a name or a list of names")
            return tuple(value)

        def selection(key: str) -> Selection:
            value = data.get(key) or {}
            if not isinstance(value, dict):
                raise err(key, "must map tasks/clusters/patterns/tags to lists of names, "
                               "e.g. {clusters: [nli]}")
            extra = sorted(set(map(str, value)) - _SELECT_FIELDS)
            if extra:
                raise err(f"{key}.{extra[0]}", f"unknown selector{suggest(extra[0], _SELECT_FIELDS)} "
                                               f"(selectors: {', '.join(sorted(_SELECT_FIELDS))})")
            return Selection(**{k: names(f"{key}.{k}", value.get(k)) for k in _SELECT_FIELDS})

        def numbers(key: str, value: Any, what: str = "names") -> dict[str, float]:
            value = value or {}
            if not isinstance(value, dict) or not all(_is_number(v) and v >= 0 for v in value.values()):
                raise err(key, f"must map {what} to non-negative numbers, e.g. {{NAME: 0.5}}")
            return {str(k): float(v) for k, v in value.items()}

        def number(key: str, value: Any, kind: type = float, positive: bool = True) -> Any:
            if value is None:
                return None
            if not _is_number(value) or (kind is int and value != int(value)):
                raise err(key, f"must be a{'n integer' if kind is int else ' number'}, got {value!r}")
            if positive and not value > 0:
                raise err(key, f"must be positive, got {value!r}")
            return kind(value)

        def choice(key: str, value: Any, allowed: Sequence[str]) -> str:
            if value not in allowed:
                raise err(key, f"'{value}' is not one of {', '.join(allowed)}{suggest(str(value), allowed)}")
            return str(value)

        rate = data.get("rate") or {}
        if not isinstance(rate, dict):
            raise err("rate", "must be a mapping, e.g. {strategy: proportional, cap: 3000}")
        extra = sorted(set(map(str, rate)) - _RATE_FIELDS)
        if extra:
            raise err(f"rate.{extra[0]}", f"unknown key{suggest(extra[0], _RATE_FIELDS)} "
                                          f"(keys: {', '.join(sorted(_RATE_FIELDS))})")
        strategy = choice("rate.strategy", rate.get("strategy", "proportional"), STRATEGIES)
        temperature = number("rate.temperature", rate.get("temperature", 1.0))
        if strategy == "proportional" and temperature != 1.0:
            raise err("rate.temperature", "strategy 'proportional' takes no temperature; "
                                          "use strategy: temperature")

        heldout = data.get("heldout") or {}
        h_clusters: tuple[str, ...] = ()
        h_tasks: tuple[str, ...] = ()
        h_names: tuple[str, ...] = ()
        if isinstance(heldout, (list, str)):
            h_names = names("heldout", heldout)
        elif isinstance(heldout, dict):
            extra = sorted(set(map(str, heldout)) - {"tasks", "clusters"})
            if extra:
                raise err(f"heldout.{extra[0]}", "heldout takes tasks: [...] and clusters: [...]")
            h_clusters = names("heldout.clusters", heldout.get("clusters"))
            h_tasks = names("heldout.tasks", heldout.get("tasks"))
        else:
            raise err("heldout", "must be {tasks: [...], clusters: [...]} or a list of cluster/task names")

        tpl = data.get("templates") or {}
        if not isinstance(tpl, dict):
            raise err("templates", "must be a mapping, e.g. {choose: random, variants: {zero_shot: 1}}")
        extra = sorted(set(map(str, tpl)) - _TEMPLATE_FIELDS)
        if extra:
            raise err(f"templates.{extra[0]}", f"unknown key{suggest(extra[0], _TEMPLATE_FIELDS)} "
                                               f"(keys: {', '.join(sorted(_TEMPLATE_FIELDS))})")
        subset = tpl.get("subset") or {}
        if not isinstance(subset, dict):
            raise err("templates.subset", "must map task names to lists of template names")
        variants = numbers("templates.variants", tpl.get("variants") or {"zero_shot": 1.0},
                           f"variants ({', '.join(VARIANTS)})")
        for v in variants:
            choice(f"templates.variants.{v}", v, VARIANTS)
        total = sum(variants.values())
        if total <= 0:
            raise err("templates.variants", "the shares must not all be zero")
        policy = TemplatePolicy(
            choose=choice("templates.choose", tpl.get("choose", "round_robin"), CHOOSE),
            use=choice("templates.use", tpl.get("use", "all"), ("all", "scored")),
            subset={str(k): names(f"templates.subset.{k}", v) for k, v in subset.items()},
            variants={k: float(v) / total for k, v in variants.items() if v > 0},
            few_shot_k=number("templates.few_shot_k", tpl.get("few_shot_k", 2), int))

        overlap = data.get("allow_source_overlap", False)
        if not isinstance(overlap, bool):
            raise err("allow_source_overlap", "must be true or false")
        description = data.get("description") or ""
        if not isinstance(description, str):
            raise err("description", "must be a string")
        spec = cls(
            name=name, path=path, description=description.strip(),
            include=selection("include"), exclude=selection("exclude"),
            mixtures=numbers("mixtures", data.get("mixtures")), strategy=strategy,
            cap=number("rate.cap", rate.get("cap"), int), temperature=temperature,
            scale=number("rate.scale", rate.get("scale", 1.0)),
            weights=numbers("weights", data.get("weights")),
            heldout=h_names, heldout_clusters=h_clusters, heldout_tasks=h_tasks,
            allow_source_overlap=overlap, templates=policy,
            stop=choice("stop", data.get("stop", "infinite"), STOP_POLICIES))
        if not (spec.include or spec.mixtures or spec.weights):
            raise T2TError(f"{where}: selects no task; add include: {{clusters: [...]}}, "
                           "include: {tasks: [...]}, weights: or mixtures:")
        return spec

    @property
    def where(self) -> str:
        return f"{self.path}: mixture '{self.name}'"

    def rate_text(self) -> str:
        parts = [self.strategy]
        if self.cap is not None:
            parts.append(f"cap {self.cap}")
        if self.strategy == "temperature":
            parts.append(f"T={self.temperature:g}")
        if self.scale != 1.0:
            parts.append(f"scale {self.scale:g}")
        return ", ".join(parts)


def mixture_dirs(extra: Sequence[str | os.PathLike[str]] = (), include_builtin: bool = True) -> list[Path]:
    """The folders searched for mixture files, in order: built-in, ``T2T_MIXTURE_PATH``, ``--mixture-dir``."""
    return search_dirs(BUILTIN_MIXTURES if include_builtin else None, "T2T_MIXTURE_PATH", extra, "--mixture-dir",
                       "mixture")


class MixtureRegistry:
    """Every mixture file found in a list of folders (``*.yaml``/``*.yml``; folders named ``_*`` skipped)."""

    def __init__(self, specs: Iterable[MixtureSpec]) -> None:
        self._specs: dict[str, MixtureSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise T2TError(f"{spec.path}: mixture '{spec.name}' is also defined in "
                               f"{self._specs[spec.name].path}; rename one of the files")
            self._specs[spec.name] = spec

    @classmethod
    def load(cls, extra_dirs: Sequence[str | os.PathLike[str]] = (), *,
             include_builtin: bool = True) -> MixtureRegistry:
        specs, errors = [], []
        for root in mixture_dirs(extra_dirs, include_builtin):
            files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and not any(
                part.startswith("_") for part in p.relative_to(root).parts[:-1]))
            for path in files:
                try:
                    specs.append(MixtureSpec.from_file(path))
                except T2TError as exc:
                    errors.append(str(exc))
        if errors:
            raise T2TError(" | ".join(errors))
        return cls(specs)

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def __iter__(self):
        return iter(self._specs.values())

    def names(self) -> list[str]:
        return sorted(self._specs)

    def get(self, name: str) -> MixtureSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise T2TError(f"unknown mixture '{name}'{suggest(name, self._specs)} (list them with: "
                           "python -m t2t.mixture list; add folders with --mixture-dir)") from None


# -- resolution -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MixtureTask:
    """A training task of a resolved mixture."""

    task: Task
    examples: int
    rate: float
    templates: tuple[str, ...]
    policy: TemplatePolicy

    @property
    def name(self) -> str:
        return self.task.name


class HeldoutSplit(NamedTuple):
    train: list[Task]
    heldout: list[Task]


@dataclass(frozen=True)
class Recipe:
    """How a mixture was loaded: enough to load it again in another process."""

    name: str
    heldout: tuple[str, ...] = ()
    allow_source_overlap: bool | None = None
    task_dirs: tuple[str, ...] = ()
    mixture_dirs: tuple[str, ...] = ()
    include_builtin: bool = True


@dataclass(frozen=True)
class Mixture:
    """A mixture resolved against a task registry: training tasks with rates, and the held-out split."""

    spec: MixtureSpec
    entries: tuple[MixtureTask, ...]
    heldout: tuple[Task, ...]
    heldout_clusters: tuple[str, ...]
    source_overlaps: tuple[tuple[str, str], ...] = ()
    recipe: Recipe | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def stop(self) -> str:
        return self.spec.stop

    @property
    def rates(self) -> dict[str, float]:
        return {e.name: e.rate for e in self.entries}

    @property
    def train_tasks(self) -> list[Task]:
        return [e.task for e in self.entries]

    def manifest(self, seed: int | None = None, stop: str | None = None) -> dict[str, Any]:
        """What the trainer writes next to its outputs: tasks, rates, held-out split, seed, templates."""
        spec = self.spec
        return {
            "mixture": self.name, "path": str(spec.path), "description": spec.description,
            "seed": seed, "stop": stop or self.stop, "split": TRAIN_SPLIT,
            "rate": {"strategy": spec.strategy, "cap": spec.cap, "temperature": spec.temperature,
                     "scale": spec.scale, "weights": dict(spec.weights), "mixtures": dict(spec.mixtures)},
            "tasks": [{"name": e.name, "cluster": e.task.cluster, "source_id": e.task.source_id,
                       "examples": e.examples, "rate": e.rate, "templates": list(e.templates),
                       **{k: v for k, v in e.policy.as_dict().items() if k not in ("subset", "use")}}
                      for e in self.entries],
            "heldout": {"clusters": list(self.heldout_clusters),
                        "tasks": [{"name": t.name, "cluster": t.cluster, "source_id": t.source_id}
                                  for t in self.heldout],
                        "allow_source_overlap": bool(self.source_overlaps) or spec.allow_source_overlap,
                        "source_overlaps": [list(p) for p in self.source_overlaps]},
            "extra_heldout": list(self.recipe.heldout) if self.recipe else [],
        }


def parse_heldout(names: Iterable[str], tasks: TaskRegistry, where: str = "--heldout"
                  ) -> tuple[set[str], set[str]]:
    """Split held-out names into (clusters, tasks); ``a,b`` lists and ``cluster:``/``task:`` prefixes work."""
    clusters, task_names = set(), set()
    known_clusters = set(tasks.clusters())
    names = [names] if isinstance(names, str) else names
    for item in names:
        for name in (n.strip() for n in item.split(",")):
            if not name:
                continue
            kind, _, bare = name.partition(":") if name.startswith(("cluster:", "task:")) else ("", "", name)
            is_cluster, is_task = bare in known_clusters, bare in tasks
            if kind == "cluster" or (not kind and is_cluster and not is_task):
                if not is_cluster:
                    raise T2TError(f"{where}: unknown cluster '{bare}'{suggest(bare, known_clusters)} "
                                   f"(clusters: {', '.join(sorted(known_clusters))})")
                clusters.add(bare)
            elif kind == "task" or (not kind and is_task and not is_cluster):
                if not is_task:
                    raise T2TError(f"{where}: unknown task '{bare}'{suggest(bare, tasks.names())} "
                                   "(list them with: python -m t2t.tasks list)")
                task_names.add(bare)
            elif is_task and is_cluster:
                raise T2TError(f"{where}: '{bare}' is both a cluster and a task; "
                               f"write cluster:{bare} or task:{bare}")
            else:
                raise T2TError(f"{where}: '{bare}' is neither a cluster nor a task"
                               f"{suggest(bare, known_clusters | set(tasks.names()))} "
                               f"(clusters: {', '.join(sorted(known_clusters))})")
    return clusters, task_names


class _Resolver:
    def __init__(self, tasks: TaskRegistry, mixtures: MixtureRegistry) -> None:
        self.tasks, self.mixtures = tasks, mixtures
        self._sizes: dict[str, int] = {}

    def size(self, task: Task, where: str) -> int:
        if task.name not in self._sizes:
            from t2t.sources import num_rows

            if TRAIN_SPLIT not in task.splits:
                raise T2TError(f"{where}: task '{task.name}' has no train split (splits: "
                               f"{', '.join(task.splits)}); exclude it (exclude: {{tasks: [...]}}) "
                               "or hold it out")
            self._sizes[task.name] = num_rows(task, TRAIN_SPLIT)
        return self._sizes[task.name]

    def sub(self, spec: MixtureSpec, name: str, stack: tuple[str, ...]) -> MixtureSpec:
        if name in stack + (spec.name,):
            raise T2TError(f"{spec.where}, field 'mixtures': mixtures nest in a cycle: "
                           f"{' -> '.join(stack + (spec.name, name))}")
        try:
            return self.mixtures.get(name)
        except T2TError as exc:
            raise T2TError(f"{spec.where}, field 'mixtures': {exc}") from None

    def heldout_of(self, spec: MixtureSpec, stack: tuple[str, ...] = ()) -> tuple[set[str], set[str]]:
        clusters, names = parse_heldout(spec.heldout, self.tasks, f"{spec.where}, field 'heldout'")
        for key, values, target in (("clusters", spec.heldout_clusters, clusters),
                                    ("tasks", spec.heldout_tasks, names)):
            for v in values:
                where = f"{spec.where}, field 'heldout.{key}'"
                try:
                    self.tasks.by_cluster(v) if key == "clusters" else self.tasks.get(v)
                except T2TError as exc:
                    raise T2TError(f"{where}: {exc}") from None
                target.add(v)
        for name in spec.mixtures:
            c, t = self.heldout_of(self.sub(spec, name, stack), stack + (spec.name,))
            clusters |= c
            names |= t
        return clusters, names

    def select(self, spec: MixtureSpec, sel: Selection, key: str) -> set[str]:
        out: set[str] = set()
        all_names = self.tasks.names()
        try:
            for name in sel.tasks:
                if name not in self.tasks and name in self.mixtures:
                    raise T2TError(f"'{name}' is a mixture, not a task; nest it with "
                                   f"mixtures: {{{name}: WEIGHT}}")
                out.add(self.tasks.get(name).name)
            for cluster in sel.clusters:
                out |= {t.name for t in self.tasks.by_cluster(cluster)}
        except T2TError as exc:
            raise T2TError(f"{spec.where}, field '{key}': {exc}") from None
        for pattern in sel.patterns:
            matched = fnmatch.filter(all_names, pattern)
            if not matched:
                raise T2TError(f"{spec.where}, field '{key}.patterns': '{pattern}' matches no task "
                               "(list them with: python -m t2t.tasks list)")
            out |= set(matched)
        for tag in sel.tags:
            tagged = {t.name for t in self.tasks if tag in t.tags}
            if not tagged:
                raise T2TError(f"{spec.where}, field '{key}.tags': no task has tag '{tag}'")
            out |= tagged
        return out

    def shares(self, spec: MixtureSpec, heldout: set[str], stack: tuple[str, ...] = ()
               ) -> tuple[dict[str, float], dict[str, MixtureSpec]]:
        """Normalised shares of the mixture's training tasks, and the spec that owns each task."""
        chosen = self.select(spec, spec.include, "include") | self.select(spec, Selection(tasks=tuple(
            spec.weights)), "weights")
        chosen -= self.select(spec, spec.exclude, "exclude")
        raw: dict[str, float] = {}
        owner: dict[str, MixtureSpec] = {}
        for name in sorted(chosen - heldout):
            task = self.tasks.get(name)
            n = self.size(task, spec.where)
            if n == 0:
                raise T2TError(f"{spec.where}: task '{name}' has no training examples; exclude it")
            raw[name] = spec.weights[name] if name in spec.weights else task_rate(
                n, spec.strategy, spec.cap, spec.temperature, spec.scale)
            owner[name] = spec
        for sub_name, weight in spec.mixtures.items():
            sub = self.sub(spec, sub_name, stack)
            sub_shares, sub_owner = self.shares(sub, heldout, stack + (spec.name,))
            for name, share in sub_shares.items():
                raw[name] = raw.get(name, 0.0) + weight * share
                owner.setdefault(name, sub_owner[name])
        total = sum(raw.values())
        if total <= 0:
            return {}, {}
        return {k: v / total for k, v in raw.items() if v > 0}, owner


def resolve(spec: MixtureSpec | str, tasks: TaskRegistry, mixtures: MixtureRegistry | None = None, *,
            heldout: Sequence[str] = (), allow_source_overlap: bool | None = None,
            recipe: Recipe | None = None) -> Mixture:
    """Resolve a mixture against a task registry: rates, held-out split and the leakage check."""
    mixtures = mixtures if mixtures is not None else MixtureRegistry([])
    spec = mixtures.get(spec) if isinstance(spec, str) else spec
    r = _Resolver(tasks, mixtures)
    h_clusters, h_names = r.heldout_of(spec)
    extra_clusters, extra_names = parse_heldout(heldout, tasks)
    h_clusters |= extra_clusters
    h_names |= extra_names
    held = {t.name: t for c in h_clusters for t in tasks.by_cluster(c)}
    held.update({n: tasks.get(n) for n in h_names})
    shares, owner = r.shares(spec, set(held))
    if not shares:
        raise T2TError(f"{spec.where}: no training task is left after holding out "
                       f"{', '.join(sorted(h_clusters | h_names))}")
    entries = []
    for name in sorted(shares):
        task, policy = tasks.get(name), owner[name].templates
        entries.append(MixtureTask(task, r.size(task, spec.where), shares[name],
                                   policy.templates_for(task, owner[name].where), policy))
    by_source: dict[str, list[str]] = {}
    for h in held.values():
        by_source.setdefault(h.source_id, []).append(h.name)
    overlaps = tuple((e.name, h) for e in entries for h in sorted(by_source.get(e.task.source_id, ())))
    allowed = spec.allow_source_overlap if allow_source_overlap is None else allow_source_overlap
    if overlaps and not allowed:
        pairs = "; ".join(f"training task '{a}' and held-out task '{b}' share source "
                          f"{tasks.get(a).source_id}" for a, b in overlaps)
        raise T2TError(f"{spec.where}: held-out data would leak into training: {pairs}. Exclude the training "
                       "task (exclude: {tasks: [...]}), hold it out too, or set allow_source_overlap: true "
                       "(--allow-source-overlap)")
    assert not set(shares) & set(held), "held-out tasks must never be trained on"
    return Mixture(spec, tuple(entries), tuple(sorted(held.values(), key=lambda t: (t.cluster, t.name))),
                   tuple(sorted(h_clusters)), overlaps if allowed else (), recipe)


def load_mixture(name: str, *, heldout: Sequence[str] = (), allow_source_overlap: bool | None = None,
                 task_dirs: Sequence[str | os.PathLike[str]] = (),
                 mixture_dirs: Sequence[str | os.PathLike[str]] = (), include_builtin: bool = True,
                 tasks: TaskRegistry | None = None) -> Mixture:
    """Load the task and mixture registries and resolve the mixture ``name``.

    ``heldout`` adds clusters or tasks to the mixture's own held-out split. A ``tasks`` registry given
    here is used as is, but a stream pickled for another process reloads tasks from the folders.
    """
    heldout = (heldout,) if isinstance(heldout, str) else tuple(heldout)
    recipe = Recipe(name, tuple(heldout), allow_source_overlap, tuple(map(str, task_dirs)),
                    tuple(map(str, mixture_dirs)), include_builtin)
    tasks = tasks if tasks is not None else TaskRegistry.load(task_dirs, include_builtin=include_builtin)
    mixtures = MixtureRegistry.load(mixture_dirs, include_builtin=include_builtin)
    return resolve(name, tasks, mixtures, heldout=heldout, allow_source_overlap=allow_source_overlap,
                   recipe=recipe)


def heldout_split(name: str, heldout: Sequence[str] = (), **load: Any) -> HeldoutSplit:
    """(training tasks, held-out tasks) of a mixture, disjoint by construction: what the evaluator scores."""
    mixture = load_mixture(name, heldout=heldout, **load)
    return HeldoutSplit(mixture.train_tasks, list(mixture.heldout))


def build_stream(name: str, *, heldout: Sequence[str] = (), seed: int = 0, stop: str | None = None,
                 **load: Any) -> ExampleStream:
    """The training stream of a mixture: an iterable of Examples with state_dict()/load_state_dict().

    ``load`` takes the keywords of :func:`load_mixture` (task_dirs, mixture_dirs, allow_source_overlap).
    """
    from t2t.stream import ExampleStream

    return ExampleStream(load_mixture(name, heldout=heldout, **load), seed=seed, stop=stop)


# -- command line ---------------------------------------------------------------------------------

def show_table(mixture: Mixture) -> str:
    spec = mixture.spec
    policies = {(e.policy.choose, tuple(sorted(e.policy.variants.items()))) for e in mixture.entries}
    rates = spec.rate_text() + (f"; nested: {dict(spec.mixtures)}" if spec.mixtures else "")
    rates += f"; explicit weights: {dict(spec.weights)}" if spec.weights else ""
    lines = [f"mixture {mixture.name} ({spec.path})" + (f": {spec.description}" if spec.description else ""),
             f"rates: {rates}; stop: {mixture.stop}",
             "templates: " + " | ".join(f"{c}, variants " + ", ".join(f"{v} {s:.2f}" for v, s in var)
                                        for c, var in sorted(policies))]
    width = max([len(e.name) for e in mixture.entries] + [len(t.name) for t in mixture.heldout] + [5])
    cw = max([len(e.task.cluster) for e in mixture.entries] + [7])
    lines.append(f"{'task':<{width}}  {'cluster':<{cw}}  {'examples':>9}  {'rate':>7}  {'per 1k draws':>12}  "
                 "templates")
    for e in mixture.entries:
        lines.append(f"{e.name:<{width}}  {e.task.cluster:<{cw}}  {e.examples:>9}  {e.rate:>7.4f}  "
                     f"{1000 * e.rate:>12.1f}  {len(e.templates)}")
    total = sum(e.examples for e in mixture.entries)
    share = sum(mixture.rates.values())
    lines.append(f"{'total':<{width}}  {'':<{cw}}  {total:>9}  {share:>7.4f}  {1000 * share:>12.1f}")
    what = ", ".join(mixture.heldout_clusters) or "-"
    lines.append(f"held out ({len(mixture.heldout)} tasks; clusters: {what}): "
                 + (", ".join(f"{t.name} ({t.cluster})" for t in mixture.heldout) or "none"))
    if mixture.source_overlaps:
        pairs = ", ".join(f"{a} ~ {b}" for a, b in mixture.source_overlaps)
        lines.append(f"allowed source overlaps (training ~ held out): {pairs}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2t.mixture", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list the mixtures")
    p_show = sub.add_parser("show", help="tasks, rates and the held-out split of a mixture")
    p_sample = sub.add_parser("sample", help="print rendered draws of a mixture's training stream")
    for p in (p_show, p_sample):
        p.add_argument("name")
        p.add_argument("--heldout", action="append", default=[], metavar="C",
                       help="extra held-out cluster or task (repeatable, or comma-separated)")
        p.add_argument("--allow-source-overlap", action="store_true", default=None,
                       help="allow training tasks that share a source dataset with a held-out task")
    p_sample.add_argument("--n", type=int, default=5, help="draws to print (default 5)")
    p_sample.add_argument("--seed", type=int, default=0)
    p_sample.add_argument("--start", type=int, default=0, help="first stream position")
    p_sample.add_argument("--stop", choices=STOP_POLICIES, help="override the mixture's stop policy")
    for p in (p_list, p_show, p_sample):
        p.add_argument("--json", action="store_true")
        p.add_argument("--mixture-dir", action="append", default=[], metavar="DIR",
                       help="extra folder of mixture files (repeatable; also T2T_MIXTURE_PATH)")
        p.add_argument("--task-dir", action="append", default=[], metavar="DIR",
                       help="extra folder of task files (repeatable; also T2T_TASK_PATH)")
        p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    args = parser.parse_args(argv)
    import datasets

    datasets.disable_progress_bars()

    if args.command == "list":
        specs = sorted(MixtureRegistry.load(args.mixture_dir), key=lambda s: s.name)
        if args.json:
            print(json.dumps([{"name": s.name, "path": str(s.path), "description": s.description}
                              for s in specs], indent=2))
        else:
            width = max([len(s.name) for s in specs] + [4])
            for s in specs:
                print(f"{s.name:<{width}}  {s.description or '-'}  ({s.path})")
        return 0
    mixture = load_mixture(args.name, heldout=args.heldout, allow_source_overlap=args.allow_source_overlap,
                           task_dirs=args.task_dir, mixture_dirs=args.mixture_dir)
    if args.command == "show":
        if args.json:
            manifest = mixture.manifest()
            for t in manifest["tasks"]:
                t["per_1000"] = 1000 * t["rate"]
            print(json.dumps(manifest, indent=2))
        else:
            print(show_table(mixture))
        return 0
    from t2t.stream import ExampleStream

    if args.n < 0 or args.start < 0:
        raise T2TError("--n and --start must not be negative")
    stream = ExampleStream(mixture, seed=args.seed, stop=args.stop)
    draws = stream.draws(args.start, args.n)
    if args.json:
        print(json.dumps([d.as_dict() for d in draws], indent=2, ensure_ascii=False))
    else:
        for d in draws:
            print(f"--- [{d.position}] {d.example.task} / {d.example.template} / {d.variant} / row {d.row}")
            print(f"{d.example.input}\n>>> {d.example.target}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
