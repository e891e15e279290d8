"""Task files: YAML front matter plus named Jinja blocks, rendered in a sandbox into ``input ||| target``.

A task file looks like this (docs/task-files.md documents every field)::

    ---
    cluster: sentiment
    source: {generator: sentiment_movie}
    choices: ["positive", "negative"]
    answer: "{{ choices[label] }}"
    metrics: [accuracy]
    example: {text: "a wonderful film", label: 0}
    ---
    {% block question %}
    {{ text }}
    Did the reviewer like the film? {{ options }}
    |||
    {{ answer }}
    {% endblock %}

The file's text is split into front matter and blocks by :mod:`t2t.tasks.taskfile`; here the front matter is
checked field by field, each block is compiled as its own sandboxed template (the other blocks blanked,
so Jinja's line numbers are the file's), and rows are rendered into :class:`Example` records.
"""

from __future__ import annotations

import difflib
import random
import re
import reprlib
import sys
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta as jinja_meta
from jinja2 import nodes
from jinja2.sandbox import SecurityError

from t2t.errors import TaskFileError
from t2t.seeds import stable_seed
from t2t.tasks import runtime
from t2t.tasks.sandbox import Helper, NullValueError, T2TSandbox
from t2t.tasks.taskfile import TOO_DEEP, split_blocks, split_front_matter

SEPARATOR = "|||"
SPLITS = ("train", "validation", "test")
KNOWN_FIELDS = {
    "name", "cluster", "description", "source", "splits", "limit", "choices", "answer",
    "references", "metrics", "example", "templates", "tags", "promptsource",
}
KNOWN_METRICS = ("accuracy", "exact_match", "squad_em", "f1", "rouge_l", "bleu", "cot_exact_match")
TEMPLATE_META_FIELDS = {"inverted", "description", "choices"}


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_paths(v: Any) -> bool:
    return isinstance(v, str) and v != "" or isinstance(v, list) and v != [] and all(
        isinstance(p, str) and p for p in v)


# Checks of the values in `source`, with what to write instead.
_SOURCE_TYPES: dict[str, tuple[Any, str]] = {
    "hf": (lambda v: isinstance(v, str) and v != "", "a dataset name"),
    "config": (lambda v: v is None or isinstance(v, str), "a config name"),
    "revision": (lambda v: v is None or isinstance(v, str), "a revision (branch, tag or commit)"),
    "data_dir": (lambda v: v is None or isinstance(v, str), "a folder name"),
    "trust_remote_code": (lambda v: isinstance(v, bool), "true or false"),
    "files": (lambda v: _is_paths(v) or isinstance(v, dict) and v != {} and all(
        _is_paths(p) for p in v.values()), "a path, a list of paths or {split: path(s)}"),
    "format": (lambda v: v is None or isinstance(v, str), "json, csv or parquet"),
    "generator": (lambda v: isinstance(v, str) and v != "", "a generator name"),
    "sizes": (lambda v: isinstance(v, dict) and all(_is_count(n) and n >= 0 for n in v.values()),
              "{split: number of rows}"),
    "seed": (_is_count, "an integer"),
}

_UNDEFINED_RE = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'")


@dataclass(frozen=True)
class Example:
    """One rendered example: what the model reads and what it must write."""

    task: str
    template: str
    input: str
    target: str
    index: int = -1
    choices: tuple[str, ...] | None = None
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    inverted: bool = False
    description: str = ""
    line: int = 0


_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def _normal_form(text: str) -> str:
    """``text`` as a reader (or a tokenizer that normalises) sees it: NFKC, zero-width characters and soft
    hyphens removed."""
    return unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH)


def example_seed(seed: int, task: str, template: str, index: int) -> int:
    """Seed for the randomness inside one render: stable across processes and machines."""
    return stable_seed(seed, task, template, index)


def options_text(choices: Sequence[str]) -> str:
    """FLAN's options suffix: ``OPTIONS:\\n- a\\n- b``."""
    return "OPTIONS:\n" + "\n".join(f"- {c}" for c in choices)


def _context(row: Mapping[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """The names a template sees: the row's fields, then t2t's own (``choices``, ``options``, ``answer``,
    ``row``, helpers) where no field has that name; t2t's are always reachable as ``t2t.NAME``.

    Data is never shadowed: a dataset with a ``choices`` or ``options`` column (commonsense_qa, qasc,
    race) keeps it under its own name, and its templates write ``t2t.choices`` / ``t2t.options``.
    """
    return {**own, **row, "t2t": own}


def _seeded_helpers(rng: random.Random) -> dict[str, Any]:
    def shuffle(seq: Sequence[Any]) -> list[Any]:
        out = list(seq)
        rng.shuffle(out)
        return out

    def choice(seq: Sequence[Any]) -> Any:
        return rng.choice(list(seq))

    def randint(a: int, b: int) -> int:
        return rng.randint(a, b)

    return {"shuffle": Helper("shuffle", shuffle), "choice": Helper("choice", choice),
            "randint": Helper("randint", randint)}


def _error_line(exc: BaseException, filename: str) -> int | None:
    """The line of ``filename`` where Jinja says a render failed (Jinja rewrites tracebacks to it)."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _undefined_field(exc: BaseException) -> str | None:
    m = _UNDEFINED_RE.search(str(exc))
    return (m.group(1) or m.group(2)) if m else None


class Task:
    """A task: metadata from the front matter and its compiled prompt templates.

    Data are never loaded here: :mod:`t2t.tasks.sources` turns ``source`` into rows on request.
    """

    def __init__(self, path: Path, env: T2TSandbox, text: str | None = None) -> None:
        self.path = Path(path)
        p = str(self.path)
        if text is None:
            try:
                text = self.path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise TaskFileError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=p) from None
            except OSError as exc:
                raise TaskFileError(f"cannot read the task file: {exc.strerror or exc}", path=p) from None
        meta, body, offset = split_front_matter(text, p)
        self.meta = meta
        self._sources: dict[int, str] = {}  # id(compiled template) -> its source, to name null fields
        unknown = sorted(set(map(str, meta)) - KNOWN_FIELDS)
        if unknown:
            near = difflib.get_close_matches(unknown[0], sorted(KNOWN_FIELDS), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f"; known fields: {', '.join(sorted(KNOWN_FIELDS))}"
            raise TaskFileError(f"unknown front matter field{hint}", path=p, field=unknown[0])
        self.name = self._str_field("name", default=self.path.stem)
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name):
            raise TaskFileError("a task name may only hold letters, digits, '_', '-' and '.'", path=p, field="name")
        self.cluster = self._str_field("cluster")
        self.description = self._str_field("description", default="")
        self.source = self._source()
        self.splits = self._splits()
        self.limit = self._limit()
        self.metrics = self._metrics()
        tags = [meta["tags"]] if isinstance(meta.get("tags"), str) else meta.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise self._err("tags must be a name or a list of names", field="tags")
        self.tags = tuple(tags)
        self.example_rows = self._example_rows()
        self.env = self._field_env = env
        # Imported promptsource files render in promptsource's environment (t2t.tasks.runtime).
        self.promptsource = meta.get("promptsource") is not None
        if self.promptsource:
            self.env, self._field_env = runtime.environments(env, meta["promptsource"], self._err)
        choices = meta.get("choices")
        self._choices = self._choices_spec(choices, "choices")
        # Per-template overrides (promptsource's answer_choices differ between templates of a dataset).
        self._template_choices: dict[str, tuple[tuple[str, ...] | None, jinja2.Template | None]] = {}
        self.has_choices = choices is not None
        self._answer_tpl = self._compile_field("answer", meta.get("answer"))
        self._references_tpl = self._compile_field("references", meta.get("references"))
        self._templates: dict[str, jinja2.Template] = {}
        self._pending: dict[str, str] = {}  # template name -> Jinja source, parsed and checked, not compiled
        self.templates: dict[str, TemplateInfo] = {}
        self._compile_body(body, offset)

    # -- front matter -----------------------------------------------------------------------------
    def _err(self, message: str, **where: Any) -> TaskFileError:
        where.setdefault("path", str(self.path))
        where.setdefault("task", getattr(self, "name", None))
        return TaskFileError(message, **where)

    def _str_field(self, key: str, default: str | None = None) -> str:
        value = self.meta.get(key, default)
        if value is None:
            raise self._err(f"the field is required (e.g. {key}: ...)", field=key)
        if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "" and default is None:
            raise self._err("must be a non-empty string", field=key)
        return str(value).strip()

    def _source(self) -> dict[str, Any]:
        source = self.meta.get("source")
        if not isinstance(source, dict):
            raise self._err("source must be a mapping with one of hf, files or generator, "
                            "e.g. source: {generator: NAME}", field="source")
        kinds = [k for k in ("hf", "files", "generator") if k in source]
        if len(kinds) != 1:
            raise self._err(f"source needs exactly one of hf, files, generator (found {kinds or 'none'})",
                            field="source")
        allowed = {"hf": {"hf", "config", "revision", "trust_remote_code", "data_dir"},
                   "files": {"files", "format"},
                   "generator": {"generator", "sizes", "seed"}}[kinds[0]]
        extra = sorted(set(map(str, source)) - allowed)
        if extra:
            raise self._err(f"unknown key for a {kinds[0]} source; allowed: {', '.join(sorted(allowed))}",
                            field=f"source.{extra[0]}")
        for key, value in source.items():
            if key in _SOURCE_TYPES and not _SOURCE_TYPES[key][0](value):
                raise self._err(f"must be {_SOURCE_TYPES[key][1]}", field=f"source.{key}")
        return dict(source)

    def _splits(self) -> dict[str, str]:
        splits = self.meta.get("splits")
        if splits is None:
            files = self.source.get("files")
            return {str(k): str(k) for k in files} if isinstance(files, dict) else {s: s for s in SPLITS}
        if not isinstance(splits, dict) or not all(isinstance(v, str) for v in splits.values()):
            raise self._err("splits maps t2t split names (train, validation, test) to source split names",
                            field="splits")
        return {str(k): v for k, v in splits.items()}

    def _limit(self) -> dict[str, int]:
        limit = self.meta.get("limit") or {}
        if not isinstance(limit, dict) or not all(_is_count(v) and v > 0 for v in limit.values()):
            raise self._err("limit maps split names to positive example counts, e.g. {train: 30000}",
                            field="limit")
        return {str(k): int(v) for k, v in limit.items()}

    def _choices_spec(self, choices: Any, key: str) -> tuple[tuple[str, ...] | None, jinja2.Template | None]:
        """A ``choices`` value: (fixed choices, None) for a list, (None, compiled Jinja) for a string."""
        if choices is None:
            return None, None
        if not (isinstance(choices, str) or (
                isinstance(choices, list) and choices and all(isinstance(c, (str, int, float)) for c in choices))):
            raise self._err("choices must be a non-empty list of strings or a Jinja string rendering 'a ||| b'",
                            field=key)
        if isinstance(choices, list) and any(isinstance(c, bool) for c in choices):
            raise self._err("unquoted yes/no/true/false/on/off are YAML booleans, not words; quote them: "
                            "choices: [\"yes\", \"no\"]", field=key)
        if isinstance(choices, str):
            return None, self._compile_field(key, choices)
        fixed = tuple(str(c).strip() for c in choices)
        if "" in fixed or len(set(fixed)) < len(fixed):
            raise self._err("choices must be distinct and not empty", field=key)
        seen: dict[str, str] = {}
        for choice in fixed:
            first = seen.setdefault(_normal_form(choice), choice)
            if first != choice:
                raise self._err(f"choices {first!r} and {choice!r} are the same text once Unicode-normalised "
                                "(NFKC, zero-width characters removed); a model cannot tell them apart",
                                field=key)
        return fixed, None

    def _metrics(self) -> tuple[str, ...]:
        metrics = self.meta.get("metrics")
        if metrics is None:
            return ("accuracy",) if "choices" in self.meta else ("exact_match",)
        if not isinstance(metrics, list) or not metrics:
            raise self._err("metrics must be a list, e.g. [accuracy]", field="metrics")
        for m in metrics:
            if m not in KNOWN_METRICS:
                raise self._err(f"unknown metric '{m}'; known: {', '.join(KNOWN_METRICS)}", field="metrics")
        return tuple(metrics)

    def _example_rows(self) -> list[dict[str, Any]]:
        example = self.meta.get("example")
        if example is None:
            return []
        rows = example if isinstance(example, list) else [example]
        if not all(isinstance(r, dict) for r in rows):
            raise self._err("example must be one row (a mapping) or a list of rows", field="example")
        return rows

    def _compile_field(self, key: str, source: Any) -> jinja2.Template | None:
        if source is None:
            return None
        if not isinstance(source, str):
            raise self._err("must be a Jinja string, e.g. \"{{ choices[label] }}\"", field=key)
        try:
            tpl = self._field_env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise self._err(f"bad Jinja: {exc.message}", field=key) from None
        except TOO_DEEP as exc:
            raise self._err(f"Jinja too deeply nested to compile ({type(exc).__name__})", field=key) from None
        self._sources[id(tpl)] = source
        return tpl

    # -- body -------------------------------------------------------------------------------------
    def _compile_body(self, body: str, offset: int) -> None:
        meta_templates = self.meta.get("templates") or {}
        if not isinstance(meta_templates, dict):
            raise self._err("templates maps template names to settings, e.g. {NAME: {inverted: true}}",
                            field="templates")
        for block in split_blocks(body, offset, self.env, self._err):
            name = block.name
            ast = self._block_step(name, self.env.parse, block.source, f"{self.name}:{name}", str(self.path))
            if _compiles_surely(ast, self.env):  # compiled on its first render: most templates never are
                self._pending[name] = block.source
            else:
                self._templates[name] = self._compile_block(name, block.source, ast)
            settings = meta_templates.get(name) or {}
            if not isinstance(settings, dict) or set(settings) - TEMPLATE_META_FIELDS or not isinstance(
                    settings.get("inverted", False), bool):
                raise self._err(f"template settings allow only {sorted(TEMPLATE_META_FIELDS)} "
                                "(inverted: true or false)",
                                field=f"templates.{name}")
            if "choices" in settings:
                if not self.has_choices:
                    raise self._err("a template can override the task's choices only in a task with choices; "
                                    "add a task-level choices: field", field=f"templates.{name}.choices")
                self._template_choices[name] = self._choices_spec(settings["choices"], f"templates.{name}.choices")
            self.templates[name] = TemplateInfo(name, bool(settings.get("inverted", False)),
                                                str(settings.get("description", "")), block.line)
        for name in meta_templates:
            if name not in self.templates:
                raise self._err(f"settings for template '{name}' but no such block; blocks: "
                                f"{', '.join(self.templates)}", field=f"templates.{name}")

    def _block_step(self, template: str, step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``step(*args, **kwargs)`` (a parse or a compile of block ``template``), its Jinja errors as the task's."""
        try:
            return step(*args, **kwargs)
        except jinja2.TemplateSyntaxError as exc:
            raise self._err(f"bad Jinja: {exc.message}", template=template, line=exc.lineno) from None
        except TOO_DEEP as exc:
            raise self._err(f"Jinja too deeply nested to compile ({type(exc).__name__})", template=template) from None

    def _compile_block(self, name: str, source: str, ast: nodes.Template | None = None) -> jinja2.Template:
        code = self._block_step(name, self.env.compile, source if ast is None else ast, name=f"{self.name}:{name}",
                                filename=str(self.path))
        tpl = self.env.template_class.from_code(self.env, code, self.env.make_globals(None), None)
        self._sources[id(tpl)] = source
        return tpl

    def _template(self, name: str) -> jinja2.Template:
        if name in self._pending:
            self._templates[name] = self._compile_block(name, self._pending.pop(name))
        return self._templates[name]

    def compile_templates(self) -> None:
        """Compile every template not yet compiled (``check`` renders them all, which does the same)."""
        for name in list(self._pending):
            self._template(name)

    # -- rendering --------------------------------------------------------------------------------
    @property
    def template_names(self) -> list[str]:
        return list(self.templates)

    def scored_templates(self) -> list[str]:
        """Templates used for evaluation: inverted ones answer a different question."""
        return [n for n, t in self.templates.items() if not t.inverted]

    @property
    def source_id(self) -> str:
        """Identity of the underlying dataset: tasks with the same id share data (leakage checks)."""
        s = self.source
        if "hf" in s:
            return f"hf:{s['hf']}" + (f"/{s['config']}" if s.get("config") else "")
        if "generator" in s:
            return f"generator:{s['generator']}"
        files = s["files"]
        flat: list[str] = []
        for f in files.values() if isinstance(files, dict) else [files]:
            flat += [f] if isinstance(f, str) else list(f)
        return "files:" + ",".join(sorted({str((self.path.parent / str(f)).resolve()) for f in flat}))

    def _null_fields(self, tpl: jinja2.Template, row: Mapping[str, Any]) -> list[str]:
        """The row's null fields that ``tpl`` refers to by name (all its null fields if it names none)."""
        null = [k for k, v in row.items() if v is None]
        try:
            names = jinja_meta.find_undeclared_variables(self.env.parse(self._sources.get(id(tpl), "")))
        except (jinja2.TemplateSyntaxError, *TOO_DEEP):
            names = set()
        return [k for k in null if k in names] or null

    def _run(self, tpl: jinja2.Template, ctx: dict[str, Any], template: str | None, field: str | None,
             row_index: int | None = None) -> str:
        try:
            return self.env.render_bounded(tpl, ctx)
        except TaskFileError:
            raise
        except NullValueError as exc:
            null = self._null_fields(tpl, ctx.get("row", {}))
            named = f"; null in this row: {', '.join(null)}" if len(null) > 1 else ""
            raise self._err(f"{exc}{named}", template=template, row=row_index,
                            field=null[0] if len(null) == 1 else field,
                            line=_error_line(exc, str(self.path)) if template else None) from None
        except Exception as exc:  # any failure inside a user template is the template's error
            kind = "blocked by the sandbox" if isinstance(exc, SecurityError) else type(exc).__name__
            missing = _undefined_field(exc) if isinstance(exc, jinja2.UndefinedError) else None
            hint = f" (row fields: {', '.join(sorted(map(str, ctx.get('row', {}))))})" if missing else ""
            raise self._err(f"{kind}: {exc}{hint}", template=template, field=missing or field, row=row_index,
                            line=_error_line(exc, str(self.path)) if template else None) from None

    def overrides_choices(self, template: str) -> bool:
        """Whether ``template`` has choices of its own (``templates: {NAME: {choices: ...}}``)."""
        return template in self._template_choices

    def fixed_choices(self, template: str | None = None) -> tuple[str, ...] | None:
        """The choices when they are a fixed list (the task's, or ``template``'s override); else None."""
        return self._template_choices.get(template, self._choices)[0] if template else self._choices[0]

    def choices_for(self, row: Mapping[str, Any], template: str | None = None,
                    index: int | None = None) -> tuple[str, ...] | None:
        """The answer choices of ``row`` (with ``template``'s own choices where it overrides the task's)."""
        fixed, tpl = self._template_choices.get(template, self._choices) if template else self._choices
        if fixed is not None:
            return fixed
        if tpl is None:
            return None
        field = f"templates.{template}.choices" if template in self._template_choices else "choices"
        if self.promptsource:
            row = runtime.protect(row)
        text = self._run(tpl, {"row": row, **row}, None, field, index)
        if self.promptsource:
            return runtime.split_choices(text)  # every position kept: answer_choices[label] stays right
        return tuple(c.strip() for c in text.split(SEPARATOR) if c.strip())

    def render(self, row: Mapping[str, Any], index: int = 0, template: str | None = None, *,
               seed: int = 0, options: bool = True) -> Example | None:
        """Render one row with one template; ``None`` when the template declines the row.

        ``options=False`` renders FLAN v2's no-options variant (``{{ options }}`` is empty).
        """
        if not isinstance(row, Mapping):
            raise self._err(f"a row must be a mapping of fields, got {type(row).__name__}", template=template)
        if not all(isinstance(k, str) for k in row):
            bad = next(k for k in row if not isinstance(k, str))
            raise self._err(f"row field names must be strings, got {reprlib.repr(bad)}", template=template)
        template = template or next(iter(self.templates))
        if template not in self.templates:
            near = difflib.get_close_matches(template, self.template_names, n=3)
            raise self._err(f"no such template; did you mean {near}?" if near else
                            f"no such template; templates: {', '.join(self.template_names)}", template=template)
        info = self.templates[template]
        if self.promptsource:  # a literal '|||' in row text is not the separator (restored below)
            row = runtime.protect(row)
        choices = self.choices_for(row, template, index)
        own: dict[str, Any] = {"row": row, "task_name": self.name, "template_name": template}
        if choices is not None:
            own["choices"] = _AnswerChoices(choices)
        answer = (self._run(self._answer_tpl, _context(row, own), None, "answer", index).strip()
                  if self._answer_tpl else None)
        if answer is not None:
            own["answer"] = answer
        if choices is not None:
            own["choices"] = list(choices)
        base = _context(row, own)
        rng = random.Random(example_seed(seed, self.name, template, index))
        own.update(_seeded_helpers(rng), options=options_text(choices) if (choices and options) else "")
        text = self._run(self._template(template), _context(row, own), template, None, index)
        if not text.strip():
            return None
        if text.count(SEPARATOR) != 1:
            raise self._err(f"the render must hold exactly one '{SEPARATOR}' between input and target "
                            f"(found {text.count(SEPARATOR)})", template=template, line=info.line, row=index)
        source, target = (runtime.unprotect(part).strip() if self.promptsource else part.strip()
                          for part in text.split(SEPARATOR))
        if not source or not target:
            return None
        if choices is not None and not info.inverted and target not in choices:
            raise self._err(f"target {target!r} is not one of the choices {list(choices)} "
                            f"(mark the template inverted: true if it turns the task around)",
                            template=template, field="answer", line=info.line, row=index)
        refs: tuple[str, ...] = (target,)
        if self._references_tpl is not None and not info.inverted:
            ref_text = self._run(self._references_tpl, base, None, "references", index)
            refs = tuple(r.strip() for r in ref_text.split(SEPARATOR) if r.strip()) or (target,)
        return Example(self.name, template, source, target, index,
                       None if info.inverted else choices, refs)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, cluster={self.cluster!r}, templates={self.template_names})"


# How deep a template's syntax tree may nest and still be compiled when first rendered: far below what
# Python's compiler refuses (20 statically nested blocks, 200 nested parentheses, its recursion limit).
LAZY_MAX_DEPTH = 15


def _compiles_surely(ast: nodes.Template, env: jinja2.Environment) -> bool:
    """Whether compiling ``ast`` cannot fail, so that it may wait for the first render.

    Parsing raises every syntax error; Jinja's code generator adds its own (TemplateAssertionError: an
    unknown filter or test, a macro's ``caller`` argument, ``extends`` below the top level, assigning
    ``loop``) and Python's compiler refuses code nested too deeply. A tree that could meet any of those
    is compiled at load, as before, so a task file's errors are still all raised when it is loaded."""
    todo: list[tuple[nodes.Node, int]] = [(ast, 0)]  # one walk: this runs for every block of every task file
    while todo:
        node, depth = todo.pop()
        if depth > LAZY_MAX_DEPTH or isinstance(node, (nodes.Macro, nodes.CallBlock, nodes.Extends, nodes.Block)):
            return False
        if isinstance(node, nodes.Filter) and node.name not in env.filters or isinstance(
                node, nodes.Test) and node.name not in env.tests:
            return False
        if isinstance(node, nodes.Name) and node.name == "loop" and node.ctx == "store":
            return False
        todo += [(child, depth + 1) for child in node.iter_child_nodes()]
    return True


class _AnswerChoices(list):
    """The choices as ``answer`` sees them: ``choices[-1]`` is an error, not silently the last choice
    (-1 is how GLUE and many other datasets mark a row without a label)."""

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return super().__getitem__(i)
        if not isinstance(i, int):  # bools are fine: BoolQ-style labels index ["no", "yes"]
            raise ValueError(f"choices[{reprlib.repr(i)}]: a label must be an integer index into the "
                             f"{len(self)} choices, got {type(i).__name__}")
        if i < 0:
            raise ValueError(f"choices[{i}]: a negative label picks no choice; -1 usually marks an "
                             "unlabelled row (a test split?)")
        if i >= len(self):
            raise ValueError(f"choices[{i}]: there are only {len(self)} choices")
        return super().__getitem__(i)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
