"""User-facing errors and the command-line wrapper that turns them into exit status 2.

Every error a user can cause (a bad task file, an unknown mixture, a wrong option) is a
:class:`T2TError`. Its message names the file, task, template and field involved and says what to do.
Command-line entry points run through :func:`run_cli`, which prints such an error as one line on
stderr and exits with status 2; ``--debug`` (or ``T2T_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence


class T2TError(Exception):
    """An error caused by user input: printed as one line, exit status 2."""


class TaskFileError(T2TError):
    """A task file is malformed or a template failed on a row.

    Attributes name where it happened, so that tools can report every broken file at once.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        task: str | None = None,
        template: str | None = None,
        line: int | None = None,
        field: str | None = None,
        row: int | None = None,
    ) -> None:
        self.path, self.task, self.template, self.line, self.field = path, task, template, line, field
        self.row = row
        self.detail = message
        where = []
        if path:
            where.append(f"{path}:{line}" if line else path)
        if task:
            where.append(f"task '{task}'")
        if template:
            where.append(f"template '{template}'")
        if row is not None:
            where.append(f"row {row}")
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class TaskFilesError(T2TError):
    """Several task files failed to load; the message lists every one."""

    def __init__(self, errors: Sequence[T2TError]) -> None:
        self.errors = list(errors)
        lines = [str(e) for e in self.errors]
        head = f"{len(lines)} task file error(s): " if len(lines) > 1 else ""
        super().__init__(head + " | ".join(lines))


class Stopped(KeyboardInterrupt):
    """A run stopped on request (SIGINT, SIGTERM) after saving what it could: the message says what was
    kept and how to continue; the exit status is 128 + the signal's number."""

    def __init__(self, message: str, code: int = 130) -> None:
        super().__init__(message)
        self.code = code


def debug_requested(argv: Sequence[str] | None) -> bool:
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get("T2T_DEBUG", "") not in ("", "0")


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a command-line ``main``; user errors become one line on stderr and exit status 2."""
    try:
        return int(main(argv) or 0)
    except T2TError as exc:
        if debug_requested(argv):
            raise
        message = " ".join(str(exc).split("\n")) if not isinstance(exc, TaskFilesError) else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except Stopped as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
