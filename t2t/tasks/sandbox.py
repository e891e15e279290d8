"""The sandbox task templates render in: Jinja's immutable sandbox plus limits on time and size.

Jinja's sandbox stops attribute walks (``''.__class__.__mro__``), unsafe calls and mutation of rows.
It does not stop a template that runs away, so every render gets a budget:

- time (``MAX_RENDER_SECONDS`` of the rendering thread's CPU time), checked on every call, every loop
  iteration and every ``*``/``**``/``+``/``%``/``~``, so nested loops that call nothing are stopped too.
  CPU time, not wall time: a runaway template burns CPU in its own thread, while an ordinary render on a
  loaded machine (other processes, or another thread holding the GIL, as in a training process) waits
  without burning any, and must not be refused for it;
- ``range()`` items summed over the render, and output characters;
- the size of any one value a template builds: repetition, concatenation, ``%`` and ``str.format``
  widths, and the str methods and filters an argument can blow up (``center(10**9)``,
  ``replace('a', 'a' * 50000)``, ``join(long_separator)``, ``batch``, ``slice``, ``tojson(indent)``) are
  refused *before* they allocate;
- integers: ``*`` and ``**`` may not build numbers of more than ``MAX_INT_BITS`` bits.

None never prints (a null or missing field would become the text "None"); functions, methods and
classes never print (``{{ shuffle }}``, ``'%s' % text.upper``): a prompt holds
text, and a repr would leak addresses and internals.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter, SecurityError
from jinja2.utils import Namespace

MAX_OUTPUT_CHARS = 100_000
MAX_RANGE_ITEMS = 100_000  # summed over every range() call of one render
MAX_RENDER_SECONDS = 2.0
MAX_VALUE_CHARS = 1_000_000  # longest string or list one operation may build (the output limit is lower)
MAX_INT_BITS = 100_000

_PRINTF_RE = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]")


def _width(n: Any) -> int:
    """A width argument as a size; anything else is left for the real call to reject."""
    return n if isinstance(n, int) and not isinstance(n, bool) else 0


def _too_long(n: int, what: str) -> None:
    if n > MAX_VALUE_CHARS:
        raise SecurityError(f"{what} would build more than {MAX_VALUE_CHARS} items")


class NullValueError(ValueError):
    """A template printed None: a row field that is null, or missing from a file whose other rows have it
    (``datasets`` fills such a field with None). Printed, it would become the text "None" and be trained
    and scored as if it were data."""


def check_printable(value: Any, depth: int = 0) -> Any:
    """Refuse to print None, functions, methods and classes (also inside a list or dict), return the value."""
    if isinstance(value, jinja2.Undefined):
        return value  # printing it raises the proper "'x' is undefined"
    if value is None and depth == 0:
        raise NullValueError("a value printed by the template is null (missing or None in the row); fix the "
                             "data, or give a default: {{ x | default('...', true) }} or {% if x is none %}")
    if callable(value):
        raise SecurityError("a function, method or class cannot be printed; call it, e.g. text.upper()")
    if depth < 3 and isinstance(value, (list, tuple, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            check_printable(item, depth + 1)
    return value


def _check_printf(fmt: str, values: Any) -> None:
    """``fmt % values`` would not allocate a huge string and does not print a function."""
    total = len(fmt)
    for m in _PRINTF_RE.finditer(fmt):
        for n in m.groups():
            if n == "*":
                raise SecurityError("'*' widths are not allowed in '%' formatting")
            total += int(n) if n and len(n) < 9 else (10**9 if n else 0)
    _too_long(total, "'%' formatting")
    check_printable(values)


def _replace_size(s: Any, old: Any, new: Any, count: Any = None) -> int:
    s, old, new = str(s), str(old), str(new)
    n = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    return len(s) + n * max(0, len(new) - len(old))


def _tojson_size(value: Any, indent: Any = None) -> int:
    text = str(value)
    depth = text.count("[") + text.count("{") + 1
    return len(text) * (1 + _width(indent) * depth)


# Upper bounds on the length of what a filter builds, for the filters an argument multiplies.
# Each takes the filter's arguments without the value Jinja passes first (environment, eval context).
_FILTER_SIZES: dict[str, Callable[..., int]] = {
    "center": lambda s, width=80: max(len(str(s)), _width(width)),
    "indent": lambda s, width=4, first=False, blank=False: len(str(s)) + (str(s).count("\n") + 1) * (
        len(width) if isinstance(width, str) else _width(width)),
    "replace": _replace_size,
    "wordwrap": lambda s, width=79, break_long_words=True, wrapstring=None, break_on_hyphens=True: len(
        str(s)) * (1 + len(str(wrapstring or ""))),
    "join": lambda value, d="", attribute=None: len(str(d)) * len(value),
    "batch": lambda value, linecount, fill_with=None: len(value) + _width(linecount),
    "slice": lambda value, slices, fill_with=None: len(value) + _width(slices),
    "tojson": _tojson_size,
}
# The same for str methods called from a template (the string itself comes first).
_STR_METHOD_SIZES: dict[str, Callable[..., int]] = {
    "center": lambda s, width, fillchar=" ": max(len(s), _width(width)),
    "ljust": lambda s, width, fillchar=" ": max(len(s), _width(width)),
    "rjust": lambda s, width, fillchar=" ": max(len(s), _width(width)),
    "zfill": lambda s, width: max(len(s), _width(width)),
    "expandtabs": lambda s, tabsize=8: len(s) + s.count("\t") * _width(tabsize),
    "replace": _replace_size,
    "join": lambda s, iterable: len(s) * len(iterable),
}


def _size_or_zero(estimate: Callable[..., int], *args: Any, **kwargs: Any) -> int:
    try:
        return estimate(*args, **kwargs)
    except Exception:  # wrong arguments: the real call raises the error the author should see
        return 0


def _materialised(args: tuple[Any, ...], i: int) -> tuple[Any, ...]:
    """Turn an iterator argument into a list, so that its length can be known before the call."""
    if len(args) > i and isinstance(args[i], Iterable) and not isinstance(args[i], (Sized, jinja2.Undefined)):
        return (*args[:i], list(args[i]), *args[i + 1:])
    return args


class Helper:
    """A template global that prints as its name: no repr of a function or class reaches a prompt."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self._name, self._fn = name, fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self._name}>"


class RenderBudget:
    """Per-render limits on range() size and the rendering thread's CPU time."""

    def __init__(self) -> None:
        self.range_items = 0
        self.deadline = time.thread_time() + MAX_RENDER_SECONDS


class _BudgetedCodeGenerator(CodeGenerator):
    """Routes every for-loop and every '~' through the sandbox, so the budget sees loops that call nothing."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        it = node.iter
        if not (isinstance(it, nodes.Call) and isinstance(it.node, nodes.EnvironmentAttribute)):
            node.iter = nodes.Call(nodes.EnvironmentAttribute("guard_loop"), [it], [], None, None,
                                   lineno=it.lineno)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("), context.eval_ctx.autoescape)")


class _BoundedFormatter(SandboxedFormatter):
    """``str.format`` with a limit on the widths of all fields together, and no printed functions."""

    def __init__(self, env: jinja2.Environment) -> None:
        super().__init__(env)
        self._total = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        check_printable(value)
        widths = [int(n) if len(n) < 9 else 10**9 for n in re.findall(r"\d+", format_spec)]
        self._total += max(widths, default=0)
        _too_long(self._total, "str.format")
        return super().format_field(value, format_spec)


class T2TSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with StrictUndefined and limits against runaway templates."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BudgetedCodeGenerator

    def __init__(self, search_path: Sequence[Path]) -> None:
        super().__init__(
            loader=jinja2.FileSystemLoader([str(p) for p in search_path]),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            auto_reload=False,
            finalize=check_printable,
        )
        self.budget: RenderBudget | None = None
        # cycler/joiner/lipsum: nothing in a prompt needs them, and a smaller surface is easier to
        # reason about. The rest print as their names, not as classes or bound methods.
        for unused in ("cycler", "joiner", "lipsum"):
            self.globals.pop(unused, None)
        self.globals.update(range=Helper("range", self._range), dict=Helper("dict", dict),
                            namespace=Helper("namespace", Namespace))
        for name, estimate in _FILTER_SIZES.items():
            self.filters[name] = self._bounded_filter(name, self.filters[name], estimate)
        for name in ("format", "string", "pprint"):
            self.filters[name] = self._printing_filter(name, self.filters[name])

    def render_bounded(self, template: jinja2.Template, context: dict[str, Any]) -> str:
        """Render within a fresh budget; SecurityError when the template runs away."""
        self.budget = RenderBudget()
        try:
            out, size = [], 0
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    raise SecurityError(f"output longer than {MAX_OUTPUT_CHARS} characters")
                out.append(chunk)
            return "".join(out)
        finally:
            self.budget = None

    def _check_budget(self) -> None:
        if self.budget is not None and time.thread_time() > self.budget.deadline:
            raise SecurityError(f"render took more than {MAX_RENDER_SECONDS:g}s of CPU time")

    def _range(self, *args: int) -> range:
        rng = range(*args)
        if self.budget is not None:
            self.budget.range_items += len(rng)
            if self.budget.range_items > MAX_RANGE_ITEMS:
                raise SecurityError(f"range() over more than {MAX_RANGE_ITEMS} items in one render")
            self._check_budget()
        return rng

    def guard_loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self._check_budget()
            yield item

    def bounded_concat(self, parts: tuple[Any, ...], autoescape: bool) -> str:
        self._check_budget()
        for part in parts:
            check_printable(part)
        out = markup_join(parts) if autoescape else str_join(parts)
        _too_long(len(out), "'~'")
        return out

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self._check_budget()
        ints = all(isinstance(v, int) for v in (left, right))
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 100:
                raise SecurityError("exponent too large in template")
            if ints and right > 0 and left.bit_length() * right > MAX_INT_BITS:
                raise SecurityError(f"'**' would build a number of more than {MAX_INT_BITS} bits")
            return left**right
        if operator == "%":
            if isinstance(left, str):
                _check_printf(left, right)
            return left % right
        if operator == "+":
            out = left + right
            if isinstance(out, (str, list, tuple)):
                _too_long(len(out), "'+'")
            return out
        if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError(f"'*' would build a number of more than {MAX_INT_BITS} bits")
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                _too_long(len(seq) * times, "'*'")
        return left * right

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self._check_budget()
        owner = getattr(__obj, "__self__", None)
        estimate = _STR_METHOD_SIZES.get(getattr(__obj, "__name__", "")) if isinstance(owner, str) else None
        if estimate is not None:
            args = _materialised(args, 0)
            _too_long(_size_or_zero(estimate, owner, *args, **kwargs), f"str.{__obj.__name__}")
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        if super().wrap_str_format(value) is None:
            return None
        f_self, is_map = value.__self__, value.__name__ == "format_map"

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one mapping")
                args, kwargs = (), args[0]
            return type(f_self)(_BoundedFormatter(self).vformat(f_self, args, kwargs))

        return bounded_format

    @staticmethod
    def _bounded_filter(name: str, fn: Callable[..., Any], estimate: Callable[..., int]
                        ) -> Callable[..., Any]:
        skip = 1 if hasattr(fn, "jinja_pass_arg") else 0  # the environment or eval context Jinja passes

        def bounded(*args: Any, **kwargs: Any) -> Any:
            args = _materialised(args, skip)
            _too_long(_size_or_zero(estimate, *args[skip:], **kwargs), f"|{name}")
            return fn(*args, **kwargs)

        bounded.__dict__.update(fn.__dict__)  # keeps jinja_pass_arg
        return bounded

    @staticmethod
    def _printing_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def printing(value: Any, *args: Any, **kwargs: Any) -> Any:
            if name == "format" and isinstance(value, str):
                _check_printf(value, kwargs or args)
            check_printable(value)
            return fn(value, *args, **kwargs)

        return printing
