"""How t2t's modules import each other: no import cycle, and commands that start without the heavy libraries.

- The import graph of ``t2t``, built by grimp (import-linter's graph library) from every ``import`` statement
  in every module, function-level and ``TYPE_CHECKING`` imports included, holds no cycle: the layers contract
  in pyproject.toml keeps the stages one-way, this test keeps the modules inside a stage one-way too.
- ``import t2t`` and every command's ``--help`` load neither torch, transformers nor datasets (seconds each):
  those are imported only by the code that needs them, so a mistyped option or ``--help`` answers at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets")


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every set of modules that import each other in a ring (strongly connected components of more than one
    module, or a module that imports itself), each sorted, by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            ring = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                ring.append(top)
                if top == module:
                    break
            if len(ring) > 1 or module in graph.find_modules_directly_imported_by(module):
                cycles.append(sorted(ring))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_cycle_finder_sees_function_level_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check below would be empty if grimp skipped imports inside functions: a package whose only way
    back is a function-level import is reported, with the module that stands outside the ring left out."""
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclepkg import b\n")
    (pkg / "b.py").write_text("def late():\n    from cyclepkg import a\n    return a\n")
    (pkg / "c.py").write_text("import cyclepkg.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyclepkg", cache_dir=None)
    assert import_cycles(graph) == [["cyclepkg.a", "cyclepkg.b"]]
    (pkg / "b.py").write_text("def late():\n    return None\n")
    assert import_cycles(grimp.build_graph("cyclepkg", cache_dir=None)) == []


def test_no_import_cycle_in_t2t() -> None:
    graph = grimp.build_graph("t2t", cache_dir=None)
    assert len(graph.modules) > 50  # the whole package was read, not an empty or stale copy
    assert import_cycles(graph) == []


# Runs a command as `python -m MODULE ARGS` would, in this interpreter, then reports what it loaded.
PROBE = textwrap.dedent("""
    import json, runpy, sys
    module, args, report = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
    sys.argv = [module, *args]
    try:
        if module == "-":
            import t2t
            code = 0
        else:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
    except SystemExit as exc:
        code = exc.code
    heavy = sorted(name for name in {heavy} if name in sys.modules)
    with open(report, "w") as f:
        json.dump({{"code": code, "heavy": heavy}}, f)
""").format(heavy=repr(HEAVY))

NAMES = ("finetune", "evaluate", "experiment", "mixture", "tasks", "predict")
# `t2t NAME --help` goes through the console script's dispatch table (t2t/__main__.py) as well.
COMMANDS = [("-", []), ("t2t", ["--help"])] + [(f"t2t.{name}", ["--help"]) for name in NAMES] + [
    ("t2t", [name, "--help"]) for name in NAMES]


@pytest.mark.parametrize(("module", "args"), COMMANDS, ids=[" ".join([m, *a]) for m, a in COMMANDS])
def test_startup_loads_no_heavy_library(module: str, args: list[str], tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-c", PROBE, module, *args, str(report)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(report.read_text())
    assert result["code"] in (0, None), done.stdout + done.stderr
    if args:
        assert "usage" in done.stdout.lower()  # the help was printed, not an error
    assert result["heavy"] == [], f"{module} {' '.join(args)} imported {result['heavy']}"
