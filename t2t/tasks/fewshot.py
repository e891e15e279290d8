"""FLAN's few-shot format, shared by the training stream's few-shot variants and k-shot evaluation.

Each exemplar is ``input + "\n\n" + target``; exemplars are joined by ``"\n\n\n"``, which also
separates the last one from the query's input (FLAN v2's x/y delimiter and example separator)::

    >>> few_shot_input([("2+2?", "4"), ("3+1?", "4")], "1+1?")
    '2+2?\n\n4\n\n\n3+1?\n\n4\n\n\n1+1?'
"""

from __future__ import annotations

from collections.abc import Iterable

FEW_SHOT_XY = "\n\n"


FEW_SHOT_SEP = "\n\n\n"


def few_shot_input(shots: Iterable[tuple[str, str]], query: str) -> str:
    """The input of a k-shot prompt: the (input, target) exemplars, then the query's input."""
    return "".join(f"{x}{FEW_SHOT_XY}{y}{FEW_SHOT_SEP}" for x, y in shots) + query
