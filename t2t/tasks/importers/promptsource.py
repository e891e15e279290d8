"""Import promptsource template collections (``templates.yaml``, T0's prompts) as t2t task files.

A promptsource file holds, for one hub dataset (and subset), templates written as ``input ||| target``
Jinja with per-template ``answer_choices`` and metadata. Each becomes one block of one t2t task file::

    dataset: super_glue                         ---
    subset: rte                                 cluster: nli                       (--cluster)
    templates:                                  source: {hf: super_glue, config: rte}
      0583671e-...: !Template          ->       choices: ["Yes", "No"]             (most common)
        answer_choices: Yes ||| No              metrics: [accuracy]
        jinja: '{{premise}} ... ||| ...'        templates:
        metadata: !TemplateMetadata               gpt_3_style: {choices: ["True", "False"], ...}
          original_task: true                     ...: {inverted: true}            (original_task: false)
          metrics: [Accuracy]                   ---
        name: GPT-3 style                       {% block gpt_3_style %}{% set answer_choices = t2t.choices %}...

- ``answer_choices`` (a ``a ||| b`` Jinja string or, in older files, a list) becomes the task's ``choices``
  when most scored templates share it, and a per-template ``choices`` override otherwise. Templates
  read it as ``answer_choices``: each block starts by setting it to ``t2t.choices`` (in a task without
  choices, a template that has its own answer choices sets them inside its block).
- ``original_task: false`` (older files: ``task_template: false``) templates do another task: they become
  ``inverted`` (trained on, never scored), as T0 scored only original-task prompts. A template without
  answer choices in a task with choices is inverted too (it cannot be rank-classified).
- A collection none of whose templates is marked as the original task, but some with answer choices
  (fixed, or from row fields: app_reviews' ratings, quarel's ``world_literals``; 10 of promptsource's
  279 files, 43 templates), would otherwise import as a task without choices and nothing to score: its
  templates with answer choices are exposed for rank classification instead (the task's ``choices``,
  scored, their description says so). One whose target is not among its choices on an example row stays
  inverted.
- A render whose input or target is empty is declined (the row skipped), as T0's data pipeline did:
  promptsource's ``seqio_tasks/utils.py`` (``apply_template``, removed from the repository in Jan 2022)
  kept a row only if ``len(ex["inputs"]) > 0 and len(ex["targets"]) > 0`` (from Oct 2021 an empty target
  on an unlabelled test split became ``"<NO LABEL>"`` there, a row nothing can score).
- The file says ``promptsource: {truncate: 2048}``: its templates render in promptsource's environment,
  which lives in the core (:mod:`t2t.tasks.runtime`, so a Task never imports this importer): the
  ``choice`` filter (seeded per example, marked ``pass_context`` so Jinja cannot fold
  ``[0, 1, 2] | choice`` into one pick at compile time; Jinja's ``random`` filter is seeded the same
  way), ``most_frequent`` and ``zip``; lists built in a template may be changed (``x.append(y)``: the row
  is a deep copy); None prints as ``None``; a literal ``|||`` inside row text is protected (only the
  template's own splits input from target); every ``{{ }}`` value is cut to 2,048 characters as
  ``Template.apply`` does by default (``truncate: false``: full text); answer choices keep their
  positions (an empty one is not dropped). The Jinja is copied as it is, with no rewriting.
- Metric names map to t2t's (Accuracy -> accuracy, BLEU -> bleu, ROUGE -> rouge_l, Squad -> f1); others
  are left to the default.
- A template that cannot work in t2t (fixed answer choices with a repeat or an empty one, which cannot be
  rank-classified; Jinja the sandbox refuses; a failing render of an example row) is refused alone, with
  its reason (in the file's front matter as a comment and in :class:`Imported`); the rest import.
- Block names are the template names made into identifiers; the original name and id are kept in each
  block's ``description``.

promptsource files use the YAML tags ``!Template`` and ``!TemplateMetadata``; they are read here as
plain mappings by a safe loader, nothing else is constructed. Run ``python -m t2t.tasks check FILE`` on
the result: a template that needs a filter or global t2t does not offer is reported there, by name.

promptsource's own rendering (``promptsource/templates.py``, ``Template.apply`` and
``get_answer_choices_list``) is what :mod:`t2t.tasks.runtime` (``environments``, ``protect``,
``split_choices``) reproduces; ``tests/tasks/test_promptsource_fidelity.py`` compares the two.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from t2t import yamlsafe
from t2t.atomic import staged_files
from t2t.errors import T2TError, TaskFileError
from t2t.tasks.registry import TaskRegistry
from t2t.tasks.runtime import SEPARATOR, TEXT_VAR_LENGTH

METRICS = {"accuracy": "accuracy", "bleu": "bleu", "rouge": "rouge_l", "squad": "f1"}


class _PromptsourceLoader(yaml.SafeLoader):
    """The repo's safe loader, plus promptsource's two tags read as plain mappings."""


def _mapping(loader: yaml.Loader, node: yaml.Node) -> dict[str, Any]:
    return loader.construct_mapping(node, deep=True)


for _tag in ("!Template", "!TemplateMetadata"):
    _PromptsourceLoader.add_constructor(_tag, _mapping)


def read_collection(path: str | Path) -> dict[str, Any]:
    """The parsed ``templates.yaml``: dataset, subset and a list of templates (dicts)."""
    p = Path(path)
    try:
        data = yamlsafe.safe_load(p.read_text(encoding="utf-8"), _PromptsourceLoader)
    except OSError as exc:
        raise T2TError(f"{p}: cannot read it ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise T2TError(f"{p}: not a promptsource templates.yaml ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("dataset"), str) or not isinstance(
            data.get("templates"), dict) or not data["templates"]:
        raise T2TError(f"{p}: not a promptsource templates.yaml (expected 'dataset:' and 'templates:' with at "
                       "least one template)")
    templates = []
    for key, t in data["templates"].items():
        if not isinstance(t, dict) or not isinstance(t.get("jinja"), str) or not isinstance(t.get("name"), str):
            raise T2TError(f"{p}: template {key}: needs 'name' and 'jinja'")
        templates.append({**t, "id": str(t.get("id") or key)})
    return {"dataset": data["dataset"], "subset": data.get("subset"), "templates": templates}


def _identifier(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "template"
    base = f"t_{base}" if base[0].isdigit() else base
    out, k = base, 2
    while out in taken:
        out, k = f"{base}_{k}", k + 1
    taken.add(out)
    return out


def _choices(value: Any) -> list[str] | str | None:
    """A list of fixed choices, a Jinja string (per row), or None."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    text = str(value)
    if "{" in text:
        return text
    return [c.strip() for c in text.split(SEPARATOR)]  # every position, as promptsource splits them


def _refusal(choices: list[str] | str | None) -> str | None:
    """Why fixed answer choices cannot be t2t choices (rank classification needs distinct, non-empty ones)."""
    if not isinstance(choices, list):
        return None
    if "" in choices:
        return f"its answer choices {choices} hold an empty one"
    repeated = [c for c, n in Counter(choices).items() if n > 1]
    return f"its answer choices {choices} repeat {repeated[0]!r}" if repeated else None


def _is_original(meta: Mapping[str, Any]) -> bool:
    for key in ("original_task", "task_template"):
        if key in meta and meta[key] is not None:
            return bool(meta[key])
    return True


@dataclass
class Imported:
    """What an import wrote: the task file, and the templates refused (name, promptsource id, reason)."""

    path: Path
    templates: list[str] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)


def to_task_file(collection: Mapping[str, Any], cluster: str, name: str | None = None,
                 examples: Sequence[Mapping[str, Any]] = (), truncate: int | None = TEXT_VAR_LENGTH,
                 refused: Mapping[str, str] | None = None, keep_inverted: frozenset[str] = frozenset()
                 ) -> tuple[str, str]:
    """(task name, text of the t2t task file) for a parsed promptsource collection; ``examples`` are
    dataset rows written as the file's ``example:`` rows (what ``t2t.tasks check`` renders).

    ``truncate``: promptsource's cut of every ``{{ }}`` value (None: full text). ``refused`` maps
    promptsource template ids to the reason they are left out (more are added for unusable choices);
    ``keep_inverted``: ids of templates not to expose for rank classification (see the module's notes).
    """
    dataset, subset = collection["dataset"], collection.get("subset")
    name = name or re.sub(r"[^A-Za-z0-9_.\-]+", "_", f"{dataset.split('/')[-1]}_{subset}" if subset else
                          dataset.split("/")[-1])
    taken: set[str] = set()
    blocks, left_out = [], []
    refused = dict(refused or {})
    for t in collection["templates"]:
        meta = t.get("metadata") or {}
        block = {"block": _identifier(t["name"], taken), "name": t["name"], "id": t["id"],
                 "choices": _choices(t.get("answer_choices")), "original": _is_original(meta),
                 "metrics": [m for m in meta.get("metrics") or [] if isinstance(m, str)], "jinja": t["jinja"]}
        reason = refused.get(t["id"]) or _refusal(block["choices"])
        if reason:
            left_out.append((block["name"], block["id"], reason))
        else:
            blocks.append(block)
    exposed = _expose(blocks, keep_inverted)
    scored = [b for b in blocks if (b["original"] or b["id"] in exposed) and b["choices"] is not None]
    common = Counter(repr(b["choices"]) for b in scored).most_common(1)
    task_choices = next((b["choices"] for b in scored if repr(b["choices"]) == common[0][0]), None) if common else None
    metrics = sorted({METRICS[m.lower()] for b in blocks if b["original"] or b["id"] in exposed
                      for m in b["metrics"] if m.lower() in METRICS})
    front: dict[str, Any] = {"cluster": cluster,
                             "description": f"promptsource templates for {dataset}" + (f"/{subset}" if subset else ""),
                             "source": {"hf": dataset, **({"config": subset} if subset else {})},
                             "promptsource": {"truncate": truncate if truncate is not None else False}}
    if task_choices is not None:
        front["choices"] = task_choices
    if metrics:
        front["metrics"] = metrics
    if examples:
        front["example"] = [dict(r) for r in examples]
    front["templates"] = {b["block"]: _settings(b, task_choices, b["id"] in exposed) for b in blocks}
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000)
    notes = "".join(f"# refused: {n} (promptsource {i}): {' '.join(r.split())}\n" for n, i, r in left_out)
    body = []
    for b in blocks:
        body.append(f"{{% block {b['block']} %}}{_answer_choices(b['choices'], task_choices)}{b['jinja']}\n"
                    "{% endblock %}\n")
    return name, f"---\n{head}{notes}---\n" + "\n".join(body)


def _settings(b: Mapping[str, Any], task_choices: list[str] | str | None, exposed: bool) -> dict[str, Any]:
    """A block's entry under ``templates:``: its description, and whether it is inverted or has choices of
    its own."""
    s: dict[str, Any] = {"description": f"{b['name']} (promptsource {b['id']})" + (
        "; original_task: false, scored by rank classification (no template is the original task)"
        if exposed else "")}
    if task_choices is not None and b["choices"] is None:
        s["inverted"] = True  # no answer choices: cannot be rank-classified in a task with choices
        s["choices"] = None  # ... and the task's are not rendered for it (promptsource never does)
    elif not b["original"] and not exposed:
        s["inverted"] = True
    if task_choices is not None and b["choices"] is not None and b["choices"] != task_choices:
        s["choices"] = b["choices"]
    return s


def _expose(blocks: Sequence[Mapping[str, Any]], keep_inverted: frozenset[str]) -> set[str]:
    """Ids of the templates to score although not marked original_task: those with answer choices, in a
    collection where no template is the original task (else the task would have nothing to score)."""
    if any(b["original"] for b in blocks):
        return set()
    return {b["id"] for b in blocks if b["choices"] is not None and b["id"] not in keep_inverted}


def _blocks_of(collection: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What :func:`_expose` reads of each template: id, original_task, answer choices."""
    return [{"id": t["id"], "original": _is_original(t.get("metadata") or {}),
             "choices": _choices(t.get("answer_choices"))} for t in collection["templates"]]


def _answer_choices(own: list[str] | str | None, task_choices: list[str] | str | None) -> str:
    """Jinja that defines ``answer_choices`` at the top of a block, as promptsource templates expect it."""
    if own is None:
        return "{% set answer_choices = none %}"  # promptsource passes None for a template without choices
    if task_choices is not None:  # t2t's choices: the task's, or the template's override
        return "{% set answer_choices = t2t.choices %}"
    # A task without choices (generation): a template that has its own keeps them inside the block.
    if isinstance(own, list):
        return f"{{% set answer_choices = {json.dumps(own)} %}}"
    return (f"{{% set answer_choices_text %}}{own}{{% endset %}}"
            "{% set answer_choices = answer_choices_text.split('|||') | map('trim') | list %}")


def block_ids(collection: Mapping[str, Any]) -> dict[str, str]:
    """Block name -> promptsource template id, as :func:`to_task_file` names the blocks."""
    taken: set[str] = set()
    return {_identifier(t["name"], taken): t["id"] for t in collection["templates"]}


def _failed_template(exc: TaskFileError, blocks: Mapping[str, str]) -> str | None:
    """The promptsource id of the template a load or render error is about, if it names one."""
    where = exc.template or (exc.field.split(".")[1] if (exc.field or "").startswith("templates.") else None)
    return blocks.get(where) if where else None


class _Retry(Exception):
    """A template was refused: the staged import is dropped and the rest imported again."""


def import_collection(path: str | Path, out_dir: str | Path, cluster: str, name: str | None = None,
                      overwrite: bool = False, examples: Sequence[Mapping[str, Any]] = (),
                      truncate: int | None = TEXT_VAR_LENGTH) -> Imported:
    """Write the t2t task file for promptsource ``path`` into ``out_dir``.

    The file is written beside its destination, loaded as a task and every template rendered on every
    ``examples`` row (so a broken import never lands in a task folder), then renamed into place. A template
    that fails there is refused alone, with its reason, and the rest is imported again; when every template
    is refused nothing is written. A field missing from an example row fails the import (fix the row).
    """
    collection = read_collection(path)
    refused: dict[str, str] = {}
    kept_inverted: set[str] = set()  # exposed for rank classification, but a target was not a choice
    while True:
        task_name, text = to_task_file(collection, cluster, name, examples, truncate, refused,
                                       frozenset(kept_inverted))
        out = Path(out_dir) / f"{task_name}.jinja"
        if out.exists() and not overwrite:
            raise T2TError(f"{out} already exists; pass --overwrite to replace it or --name to pick another name")
        try:  # staged beside the folder and moved in once it loads (t2t.atomic.staged_files): a kill or a
            # full disk leaves the folder as it was, and no half file or scratch copy inside it
            with staged_files(out.parent) as stage:
                staged = stage.write_text(out.name, text)
                try:
                    task = TaskRegistry.load(include_builtin=False, paths=[staged]).get(task_name)
                    for template in task.template_names:
                        for i, row in enumerate(task.example_rows):
                            task.render(row, i, template)
                except TaskFileError as exc:
                    failed = _failed_template(exc, block_ids(collection))
                    # A field missing from an example row is the row's fault: the import fails, naming it.
                    if failed is None or failed in refused or "UndefinedError" in str(exc):
                        raise T2TError(f"{path}: the imported task does not load ({exc})") from None
                    if "is not one of the choices" in str(exc) and failed not in kept_inverted and \
                            failed in _expose(_blocks_of(collection), frozenset(kept_inverted)):
                        kept_inverted.add(failed)  # not a rank-classification template after all
                        raise _Retry from None
                    refused[failed] = str(exc).replace(str(staged), str(out))
                    if len(refused) == len(collection["templates"]):
                        raise T2TError(f"{path}: every template is refused; the first: "
                                       f"{next(iter(refused.values()))}") from None
                    raise _Retry from None
                except T2TError as exc:
                    raise T2TError(f"{path}: the imported task does not load ({exc})") from None
        except _Retry:
            continue  # import again without the refused template
        except OSError as exc:
            raise T2TError(f"{out.parent}: cannot write there ({exc.strerror or exc}); nothing was changed") from None
        by_id = {t["id"]: t["name"] for t in collection["templates"]}
        notes = [(by_id[i], i, r) for i, r in refused.items()]
        notes += [(t["name"], t["id"], r) for t in collection["templates"] if t["id"] not in refused
                  and (r := _refusal(_choices(t.get("answer_choices"))))]
        return Imported(out, task.template_names, notes)


def import_collections(paths: Sequence[str | Path], out_dir: str | Path, cluster: str, name: str | None = None,
                       overwrite: bool = False, examples: Sequence[Mapping[str, Any]] = (),
                       truncate: int | None = TEXT_VAR_LENGTH) -> list[Imported]:
    """Several collections, all or nothing: each is imported (:func:`import_collection`) into one stage beside
    ``out_dir`` and they move in together, so a failure in the second leaves nothing of the first."""
    out = Path(out_dir)
    done: list[Imported] = []
    try:
        with staged_files(out) as stage:
            for path in paths:
                one = import_collection(path, stage.root, cluster, name, True, examples, truncate)
                final = out / one.path.name
                if final.exists() and not overwrite:
                    raise T2TError(f"{final} already exists; pass --overwrite to replace it or --name to pick "
                                   "another name")
                if any(d.path == final for d in done):
                    raise T2TError(f"{path}: becomes {final.name}, as an earlier file of this import does; "
                                   "import it on its own with --name")
                refused = [(n, i, r.replace(str(stage.root), str(out))) for n, i, r in one.refused]
                done.append(Imported(final, one.templates, refused))
    except OSError as exc:
        raise T2TError(f"{out}: cannot write there ({exc.strerror or exc}); nothing was changed") from None
    return done


def import_file(path: str | Path, out_dir: str | Path, cluster: str, name: str | None = None,
                overwrite: bool = False, examples: Sequence[Mapping[str, Any]] = (),
                truncate: int | None = TEXT_VAR_LENGTH) -> Path:
    """:func:`import_collection`, returning only the written file's path."""
    return import_collection(path, out_dir, cluster, name, overwrite, examples, truncate).path

