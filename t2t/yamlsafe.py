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

Budgets, each refused at once with one line: ``MAX_BYTES`` of text, ``MAX_YAML_VALUES`` values once aliases
are expanded, ``MAX_DEPTH`` levels of nesting (YAML and JSON), ``MAX_INCLUDE_DEPTH`` files in an include
chain (lm-eval's ``include:``). A key given twice in one mapping is refused with both line numbers
(``yaml.safe_load`` keeps the last silently). Files: :func:`read_text` (UTF-8, a byte order mark stripped,
the size budget), :func:`load_yaml_file` and :func:`load_json_file` (any problem one :class:`T2TError`
naming the file and line), and :func:`expect` for the shapes a format needs (naming file, key and the
expected type).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from t2t.errors import T2TError

MAX_YAML_VALUES = 100_000  # values after expanding aliases; real task and mixture files hold hundreds
MAX_BYTES = 64 * 2**20  # a user's YAML/JSON file: a budget, not a measured size (raise it here if need be)
MAX_DEPTH = 100  # nesting levels; real files nest 3-6, and deeper data overflows Python's recursion later
MAX_INCLUDE_DEPTH = 32  # lm-eval include chains in lm-evaluation-harness are 1-3 files long
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

            # PyYAML's scanner re-checks a possible key per open flow level at every token: 3,000 nested '['
            # took 15 s to reach RecursionError (measured). Refused as the level opens, the budget costs nothing.
            def fetch_flow_collection_start(self, token_class: Any) -> None:
                if self.flow_level >= MAX_DEPTH:
                    raise YAMLLimitError("nested too deeply")
                super().fetch_flow_collection_start(token_class)

            def add_indent(self, column: int) -> bool:
                if len(self.indents) > MAX_DEPTH:
                    raise YAMLLimitError("nested too deeply")
                return super().add_indent(column)

            def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
                if isinstance(node, yaml.MappingNode) and getattr(self, "t2t_unique_keys", True):
                    _refuse_duplicates(node, getattr(self, "t2t_first_line", 1))
                return super().construct_mapping(node, deep)

        Total.__name__ = f"Total{loader.__name__}"
        _TOTAL_LOADERS[loader] = Total
    return _TOTAL_LOADERS[loader]


def _refuse_duplicates(node: yaml.MappingNode, first_line: int) -> None:
    """A key given twice in ``node`` as a ConstructorError naming both lines (merge keys ``<<`` aside: the
    mapping's own keys override merged ones, as YAML means)."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = (key_node.tag, key_node.value)
        line = key_node.start_mark.line + first_line
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key_node.value!r} (lines {seen[key]} and {line}); keep one",
                key_node.start_mark)
        seen[key] = line


def safe_load(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader, first_line: int = 1,
              unique_keys: bool = True) -> Any:
    """``yaml.safe_load`` that refuses alias bombs, self-referring aliases, very deep nesting, texts over
    ``MAX_BYTES`` and duplicate keys.

    ``loader``: a :class:`yaml.SafeLoader` subclass (one that adds constructors for a format's tags);
    ``first_line``: the file's line number of the text's first line (front matter starts on line 2);
    ``unique_keys=False`` keeps the last of duplicate keys, for another tool's format read as that tool
    reads it."""
    if len(text) > MAX_BYTES:
        raise YAMLLimitError(f"longer than {MAX_BYTES} characters")
    if loader is yaml.SafeLoader and _C_SAFE_LOADER is not None and not _PYTHON_ONLY_RE.search(text):
        data = _c_load(text, first_line, unique_keys)
        if data is not _REFUSED:
            return data
    try:
        parser = _total(loader)(text)
        parser.t2t_first_line, parser.t2t_unique_keys = first_line, unique_keys
        try:
            data = parser.get_single_data()
        finally:
            parser.dispose()
        _expanded_size(data, {}, set())
    except RecursionError:
        raise YAMLLimitError("nested too deeply") from None
    if _depth(data, {}, MAX_DEPTH) > MAX_DEPTH:
        raise YAMLLimitError("nested too deeply")
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


def _c_load(text: str, first_line: int = 1, unique_keys: bool = True) -> Any:
    """The data libyaml reads from ``text``, or ``_REFUSED`` where the Python loader must decide."""
    try:
        parser = _total(_C_SAFE_LOADER)(text)  # type: ignore[arg-type]
        parser.t2t_first_line, parser.t2t_unique_keys = first_line, unique_keys
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


# -- files from users ------------------------------------------------------------------------------

def read_text(path: str | Path, what: str = "") -> str:
    """The UTF-8 text of a user's file (a leading byte order mark dropped), or one T2TError naming it:
    missing, unreadable, over ``MAX_BYTES``, or not UTF-8 (with the byte offset). ``what`` prefixes the
    path in messages (``--config``)."""
    name = f"{what} {path}" if what else str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise T2TError(f"{name}: no such file") from None
    except OSError as exc:
        raise T2TError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise T2TError(f"{name}: larger than {MAX_BYTES // 2**20} MiB, the limit for a file of this kind")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise T2TError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None


def load_yaml_file(path: str | Path, loader: type[yaml.SafeLoader] = yaml.SafeLoader, what: str = "",
                   unique_keys: bool = True) -> Any:
    """:func:`safe_load` of a user's file; every problem one T2TError naming the file and line."""
    text = read_text(path, what)
    name = f"{what} {path}" if what else str(path)
    try:
        return safe_load(text, loader, unique_keys=unique_keys)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise T2TError(f"{where}: not valid YAML: {problem}") from None


def load_json(text: str) -> Any:
    """``json.loads`` within the depth budget: deep nesting is a ValueError, not a RecursionError (the C
    scanner recurses per level) nor data that overflows a later recursive walk."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DEPTH} levels") from None
    if _depth(data, {}, MAX_DEPTH) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels")
    return data


def load_json_file(path: str | Path, what: str = "", expected: str = "valid JSON") -> Any:
    """:func:`load_json` of a user's file; every problem one T2TError naming the file (``PATH: not
    EXPECTED (why)`` for text that does not parse)."""
    text = read_text(path, what)
    try:
        return load_json(text)
    except ValueError as exc:
        raise T2TError(f"{what + ' ' if what else ''}{path}: not {expected} ({exc})") from None


def kind(value: Any) -> str:
    """A value's type in the words of YAML and JSON (for messages)."""
    for types, name in ((bool, "a boolean"), (str, "a string"), ((int, float), "a number"), (dict, "a mapping"),
                        (list, "a list"), (type(None), "null")):
        if isinstance(value, types):
            return name
    return type(value).__name__


def expect(value: Any, check: type | tuple[type, ...] | Callable[[Any], bool], where: str, key: str,
           expected: str) -> Any:
    """``value`` if it passes ``check`` (types, or a predicate), else one T2TError naming the file or place
    (``where``), the key and the expected type: ``f.yaml: 'dataset_kwargs.data_files' must be a path or a
    mapping of split to path, got a list``. Booleans never pass as numbers."""
    if isinstance(check, (type, tuple)):
        types = check if isinstance(check, tuple) else (check,)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    else:
        ok = check(value)
    if not ok:
        raise T2TError(f"{where}: '{key}' must be {expected}, got {kind(value)}")
    return value
