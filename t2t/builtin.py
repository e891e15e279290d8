"""Where the built-in task files (``templates/``) and mixtures (``task_registry/``) are.

In a checkout (and an editable install) they sit at the repository's top level, beside the package; a
wheel carries them inside the package, as ``t2t/_builtin/templates`` and ``t2t/_builtin/task_registry``
(``pyproject.toml`` maps the top-level folders there). Either way the same files are found.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
NAMES = ("templates", "task_registry")


def builtin_dir(name: str) -> Path:
    """The folder of built-in ``templates`` or ``task_registry`` files, installed or in a checkout."""
    if name not in NAMES:
        raise ValueError(f"no built-in folder {name!r}; known: {', '.join(NAMES)}")
    installed = _PACKAGE / "_builtin" / name
    return installed if installed.is_dir() else _PACKAGE.parent / name
