"""Importers stage their whole result beside the target folder and swap it in (t2t.atomic.staged_files): a
failed, full-disk or killed ``--overwrite`` leaves the earlier import byte-identical, a multi-file import is all
or nothing, and a kill after the commit point is finished by the next writer of the folder."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from t2t import atomic
from t2t.atomic import recover, staged_files
from t2t.errors import run_cli
from t2t.tasks import cli
from t2t.tasks.registry import TaskRegistry

REPO = Path(__file__).resolve().parents[2]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden ones too) with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def sni_json(definition: str, n: int = 3) -> str:
    return json.dumps({"Definition": [definition], "Categories": ["Question Answering"],
                       "Positive Examples": [{"input": "2+2", "output": "4", "explanation": "sum"}],
                       "Negative Examples": [],
                       "Instances": [{"id": f"i{k}", "input": f"q {k}", "output": [f"a {k}"]} for k in range(n)]})


@pytest.fixture()
def sni_inputs(tmp_path: Path) -> tuple[list[str], list[str], Path]:
    """Two SNI tasks (v1 and v2 differ in their definitions) and the folder they import into, holding v1
    and a file of another importer."""
    paths = {}
    for version in ("v1", "v2"):
        folder = tmp_path / version
        folder.mkdir()
        for name in ("task1_a", "task2_b"):
            text = sni_json(f"Answer ({version}, {name})", 3 if version == "v1" else 4)
            (folder / f"{name}.json").write_text(text, encoding="utf-8")
        paths[version] = [str(folder / "task1_a.json"), str(folder / "task2_b.json")]
    out = tmp_path / "out"
    assert run_cli(cli.main, ["import-sni", *paths["v1"], "--out", str(out)]) == 0
    (out / "other.txt").write_text("kept", encoding="utf-8")
    return paths["v1"], paths["v2"], out


def test_staged_files_commit_all_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old", encoding="utf-8")
    (out / "stale.txt").write_text("stale", encoding="utf-8")
    with pytest.raises(RuntimeError), staged_files(out) as stage:
        atomic.write_text(stage.path("old.txt"), "new")
        atomic.write_text(stage.path("sub/new.txt"), "new")
        stage.remove("stale.txt")
        raise RuntimeError("a check failed")
    assert snapshot(out) == {"old.txt": b"old", "stale.txt": b"stale"} and leftovers(out) == []
    with staged_files(out) as stage:
        atomic.write_text(stage.path("old.txt"), "new")
        atomic.write_text(stage.path("sub/new.txt"), "new")
        stage.remove("stale.txt")
    assert snapshot(out) == {"old.txt": b"new", "sub/new.txt": b"new"} and leftovers(out) == []


# Each file is written into the stage (writes 1-4: data and task file of each task), then each is flushed at
# the commit (fsyncs 1-4), then the journal (fsync 5), whose rename is the commit point.
@pytest.mark.parametrize("failing", [("write", 1), ("write", 3), ("fsync", 2), ("fsync", 5)])
def test_overwrite_on_a_full_disk_leaves_the_earlier_import_byte_identical(
        sni_inputs: tuple[list[str], list[str], Path], failing: tuple[str, int], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, v2, out = sni_inputs
    before = snapshot(out)
    calls = {"write": 0, "fsync": 0}

    def full_disk(kind: str, real: Any) -> Any:
        def step(*args: Any) -> Any:
            calls[kind] += 1
            if (kind, calls[kind]) == failing:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args)
        return step

    monkeypatch.setattr(atomic, "fsync_file", full_disk("fsync", atomic.fsync_file))
    monkeypatch.setattr(Path, "write_bytes", full_disk("write", Path.write_bytes))
    assert run_cli(cli.main, ["import-sni", *v2, "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and "nothing was changed" in err
    assert calls[failing[0]] == failing[1]
    assert snapshot(out) == before and leftovers(out) == []


def test_multi_file_import_is_all_or_nothing_and_can_be_rerun(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "task1_good.json", tmp_path / "task2_bad.json"
    good.write_text(sni_json("Answer"), encoding="utf-8")
    bad.write_text(json.dumps({"Definition": ["x"], "Instances": "none"}), encoding="utf-8")
    out = tmp_path / "out"
    assert run_cli(cli.main, ["import-sni", str(good), str(bad), "--out", str(out)]) == 2
    assert "task2_bad.json" in capsys.readouterr().err
    assert not out.exists() and leftovers(out) == []
    bad.write_text(sni_json("Fixed"), encoding="utf-8")
    assert run_cli(cli.main, ["import-sni", str(good), str(bad), "--out", str(out)]) == 0  # no "already exists"
    assert {"task1_good.jinja", "task2_bad.jinja"} <= set(snapshot(out))


def _run_killed(script: str) -> None:
    """Run ``script`` in a fresh Python that kills itself (SIGKILL) at the point it chooses."""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


KILL_WHILE_STAGING = """
import os, signal, sys
from pathlib import Path
from t2t.tasks.importers import sni
calls = [0]
write_bytes = Path.write_bytes
def kill_on_third(self, data):
    calls[0] += 1
    if calls[0] == 3:  # the second task's data file is being staged
        os.kill(os.getpid(), signal.SIGKILL)
    return write_bytes(self, data)
Path.write_bytes = kill_on_third
sni.import_tasks(sys.argv[1:-1], sys.argv[-1], overwrite=True)
"""

KILL_WHILE_MOVING_IN = """
import os, signal, sys
from pathlib import Path
from t2t import atomic
from t2t.tasks.importers import sni
def apply_one_then_die(stage, journal):
    rel = journal["files"][0]
    os.replace(stage / atomic.NEW / rel, Path(journal["out"]) / rel)
    os.kill(os.getpid(), signal.SIGKILL)
atomic._apply = apply_one_then_die
sni.import_tasks(sys.argv[1:-1], sys.argv[-1], overwrite=True)
"""


def _argv(script: str, paths: list[str], out: Path) -> str:
    return f"import sys; sys.argv = ['x', *{paths!r}, {str(out)!r}]\n" + script


def test_a_killed_overwrite_leaves_the_earlier_import_then_reruns(
        sni_inputs: tuple[list[str], list[str], Path]) -> None:
    _, v2, out = sni_inputs
    before = snapshot(out)
    _run_killed(_argv(KILL_WHILE_STAGING, v2, out))
    assert snapshot(out) == before
    assert len(leftovers(out)) == 1  # the stage of the killed process, never committed
    # ... which a search of the folder holding out does not read as a second copy of the tasks
    assert sorted(TaskRegistry.load([out.parent], include_builtin=False).names()) == ["task1_a", "task2_b"]
    assert run_cli(cli.main, ["import-sni", *v2, "--out", str(out), "--overwrite"]) == 0
    assert leftovers(out) == [] and "(v2, task1_a)" in (out / "task1_a.jinja").read_text(encoding="utf-8")


def test_a_kill_after_the_commit_point_is_finished_by_the_next_writer(
        sni_inputs: tuple[list[str], list[str], Path], tmp_path: Path) -> None:
    _, v2, out = sni_inputs
    clean = tmp_path / "clean"
    assert run_cli(cli.main, ["import-sni", *v2, "--out", str(clean)]) == 0
    _run_killed(_argv(KILL_WHILE_MOVING_IN, v2, out))
    assert snapshot(out) != snapshot(clean) | {"other.txt": b"kept"}  # half moved in when killed
    recover(out)  # what every staged writer of the folder does first
    assert snapshot(out) == snapshot(clean) | {"other.txt": b"kept"} and leftovers(out) == []


def test_a_folder_written_by_a_running_process_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    busy = tmp_path / f".out.stage-{os.getppid()}"  # our parent: alive
    (busy / atomic.NEW).mkdir(parents=True)
    recover(out)
    assert busy.is_dir()


def _lm_eval_yaml(folder: Path, name: str, extra: str = "") -> Path:
    data = folder / "rows.jsonl"
    data.write_text(json.dumps({"q": "Is it?", "a": "yes"}) + "\n", encoding="utf-8")
    path = folder / f"{name}.yaml"
    path.write_text(f"task: {name}\ndataset_path: json\ndataset_kwargs: {{data_files: {{test: {data}}}}}\n"
                    f"test_split: test\ndoc_to_text: '{{{{q}}}}'\ndoc_to_target: a\n{extra}", encoding="utf-8")
    return path


def test_lm_eval_import_of_several_files_is_all_or_nothing(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    first = _lm_eval_yaml(tmp_path, "t4_first")
    second = _lm_eval_yaml(tmp_path, "t4_second", "output_type: loglikelihood\n")
    out = tmp_path / "out"
    args: list[Any] = ["import-lm-eval", str(first), str(second), "--cluster", "qa", "--out", str(out)]
    assert run_cli(cli.main, args) == 2
    assert "output_type" in capsys.readouterr().err and not out.exists()
    second.write_text(second.read_text(encoding="utf-8").replace("output_type: loglikelihood\n", ""),
                      encoding="utf-8")
    assert run_cli(cli.main, args) == 0
    assert sorted(snapshot(out)) == ["t4_first.jinja", "t4_second.jinja"]


def test_promptsource_import_of_several_collections_is_all_or_nothing(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from tests.tasks.test_promptsource import COLLECTION

    first, second = tmp_path / "rte.yaml", tmp_path / "cb.yaml"
    first.write_text(COLLECTION, encoding="utf-8")
    second.write_text("[", encoding="utf-8")
    out = tmp_path / "out"
    args = ["import", str(first), str(second), "--cluster", "nli", "--out", str(out)]
    assert run_cli(cli.main, args) == 2
    assert "cb.yaml" in capsys.readouterr().err and not out.exists() and leftovers(out) == []
    second.write_text(COLLECTION.replace("subset: rte", "subset: cb"), encoding="utf-8")
    assert run_cli(cli.main, args) == 0
    assert f"wrote {out / 'super_glue_rte.jinja'}" in capsys.readouterr().out
    assert sorted(snapshot(out)) == ["super_glue_cb.jinja", "super_glue_rte.jinja"] and leftovers(out) == []
    assert run_cli(cli.main, args) == 2  # a second run without --overwrite: refused, nothing changed
    assert "already exists; pass --overwrite" in capsys.readouterr().err
