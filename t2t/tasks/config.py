"""The config of ``python -m t2t.tasks``: the options its subcommands share.

Every subcommand that reads the task registry (``list``, ``show``, ``render``, ``check``,
``export-lm-eval``) takes ``--task-dir`` through :class:`TasksConfig`, built by :mod:`t2t.config` like
every command's config (defaults < ``--config`` YAML < flags); ``--save-config FILE`` writes it for
``--config`` to read back. The other options are the invocation itself (the task to show, the files to
import, the folder to write) rather than settings to reproduce, and what the importers and the exporter
write is its own record; ``export-lm-eval`` could not hold a ``config.yaml`` anyway (lm-eval reads every
YAML file in an ``--include_path`` folder as a task).
"""

from __future__ import annotations

from dataclasses import dataclass, field

COMMAND = "t2t.tasks"


@dataclass(frozen=True)
class RegistryOptions:
    task_dir: tuple[str, ...] = field(default=(), metadata={
        "help": "extra folder of task files (repeatable; also T2T_TASK_PATH)", "metavar": "DIR", "shown": "none"})


@dataclass(frozen=True)
class TasksConfig:
    registry: RegistryOptions = field(default_factory=RegistryOptions)
