"""The task registry: built from task files when asked, never at import time.

Search order: the built-in ``templates/`` folder, then the folders of ``T2T_TASK_PATH``
(``os.pathsep``-separated), then each ``--task-dir``. Every ``*.jinja`` file below a folder is a task,
except files under a folder whose name starts with ``_`` (``_lib/`` holds shared macros).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

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


def task_dirs(extra: Sequence[str | os.PathLike[str]] = (), include_builtin: bool = True) -> list[Path]:
    """The folders searched for task files, in order, without duplicates."""
    return search_dirs(BUILTIN_TEMPLATES if include_builtin else None, "T2T_TASK_PATH", extra, "--task-dir",
                       "task")


def find_task_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.jinja")
                  if not any(part.startswith("_") for part in p.relative_to(root).parts[:-1]))


def suggest(name: str, known: Iterable[str], n: int = 3) -> str:
    near = difflib.get_close_matches(name, sorted(known), n=n, cutoff=0.5)
    return f"; did you mean {', '.join(near)}?" if near else ""


class TaskRegistry:
    """All tasks found in a list of folders (or files)."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self._tasks: dict[str, Task] = {}
        for task in tasks:
            if task.name in self._tasks:
                other = self._tasks[task.name]
                raise TaskFileError(f"duplicate task name, also defined in {other.path}; rename one "
                                    "(name: field or file name)", path=str(task.path), task=task.name)
            self._tasks[task.name] = task

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
            for path in find_task_files(target):
                try:
                    tasks.append(Task(path, env))
                except T2TError as exc:
                    errors.append(exc)
        try:
            registry = cls(tasks)
        except T2TError as exc:
            errors.append(exc)
            registry = cls([])
        if errors and not collect:
            raise errors[0] if len(errors) == 1 else TaskFilesError(errors)
        return registry

    def __contains__(self, name: str) -> bool:
        return name in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self):
        return iter(self._tasks.values())

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def clusters(self) -> list[str]:
        return sorted({t.cluster for t in self._tasks.values()})

    def get(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise T2TError(f"unknown task '{name}'{suggest(name, self._tasks)} "
                           "(list them with: python -m t2t.tasks list)") from None

    def by_cluster(self, cluster: str) -> list[Task]:
        tasks = [t for t in self._tasks.values() if t.cluster == cluster]
        if not tasks:
            raise T2TError(f"unknown cluster '{cluster}'{suggest(cluster, self.clusters())} "
                           f"(clusters: {', '.join(self.clusters())})")
        return sorted(tasks, key=lambda t: t.name)
