"""The task registry: built from task files when asked, never at import time.

Search order: the built-in ``templates/`` folder, then the folders of ``T2T_TASK_PATH``
(``os.pathsep``-separated), then each ``--task-dir``. Every ``*.jinja`` file below a folder is a task,
except files under a folder whose name starts with ``_`` (``_lib/`` holds shared macros).

What any registry of named files needs (search folders, finding the files, reading each one with its
errors collected, duplicate names, unknown names with the nearest ones) is here too:
:class:`t2t.mixtures.spec.MixtureRegistry` is the other :class:`NamedFiles`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar, Generic, Protocol, TypeVar

from t2t.builtin import builtin_dir
from t2t.errors import T2TError, TaskFileError, TaskFilesError
from t2t.tasks.task import T2TSandbox, Task

BUILTIN_TEMPLATES = builtin_dir("templates")


def search_dirs(builtin: Path | None, env_var: str, extra: Sequence[str | os.PathLike[str]], flag: str,
                what: str) -> list[Path]:
    """Folders to search, in order: ``builtin``, those on ``env_var`` (``os.pathsep``-separated), ``extra``;
    without duplicates. A missing folder is an error naming where it came from."""
    dirs: list[Path] = [builtin] if builtin is not None and builtin.is_dir() else []
    dirs += [Path(p) for p in os.environ.get(env_var, "").split(os.pathsep) if p]
    dirs += [Path(p) for p in extra]
    out: list[Path] = []
    for d in dirs:
        if not d.is_dir():
            raise T2TError(f"{what} folder '{d}' does not exist (from {flag} or {env_var})")
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def find_files(root: Path, patterns: Sequence[str]) -> list[Path]:
    """``root`` if it is a file, else the files below it that match one of the glob ``patterns``, sorted;
    files under a folder whose name starts with ``_`` are skipped."""
    if root.is_file():
        return [root]
    found = {p for pattern in patterns for p in root.rglob(pattern)}
    return sorted(p for p in found if not any(part.startswith("_") for part in p.relative_to(root).parts[:-1]))


def suggest(name: str, known: Iterable[str], n: int = 3) -> str:
    near = difflib.get_close_matches(name, sorted(known), n=n, cutoff=0.5)
    return f"; did you mean {', '.join(near)}?" if near else ""


Item = TypeVar("Item")


def read_each(paths: Iterable[Path], read: Callable[[Path], Item]) -> tuple[list[Item], list[T2TError]]:
    """``read`` every path; the items read and the errors of the files that could not be (all of them)."""
    items: list[Item] = []
    errors: list[T2TError] = []
    for path in paths:
        try:
            items.append(read(path))
        except T2TError as exc:
            errors.append(exc)
    return items, errors


class Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def path(self) -> Path: ...


N = TypeVar("N", bound=Named)


class NamedFiles(Generic[N]):
    """Items read from files, by name: a name defined twice is an error, an unknown one gets suggestions.

    A subclass sets ``kind`` ("task") and ``listing`` (how to list the names, said after an unknown one)
    and says how a duplicate is reported (:meth:`duplicate`).
    """

    kind: ClassVar[str]
    listing: ClassVar[str]

    def __init__(self, items: Iterable[N]) -> None:
        self._items: dict[str, N] = {}
        for item in items:
            if item.name in self._items:
                raise self.duplicate(item, self._items[item.name])
            self._items[item.name] = item

    def duplicate(self, item: N, first: N) -> T2TError:
        """The error for ``item``, whose name ``first`` already has."""
        raise NotImplementedError

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[N]:
        return iter(self._items.values())

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> N:
        try:
            return self._items[name]
        except KeyError:
            raise T2TError(f"unknown {self.kind} '{name}'{suggest(name, self._items)} ({self.listing})") from None


def task_dirs(extra: Sequence[str | os.PathLike[str]] = (), include_builtin: bool = True) -> list[Path]:
    """The folders searched for task files, in order, without duplicates."""
    return search_dirs(BUILTIN_TEMPLATES if include_builtin else None, "T2T_TASK_PATH", extra, "--task-dir",
                       "task")


def find_task_files(root: Path) -> list[Path]:
    return find_files(root, ("*.jinja",))


class TaskRegistry(NamedFiles[Task]):
    """All tasks found in a list of folders (or files)."""

    kind = "task"
    listing = "list them with: python -m t2t.tasks list"

    def duplicate(self, item: Task, first: Task) -> T2TError:
        return TaskFileError(f"duplicate task name, also defined in {first.path}; rename one "
                             "(name: field or file name)", path=str(item.path), task=item.name)

    @classmethod
    def load(cls, extra_dirs: Sequence[str | os.PathLike[str]] = (), *, include_builtin: bool = True,
             paths: Sequence[str | os.PathLike[str]] | None = None,
             errors: list[T2TError] | None = None) -> TaskRegistry:
        """Load every task file; raise one error that lists every broken file.

        ``paths`` restricts loading to those files or folders (imports still resolve against every
        task folder). With an ``errors`` list, broken files are appended to it and the registry holds
        the good ones (``check`` reports them all and still checks the rest).
        """
        collect = errors is not None
        roots = task_dirs(extra_dirs, include_builtin)
        targets = [Path(p) for p in paths] if paths is not None else roots
        # The built-in folder stays on the import path so user tasks can import its _lib macros.
        builtin = [BUILTIN_TEMPLATES] if BUILTIN_TEMPLATES.is_dir() else []
        search_path = list(roots) + [t if t.is_dir() else t.parent for t in targets] + builtin
        env = T2TSandbox(search_path)
        tasks: list[Task] = []
        errors = errors if errors is not None else []
        for target in targets:
            if not target.exists():
                errors.append(T2TError(f"{target}: no such file or folder"))
                continue
            read, failed = read_each(find_task_files(target), lambda path: Task(path, env))
            tasks += read
            errors += failed
        try:
            registry = cls(tasks)
        except T2TError as exc:
            errors.append(exc)
            registry = cls([])
        if errors and not collect:
            raise errors[0] if len(errors) == 1 else TaskFilesError(errors)
        return registry

    def clusters(self) -> list[str]:
        return sorted({t.cluster for t in self})

    def by_cluster(self, cluster: str) -> list[Task]:
        tasks = [t for t in self if t.cluster == cluster]
        if not tasks:
            raise T2TError(f"unknown cluster '{cluster}'{suggest(cluster, self.clusters())} "
                           f"(clusters: {', '.join(self.clusters())})")
        return sorted(tasks, key=lambda t: t.name)
