"""The seeded, resumable stream of rendered training examples drawn from a resolved mixture.

Everything is counter-based, so any stream position follows from the seed alone:

- raw draw i picks its task from the uniforms of block ``i // BLOCK``, drawn by
  ``PCG64(SeedSequence([seed, 1, block]))``, against the cumulative mixing rates;
- a draw's *cursor* is the number of earlier draws of the same task (counted, vectorised per block);
  ``epoch, p = divmod(cursor, n)``;
- epoch e of a task is ``PCG64(SeedSequence([seed, 2, key(task), e]))``: a row permutation, a
  template uniform and a variant uniform per position, so every epoch reshuffles;
- the draw renders row ``perm[p]`` with the template chosen round-robin (``cursor % k``) or at random,
  in the variant (zero-shot with/without options, few-shot) its uniform picks.

Because a draw is a pure function of (seed, position), DataLoader worker k of W yields positions
k, k+W, ... (or chunks of ``chunk`` positions, to match a DataLoader ``batch_size``) and the merged
order is the single-process stream; ``state_dict()`` is just the position.

A template that declines a row (renders nothing) is replaced, deterministically, by the next template
for the same row, then by the next row of the epoch; each draw still yields exactly one example (which
is what keeps worker streams aligned). ``fallbacks`` counts those draws per task.

Stop policies (the names and meanings of ``datasets.interleave_datasets``, made explicit because
seqio's silent "first exhausted" surprised its users, seqio #513):

- ``infinite``: tasks repeat, reshuffled each epoch (training default);
- ``first_exhausted``: end before the first draw that would start a task's second epoch;
- ``all_exhausted``: oversample; end once every task has been seen in full at least once;
- ``all_exhausted_without_replacement``: each row once; draws of exhausted tasks are dropped.

Few-shot variants (FLAN v2) prepend k exemplars rendered from other train rows with the same template:
``x1 + "\\n\\n" + y1 + "\\n\\n\\n" + ... + "\\n\\n\\n" + x``; the target is the example's own.
The CoT variants (``zero_shot_cot``, ``few_shot_cot``) render like ``zero_shot`` / ``few_shot``: they are drawn
only for CoT tasks, whose templates' targets (and so the few-shot exemplars) carry the rationale
(:meth:`t2t.mixtures.spec.TemplatePolicy.for_task`).
Renders are memoised per (task, row, template, variant), up to ``cache_size`` entries per process.
Rows of local JSON Lines files are read by byte offset when drawn, not held (t2t/tasks/jsonlines.py).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from t2t.errors import T2TError
from t2t.mixtures.resolve import Mixture, load_mixture
from t2t.mixtures.spec import STOP_POLICIES, TRAIN_SPLIT
from t2t.seeds import stable_seed
from t2t.tasks import sources
from t2t.tasks.fewshot import FEW_SHOT_SEP, FEW_SHOT_XY, few_shot_input
from t2t.tasks.registry import suggest
from t2t.tasks.task import Example

BLOCK = 4096
STREAM_VERSION = 1
_TASKS, _EPOCH, _FEW_SHOT = 1, 2, 3
_MISS = object()


def _rng(*words: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(words))))


def _occurrence(t: np.ndarray, num: int) -> np.ndarray:
    """For each element, how many earlier elements of ``t`` hold the same value."""
    order = np.argsort(t, kind="stable")
    first = np.searchsorted(t[order], np.arange(num))
    occ = np.empty(len(t), np.int64)
    occ[order] = np.arange(len(t)) - first[t[order]]
    return occ


@dataclass(frozen=True)
class Draw:
    """One stream position and how its example was made."""

    position: int
    task: str
    row: int
    template: str
    variant: str
    example: Example
    fallback: bool = False

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["example"] = {k: v for k, v in d["example"].items() if k not in ("task", "template")}
        return d


@dataclass(frozen=True)
class _Epoch:
    perm: np.ndarray
    template_u: np.ndarray
    variant_u: np.ndarray


class ExampleStream(IterableDataset):
    """A deterministic, resumable iterable of :class:`~t2t.tasks.task.Example` for a mixture::

        stream = ExampleStream(mixture, seed=0)
        first = list(itertools.islice(stream, 100))
        state = stream.state_dict()                  # {"position": 100, ...}: JSON-able
        again = ExampleStream(mixture, seed=0)
        again.load_state_dict(state)                 # continues at position 100

    With DataLoader workers the main-process object never sees the draws: pass the position reached,
    ``state_dict(start + examples_taken)``. ``draws(start, count)`` gives random access without iterating.

    A task's rows are read when it is first drawn. Local JSON Lines rows are then parsed one at a time
    as drawn (``lazy``; the same rows as through ``datasets``, see :mod:`t2t.tasks.jsonlines`);
    ``lazy=False`` holds every row of a drawn task as a dict (what the stream did before; for tests).
    """

    def __init__(self, mixture: Mixture, seed: int = 0, *, stop: str | None = None, chunk: int = 1,
                 cache_size: int = 250_000, lazy: bool = True) -> None:
        if not isinstance(seed, int) or seed < 0:
            raise T2TError(f"the stream seed must be a non-negative integer, got {seed!r}")
        stop = stop or mixture.stop
        if stop not in STOP_POLICIES:
            raise T2TError(f"unknown stop policy '{stop}'{suggest(stop, STOP_POLICIES)} "
                           f"(policies: {', '.join(STOP_POLICIES)})")
        if chunk < 1:
            raise T2TError(f"chunk must be at least 1, got {chunk}")
        self.mixture, self.seed, self.stop = mixture, seed, stop
        self.chunk, self.cache_size, self.lazy = chunk, cache_size, lazy
        entries = mixture.entries
        self.names = [e.name for e in entries]
        self.rates = np.array([e.rate for e in entries], dtype=np.float64)
        self.sizes = np.array([e.examples for e in entries], dtype=np.int64)
        cum = np.cumsum(self.rates)
        self._cum = cum / cum[-1]
        self._cum[-1] = 1.0
        self._keys = [stable_seed(n) for n in self.names]
        self._templates = [e.templates for e in entries]
        self._template_keys = [[stable_seed(t) for t in e.templates] for e in entries]
        self._random_template = [e.policy.choose == "random" for e in entries]
        self._variants = [list(e.policy.variants) for e in entries]
        self._variant_cum = [list(itertools.accumulate(e.policy.variants.values())) for e in entries]
        self._few_shot_k = [e.policy.few_shot_k for e in entries]
        self.position = 0
        self._resume: tuple[int, int, np.ndarray, np.ndarray] | None = None  # scan state at a block start
        self.fallbacks: Counter[str] = Counter()
        self._rows: dict[int, Sequence[dict[str, Any]]] = {}
        self._epochs: dict[int, tuple[int, _Epoch]] = {}
        self._cache: dict[tuple[int, int, int, str], Example | None] = {}

    # -- identity and state -----------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        spec = {"version": STREAM_VERSION, "block": BLOCK, "seed": self.seed, "stop": self.stop,
                "tasks": [[e.name, e.examples, f"{e.rate:.12g}", list(e.templates), e.policy.choose,
                           {k: f"{v:.12g}" for k, v in e.policy.variants.items()}, e.policy.few_shot_k]
                          for e in self.mixture.entries]}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def state_dict(self, position: int | None = None) -> dict[str, Any]:
        """The stream state (JSON-able): the position of the next example to train on.

        By default the position this object reached by iterating in this process. With DataLoader
        workers, or with :meth:`draws`, pass the absolute position (e.g. ``steps * batch_size``).
        """
        position = self.position if position is None else int(position)
        if position < 0:
            raise T2TError(f"a stream position cannot be negative, got {position}")
        return {"version": STREAM_VERSION, "mixture": self.mixture.name, "seed": self.seed,
                "position": position, "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or not isinstance(state.get("position"), int) or state["position"] < 0:
            raise T2TError(f"not a stream state (need a dict with a non-negative 'position'): {state!r:.200}")
        if state.get("version", STREAM_VERSION) != STREAM_VERSION:
            raise T2TError(f"stream state version {state.get('version')} is not {STREAM_VERSION}; "
                           "it was written by another t2t version: start a new run")
        if state.get("fingerprint", self.fingerprint) != self.fingerprint:
            raise T2TError(f"the saved stream (mixture '{state.get('mixture')}', seed {state.get('seed')}) "
                           "was built from other tasks, rates, templates, seed or stop policy than this one "
                           f"(mixture '{self.mixture.name}', seed {self.seed}); resume with the same "
                           "mixture, --heldout, seed and task files")
        self.position = state["position"]

    def manifest(self) -> dict[str, Any]:
        """The mixture manifest plus what fixes this stream (seed, stop, version, fingerprint)."""
        out = self.mixture.manifest(self.seed, self.stop)
        out["stream"] = {"version": STREAM_VERSION, "block": BLOCK, "fingerprint": self.fingerprint,
                         "few_shot_format": {"xy": FEW_SHOT_XY, "separator": FEW_SHOT_SEP}}
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        # Tasks hold compiled Jinja and do not pickle; another process (spawned DataLoader workers)
        # loads the mixture again from its files and checks that it is the same stream.
        if self.mixture.recipe is None:
            raise T2TError("a stream over an in-memory mixture cannot be sent to another process; build it "
                           "with t2t.mixtures.stream.build_stream (or load_mixture) so that it can be loaded again")
        return (_rebuild, (asdict(self.mixture.recipe), self.seed, self.stop, self.chunk, self.cache_size,
                           self.position, self.fingerprint, self.lazy))

    # -- task indices (no rendering) --------------------------------------------------------------
    def _block_tasks(self, block: int) -> np.ndarray:
        u = _rng(self.seed, _TASKS, block).random(BLOCK)
        return np.searchsorted(self._cum, u, side="right")

    def _scan(self, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per block: (positions, task indices, cursors) of the stream's items at positions >= start."""
        num, n = len(self.names), self.sizes
        total = int(n.sum())
        # Counting from block 0 every time would make draws(start, k) cost O(start): continue from the
        # last block start remembered at or before ``start`` (sequential reads then cost O(k)).
        if self._resume is not None and self._resume[1] <= start:
            first, j, counts, done = self._resume
            counts, done = counts.copy(), done.copy()
        else:
            first, j, counts, done = 0, 0, np.zeros(num, np.int64), np.zeros(num, bool)
        for block in itertools.count(first):
            if j <= start:
                self._resume = (block, j, counts.copy(), done.copy())
            t = self._block_tasks(block)
            c = counts[t] + _occurrence(t, num)
            counts += np.bincount(t, minlength=num)
            end, finished = BLOCK, False
            if self.stop == "first_exhausted":
                over = np.flatnonzero(c >= n[t])
                if over.size:
                    end, finished = int(over[0]), True
            elif self.stop == "all_exhausted":
                completes = np.flatnonzero(c == n[t] - 1)  # a task's first epoch ends here (once ever)
                done[t[completes]] = True
                if done.all():
                    end, finished = int(completes.max()) + 1, True
            t, c = t[:end], c[:end]
            if self.stop == "all_exhausted_without_replacement":
                keep = c < n[t]
                t, c = t[keep], c[keep]
                finished = j + len(t) >= total
            pos = j + np.arange(len(t), dtype=np.int64)
            j += len(t)
            if j > start:
                sel = pos >= start
                yield pos[sel], t[sel], c[sel]
            if finished:
                return

    def task_ids(self, count: int, start: int = 0) -> np.ndarray:
        """Task indices (into ``names``) of positions [start, start + count): cheap, nothing rendered."""
        out, have = [], 0
        for _, t, _ in self._scan(start):
            out.append(t[: count - have])
            have += len(out[-1])
            if have >= count:
                break
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    # -- rendering --------------------------------------------------------------------------------
    def task_rows(self, t: int) -> Sequence[dict[str, Any]]:
        """The rows task number ``t`` draws from (its train split, cut to the mixture's limit), as drawn:
        for checking them all before training (:mod:`t2t.mixtures.rowcheck`)."""
        return self._task_rows(t)

    def _task_rows(self, t: int) -> Sequence[dict[str, Any]]:
        if t not in self._rows:
            entry = self.mixture.entries[t]
            task = entry.task
            # Local JSON Lines rows are read when drawn (an offset a row in memory): a mixture over
            # thousands of task files starts at once and never holds every row (benchmarks/sni_scale.py).
            rows: Sequence[dict[str, Any]] | None = None
            if self.lazy:
                rows = sources.lazy_rows(task, TRAIN_SPLIT, entry.limit)
            if rows is None:
                ds = sources.load_rows(task, TRAIN_SPLIT)
                if entry.limit is not None and len(ds) > entry.limit:  # the mixture's train_limit (FLAN's 30k)
                    ds = ds.select(range(entry.limit))
                rows = ds.to_list()
            if len(rows) != self.sizes[t]:
                raise T2TError(f"task '{task.name}' ({task.path}): its train split now has {len(rows)} rows, "
                               f"but the mixture was resolved with {self.sizes[t]}; its data changed while "
                               "loading, or the mixture's declared size (sizes:) is wrong; fix it or build "
                               "the stream again")
            self._rows[t] = rows
        return self._rows[t]

    def _epoch(self, t: int, epoch: int) -> _Epoch:
        cached = self._epochs.get(t)
        if cached is None or cached[0] != epoch:
            n = int(self.sizes[t])
            rng = _rng(self.seed, _EPOCH, self._keys[t], epoch)
            cached = (epoch, _Epoch(np.argsort(rng.random(n), kind="stable"), rng.random(n), rng.random(n)))
            self._epochs[t] = cached
        return cached[1]

    def _example(self, t: int, row: int, ti: int, variant: str) -> Example | None:
        key = (t, row, ti, variant)
        hit = self._cache.get(key, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        options = not variant.endswith("_no_options")
        if variant.startswith("few_shot"):
            example = self._few_shot(t, row, ti, "zero_shot" if options else "zero_shot_no_options")
        else:
            task = self.mixture.entries[t].task
            example = task.render(self._task_rows(t)[row], row, self._templates[t][ti], seed=self.seed,
                                  options=options)
        if len(self._cache) < self.cache_size:
            self._cache[key] = example
        return example

    def _few_shot(self, t: int, row: int, ti: int, zero: str) -> Example | None:
        query = self._example(t, row, ti, zero)
        if query is None:
            return None
        n, k = int(self.sizes[t]), self._few_shot_k[t]
        candidates = (_rng(self.seed, _FEW_SHOT, self._keys[t], row, self._template_keys[t][ti])
                      .random(8 * k + 16) * n).astype(np.int64).tolist()
        shots: list[Example] = []
        seen = {row}  # never the example itself
        for cand in candidates:
            if len(shots) == k:
                break
            if cand not in seen:
                seen.add(cand)
                shot = self._example(t, cand, ti, zero)
                if shot is not None:
                    shots.append(shot)
        if not shots:
            return query
        return replace(query, input=few_shot_input(((s.input, s.target) for s in shots), query.input))

    def _draw(self, position: int, t: int, cursor: int) -> Draw:
        n = int(self.sizes[t])
        epoch, p = divmod(cursor, n)
        plan = self._epoch(t, epoch)
        names = self._templates[t]
        k = len(names)
        first = min(int(plan.template_u[p] * k), k - 1) if self._random_template[t] else cursor % k
        variants = self._variants[t]
        variant = variants[min(bisect.bisect_right(self._variant_cum[t], float(plan.variant_u[p])),
                               len(variants) - 1)]
        for step in range(n):
            row = int(plan.perm[(p + step) % n])
            for dt in range(k):
                ti = (first + dt) % k
                example = self._example(t, row, ti, variant)
                if example is not None:
                    if step or dt:
                        self.fallbacks[self.names[t]] += 1
                    return Draw(position, self.names[t], row, names[ti], variant, example, bool(step or dt))
        task = self.mixture.entries[t].task
        raise T2TError(f"task '{task.name}' ({task.path}): every template ({', '.join(names)}) declined "
                       f"every train row; fix the templates or exclude the task from mixture "
                       f"'{self.mixture.name}'")

    # -- iteration --------------------------------------------------------------------------------
    def _positions(self, start: int, worker: int = 0, workers: int = 1) -> Iterator[tuple[int, int, int]]:
        for pos, t, c in self._scan(start):
            if workers > 1:
                sel = ((pos - start) // self.chunk) % workers == worker
                pos, t, c = pos[sel], t[sel], c[sel]
            yield from zip(pos.tolist(), t.tolist(), c.tolist(), strict=True)

    def draws(self, start: int = 0, count: int | None = None) -> list[Draw] | Iterator[Draw]:
        """Draws at positions start, start+1, ... (a list of ``count``, or an endless iterator)."""
        it = (self._draw(p, t, c) for p, t, c in self._positions(start))
        return list(itertools.islice(it, count)) if count is not None else it

    def draw(self, position: int) -> Draw:
        found = self.draws(position, 1)
        if not found:
            raise T2TError(f"position {position} is past the end of the stream (stop policy '{self.stop}')")
        return found[0]

    def __iter__(self) -> Iterator[Example]:
        info = get_worker_info()
        start = self.position
        if info is None or info.num_workers == 1:
            for p, t, c in self._positions(start):
                self.position = p + 1
                yield self._draw(p, t, c).example
        else:
            for p, t, c in self._positions(start, info.id, info.num_workers):
                yield self._draw(p, t, c).example


def _rebuild(recipe: dict[str, Any], seed: int, stop: str, chunk: int, cache_size: int, position: int,
             fingerprint: str, lazy: bool = True) -> ExampleStream:
    name = recipe.pop("name")
    stream = ExampleStream(load_mixture(name, **recipe), seed, stop=stop, chunk=chunk, cache_size=cache_size,
                           lazy=lazy)
    if stream.fingerprint != fingerprint:
        raise T2TError(f"mixture '{name}' changed on disk while the stream was being sent to another process")
    stream.position = position
    return stream


def build_stream(name: str, *, heldout: Sequence[str] = (), seed: int = 0, stop: str | None = None,
                 **load: Any) -> ExampleStream:
    """The training stream of a mixture: an iterable of Examples with state_dict()/load_state_dict().

    ``load`` takes the keywords of :func:`load_mixture` (task_dirs, mixture_dirs, allow_source_overlap).
    """
    return ExampleStream(load_mixture(name, heldout=heldout, **load), seed=seed, stop=stop)
