"""Finetune checks every training row against its templates before the first step (issue #25 part 6): a
row the stream would not draw for thousands of steps still fails at once, naming file, task, row and field;
huge sources are bounded by rows per task and by seconds (t2t.mixtures.rowcheck). A row is rendered when
its fields and types are new for its task, so the check costs one render per shape."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from t2t.errors import T2TError
from t2t.mixtures.rowcheck import check_training_rows
from t2t.mixtures.stream import build_stream
from t2t.training.config import build_config
from t2t.training.recipe import train

ROWS = 600
BAD = 517  # far past what 1 step of 2 examples draws


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    tasks, mixtures = tmp_path / "tasks", tmp_path / "mixtures"
    tasks.mkdir()
    mixtures.mkdir()
    rows = [{"text": f"t{i}", "label": f"l{i}"} for i in range(ROWS)]
    del rows[BAD]["label"]
    (tasks / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "copy.jinja").write_text("---\ncluster: c1\nsource: {files: rows.jsonl}\n---\n"
                                      "{% block plain %}\n{{ text }} ||| {{ label }}\n{% endblock %}\n"
                                      "{% block upper %}\n{{ text | upper }} ||| {{ label }}\n{% endblock %}\n")
    (mixtures / "one.yaml").write_text("description: one task\ninclude: {tasks: [copy]}\n"
                                       "heldout: {tasks: [sentiment_product]}\n")
    return tasks, mixtures


def options(tasks: Path, mixtures: Path, out: Path, **extra: object) -> dict:
    return {"mixture": "one", "mixture_dir": [str(mixtures)], "task_dir": [str(tasks)], "output_dir": str(out),
            "max_steps": 1, "batch_size": 2, "eval_steps": 0, "progress": False, **extra}


def test_a_row_the_stream_would_not_draw_yet_fails_before_training(folders: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    tasks, mixtures = folders
    out = tmp_path / "run"
    with pytest.raises(T2TError) as info:
        train(build_config(options(tasks, mixtures, out)))
    message = str(info.value)
    assert message.startswith(f"{tasks / 'copy.jinja'}:")
    assert f"task 'copy', template 'plain', row {BAD}, field 'label'" in message
    assert "\n" not in message
    assert not out.exists()  # found before the output folder was touched


def test_the_check_is_bounded_by_rows_and_by_seconds(folders: tuple[Path, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    tasks, mixtures = folders
    # Rows per task: the first 500 are good, so the run trains; the log says how many were checked.
    train(build_config(options(tasks, mixtures, tmp_path / "run", check_rows=500)))
    assert f"checked the fields of 500 of {ROWS} training rows of 1 task(s)" in capsys.readouterr().out
    # Seconds: a clock that advances one second per row read stops the check after the budget.
    stream = build_stream("one", seed=0, task_dirs=[str(tasks)], mixture_dirs=[str(mixtures)])
    ticks = itertools.count()
    done = check_training_rows(stream, ROWS, seconds=100, clock=lambda: float(next(ticks)))
    assert (done.checked, done.total, done.timed_out) == (100, ROWS, True)
    assert done.rendered == 1  # every row so far has the same fields and types: one rendered
    assert "--check-seconds 100 ran out" in done.summary(100)
    with pytest.raises(T2TError, match=f"row {BAD}, field 'label'"):
        check_training_rows(stream, ROWS, seconds=1e9)
