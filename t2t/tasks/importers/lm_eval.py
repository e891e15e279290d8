"""lm-evaluation-harness task YAML, both ways: export t2t tasks for lm-eval, import lm-eval tasks as t2t tasks.

Export (``python -m t2t.tasks export-lm-eval TASK... --out DIR``) renders each scored template of each task
on one split, exactly as ``t2t.evaluate`` renders it zero-shot (same rows, seed and template), and writes::

    DIR/data/TASK__TEMPLATE.jsonl   {"index", "input", "target", "references", "choices", "gold"} per row
    DIR/TASK__TEMPLATE.yaml         task: t2t_TASK__TEMPLATE, dataset_path: json, data_files: the JSONL
                                    doc_to_text: "{{input}}", doc_to_choice: choices, doc_to_target: gold
    DIR/t2t.yaml                    group: t2t, task: [every task above]

so ``lm_eval --include_path DIR --tasks t2t`` scores t2t's own prompts. lm-eval then scores
``target_delimiter + choice`` without EOS (``target_delimiter: " "``, its default); ``t2t.evaluate
--choice-scoring lm-eval`` scores the same quantity (``tests/tasks/test_lm_eval.py`` compares them per
choice). Generation templates become ``generate_until`` with greedy decoding; only metrics lm-eval has
built in are written (accuracy and exact_match -> exact_match, which is plain string equality there; bleu);
the others (rouge_l, f1, squad_em) are left out and named in :class:`Exported`.

Import (``python -m t2t.tasks import-lm-eval TASK.yaml... --cluster C --out DIR``) turns one lm-eval task
YAML (``include:`` files merged, the including file winning, as lm-eval does) into a t2t task file with one
template, ``lm_eval``:

- ``dataset_path``/``dataset_name`` -> ``source: {hf, config}`` (``json``/``csv``/``parquet`` with
  ``dataset_kwargs.data_files`` -> ``source: {files}``, relative paths resolved from the current folder
  as lm-eval reads them); ``training_split``/``validation_split``/
  ``test_split`` -> ``splits``.
- ``doc_to_text`` -> the template's input; ``doc_to_target`` -> ``answer`` (a number, or a render that is
  all digits, is an index into the choices, as lm-eval reads it); ``doc_to_choice`` (a list, or one
  ``{{ expression }}`` that gives a list) -> ``choices``. A plain field name in any of them is that
  field, as lm-eval reads a name of a dataset column. The Jinja is copied unchanged: in t2t a row's
  fields shadow t2t's own names (``choices``, ``answer``: the generated file reads ``t2t.choices``,
  ``t2t.answer``), so it sees what lm-eval's sees.
- ``output_type``: ``multiple_choice`` (metrics -> accuracy; t2t reports acc and acc_norm as lm-eval)
  or ``generate_until`` (exact_match, bleu). Other metrics are left out with a note.

Refused, naming the field and why: ``!function`` hooks (Python code t2t does not run), ``process_docs``,
``process_results``, ``filter_list`` other than lm-eval's default (take_first), other output types
(``loglikelihood``, ``loglikelihood_rolling``), ``doc_to_text``/``doc_to_target`` that are not strings
or numbers, Jinja filters t2t's sandbox lacks (lm-eval's ``regex_replace``), other ``dataset_kwargs``.
Known differences of an imported task: t2t strips the rendered input and each choice and drops empty
choices (lm-eval keeps them; a choice list with an empty entry shifts the gold index), and t2t splits
choices on ``|||``; a prompt ending in spaces keeps them in lm-eval, where they move into the continuation.
Ignored with a note: few-shot settings (``num_fewshot``, ``fewshot_split``; t2t's ``--num-shots`` does
k-shot its own way), ``generation_kwargs``, ``tag``/``group``, ``metadata``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import nodes

from t2t import yamlsafe
from t2t.atomic import staged_files
from t2t.errors import T2TError
from t2t.tasks import registry
from t2t.tasks.registry import TaskRegistry
from t2t.tasks.sandbox import T2TSandbox
from t2t.tasks.sources import load_rows
from t2t.tasks.task import SPLITS, Task, warn

TEMPLATE = "lm_eval"
GROUP = "t2t"
# lm-eval's built-in generation metrics for t2t's: others need a process_results hook (Python).
GEN_METRICS = {"accuracy": "exact_match", "exact_match": "exact_match", "bleu": "bleu"}
IMPORT_METRICS = {"acc": "accuracy", "acc_norm": "accuracy", "exact_match": "exact_match", "bleu": "bleu"}
# lm-eval fields read here, and those that are left out with a note (few-shot: t2t's --num-shots does its own).
HANDLED = ("task", "dataset_path", "dataset_name", "dataset_kwargs", "training_split", "validation_split",
           "test_split", "output_type", "doc_to_text", "doc_to_target", "doc_to_choice", "target_delimiter",
           "metric_list", "filter_list", "metadata", "tag", "task_alias", "should_decontaminate",
           "doc_to_decontamination_query")
IGNORED = ("num_fewshot", "fewshot_split", "fewshot_delimiter", "fewshot_config", "generation_kwargs", "group",
           "description", "repeats")


# --- export ------------------------------------------------------------------------------------------------


@dataclass
class Exported:
    """What :func:`export_tasks` wrote: YAML files, the group file, rows per file, metrics left out."""

    files: list[Path] = field(default_factory=list)
    group: Path | None = None
    rows: dict[str, int] = field(default_factory=dict)  # lm-eval task name -> rows
    dropped_metrics: dict[str, list[str]] = field(default_factory=dict)  # t2t task -> metrics not exported
    splits: dict[str, str] = field(default_factory=dict)  # t2t task -> split rendered


def _pick_split(task: Task, wanted: str) -> str:
    """As t2t.evaluate picks it (t2t.evaluation.prompts.pick_split, a layer above): wanted, else the first of
    validation, test, train that the task has, with a warning. A name that is no t2t split and not one of the
    task's (``--split dev``) is a mistake, refused naming the splits."""
    if wanted in task.splits:
        return wanted
    if wanted not in SPLITS:
        raise T2TError(f"--split {wanted}: task '{task.name}' has no such split (its splits: "
                       f"{', '.join(task.splits)}; t2t's are {', '.join(SPLITS)})")
    for split in ("validation", "test", "train"):
        if split in task.splits:
            warn(f"task '{task.name}' has no split '{wanted}'; exporting its '{split}' split")
            return split
    raise T2TError(f"task '{task.name}' has no split to export (splits: {', '.join(task.splits)})")


def lm_eval_name(task: str, template: str) -> str:
    return f"t2t_{task}__{template}"


def task_yaml(task: Task, template: str, data_file: Path, max_gen_toks: int) -> tuple[dict[str, Any], list[str]]:
    """The lm-eval config of one (task, template) and the t2t metrics it leaves out."""
    config: dict[str, Any] = {
        "task": lm_eval_name(task.name, template),
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "doc_to_text": "{{input}}",
        "target_delimiter": " ",
    }
    dropped: list[str] = []
    if task.has_choices:
        config.update(output_type="multiple_choice", doc_to_choice="choices", doc_to_target="gold",
                      metric_list=[{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                   for m in ("acc", "acc_norm")])
        dropped = [m for m in task.metrics if m != "accuracy"]
    else:
        names = list(dict.fromkeys(GEN_METRICS[m] for m in task.metrics if m in GEN_METRICS)) or ["exact_match"]
        dropped = [m for m in task.metrics if m not in GEN_METRICS]
        config.update(output_type="generate_until", doc_to_target="target",
                      generation_kwargs={"until": [], "do_sample": False, "max_gen_toks": max_gen_toks},
                      metric_list=[{"metric": m, "aggregation": "mean" if m == "exact_match" else m,
                                    "higher_is_better": True} for m in names])
    config["metadata"] = {"version": 1.0, "t2t_task": task.name, "t2t_template": template,
                          "t2t_source": task.source_id}
    return config, dropped


MANIFEST = ".t2t-export.json"  # what the last export into a folder wrote, so --overwrite can remove the rest


def export_tasks(tasks: Sequence[Task], out_dir: str | Path, split: str = "validation", limit: int | None = None,
                 seed: int = 0, overwrite: bool = False, max_gen_toks: int = 64) -> Exported:
    """Render and write every scored template of ``tasks`` as lm-eval tasks (module docstring).

    Rows are rendered with ``seed`` as ``t2t.evaluate --seed`` renders them; a template that declines a row
    leaves it out, as t2t.evaluate does. (t2t.evaluate also skips prompts longer than ``--max-input-len``
    tokens; the export cannot know the tokenizer and keeps them: lm-eval cuts them from the left.)
    Everything is staged and moved in at once (:func:`t2t.atomic.staged_files`); with ``overwrite`` the files
    an earlier export listed in its manifest and this one does not write are removed (lm-eval would still
    register a stale task YAML).
    """
    if limit is not None and limit < 1:
        raise T2TError(f"--limit {limit}: must be at least 1")
    out = Path(out_dir).resolve()
    result = Exported()
    files: dict[str, str] = {}  # path relative to out -> text
    for task in tasks:
        for template, records in _rendered(task, split, limit, seed, result):
            name = f"{task.name}__{template}"
            config, dropped = task_yaml(task, template, out / "data" / f"{name}.jsonl", max_gen_toks)
            if dropped:
                result.dropped_metrics[task.name] = dropped
            files[f"{name}.yaml"] = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1000)
            files[f"data/{name}.jsonl"] = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            result.rows[config["task"]] = len(records)
    if not files:
        raise T2TError("nothing to export: no scored template of the tasks rendered a row")
    files[f"{GROUP}.yaml"] = yaml.safe_dump({"group": GROUP, "task": list(result.rows)}, sort_keys=False)
    for rel in files:
        if (out / rel).exists() and not overwrite:
            raise T2TError(f"{out / rel} already exists; pass --overwrite to replace it")
    earlier = _manifest(out)
    try:
        with staged_files(out) as stage:
            for rel, text in files.items():
                stage.write_text(rel, text)
            stage.write_text(MANIFEST, json.dumps({"files": sorted(files)}, indent=1) + "\n")
            for rel in set(earlier) - set(files):
                stage.remove(rel)
    except OSError as exc:
        raise T2TError(f"--out {out}: cannot write there ({exc.strerror or exc}); nothing was changed") from None
    result.files = [out / rel for rel in files if rel.endswith(".yaml") and rel != f"{GROUP}.yaml"]
    result.group = out / f"{GROUP}.yaml"
    return result


def _rendered(task: Task, split: str, limit: int | None, seed: int,
              result: Exported) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each scored template of ``task`` with its rendered records (templates that rendered none left out)."""
    used = _pick_split(task, split)
    result.splits[task.name] = used
    rows = load_rows(task, used)
    rows = (rows.select(range(min(limit, len(rows)))) if limit else rows).to_list()
    out = []
    for template in task.scored_templates():
        records = []
        for i, row in enumerate(rows):
            ex = task.render(row, i, template, seed=seed)
            if ex is None:
                continue
            record: dict[str, Any] = {"index": i, "input": ex.input, "target": ex.target,
                                      "references": list(ex.references)}
            if ex.choices is not None:
                record.update(choices=list(ex.choices), gold=list(ex.choices).index(ex.target))
            records.append(record)
        if records:
            out.append((template, records))
    return out


def _manifest(out: Path) -> list[str]:
    """The files the earlier export into ``out`` wrote (relative paths inside ``out`` only)."""
    path = out / MANIFEST
    if not path.exists():
        return []
    try:
        files = yamlsafe.load_json_file(path).get("files", [])
    except (T2TError, AttributeError):
        files = []
    if not isinstance(files, list):
        return []
    return [f for f in files if isinstance(f, str) and not Path(f).is_absolute() and ".." not in Path(f).parts]


# --- import ------------------------------------------------------------------------------------------------


class _LmEvalLoader(yaml.SafeLoader):
    """Reads ``!function module.name`` as a marker, so that it is refused by name instead of failing to parse."""


@dataclass(frozen=True)
class _Function:
    target: str


_LmEvalLoader.add_constructor("!function", lambda loader, node: _Function(loader.construct_scalar(node)))


def read_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """An lm-eval task YAML with its ``include:`` chain merged (the including file's keys win). Read through
    :mod:`t2t.yamlsafe` (size, alias, nesting budgets, duplicate keys); a chain longer than
    ``MAX_INCLUDE_DEPTH`` files is refused, as is a loop."""
    path = Path(path)
    if path.resolve() in _seen:
        raise T2TError(f"{path}: include loop ({' -> '.join(map(str, _seen))})")
    if len(_seen) >= yamlsafe.MAX_INCLUDE_DEPTH:
        raise T2TError(f"{_seen[0]}: include chain longer than {yamlsafe.MAX_INCLUDE_DEPTH} files (at {path})")
    # lm-eval reads its YAML with PyYAML (lm_eval/tasks/_yaml_loader.py: yaml.load with CSafeLoader), where
    # a repeated key's last value wins: kept so, to import what lm-eval runs.
    data = yamlsafe.load_yaml_file(path, _LmEvalLoader, unique_keys=False)
    yamlsafe.expect(data, dict, str(path), "(top level)", "a mapping of lm-eval fields (task:, dataset_path:, ...)")
    include = data.pop("include", None)
    if include is None:
        return data
    yamlsafe.expect(include, str, str(path), "include", "the path of one YAML file")
    base = read_config(path.parent / include, _seen + (path.resolve(),))
    base.pop("group", None)  # lm-eval: a group in an included file does not carry over to the includer
    return {**base, **data}


@dataclass
class LmEvalImport:
    """One imported lm-eval task: the task file written and what was left out (``notes``)."""

    path: Path
    name: str
    notes: list[str]
    text: str = field(default="", repr=False)  # the task file's text


def _refuse(path: Path, key: str, why: str) -> T2TError:
    return T2TError(f"{path}: lm-eval field '{key}' cannot be imported: {why}")


def _parse(path: Path, key: str, source: str) -> nodes.Template:
    try:
        return jinja2.Environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _refuse(path, key, f"not valid Jinja ({exc.message})") from None


def _jinja(path: Path, key: str, value: Any, env: jinja2.Environment, body: bool = True) -> str:
    """lm-eval's doc_to_* value as t2t Jinja that renders the same text from a row."""
    if isinstance(value, _Function):
        raise _refuse(path, key, f"'!function {value.target}' runs Python code; t2t renders Jinja only "
                                 "(rewrite it as Jinja)")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _refuse(path, key, f"expected a Jinja string, a field name or a number, got {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    if re.fullmatch(r"[A-Za-z_]\w*", value):  # lm-eval reads a bare name of a dataset column as that column
        value = "{{" + value + "}}"
    if (body and "|||" in value) or re.search(r"\{%-?\s*(block|endblock|extends)\b", value):
        raise _refuse(path, key, "holds '|||' or a block tag, which t2t's template format reserves")
    tree = _parse(path, key, value)
    missing = sorted({f.name for f in tree.find_all(nodes.Filter)} - set(env.filters))
    if missing:
        raise _refuse(path, key, f"Jinja filter '{missing[0]}' is not in t2t's sandbox")
    return value  # a row's fields shadow t2t's own names (t2t.choices, ...), so lm-eval's Jinja reads the same


def _choices(path: Path, value: Any, env: jinja2.Environment) -> list[str] | str:
    """doc_to_choice as t2t's ``choices``: a fixed list, or Jinja rendering ``a ||| b ||| c``."""
    if isinstance(value, (list, dict)):  # lm-eval takes a mapping's values
        items = list(value.values()) if isinstance(value, dict) else value
        yamlsafe.expect(items, lambda v: all(isinstance(c, (str, int, float)) for c in v), str(path),
                        "doc_to_choice", "a list of strings (or numbers)")
        return [str(c) for c in items]
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_]\w*", value):
        expr = value
    else:
        _jinja(path, "doc_to_choice", value, env)  # refuses !function, non-strings, unknown filters
        tree = _parse(path, "doc_to_choice", value)
        parts = tree.body[0].nodes if len(tree.body) == 1 and isinstance(tree.body[0], nodes.Output) else []
        found = re.fullmatch(r"\s*\{\{(.*)\}\}\s*", value, re.S)
        if len(parts) != 1 or isinstance(parts[0], nodes.TemplateData) or found is None:
            raise _refuse(path, "doc_to_choice", "only one {{ expression }} giving a list can be read as choices "
                                                 "(lm-eval parses the render as a Python list)")
        expr = found.group(1).strip()
    return _jinja(path, "doc_to_choice", "{{ (" + expr + ") | join(' ||| ') }}", env, body=False)


def _first_row(source: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first row of a local JSON Lines source (read without datasets), else None. Only JSON: a CSV
    row is all strings where datasets would read numbers, so a template could render it otherwise."""
    files = source.get("files") or {}
    first = next(iter(files.values()), None)
    first = first[0] if isinstance(first, list) else first
    if not isinstance(first, str) or not first.endswith((".jsonl", ".json")):
        return None
    try:
        with open(first, encoding="utf-8") as f:
            row = yamlsafe.load_json(f.readline(yamlsafe.MAX_BYTES) or "null")
    except (OSError, ValueError):
        return None  # not JSON Lines (a .json holding one list), or unreadable: loading the task names it
    return row if isinstance(row, dict) and row else None


def _output_type(config: Mapping[str, Any], path: Path) -> str:
    """The config's output type, after refusing what t2t cannot run or score as lm-eval does."""
    for key in ("process_docs", "process_results", "doc_to_image", "doc_to_audio"):
        if key in config:
            raise _refuse(path, key, "a Python hook (or a non-text input) that t2t does not run")
    for key, value in config.items():
        if isinstance(value, _Function) and key not in ("doc_to_text", "doc_to_target", "doc_to_choice"):
            raise _refuse(path, key, f"'!function {value.target}' runs Python code")
    output = yamlsafe.expect(config.get("output_type", "generate_until"), str, str(path), "output_type",
                             "multiple_choice or generate_until")
    if output not in ("multiple_choice", "generate_until"):
        raise _refuse(path, "output_type", f"'{output}' has no t2t equivalent; t2t scores multiple_choice "
                                           "(rank classification) and generate_until (generation)")
    filters = config.get("filter_list")
    if filters is not None and filters != [{"name": "none", "filter": [{"function": "take_first"}]}]:
        raise _refuse(path, "filter_list", "answer extraction filters change what is scored; t2t scores the "
                                           "whole generation (only lm-eval's default take_first imports)")
    return output


def _source(config: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The task file's ``source`` and ``splits`` (t2t split -> the dataset's) for an lm-eval config."""
    where = str(path)
    dataset = config.get("dataset_path")
    if not isinstance(dataset, str) or not dataset:
        raise _refuse(path, "dataset_path", "missing: t2t needs the hub dataset (or json/csv/parquet files)")
    kwargs = dict(yamlsafe.expect(config.get("dataset_kwargs") or {}, dict, where, "dataset_kwargs",
                                  "a mapping (data_files: ..., trust_remote_code: ...)"))
    splits = {t2t: yamlsafe.expect(config[key], str, where, key, "a split name")
              for t2t, key in (("train", "training_split"), ("validation", "validation_split"),
                               ("test", "test_split")) if config.get(key)}
    if not splits:
        raise _refuse(path, "test_split", "no training_split, validation_split or test_split is set")
    if dataset in ("json", "csv", "parquet") and "data_files" in kwargs:
        files = _data_files(kwargs.pop("data_files"), where)
        files = files if isinstance(files, dict) else {s: files for s in splits.values()}
        source: dict[str, Any] = {"files": files}
    else:
        source = {"hf": dataset}
        if config.get("dataset_name") is not None:
            source["config"] = str(yamlsafe.expect(config["dataset_name"], (str, int, float), where, "dataset_name",
                                                   "a config name"))
        if kwargs.pop("trust_remote_code", False):
            source["trust_remote_code"] = True
    if kwargs:
        raise _refuse(path, "dataset_kwargs", f"'{sorted(map(str, kwargs))[0]}' has no t2t source equivalent")
    return source, splits


def _is_paths(value: Any) -> bool:
    return isinstance(value, str) and value != "" or isinstance(value, list) and value != [] and all(
        isinstance(v, str) and v for v in value)


def _data_files(files: Any, where: str) -> str | list[str] | dict[str, str | list[str]]:
    """``dataset_kwargs.data_files`` (a path, a list of paths, or split -> path(s), as datasets takes them)
    with each path resolved: lm-eval (datasets) reads relative paths from the folder it runs in."""
    yamlsafe.expect(files, lambda v: _is_paths(v) or isinstance(v, dict) and v != {} and all(
        isinstance(k, str) and _is_paths(p) for k, p in v.items()), where, "dataset_kwargs.data_files",
        "a path, a list of paths or a mapping of split name to path(s)")

    def resolved(p: str | list[str]) -> str | list[str]:
        return str(Path(p).resolve()) if isinstance(p, str) else [str(Path(x).resolve()) for x in p]

    return {k: resolved(v) for k, v in files.items()} if isinstance(files, dict) else resolved(files)


def _metrics(config: Mapping[str, Any], output: str, notes: list[str], where: str) -> list[str]:
    """t2t's metrics for the config's ``metric_list`` (notes get the ones left out): rank classification
    scores accuracy; a generation task keeps what maps to t2t, else exact match."""
    metrics: list[str] = []
    given = config.get("metric_list") or [{"metric": "acc" if output == "multiple_choice" else "exact_match"}]
    yamlsafe.expect(given, list, where, "metric_list", "a list of {metric: NAME, ...} mappings")
    for item in given:
        metric = item.get("metric") if isinstance(item, dict) else None
        if not isinstance(metric, (str, _Function)):
            yamlsafe.expect(item, dict, where, "metric_list[]", "a mapping {metric: NAME, ...}")
            yamlsafe.expect(metric, str, where, "metric_list[].metric", "a metric name")
        if isinstance(metric, _Function) or metric not in IMPORT_METRICS:
            notes.append(f"metric {metric!r} left out (t2t has no equivalent)")
        elif IMPORT_METRICS[metric] not in metrics:
            metrics.append(IMPORT_METRICS[metric])
    if output == "multiple_choice":
        return ["accuracy"]
    return metrics or ["exact_match"]


def task_name(config: Mapping[str, Any], path: Path, name: str | None = None) -> str:
    """The t2t task name of one lm-eval config: ``name``, else its ``task:``, else the file's stem."""
    task_name = name or str(config.get("task") or path.stem)
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", task_name):
        raise _refuse(path, "task", f"'{task_name[:80]}' is not a t2t task name (letters, digits, '_', '-', '.'); "
                                    "pass --name")
    return task_name


def to_task_file(config: Mapping[str, Any], path: Path, cluster: str, env: jinja2.Environment,
                 name: str | None = None, examples: Sequence[dict[str, Any]] = ()) -> tuple[str, str, list[str]]:
    """The t2t task file text of one lm-eval config, its name, and notes on what was left out. ``examples``
    become its example rows; without them the first row of local JSON Lines data does."""
    output = _output_type(config, path)
    name = task_name(config, path, name)
    source, splits = _source(config, path)
    notes = [f"'{k}' ignored" if k in IGNORED else f"'{k}' not understood, ignored"
             for k in config if k not in HANDLED]
    delimiter = config.get("target_delimiter", " ")
    if delimiter != " ":
        notes.append(f"target_delimiter {delimiter!r}: pass --target-delimiter {json.dumps(delimiter)} with "
                     "--choice-scoring lm-eval to score as lm-eval does")
    metrics = _metrics(config, output, notes, str(path))
    for key in ("doc_to_text", "doc_to_target"):
        if config.get(key) is None:
            raise _refuse(path, key, "missing: lm-eval needs it too")
    text = _jinja(path, "doc_to_text", config["doc_to_text"], env)
    target = _jinja(path, "doc_to_target", config["doc_to_target"], env)
    front: dict[str, Any] = {"name": name, "cluster": cluster,
                             "description": f"lm-evaluation-harness task {str(config.get('task', name))[:80]} "
                                            f"({output}), imported from {path.name}",
                             "source": source, "splits": dict(splits), "tags": ["lm_eval"]}
    if output == "multiple_choice":
        if "doc_to_choice" not in config:
            raise _refuse(path, "doc_to_choice", "missing: a multiple_choice task needs its choices")
        front["choices"] = _choices(path, config["doc_to_choice"], env)
        # lm-eval: a target that renders as digits is an index into the choices, anything else the choice text
        front["answer"] = ("{% set t %}" + target + "{% endset %}{% set t = t | trim %}"
                           "{{ t2t.choices[t | int] if t.isdigit() else t }}")
    else:
        front["answer"] = target
    front["metrics"] = metrics
    rows = list(examples) or [row for row in [_first_row(source)] if row is not None]
    if rows:  # 'python -m t2t.tasks check' renders the template on them
        front["example"] = rows
    else:
        notes.append("no example row (hub data): 'python -m t2t.tasks check' needs one; re-import with "
                     "--example '{\"field\": ...}' or add it under 'example:'")
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000)
    comments = "".join(f"# {n}\n" for n in notes)
    body = f"{{% block {TEMPLATE} %}}\n{text}\n|||\n{{{{ t2t.answer }}}}\n{{% endblock %}}\n"
    return f"---\n{head}{comments}---\n{body}", name, notes


def parse_examples(examples: Sequence[str | dict[str, Any]]) -> list[dict[str, Any]]:
    """``--example`` values (JSON objects of a row's fields) as rows; one line naming a bad one."""
    rows = []
    for given in examples:
        try:
            row = yamlsafe.load_json(given) if isinstance(given, str) else given
        except ValueError as exc:
            raise T2TError(f"--example {str(given)[:60]!r}: not JSON ({exc})") from None
        yamlsafe.expect(row, lambda v: isinstance(v, dict) and v != {}, f"--example {str(given)[:60]!r}", "row",
                        'a JSON object of fields, e.g. \'{"question": "...", "label": 0}\'')
        rows.append(row)
    return rows


_NAME_RE = re.compile(r"""^name:[ \t]*["']?([A-Za-z0-9_.\-]+)["']?[ \t]*(?:#.*)?$""", re.M)


def existing_tasks(out: Path, task_dirs: Sequence[str | Path] = ()) -> dict[str, Path]:
    """Task name -> file of every task t2t would find beside an import: built-in, ``--task-dir`` folders
    (and T2T_TASK_PATH), and ``out``. A name is the front matter's top-level ``name:`` or the file's stem,
    found with a regex: parsing every front matter's YAML took 0.2 s for the built-in tasks alone."""
    found: dict[str, Path] = {}
    folders = [*registry.task_dirs(task_dirs), *([out] if out.is_dir() else [])]
    for folder in folders:
        for path in registry.find_task_files(Path(folder)):
            try:
                text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
            except (OSError, UnicodeDecodeError):
                continue  # loading it names the problem
            front = text.split("\n---", 1)[0]
            named = _NAME_RE.search(front)
            found.setdefault(named.group(1) if named else path.stem, path)
    return found


def _free_name(name: str, source: Path, target: Path, taken: dict[str, Path], overwrite: bool,
               rename: bool) -> str:
    """``name``, or with ``rename`` the first free ``name_2``, ``name_3``, ...; without it a clash with a
    task of another file (or an existing ``target`` without ``overwrite``) is refused, naming both."""
    candidate, k = name, 2
    while True:
        path = target.with_name(f"{candidate}.jinja")
        other = taken.get(candidate)
        clash = other is not None and other.resolve() != path.resolve()
        exists = path.exists() and not overwrite
        if not clash and not exists:
            return candidate
        if not rename:
            if clash:
                raise T2TError(f"{source}: task '{candidate}' already exists ({other}); import it under another "
                               f"name with --name NAME, or pass --rename-clashes to name it '{name}_{k}'")
            raise T2TError(f"{path} already exists; pass --overwrite to replace it (or --rename-clashes)")
        candidate, k = f"{name}_{k}", k + 1


def import_tasks(paths: Sequence[str | Path], out_dir: str | Path, cluster: str, name: str | None = None,
                 overwrite: bool = False, examples: Sequence[str | dict[str, Any]] = (),
                 task_dirs: Sequence[str | Path] = (), rename_clashes: bool = False) -> list[LmEvalImport]:
    """Write a t2t task file per lm-eval task YAML, all or nothing: each is staged beside ``out_dir``
    (:func:`t2t.atomic.staged_files`), loaded and rendered on its example rows there, and the files move
    in only once every one passed. A name taken by another task (built-in, ``task_dirs``, ``out_dir``, or
    an earlier file of this import) is refused, or suffixed with ``rename_clashes``."""
    if name and len(paths) > 1:
        raise T2TError("--name names one task: give one lm-eval YAML with it")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", cluster or ""):
        raise T2TError(f"--cluster {cluster!r}: use letters, digits, '_', '-' or '.'")
    env = T2TSandbox([])  # only its filters are read here: which Jinja filters a template may use
    out = Path(out_dir)
    rows = parse_examples(examples)
    taken = existing_tasks(out, task_dirs)
    planned = []
    for p in map(Path, paths):
        config = read_config(p)
        wanted = task_name(config, p, name)
        final = _free_name(wanted, p, out / f"{wanted}.jinja", taken, overwrite, rename_clashes)
        taken[final] = p  # a later file of this import clashes with this one
        text, _, notes = to_task_file(config, p, cluster, env, final, rows)
        renamed = [f"renamed from '{wanted}' (that name is taken)"] if final != wanted else []
        planned.append(LmEvalImport(out / f"{final}.jinja", final, notes + renamed, text))
    try:
        with staged_files(out) as stage:
            for done in planned:
                staged = stage.write_text(done.path.name, done.text)
                task = TaskRegistry.load(include_builtin=False, paths=[staged]).get(done.name)
                for i, row in enumerate(task.example_rows):
                    task.render(row, i, TEMPLATE)
    except OSError as exc:
        raise T2TError(f"--out {out}: cannot write there ({exc.strerror or exc}); nothing was changed") from None
    return planned
