"""Stable seeds: the same words give the same 64-bit integer on every machine, Python and process.

Python's ``hash()`` of a string changes with every process (hash randomisation), so seeds derived from
task, template or row names go through sha256 instead::

    >>> stable_seed("sentiment_movie", "t1", 3) == stable_seed("sentiment_movie", "t1", 3)
    True
"""

from __future__ import annotations

import hashlib
from typing import Literal


def stable_seed(*parts: object, byteorder: Literal["little", "big"] = "little") -> int:
    """A 64-bit integer from ``parts``: their ``str()`` joined by the unit separator (``\\x1f``), UTF-8,
    sha256, the first 8 bytes read in ``byteorder``. One part is the name itself (no separator).

    Every seed already in use is frozen by golden values: the mixture stream's task and template keys,
    the evaluation exemplars and the renders' randomness read little-endian; the synthetic generators'
    rows and splits read big-endian.
    """
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], byteorder)
