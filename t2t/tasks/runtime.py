"""The promptsource-compatible runtime: how a task file that says ``promptsource: {truncate: N}`` renders.

promptsource's own rendering (``promptsource/templates.py``: ``Template.apply`` and
``get_answer_choices_list``) differs from t2t's sandbox in a few ways that imported templates rely on;
:func:`environments` gives a task those differences as two overlays of its sandbox (same limits):

- filters ``choice`` (seeded per example from the render's generator, ``t2t.choice``; marked
  ``pass_context`` so Jinja cannot fold ``[0, 1, 2] | choice`` into one pick at compile time; Jinja's own
  ``random`` filter is seeded the same way), ``most_frequent``, and the global ``zip``;
- every ``{{ }}`` value cut to 2,048 characters (``Template.apply(truncate=True)``; ``truncate: false``:
  full text), answer choices never cut; None prints as ``None``;
- a literal ``|||`` inside row text is protected (:func:`protect` before rendering, :func:`unprotect`
  after), so only the template's own ``|||`` splits input from target::

      row {"premise": "a ||| b"}  ->  protect  ->  {"premise": "a 3ed2...e0 b"}
      "{{premise}} ||| yes"       ->  render   ->  "a 3ed2...e0 b ||| yes"
      split on "|||", unprotect   ->  input "a ||| b", target "yes"

- rendered answer choices are split on ``|||`` with every position kept, each stripped
  (:func:`split_choices`), so ``answer_choices[label]`` stays right when one is empty;
- rows are deep copies, so templates may build lists with ``x.append(y)`` (212 promptsource templates do).

This is the core's runtime, used by :class:`t2t.tasks.task.Task`; the importer that writes such files
(:mod:`t2t.tasks.importers.promptsource`) sits above it. ``tests/tasks/test_promptsource_fidelity.py``
compares the two renderings on promptsource's own templates.
"""

from __future__ import annotations

import copy
import functools
import random
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2.filters import do_truncate
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from markupsafe import soft_str

from t2t.tasks.sandbox import Helper, T2TSandbox, check_printable

TEXT_VAR_LENGTH = 2048  # promptsource's TEXT_VAR_LENGTH: Template.apply(truncate=True) cuts every {{ }} value
PIPE_PROTECTOR = "3ed2dface8203c4c9dfb1a5dc58e41e0"  # promptsource's Template.pipe_protector
SEPARATOR = "|||"


def protect(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row with ``|||`` in its top-level string values replaced (promptsource's ``_escape_pipe``), as a
    deep copy: promptsource templates may build lists with ``.append`` and must not change the data."""
    return {k: v.replace(SEPARATOR, PIPE_PROTECTOR) if isinstance(v, str) else copy.deepcopy(v)
            for k, v in row.items()}


def unprotect(text: str) -> str:
    return text.replace(PIPE_PROTECTOR, SEPARATOR)


def split_choices(text: str) -> tuple[str, ...]:
    """Rendered ``answer_choices`` as promptsource splits them: every position kept, each stripped."""
    return tuple(unprotect(c.strip()) for c in text.split(SEPARATOR))


def most_frequent(items: Any) -> list[Any] | None:
    """promptsource's ``most_frequent`` filter: the items that occur most often, in first-seen order."""
    if not items:
        return None
    counts = Counter(items).most_common()
    return [item for item, n in counts if n == counts[0][1]]


@jinja2.pass_context
def _choice(context: Any, seq: Any) -> Any:
    """promptsource's ``choice`` filter, drawn from the render's seeded generator (``t2t.choice``).

    ``pass_context`` keeps Jinja from evaluating ``[0, 1, 2, 3] | choice`` once at compile time."""
    own = context.get("t2t")
    pick = own.get("choice") if isinstance(own, dict) else None
    return pick(seq) if pick is not None else random.Random(0).choice(list(seq))


def _finalize(env: jinja2.Environment, truncate: int | None) -> Callable[[Any], Any]:
    def finalize(value: Any) -> Any:
        if isinstance(value, jinja2.Undefined):
            return value  # printing it raises the proper "'x' is undefined"
        if callable(value):
            raise SecurityError("a function, method or class cannot be printed; call it, e.g. text.upper()")
        if truncate is None:
            return value  # None prints as "None", as in promptsource's plain Environment
        return do_truncate(env, str(value), truncate)  # `| string | truncate(2048)`

    return finalize


def _string(value: Any, *args: Any, **kwargs: Any) -> str:
    check_printable(value if value is not None else "")
    return soft_str(value)


def environments(env: T2TSandbox, option: Any, error: Callable[..., Exception]
                 ) -> tuple[T2TSandbox, T2TSandbox]:
    """(environment for templates, environment for answer choices) of an imported promptsource file.

    ``option`` is the front matter's ``promptsource:`` value: ``{truncate: N}`` (2,048 as promptsource,
    ``false`` for full text). Both are overlays of the sandbox (same limits) with promptsource's filters and
    globals; answer choices are never truncated (``get_answer_choices_list`` does not truncate).
    """
    option = {} if option is True else option
    if not isinstance(option, dict) or set(option) - {"truncate"}:
        raise error("promptsource must be a mapping {truncate: 2048} (or {truncate: false} for full text)",
                    field="promptsource")
    truncate = option.get("truncate", TEXT_VAR_LENGTH)
    if truncate is False:
        truncate = None
    elif not (isinstance(truncate, int) and not isinstance(truncate, bool) and truncate > 3):
        raise error("truncate must be a number of characters (> 3) or false", field="promptsource.truncate")
    return _overlay(env, truncate), _overlay(env, None)


def _overlay(env: T2TSandbox, truncate: int | None) -> T2TSandbox:
    out = env.overlay()
    out.finalize = _finalize(out, truncate)
    # Jinja's own `random` filter is seeded like `choice`; lists and dicts may be changed (`x.append(y)`,
    # 212 promptsource templates build lists so) as rows are deep copies (protect).
    out.filters = {**env.filters, "choice": _choice, "random": _choice, "most_frequent": most_frequent,
                   "string": _string}
    out.is_safe_attribute = functools.partial(SandboxedEnvironment.is_safe_attribute, out)  # type: ignore[method-assign]
    out.globals = {**env.globals, "zip": Helper("zip", zip), "range": Helper("range", out._range)}
    return out
