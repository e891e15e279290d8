"""Stable seeds: the same words give the same 64-bit integer on every machine, Python and process.

Python's ``hash()`` of a string changes with every process (hash randomisation), so seeds derived from
task, template or row names go through sha256 instead::

    >>> stable_seed("sentiment_movie", "t1", 3) == stable_seed("sentiment_movie", "t1", 3)
    True
"""

from __future__ import annotations

import hashlib


def stable_seed(*parts: object, byteorder: str = "little") -> int:
    """A 64-bit integer from ``parts``, joined by the unit separator (``\\x1f``) and hashed with sha256."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], byteorder)  # type: ignore[arg-type]
