"""``t2t COMMAND ...``: one console script for the module entry points."""

from __future__ import annotations

import importlib
import sys

from t2t.errors import run_cli

COMMANDS = {"tasks": "t2t.tasks.cli", "mixture": "t2t.mixture", "finetune": "t2t.finetune",
            "evaluate": "t2t.evaluate", "experiment": "t2t.experiment"}


def main() -> int:
    usage = f"usage: t2t {{{','.join(COMMANDS)}}} [options]  (or python -m t2t.COMMAND)"
    if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
        print(usage)
        return 0
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(usage, file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[sys.argv[1]])
    return run_cli(module.main, sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
