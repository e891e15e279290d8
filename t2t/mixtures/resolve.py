"""Named mixtures: which tasks to train on, how often each is drawn, and what is held out.

Mixture files (the format: :mod:`t2t.mixtures.spec`) are resolved here against the task registry into
a :class:`Mixture`: training tasks with their rates and templates, and the held-out split.

Rates follow seqio: per task ``r = min(n * scale, cap) ** (1 / T)`` (``proportional`` is T = 1,
``equal`` is r = 1), where n is the task's number of training rows after its own ``limit``; an explicit
weight replaces r. A nested mixture with weight w adds ``w * r_sub / total_sub`` to each of its tasks.
The shares are the rates normalised to sum to 1. Worked example, sizes a=100, b=1000, c=50000:

    proportional, cap 3000   raw 100, 1000, 3000    shares .0244 .2439 .7317
    temperature T=2, cap 3000  raw 10, 31.62, 54.77   shares .1037 .3281 .5682
    equal                    raw 1, 1, 1            shares .3333 .3333 .3333

Held out: the mixture's ``heldout`` (of itself and of every nested mixture) plus any names given on the
command line (``--heldout``, clusters or tasks; ``cluster:X`` / ``task:X`` when a name is both). A
held-out cluster holds out every task of that cluster that the mixture selects (itself and nested; a
cluster with none is an error); tasks of the cluster outside the mixture are not trained either way and are
not reported as its held-out part. Held-out tasks are never in training, and a training task with the
same ``source_id`` as a held-out task is an error naming both, unless ``allow_source_overlap: true``
(or ``--allow-source-overlap``).

FLAN's related-cluster rule is declared, not applied by hand: ``related: {nli: [paraphrase]}`` means that
when ``nli`` is held out (by the file or ``--heldout``), the ``paraphrase`` tasks are not trained on either;
they are not evaluated as held out (they are listed as ``excluded``). Rules of nested mixtures apply too.

Sizes: n is counted from the data (``t2t.tasks.sources.num_rows``) unless the mixture declares it
(``sizes: {task: rows}``, or ``sizes_from: [other mixture]``): the rows of the source's train split, as the
dataset card gives them, so hub mixtures resolve offline; the stream checks the declaration when it reads
the rows. ``train_limit: N`` keeps the first N train rows of each task (FLAN's 30k), after the task's own
``limit``. ``rate.cap_per_template: N`` is T0's cap: a task that trains on k templates is capped at N / k
(with ``cap`` too, the smaller cap holds).

``python -m t2t.mixture show NAME`` prints what this resolves (:mod:`t2t.mixture`).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from t2t.errors import T2TError
from t2t.mixtures.spec import STRATEGIES, TRAIN_SPLIT, MixtureRegistry, MixtureSpec, Selection, TemplatePolicy
from t2t.tasks import sources
from t2t.tasks.registry import TaskRegistry, suggest
from t2t.tasks.task import Task

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


# -- resolution -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MixtureTask:
    """A training task of a resolved mixture."""

    task: Task
    examples: int
    rate: float
    templates: tuple[str, ...]
    policy: TemplatePolicy
    limit: int | None = None  # the mixture's train_limit: the stream reads at most these first rows

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
    related_clusters: tuple[str, ...] = ()   # clusters kept out of training by a related-cluster rule
    excluded: tuple[Task, ...] = ()          # their tasks: neither trained on nor held out

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
            "rate": {"strategy": spec.strategy, "cap": spec.cap, "cap_per_template": spec.cap_per_template,
                     "temperature": spec.temperature, "scale": spec.scale, "train_limit": spec.train_limit,
                     "weights": dict(spec.weights), "mixtures": dict(spec.mixtures)},
            "tasks": [{"name": e.name, "cluster": e.task.cluster, "source_id": e.task.source_id,
                       "examples": e.examples, "rate": e.rate, "templates": list(e.templates),
                       **{k: v for k, v in e.policy.as_dict().items() if k not in ("subset", "use")}}
                      for e in self.entries],
            "heldout": {"clusters": list(self.heldout_clusters),
                        "tasks": [{"name": t.name, "cluster": t.cluster, "source_id": t.source_id}
                                  for t in self.heldout],
                        "allow_source_overlap": bool(self.source_overlaps) or spec.allow_source_overlap,
                        "source_overlaps": [list(p) for p in self.source_overlaps],
                        "related": {k: list(v) for k, v in spec.related.items()},
                        "related_clusters": list(self.related_clusters),
                        "excluded": [{"name": t.name, "cluster": t.cluster} for t in self.excluded]},
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
        self._declared: dict[str, dict[str, int]] = {}

    def declared_sizes(self, spec: MixtureSpec, stack: tuple[str, ...] = ()) -> dict[str, int]:
        """The train sizes ``spec`` declares: those of its ``sizes_from`` mixtures, then its own ``sizes``."""
        if spec.name not in self._declared:
            out: dict[str, int] = {}
            for name in spec.sizes_from:
                if name in stack + (spec.name,):
                    raise T2TError(f"{spec.where}, field 'sizes_from': a cycle: "
                                   f"{' -> '.join(stack + (spec.name, name))}")
                try:
                    other = self.mixtures.get(name)
                except T2TError as exc:
                    raise T2TError(f"{spec.where}, field 'sizes_from': {exc}") from None
                out.update(self.declared_sizes(other, stack + (spec.name,)))
            for name in spec.sizes:
                if name not in self.tasks:
                    raise T2TError(f"{spec.where}, field 'sizes': unknown task '{name}'"
                                   f"{suggest(name, self.tasks.names())}")
            out.update(spec.sizes)
            self._declared[spec.name] = out
        return self._declared[spec.name]

    def size(self, task: Task, spec: MixtureSpec) -> int:
        """Training rows of ``task`` in ``spec``: declared or counted, after the task's and the mixture's limits."""
        key = f"{spec.name}\0{task.name}"
        if key not in self._sizes:
            if TRAIN_SPLIT not in task.splits:
                raise T2TError(f"{spec.where}: task '{task.name}' has no train split (splits: "
                               f"{', '.join(task.splits)}); exclude it (exclude: {{tasks: [...]}}) "
                               "or hold it out")
            declared = self.declared_sizes(spec)
            if task.name in declared:
                n = declared[task.name]
                n = min(n, task.limit.get(TRAIN_SPLIT, n))
            else:
                try:  # sources.num_rows looked up at each call: tests and benchmarks replace it
                    n = sources.num_rows(task, TRAIN_SPLIT)
                except T2TError as exc:  # name the mixture that needed the task as well as the task
                    raise T2TError(f"{spec.where}: {exc}") from None
            if spec.train_limit is not None:
                n = min(n, spec.train_limit)
            self._sizes[key] = n
        return self._sizes[key]

    def rate(self, task: Task, spec: MixtureSpec, n: int) -> float:
        """seqio's rate of a task of ``spec``, with T0's per-template cap where the spec sets one."""
        cap: float | None = spec.cap
        if spec.cap_per_template is not None:
            k = len(spec.templates.templates_for(task, spec.where))
            per = spec.cap_per_template / k
            cap = per if cap is None else min(cap, per)
        return task_rate(n, spec.strategy, cap, spec.temperature, spec.scale)  # type: ignore[arg-type]

    def related_of(self, spec: MixtureSpec, stack: tuple[str, ...] = ()) -> dict[str, set[str]]:
        """The related-cluster rules of ``spec`` and of its nested mixtures (their union)."""
        known = set(self.tasks.clusters())
        out: dict[str, set[str]] = {}
        for cluster, others in spec.related.items():
            for c in (cluster, *others):
                if c not in known:
                    raise T2TError(f"{spec.where}, field 'related.{cluster}': unknown cluster '{c}'"
                                   f"{suggest(c, known)} (clusters: {', '.join(sorted(known))})")
            out.setdefault(cluster, set()).update(others)
        for name in spec.mixtures:
            for cluster, others in self.related_of(self.sub(spec, name, stack), stack + (spec.name,)).items():
                out.setdefault(cluster, set()).update(others)
        return out

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

    def own_selection(self, spec: MixtureSpec) -> set[str]:
        """The tasks ``spec`` itself selects: include and weights, minus exclude (not nested mixtures)."""
        chosen = self.select(spec, spec.include, "include") | self.select(spec, Selection(tasks=tuple(
            spec.weights)), "weights")
        return chosen - self.select(spec, spec.exclude, "exclude")

    def universe(self, spec: MixtureSpec, stack: tuple[str, ...] = ()) -> set[str]:
        """Every task the mixture selects (itself and nested), before anything is held out."""
        chosen = self.own_selection(spec)
        for sub_name in spec.mixtures:
            chosen |= self.universe(self.sub(spec, sub_name, stack), stack + (spec.name,))
        return chosen

    def shares(self, spec: MixtureSpec, heldout: set[str], stack: tuple[str, ...] = ()
               ) -> tuple[dict[str, float], dict[str, MixtureSpec]]:
        """Normalised shares of the mixture's training tasks, and the spec that owns each task."""
        chosen = self.own_selection(spec)
        raw: dict[str, float] = {}
        owner: dict[str, MixtureSpec] = {}
        for name in sorted(chosen - heldout):
            task = self.tasks.get(name)
            n = self.size(task, spec)
            if n == 0:
                raise T2TError(f"{spec.where}: task '{name}' has no training examples; exclude it")
            raw[name] = spec.weights[name] if name in spec.weights else self.rate(task, spec, n)
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
    # A held-out cluster is the part of that cluster this mixture selects: tasks of the cluster that the
    # mixture never selects are not trained either way, and are not evaluated as its held-out part.
    universe = r.universe(spec)
    held = {}
    for c in sorted(h_clusters):
        in_mixture = {t.name: t for t in tasks.by_cluster(c) if t.name in universe}
        if not in_mixture:
            clusters = sorted({tasks.get(n).cluster for n in universe})
            raise T2TError(f"{spec.where}: held-out cluster '{c}' has no task in this mixture (its clusters: "
                           f"{', '.join(clusters)}); hold out one of those, or name tasks to hold out")
        held.update(in_mixture)
    held.update({n: tasks.get(n) for n in h_names})
    # FLAN's related clusters: holding out a cluster also keeps its related clusters out of training.
    rules = r.related_of(spec)
    related = sorted({c for h in h_clusters for c in rules.get(h, ())} - h_clusters)
    excluded = {n: tasks.get(n) for n in universe if tasks.get(n).cluster in related and n not in held}
    shares, owner = r.shares(spec, set(held) | set(excluded))
    if not shares:
        if not held and not excluded:  # nothing held out: the selection itself is empty
            raise T2TError(f"{spec.where}: the mixture selects no task (include / exclude / mixtures leave "
                           "nothing); check its selectors with python -m t2t.tasks list")
        raise T2TError(f"{spec.where}: no training task is left after holding out "
                       f"{', '.join(sorted(h_clusters | h_names))}"
                       + (f" and excluding the related clusters {', '.join(related)}" if related else ""))
    entries = []
    for name in sorted(shares):
        task, own = tasks.get(name), owner[name]
        entries.append(MixtureTask(task, r.size(task, own), shares[name],
                                   own.templates.templates_for(task, own.where),
                                   own.templates.for_task(task, own.where), own.train_limit))
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
                   tuple(sorted(h_clusters)), overlaps if allowed else (), recipe, tuple(related),
                   tuple(sorted(excluded.values(), key=lambda t: (t.cluster, t.name))))


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

