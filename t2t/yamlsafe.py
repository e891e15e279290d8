"""YAML as users write it (task front matter, mixture files, configs): ``yaml.safe_load`` made total.

``safe_load`` alone still lets a small file hurt: aliases that nest aliases (the "billion laughs")
expand to billions of values once anything walks them, an alias can refer to itself, and deep nesting
raises RecursionError instead of a YAML error; PyYAML's own constructors raise ValueError or KeyError
for values they resolve but cannot build (an impossible date such as 2024-02-30, an int past Python's
digit limit, ``!!bool maybe``). Here each of those is a :class:`yaml.YAMLError` with a ``problem`` (and,
for a bad value, the ``problem_mark`` of its node), so callers report it like any other YAML mistake,
naming the file and line.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_VALUES = 100_000  # values after expanding aliases; real task and mixture files hold hundreds


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
