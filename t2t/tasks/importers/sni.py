"""Import Super-NaturalInstructions (allenai/natural-instructions) task JSON files as t2t task files.

One SNI task is one JSON file (``tasks/task1234_name.json``): ``Definition`` (a list of strings),
``Positive Examples`` and ``Negative Examples`` (input, output, explanation), ``Instances`` (id, input,
output: a list of reference outputs), ``Categories``, ``Domains``, ``Input_language``, ... Each becomes::

    OUT/task1234_name.jinja          the task file: front matter + Tk-Instruct's three encodings
    OUT/data/task1234_name.jsonl     its instances, one JSON object a line: {id, input, output: [...]}

- ``source: {files: {SPLIT: data/NAME.jsonl}}``: SNI splits by task, not by row, so a task's instances are
  all ``test`` when the task is on the official held-out list (``--test-tasks``,
  ``splits/default/test_tasks.txt``), else all ``train``. Test tasks get ``limit: {test: 100}``: SNI (and
  Tk-Instruct) score only a test task's first 100 instances.
- Templates, as Tk-Instruct encodes a task (``src/ni_collator.py``): ``definition`` (definition only),
  ``definition_pos_2`` (definition + 2 positive examples, its best), ``definition_pos_2_neg_2_expl``
  (definition + 2 positive + 2 negative examples, with explanations). Each ends with
  ``Now complete the following example -\\nInput: ...\\nOutput:``; a line without final punctuation gets
  a ``.``, as there. The target is a seeded ``choice`` of the references (Tk-Instruct draws one at
  random); every reference is kept (``references:``), scored with ROUGE-L and exact match (max over them).
- ``cluster``: the first category as an identifier (``Textual Entailment`` -> ``textual_entailment``);
  ``tags: [sni]`` (``sni_test`` as well for a held-out task).
- :func:`mixture_text` writes a mixture that trains on every imported task and holds the test tasks out.

Instances whose input or a reference holds ``|||`` (t2t's separator) are left out and counted.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from t2t import yamlsafe
from t2t.atomic import StagedFiles, staged_files
from t2t.errors import T2TError
from t2t.tasks.registry import TaskRegistry

TEST_LIMIT = 100  # SNI scores the first 100 instances of each test task
SEPARATOR = "|||"
ENCODINGS = {  # template name -> (positive examples, negative examples, explanations); Tk-Instruct's
    "definition": (0, 0, False),
    "definition_pos_2": (2, 0, False),
    "definition_pos_2_neg_2_expl": (2, 2, True),
}
METRICS = ["rouge_l", "exact_match"]


@dataclass
class SniTask:
    name: str
    definition: str
    positive: list[dict[str, str]]
    negative: list[dict[str, str]]
    instances: list[dict[str, Any]]
    categories: list[str]
    skipped: int = 0


def _punctuated(text: str) -> str:
    """Tk-Instruct's rule: a line that does not end in punctuation gets a '.'."""
    return text if text and text[-1] in string.punctuation else text + "."


def _str(value: Any) -> bool:
    return isinstance(value, str)


def read_task(path: str | Path) -> SniTask:
    """A parsed and checked SNI task JSON."""
    p = Path(path)
    # UTF-8, size and nesting budgets: any problem is one line naming the file
    data = yamlsafe.load_json_file(p, expected="a Super-NaturalInstructions task JSON")
    if not isinstance(data, dict) or "Instances" not in data or "Definition" not in data:
        raise T2TError(f"{p}: not a Super-NaturalInstructions task JSON (expected 'Definition' and 'Instances')")
    definition = data["Definition"]
    definition = definition[0] if isinstance(definition, list) and definition else definition
    if not _str(definition) or not definition.strip():
        raise T2TError(f"{p}: 'Definition' must be a non-empty string or list of strings")
    examples = {}
    for key in ("Positive Examples", "Negative Examples"):
        rows = data.get(key) or []
        if not isinstance(rows, list) or not all(isinstance(r, dict) and _str(r.get("input")) and _str(r.get("output"))
                                                  for r in rows):
            raise T2TError(f"{p}: '{key}' must be a list of {{input, output, explanation}} objects")
        examples[key] = rows
    fixed = [definition] + [str(r.get(k, "")) for rows in examples.values() for r in rows
                            for k in ("input", "output", "explanation")]
    if any(SEPARATOR in t for t in fixed):
        raise T2TError(f"{p}: the definition or an example holds '{SEPARATOR}', t2t's input/target separator")
    instances, skipped = [], 0
    for i, inst in enumerate(data["Instances"] if isinstance(data["Instances"], list) else [None]):
        out = inst.get("output") if isinstance(inst, dict) else None
        out = [out] if _str(out) else out
        if not isinstance(inst, dict) or not _str(inst.get("input")) or not isinstance(out, list) or not out or not all(
                _str(o) for o in out):
            raise T2TError(f"{p}: Instances[{i}] must be {{id, input, output: [references]}}")
        if SEPARATOR in inst["input"] or any(SEPARATOR in o for o in out) or not any(o.strip() for o in out):
            skipped += 1
            continue
        instances.append({"id": str(inst.get("id", f"{p.stem}-{i}")), "input": inst["input"], "output": out})
    if not instances:
        raise T2TError(f"{p}: no usable instances")
    # A string would be read letter by letter (cluster 'a' from "Answer Generation"): refused instead.
    given = yamlsafe.expect(data.get("Categories") or [], lambda v: isinstance(v, list) and all(map(_str, v)),
                            str(p), "Categories", "a list of category names")
    categories = [c for c in given if c.strip()] or ["uncategorized"]
    return SniTask(re.sub(r"[^A-Za-z0-9_.\-]+", "_", p.stem), definition, examples["Positive Examples"],
                   examples["Negative Examples"], instances, categories, skipped)


def cluster_name(category: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", category.lower()).strip("_") or "uncategorized"


def prefix(task: SniTask, n_pos: int, n_neg: int, explanation: bool) -> str:
    """The fixed text before the instance: Tk-Instruct's definition and examples."""
    out = _punctuated("Definition: " + task.definition.strip()) + "\n\n"
    for kind, rows, n in (("Positive", task.positive, n_pos), ("Negative", task.negative, n_neg)):
        for k, ex in enumerate(rows[:n], 1):
            text = _punctuated(f" {kind} Example {k} -\nInput: {ex['input'].strip()}") + "\n"
            text = _punctuated(text + f" Output: {ex['output'].strip()}") + "\n"
            if explanation and "explanation" in ex:
                text = _punctuated(text + f" Explanation: {str(ex['explanation']).strip()}") + "\n"
            out += text + "\n"
    return out


def encode(task: SniTask, instance_input: str, template: str) -> str:
    """The whole input Tk-Instruct builds for one instance (what the task file's template renders)."""
    return (prefix(task, *ENCODINGS[template]) + "Now complete the following example -\n"
            + _punctuated(f"Input: {instance_input.strip()}") + "\nOutput:")


_PUNCT = json.dumps(string.punctuation)
_INSTANCE = ("Now complete the following example -\nInput: {{ input | trim }}{% set x = input | trim %}"
             "{% if not x or x[-1] not in " + _PUNCT + " %}.{% endif %}\nOutput:\n"
             "|||\n{{ choice(output) | trim }}\n")


def _literal(text: str) -> str:
    """``text`` as a Jinja string expression (JSON string syntax is also Jinja's)."""
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"


def to_task_file(task: SniTask, split: str, data_path: str) -> str:
    front: dict[str, Any] = {
        "cluster": cluster_name(task.categories[0]),
        "description": f"Super-NaturalInstructions {task.name} ({', '.join(task.categories)})",
        "source": {"files": {split: data_path}},
        **({"limit": {"test": TEST_LIMIT}} if split == "test" else {}),
        "references": "{{ output | join(' ||| ') }}",
        "metrics": METRICS,
        "tags": ["sni", "sni_test"] if split == "test" else ["sni"],
        "example": [task.instances[0]],
        "templates": {name: {"description": f"Tk-Instruct encoding: definition + {p} positive, {n} negative"
                             + (" examples with explanations" if e else " examples")}
                      for name, (p, n, e) in ENCODINGS.items()},
    }
    head = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000)
    body = "\n".join(f"{{% block {name} %}}{_literal(prefix(task, *enc))}{_INSTANCE}{{% endblock %}}\n"
                     for name, enc in ENCODINGS.items())
    return f"---\n{head}---\n{body}"


def read_test_tasks(path: str | Path) -> set[str]:
    """Task names of SNI's held-out list (``splits/default/test_tasks.txt``: one name a line)."""
    lines = yamlsafe.read_text(path, "--test-tasks").splitlines()
    return {s.strip().removesuffix(".json") for s in lines if s.strip() and not s.startswith("#")}


@dataclass
class SniImport:
    task_files: list[Path]
    test_tasks: list[str]
    train_tasks: list[str]
    skipped: dict[str, int]


def import_tasks(paths: Iterable[str | Path], out_dir: str | Path, test_tasks: Iterable[str] = (),
                 overwrite: bool = False) -> SniImport:
    """Write a task file and a JSON Lines data file for each SNI task JSON, all or nothing: every file is
    staged beside ``out_dir`` (:func:`t2t.atomic.staged_files`), loaded and its templates rendered on its
    first instance there, and only then moved in. A failure anywhere leaves ``out_dir`` as it was."""
    out = Path(out_dir)
    test = set(test_tasks)
    tasks: dict[str, tuple[Path, SniTask]] = {}
    for path in map(Path, paths):
        task = read_task(path)
        if task.name in tasks:
            raise T2TError(f"{tasks[task.name][0]} and {path} both become task '{task.name}'; import them "
                           "into different --out folders or rename one file")
        for p in (out / f"{task.name}.jinja", out / "data" / f"{task.name}.jsonl"):
            if p.exists() and not overwrite:
                raise T2TError(f"{p} already exists; pass --overwrite to replace it")
        tasks[task.name] = (path, task)
    result = SniImport([], [], [], {})
    try:
        with staged_files(out) as stage:
            for name, (_, task) in tasks.items():
                split = "test" if name in test else "train"
                _stage_task(stage, task, split)
                result.task_files.append(out / f"{name}.jinja")
                (result.test_tasks if split == "test" else result.train_tasks).append(name)
                if task.skipped:
                    result.skipped[name] = task.skipped
    except OSError as exc:
        raise T2TError(f"{out}: cannot write there ({exc.strerror or exc}); nothing was changed") from None
    return result


def _stage_task(stage: StagedFiles, task: SniTask, split: str) -> None:
    """Write one task's files into ``stage`` and render each template on its first instance there."""
    data = f"data/{task.name}.jsonl"
    stage.write_text(data, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in task.instances))
    jinja = stage.write_text(f"{task.name}.jinja", to_task_file(task, split, data))
    loaded = TaskRegistry.load(include_builtin=False, paths=[jinja]).get(task.name)
    for name in loaded.template_names:
        loaded.render(loaded.example_rows[0], 0, name)


def mixture_text(imported: SniImport, description: str | None = None) -> str:
    """A mixture that trains on the imported train tasks and holds SNI's test tasks out."""
    data: dict[str, Any] = {
        "description": description or "Super-NaturalInstructions: train tasks trained on, the official test "
                                      "tasks held out (first 100 instances scored).",
        "include": {"tags": ["sni"]},
        "rate": {"strategy": "proportional", "cap": 100},  # Tk-Instruct: at most 100 instances per train task
        "train_limit": 100,
        "heldout": {"tasks": sorted(imported.test_tasks)},
        "templates": {"choose": "round_robin", "use": "all", "variants": {"zero_shot": 1.0}},
    }
    return yaml.safe_dump(data, sort_keys=False, width=1000)


def describe(imported: SniImport) -> Sequence[str]:
    lines = [f"wrote {p}" for p in imported.task_files]
    lines += [f"  {name}: left out {n} instances holding '{SEPARATOR}' or without a reference"
              for name, n in imported.skipped.items()]
    lines.append(f"{len(imported.train_tasks)} train tasks, {len(imported.test_tasks)} test tasks")
    return lines

