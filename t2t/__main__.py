"""``t2t COMMAND ...``: one console script for the module entry points (``python -m t2t.COMMAND`` each).

``t2t --help`` lists every command with the first line of its module's docstring, read from the source file
with :mod:`ast` (nothing of the command is imported, so the list costs no torch); ``t2t COMMAND --help`` is
the command's own help.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

from t2t.errors import run_cli

# command -> the module whose main(argv) runs it (and whose docstring describes it)
COMMANDS = {"tasks": "t2t.tasks.cli", "mixture": "t2t.mixture", "finetune": "t2t.finetune",
            "evaluate": "t2t.evaluate", "experiment": "t2t.experiment.cli", "predict": "t2t.predict.cli"}


def describe(module: str) -> str:
    """The first line of ``module``'s docstring without its ````python -m t2t.X``: ```` prefix."""
    spec = importlib.util.find_spec(module)  # imports the parent packages only (docstrings and light imports)
    origin = spec.origin if spec is not None else None
    doc = ast.get_docstring(ast.parse(Path(origin).read_text(encoding="utf-8"))) if origin else None
    line = (doc or "").strip().split("\n")[0]
    head, sep, rest = line.partition("``: ")
    text = rest if sep and head.startswith("``") else line
    return text[:1].upper() + text[1:]


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {describe(module)}" for name, module in COMMANDS.items()]
    return "\n".join([f"usage: t2t {{{','.join(COMMANDS)}}} [options]   (or python -m t2t.COMMAND)", "",
                      "commands:", *lines, "", "t2t COMMAND --help shows the options of one command."])


def main() -> int:
    if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
        print(usage())
        return 0
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        given = f"unknown command '{sys.argv[1]}'\n" if len(sys.argv) >= 2 else ""
        print(given + usage(), file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[sys.argv[1]])
    return run_cli(module.main, sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
