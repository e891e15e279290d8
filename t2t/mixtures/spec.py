"""Mixture files: the YAML format, parsed and checked, and the folders they are found in.

A mixture is one YAML file in ``task_registry/`` (more folders: ``--mixture-dir DIR``, repeatable, and
``T2T_MIXTURE_PATH``); its name is the file name. Every field is optional except a selection::

    description: Sentiment and comparison; one task per cluster held out (FLAN intra-cluster).
    include:                      # any of: tasks, clusters, patterns (globs over task names), tags
      clusters: [sentiment, comparison]
    exclude: {tasks: [compare_prices]}
    mixtures: {other_mixture: 0.25}       # nested mixtures and their weights (seqio)
    rate: {strategy: proportional, cap: 3000, temperature: 1.0, scale: 1.0}
    #       cap_per_template: 500000      # T0: cap = N / (number of templates the task trains with)
    weights: {sentiment_movie: 500}       # explicit rates: replace the strategy's for these tasks
    heldout: {tasks: [sentiment_product]} # and/or clusters: [...]
    related: {nli: [paraphrase]}          # a held-out cluster also keeps these clusters out of training
    train_limit: 30000                    # FLAN: at most the first N train rows of each task
    sizes: {rte: 2490}                    # declared train rows (hub tasks sized offline, from their cards)
    sizes_from: [hub]                     # ... or those declared by other mixture files
    allow_source_overlap: false
    templates:
      choose: round_robin                 # or random (seeded)
      use: all                            # or scored (skip inverted templates)
      subset: {sentiment_movie: [review_polarity, sentiment_of]}
      variants: {zero_shot: 0.7, zero_shot_no_options: 0.1, few_shot: 0.2}
      #         CoT tasks (tag cot) also: zero_shot_cot, few_shot_cot (see TemplatePolicy.for_task)
      few_shot_k: 2
    stop: infinite                # first_exhausted | all_exhausted | all_exhausted_without_replacement

Nothing here looks at the task registry: :func:`t2t.mixtures.resolve.resolve` turns a :class:`MixtureSpec` into
rates and a held-out split. Every error names the file, the mixture and the field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from t2t import yamlsafe
from t2t.builtin import builtin_dir
from t2t.errors import T2TError
from t2t.tasks.cot import COT_TAG, is_cot_task
from t2t.tasks.registry import NamedFiles, find_files, read_each, search_dirs, suggest
from t2t.tasks.task import Task

BUILTIN_MIXTURES = builtin_dir("task_registry")
STRATEGIES = ("proportional", "temperature", "equal")
STOP_POLICIES = ("infinite", "first_exhausted", "all_exhausted", "all_exhausted_without_replacement")
VARIANTS = ("zero_shot", "zero_shot_no_options", "few_shot", "few_shot_no_options", "zero_shot_cot", "few_shot_cot")
# The Flan Collection's CoT settings (google-research/FLAN flan/v2/mixtures.py: the CoT submix comes as cot_zsopt and
# cot_fsopt, zero-shot and few-shot, no no-options form): they apply to CoT tasks only (t2t.tasks.cot).
COT_VARIANTS = ("zero_shot_cot", "few_shot_cot")
CHOOSE = ("round_robin", "random")
TRAIN_SPLIT = "train"

_FIELDS = {"description", "include", "exclude", "mixtures", "rate", "weights", "heldout",
           "allow_source_overlap", "templates", "stop", "related", "train_limit", "sizes", "sizes_from"}
_SELECT_FIELDS = {"tasks", "clusters", "patterns", "tags"}
_RATE_FIELDS = {"strategy", "cap", "temperature", "scale", "cap_per_template"}
_TEMPLATE_FIELDS = {"choose", "use", "subset", "variants", "few_shot_k"}



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

    def for_task(self, task: Task, where: str) -> TemplatePolicy:
        """This policy as ``task`` draws it: the variant shares that apply to it, renormalised.

        The CoT variants render a task's own templates with rationales (zero-shot, or after k exemplars of the same
        template, rationales included), so they apply only to CoT tasks (tag ``cot``); a task without one skips
        them and its draws go to the other variants in their proportions. A CoT task takes every variant: its
        templates always reason, so ``zero_shot`` and ``zero_shot_cot`` render alike for it (and ``few_shot`` like
        ``few_shot_cot``; it has no choices, so no options to leave out). A task to which none of the mixture's
        variants applies is refused, naming it.
        """
        if is_cot_task(task.tags) or not set(self.variants) & set(COT_VARIANTS):
            return self
        shares = {k: v for k, v in self.variants.items() if k not in COT_VARIANTS}
        if not shares:
            raise T2TError(f"{where}, field 'templates.variants': task '{task.name}' ({task.path}) has no rationale "
                           f"(no tag {COT_TAG}), so the CoT variants ({', '.join(self.variants)}) do not apply to "
                           "it; give a share to zero_shot / few_shot too, or exclude the task")
        total = sum(shares.values())
        return replace(self, variants={k: v / total for k, v in shares.items()})

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
    cap_per_template: int | None = None
    temperature: float = 1.0
    scale: float = 1.0
    weights: Mapping[str, float] = field(default_factory=dict)
    heldout: tuple[str, ...] = ()
    heldout_clusters: tuple[str, ...] = ()
    heldout_tasks: tuple[str, ...] = ()
    allow_source_overlap: bool = False
    templates: TemplatePolicy = TemplatePolicy()
    stop: str = "infinite"
    related: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    train_limit: int | None = None
    sizes: Mapping[str, int] = field(default_factory=dict)
    sizes_from: tuple[str, ...] = ()

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
        """Check a parsed mixture file field by field; every error names the file, mixture and field."""
        path = path or Path(f"<{name}>")
        where = f"{path}: mixture '{name}'"
        if not isinstance(data, dict):
            raise T2TError(f"{where}: a mixture file is a YAML mapping (include:, rate:, heldout:, ...)")
        _mapping(where, "", data, _FIELDS, "field", "")
        spec = cls(name=name, path=path, **_rate(where, data), **_heldout(where, data),
                   templates=_template_policy(where, data.get("templates")),
                   allow_source_overlap=_flag(where, "allow_source_overlap", data.get("allow_source_overlap", False)),
                   description=_text(where, "description", data.get("description")),
                   include=_selection(where, "include", data.get("include")),
                   exclude=_selection(where, "exclude", data.get("exclude")),
                   mixtures=_numbers(where, "mixtures", data.get("mixtures")),
                   weights=_numbers(where, "weights", data.get("weights")),
                   stop=_choice(where, "stop", data.get("stop", "infinite"), STOP_POLICIES),
                   related=_related(where, data.get("related")),
                   train_limit=_number(where, "train_limit", data.get("train_limit"), int),
                   sizes=_sizes(where, data.get("sizes")),
                   sizes_from=_names(where, "sizes_from", data.get("sizes_from")))
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
        if self.cap_per_template is not None:
            parts.append(f"cap {self.cap_per_template} / templates")
        if self.strategy == "temperature":
            parts.append(f"T={self.temperature:g}")
        if self.scale != 1.0:
            parts.append(f"scale {self.scale:g}")
        if self.train_limit is not None:
            parts.append(f"train rows <= {self.train_limit}")
        return ", ".join(parts)


# -- checking a mixture file's fields -------------------------------------------------------------
# Each parser takes ``where`` (file and mixture, for the message), the field's dotted key and its value.

def _field_error(where: str, key: str, message: str) -> T2TError:
    return T2TError(f"{where}, field '{key}': {message}")


def _mapping(where: str, key: str, value: Any, allowed: set[str], what: str, example: str) -> dict[str, Any]:
    """``value`` (None -> {}) as a mapping whose keys are all in ``allowed``."""
    value = value or {}
    if not isinstance(value, dict):
        raise _field_error(where, key, f"must be a mapping, e.g. {example}")
    extra = sorted(set(map(str, value)) - allowed)
    if extra:
        raise _field_error(where, f"{key}.{extra[0]}" if key else extra[0],
                           f"unknown {what}{suggest(extra[0], allowed)} ({what}s: {', '.join(sorted(allowed))})")
    return value


def _names(where: str, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _field_error(where, key, "must be a name or a list of names")
    return tuple(value)


def _numbers(where: str, key: str, value: Any, what: str = "names") -> dict[str, float]:
    value = value or {}
    if not isinstance(value, dict) or not all(_is_number(v) and v >= 0 for v in value.values()):
        raise _field_error(where, key, f"must map {what} to non-negative numbers, e.g. {{NAME: 0.5}}")
    return {str(k): float(v) for k, v in value.items()}


def _number(where: str, key: str, value: Any, kind: type = float, positive: bool = True) -> Any:
    if value is None:
        return None
    if not _is_number(value) or (kind is int and value != int(value)):
        raise _field_error(where, key, f"must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if positive and not value > 0:
        raise _field_error(where, key, f"must be positive, got {value!r}")
    return kind(value)


def _choice(where: str, key: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise _field_error(where, key, f"'{value}' is not one of {', '.join(allowed)}{suggest(str(value), allowed)}")
    return str(value)


def _flag(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _field_error(where, key, "must be true or false")
    return value


def _text(where: str, key: str, value: Any) -> str:
    value = value or ""
    if not isinstance(value, str):
        raise _field_error(where, key, "must be a string")
    return value.strip()


def _selection(where: str, key: str, value: Any) -> Selection:
    """``include:`` / ``exclude:``: tasks, clusters, patterns and tags, each a name or a list of names."""
    value = _mapping(where, key, value, _SELECT_FIELDS, "selector", "{clusters: [nli], tasks: [rte]}")
    return Selection(**{k: _names(where, f"{key}.{k}", value.get(k)) for k in _SELECT_FIELDS})


def _rate(where: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """``rate:`` as the spec's strategy, cap, temperature and scale."""
    rate = _mapping(where, "rate", data.get("rate"), _RATE_FIELDS, "key", "{strategy: proportional, cap: 3000}")
    strategy = _choice(where, "rate.strategy", rate.get("strategy", "proportional"), STRATEGIES)
    temperature = _number(where, "rate.temperature", rate.get("temperature", 1.0))
    if strategy == "proportional" and temperature != 1.0:
        raise _field_error(where, "rate.temperature", "strategy 'proportional' takes no temperature; "
                                                      "use strategy: temperature")
    if strategy == "equal" and rate.get("cap_per_template") is not None:
        raise _field_error(where, "rate.cap_per_template", "strategy 'equal' takes no cap")
    return {"strategy": strategy, "temperature": temperature,
            "cap": _number(where, "rate.cap", rate.get("cap"), int),
            "cap_per_template": _number(where, "rate.cap_per_template", rate.get("cap_per_template"), int),
            "scale": _number(where, "rate.scale", rate.get("scale", 1.0))}


def _heldout(where: str, data: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """``heldout:`` as names (clusters or tasks) or as ``{tasks: [...], clusters: [...]}``."""
    heldout = data.get("heldout") or {}
    if isinstance(heldout, (list, str)):
        return {"heldout": _names(where, "heldout", heldout)}
    if not isinstance(heldout, dict):
        raise _field_error(where, "heldout", "must be {tasks: [...], clusters: [...]} or a list of cluster/task names")
    _mapping(where, "heldout", heldout, {"tasks", "clusters"}, "key", "{clusters: [nli]}")
    return {"heldout_clusters": _names(where, "heldout.clusters", heldout.get("clusters")),
            "heldout_tasks": _names(where, "heldout.tasks", heldout.get("tasks"))}


def _related(where: str, value: Any) -> dict[str, tuple[str, ...]]:
    """``related:`` cluster -> clusters that a held-out cluster also keeps out of training (FLAN: NLI and
    paraphrase). The rule is one-way as written; write both directions for a symmetric one."""
    value = value or {}
    if not isinstance(value, dict):
        raise _field_error(where, "related", "must map a cluster to the clusters it keeps out of training, "
                                             "e.g. {nli: [paraphrase]}")
    out = {str(k): _names(where, f"related.{k}", v) for k, v in value.items()}
    for k, v in out.items():
        if k in v:
            raise _field_error(where, f"related.{k}", "a cluster is not related to itself")
    return out


def _sizes(where: str, value: Any) -> dict[str, int]:
    """``sizes:`` task -> declared number of rows of its source's train split (before any limit)."""
    value = value or {}
    if not isinstance(value, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.values()):
        raise _field_error(where, "sizes", "must map task names to row counts, e.g. {rte: 2490}")
    return {str(k): int(v) for k, v in value.items()}


def _variant_shares(where: str, value: Any) -> dict[str, float]:
    """``templates.variants``: the shares of the FLAN v2 variants, normalised to sum to 1 (zeros dropped)."""
    variants = _numbers(where, "templates.variants", value or {"zero_shot": 1.0}, f"variants ({', '.join(VARIANTS)})")
    for v in variants:
        _choice(where, f"templates.variants.{v}", v, VARIANTS)
    total = sum(variants.values())
    if total <= 0:
        raise _field_error(where, "templates.variants", "the shares must not all be zero")
    return {k: float(v) / total for k, v in variants.items() if v > 0}


def _template_policy(where: str, value: Any) -> TemplatePolicy:
    """``templates:``: how templates are chosen, which are used, per-task subsets, variants, few_shot_k."""
    tpl = _mapping(where, "templates", value, _TEMPLATE_FIELDS, "key", "{choose: random, variants: {zero_shot: 1}}")
    subset = tpl.get("subset") or {}
    if not isinstance(subset, dict):
        raise _field_error(where, "templates.subset", "must map task names to lists of template names")
    variants = _variant_shares(where, tpl.get("variants"))
    return TemplatePolicy(
        choose=_choice(where, "templates.choose", tpl.get("choose", "round_robin"), CHOOSE),
        use=_choice(where, "templates.use", tpl.get("use", "all"), ("all", "scored")),
        subset={str(k): _names(where, f"templates.subset.{k}", v) for k, v in subset.items()},
        variants=variants,
        few_shot_k=_number(where, "templates.few_shot_k", tpl.get("few_shot_k", 2), int))


def mixture_dirs(extra: Sequence[str | os.PathLike[str]] = (), include_builtin: bool = True) -> list[Path]:
    """The folders searched for mixture files, in order: built-in, ``T2T_MIXTURE_PATH``, ``--mixture-dir``."""
    return search_dirs(BUILTIN_MIXTURES if include_builtin else None, "T2T_MIXTURE_PATH", extra, "--mixture-dir",
                       "mixture")


class MixtureRegistry(NamedFiles[MixtureSpec]):
    """Every mixture file found in a list of folders (``*.yaml``/``*.yml``; folders named ``_*`` skipped)."""

    kind = "mixture"
    listing = "list them with: python -m t2t.mixture list; add folders with --mixture-dir"

    def duplicate(self, item: MixtureSpec, first: MixtureSpec) -> T2TError:
        return T2TError(f"{item.path}: mixture '{item.name}' is also defined in {first.path}; "
                        "rename one of the files")

    @classmethod
    def load(cls, extra_dirs: Sequence[str | os.PathLike[str]] = (), *,
             include_builtin: bool = True) -> MixtureRegistry:
        files = [path for root in mixture_dirs(extra_dirs, include_builtin)
                 for path in find_files(root, ("*.yaml", "*.yml"))]
        specs, errors = read_each(files, MixtureSpec.from_file)
        if errors:
            raise T2TError(" | ".join(map(str, errors)))
        return cls(specs)
