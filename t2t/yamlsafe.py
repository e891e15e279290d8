"""YAML as users write it (task front matter, mixture files, configs): ``yaml.safe_load`` made total.

``safe_load`` alone still lets a small file hurt: aliases that nest aliases (the "billion laughs")
expand to billions of values once anything walks them, an alias can refer to itself, and deep nesting
raises RecursionError instead of a YAML error; PyYAML's own constructors raise ValueError or KeyError
for values they resolve but cannot build (an impossible date such as 2024-02-30, an int past Python's
digit limit, ``!!bool maybe``). Here each of those is a :class:`yaml.YAMLError` with a ``problem`` (and,
for a bad value, the ``problem_mark`` of its node), so callers report it like any other YAML mistake,
naming the file and line.

The default loader parses with libyaml (``yaml.CSafeLoader``) where PyYAML has it: an SNI task file's
front matter loads in 0.8 ms instead of 5.3 ms, and that was a quarter of loading 2,000 of them. The C
parser is only trusted where both parsers read alike. A text libyaml refuses, one with a tab (libyaml
takes ``a:\tb``, PyYAML does not), a byte order mark or a Unicode line break, a flow collection holding
'?' or a ':' not followed by a space (libyaml takes ``[of?f]`` and ``{a:b}``), or data nested deeper than
``C_MAX_DEPTH`` (PyYAML's recursive composer may stop first) is read again by PyYAML's Python parser, so
every error, message and mark is the Python loader's. Those differences were found by comparing both
parsers on 19,000 mutated task and mixture files (``tests/tasks/test_lazy_load.py`` keeps a sample).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_YAML_VALUES = 100_000  # values after expanding aliases; real task and mixture files hold hundreds
C_MAX_DEPTH = 50  # deeper data is read again by the Python loader (real files nest 3-5 levels)
_C_SAFE_LOADER: type | None = getattr(yaml, "CSafeLoader", None) if getattr(yaml, "__with_libyaml__", False) else None


class YAMLLimitError(yaml.YAMLError):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = None


_TOTAL_LOADERS: dict[type, type] = {}


def _total(loader: type[yaml.SafeLoader]) -> type[yaml.SafeLoader]:
    """``loader`` whose constructors' ValueError/KeyError/... become ConstructorErrors at the node."""
    if loader not in _TOTAL_LOADERS:
        class Total(loader):  # type: ignore[misc, valid-type]
            def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
                try:
                    return super().construct_object(node, deep)
                except yaml.YAMLError:
                    raise
                except (ValueError, KeyError, TypeError, OverflowError, IndexError) as exc:
                    value = node.value if isinstance(node, yaml.ScalarNode) else node.tag
                    raise yaml.constructor.ConstructorError(
                        None, None, f"cannot read {str(value)[:40]!r} as {node.tag.rsplit(':', 1)[-1]} "
                        f"({type(exc).__name__}: {str(exc)[:80]}); quote it to keep it as text",
                        node.start_mark) from None

        Total.__name__ = f"Total{loader.__name__}"
        _TOTAL_LOADERS[loader] = Total
    return _TOTAL_LOADERS[loader]


def safe_load(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """``yaml.safe_load`` that refuses alias bombs, self-referring aliases and very deep nesting.

    ``loader``: a :class:`yaml.SafeLoader` subclass (one that adds constructors for a format's tags)."""
    if loader is yaml.SafeLoader and _C_SAFE_LOADER is not None and not _PYTHON_ONLY_RE.search(text):
        data = _c_load(text)
        if data is not _REFUSED:
            return data
    try:
        data = yaml.load(text, Loader=_total(loader))  # noqa: S506 - a SafeLoader (sub)class
        _expanded_size(data, {}, set())
    except RecursionError:
        raise YAMLLimitError("nested too deeply") from None
    return data


def _expanded_size(node: Any, sizes: dict[int, int], open_: set[int]) -> int:
    if not isinstance(node, (list, dict)):
        return 1
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise YAMLLimitError("an alias (*name) refers to a value that contains it")
    open_.add(key)
    children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
    total = 1 + sum(_expanded_size(child, sizes, open_) for child in children)
    if total > MAX_YAML_VALUES:
        raise YAMLLimitError(f"aliases expand to more than {MAX_YAML_VALUES} values")
    open_.discard(key)
    sizes[key] = total
    return total


_REFUSED = object()
# A tab (libyaml takes ``a:\tb``), a byte order mark after the start, or a Unicode line break: PyYAML decides.
_PYTHON_ONLY_RE = re.compile("[\t\ufeff\x85\u2028\u2029]")
_FLOW_DOUBT_RE = re.compile(r"\?|:(?![\s,\]}])")  # what libyaml takes in a flow collection and PyYAML may not


def _c_load(text: str) -> Any:
    """The data libyaml reads from ``text``, or ``_REFUSED`` where the Python loader must decide."""
    try:
        parser = _total(_C_SAFE_LOADER)(text)  # type: ignore[arg-type]
        try:
            node = parser.get_single_node()
            if node is None:
                return None
            # In flow collections ([a, b], {k: v}) libyaml takes plain scalars with '?' or ':' that PyYAML
            # refuses (measured: [of?f], {a:b}): any of those characters in one, and PyYAML reads the text.
            seen, todo = set(), [node]
            while todo:
                n = todo.pop()
                if id(n) in seen or not isinstance(n, yaml.CollectionNode):
                    continue
                seen.add(id(n))
                if n.flow_style and _FLOW_DOUBT_RE.search(text, n.start_mark.index, n.end_mark.index):
                    return _REFUSED
                todo += [x for kv in n.value for x in kv] if isinstance(n, yaml.MappingNode) else n.value
            data = parser.construct_document(node)
        finally:
            parser.dispose()
        _expanded_size(data, {}, set())
        if _depth(data, {}, C_MAX_DEPTH) > C_MAX_DEPTH:
            return _REFUSED
        return data
    except Exception:  # noqa: BLE001 - refused or odd: the Python loader says why, in its own words
        return _REFUSED


def _depth(node: Any, depths: dict[int, int], limit: int) -> int:
    """Nesting depth of acyclic ``node`` (aliases shared, counted once), or more than ``limit``."""
    if not isinstance(node, (list, dict)):
        return 0
    key = id(node)
    if key not in depths:
        if limit <= 0:
            return 1
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        depths[key] = 1 + max((_depth(child, depths, limit - 1) for child in children), default=0)
    return depths[key]
