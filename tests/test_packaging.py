"""The package as users get it: built into a wheel, installed elsewhere, run from another folder; and the
layers contract that keeps the data flow one-way."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from t2t.__main__ import COMMANDS
from t2t.mixtures.spec import MixtureRegistry
from t2t.tasks.registry import TaskRegistry

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel built from the tracked files, installed into a folder of its own (no dependencies)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], capture_output=True, cwd=REPO, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    run("-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(src),
        cwd=root)
    wheel = next((root / "dist").glob("t2t-*.whl"))
    site = root / "site"
    run("-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel), cwd=root)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("T2T_TASK_PATH", None)
    env.pop("T2T_MIXTURE_PATH", None)
    return {"wheel": wheel, "site": site, "cwd": elsewhere, "env": env}  # type: ignore[dict-item]


def test_the_wheel_carries_every_builtin_task_file_and_mixture(installed: dict) -> None:
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for folder in ("templates", "task_registry"):
        for path in (REPO / folder).rglob("*"):
            if path.is_file():
                assert f"t2t/_builtin/{folder}/{path.relative_to(REPO / folder).as_posix()}" in names, path


def test_installed_elsewhere_it_lists_the_checkouts_tasks_and_mixtures(installed: dict) -> None:
    where = run("-c", "import t2t, t2t.builtin as b; print(t2t.__file__); print(b.builtin_dir('templates'))",
                cwd=installed["cwd"], env=installed["env"]).stdout.split()
    assert all(Path(p).is_relative_to(installed["site"]) for p in where), where  # not the checkout
    tasks = json.loads(run("-m", "t2t.tasks", "list", "--json", cwd=installed["cwd"], env=installed["env"]).stdout)
    assert sorted(t["name"] for t in tasks) == sorted(TaskRegistry.load().names())
    mixtures = json.loads(run("-m", "t2t.mixture", "list", "--json", cwd=installed["cwd"],
                              env=installed["env"]).stdout)
    assert sorted(m["name"] for m in mixtures) == sorted(MixtureRegistry.load().names())


def test_installed_elsewhere_it_runs_the_demo(installed: dict) -> None:
    run("-m", "t2t.finetune", "--max-steps", "2", "--batch-size", "4", "--eval-steps", "0", "--save-steps", "0",
        "--no-progress", "--output-dir", "demo", cwd=installed["cwd"], env=installed["env"])
    assert (installed["cwd"] / "demo" / "adapter" / "adapter_model.safetensors").is_file()
    manifest = json.loads((installed["cwd"] / "demo" / "manifest.json").read_text())
    assert manifest["mixture"] == "offline" and manifest["heldout"]["tasks"]


def test_the_console_script_of_the_wheel_in_a_fresh_venv_runs_every_command(installed: dict, tmp_path: Path) -> None:
    """``pip install`` of the wheel into a new venv gives a ``t2t`` script whose ``--help`` describes every command
    in a line and whose ``t2t COMMAND --help`` answers for each (the script once crashed on ``t2t tasks``)."""
    venv = tmp_path / "venv"
    run("-m", "venv", "--system-site-packages", "--without-pip", str(venv), cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # --system-site-packages reaches the base interpreter's packages, not those of a venv that runs the tests:
    # a .pth file appends this environment's site-packages (pyyaml, jinja2, torch...) after the venv's own, so
    # the wheel's t2t is found first and nothing is reinstalled (a .pth in an appended folder, such as an
    # editable install's, is not run).
    Path(purelib, "t2t_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run("-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(installed["wheel"]), cwd=tmp_path)
    env = {k: v for k, v in installed["env"].items() if k != "PYTHONPATH"}
    script = str(venv / "bin" / "t2t")
    calls = [[script, "--help"]] + [[script, name, "--help"] for name in COMMANDS] + [
        [str(python), "-c", "import t2t; print(t2t.__file__)"]]
    running = [subprocess.Popen(c, cwd=installed["cwd"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for c in calls]  # side by side: each is a second of imports
    done = [(p.communicate(timeout=300), p.returncode) for p in running]
    for call, ((out, err), code) in zip(calls, done, strict=True):
        assert code == 0 and "usage" in (out.lower() if call[-1] == "--help" else "usage"), \
            f"{' '.join(call[1:])}: {err[-2000:]}"
    assert Path(done[-1][0][0].strip()).is_relative_to(venv), done[-1][0][0]  # the wheel's t2t, not the checkout
    listing = done[0][0][0]
    for name in COMMANDS:
        line = next((x for x in listing.splitlines() if x.split()[:1] == [name]), "")
        assert len(line.split()) > 3, (name, listing)  # the command and a few words on what it does
    for name, ((out, _), _) in zip(COMMANDS, done[1:], strict=False):
        # that command's own parser answered, named as the user called it (not python -m t2t.COMMAND)
        assert out.startswith(f"usage: t2t {name} "), (name, out[:300])


def test_every_module_sits_in_a_layer_of_the_contract() -> None:
    """A new package or module outside the layers would escape the one-way-flow check."""
    contract = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    layered = {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    package = REPO / "t2t"
    modules = {f"t2t.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {f"t2t.{p.name}" for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert modules == layered, (modules - layered, layered - modules)


def test_every_tasks_module_sits_in_a_layer_of_the_tasks_contract() -> None:
    """Inside t2t.tasks too: a module outside the layers could import an importer from the task core."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    contract = next(c for c in contracts if c.get("containers") == ["t2t.tasks"])
    names = [name.strip() for layer in contract["layers"] for name in layer.split("|")]
    required = {n for n in names if not n.startswith("(")}  # "(name)": a layer that may be absent
    package = REPO / "t2t" / "tasks"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert modules <= {n.strip("()") for n in names}, modules - {n.strip("()") for n in names}
    assert required <= modules, required - modules


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], capture_output=True,
                          text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)


def test_the_layers_contract_holds_and_catches_an_upward_import(tmp_path: Path) -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0 and "2 kept, 0 broken" in done.stdout, done.stdout[-3000:]
    # the same tree with one upward import (a task module reaching into training) is refused
    shutil.copytree(REPO / "t2t", tmp_path / "t2t", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    task = tmp_path / "t2t" / "tasks" / "task.py"
    task.write_text(task.read_text() + "\nimport t2t.training.recipe  # noqa: E402\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0 and "t2t.tasks is not allowed to import t2t.training" in done.stdout, done.stdout
    # inside t2t.tasks: the task core reaching up into an importer is refused as well
    task.write_text(task.read_text().replace("\nimport t2t.training.recipe  # noqa: E402\n",
                                             "\nimport t2t.tasks.importers.promptsource  # noqa: E402\n"))
    done = lint_imports(tmp_path)
    assert done.returncode != 0 and "1 kept, 1 broken" in done.stdout, done.stdout[-3000:]
    assert "t2t.tasks.task is not allowed to import t2t.tasks.importers" in done.stdout, done.stdout[-3000:]
