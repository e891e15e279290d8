"""python -m t2t.evaluate under faults (issue #16): a damaged adapter is one line naming the file before any
model is scored; a read-only output folder is found before scoring; a full disk while writing the report
is one message and leaves the earlier report whole."""

from __future__ import annotations

import builtins
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t2t.errors import T2TError
from t2t.evaluation.report import Score, summarize
from t2t.evaluation.runner import EvalResult, write_outputs
from t2t.outputs import PROBE_BYTES, check_output_dir, human_bytes

REPO = Path(__file__).resolve().parents[2]


def result(value: float) -> EvalResult:
    report = summarize([Score("base", "t", "a", "acc", value)], clusters={"t": "c"})
    settings = {"num_shots": 0, "split": "validation", "limit": 4, "seed": 0}
    return EvalResult(report, {"base": "base"}, {"t": {}}, settings)


def deny(monkeypatch: pytest.MonkeyPatch, folder: Path, code: int, only: str = "") -> None:
    """Opening a file (named with ``only``) for writing in ``folder`` fails with ``code`` (root ignores
    chmod, so: patched)."""
    real_open, real_os_open = builtins.open, os.open

    def refuse(path: object) -> None:
        if Path(str(path)).parent == folder and only in Path(str(path)).name:
            raise OSError(code, os.strerror(code), str(path))

    def fake_open(file, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)


def test_a_full_disk_while_writing_the_report_keeps_the_earlier_one(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "eval"
    write_outputs(result(50.0), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"report.md", "results.json", "report.png"} <= set(before)
    for only in ("report", "results"):  # the first file staged, or a later one: nothing is replaced
        deny(monkeypatch, out, errno.ENOSPC, only)
        with pytest.raises(T2TError) as info:
            write_outputs(result(75.0), out)
        monkeypatch.undo()
        message = str(info.value)
        assert message.startswith(f"--output-dir {out}: cannot write the report (No space left on device: needs "
                                  "about "), message
        assert f" free in {out}, " in message and "earlier results there are unchanged" in message
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # whole, old, no staged leftovers
    write_outputs(result(75.0), out)
    assert json.loads((out / "results.json").read_text())["overall"]["base"]["mean"] == 75.0


def test_a_read_only_output_folder_is_refused_before_scoring(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    deny(monkeypatch, out, errno.EROFS)
    with pytest.raises(T2TError, match=f"--output-dir {out} is not writable \\(Read-only file system\\)"):
        check_output_dir(out, overwrite=False)


def test_an_output_folder_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(T2TError, match="is a file, not a folder"):
        check_output_dir(blocker, overwrite=False)
    with pytest.raises(T2TError, match="cannot create it in"):
        check_output_dir(blocker / "eval", overwrite=False)


@pytest.mark.parametrize("damage", ["truncated", "not_json"])
def test_evaluate_with_a_damaged_adapter_is_one_line_naming_the_file(tmp_path: Path, damage: str) -> None:
    import torch

    from t2t.modeling.loading import apply_lora, load_model, load_tokenizer, resolve_model
    from t2t.training.recipe import save_final

    tiny = resolve_model("t2t-tiny")
    adapter = tmp_path / "run" / "adapter"
    torch.manual_seed(0)
    save_final(apply_lora(load_model(tiny), r=2, alpha=4, dropout=0.0), load_tokenizer(tiny), adapter)
    if damage == "truncated":
        damaged = adapter / "adapter_model.safetensors"
        damaged.write_bytes(damaged.read_bytes()[:1000])
    else:
        damaged = adapter / "adapter_config.json"
        damaged.write_text("{'not': json")
    done = subprocess.run([sys.executable, "-m", "t2t.evaluate", "--adapter", str(adapter), "--tasks",
                           "sentiment_restaurant", "--limit", "4", "--output-dir", str(tmp_path / "eval")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: --adapter {adapter}: {damaged} ")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "eval").exists()


def test_a_full_disk_at_the_write_probe_leaves_no_probe_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe file is created, then its write fails (a full disk fails at write or flush, not at open):
    one line naming the folder and the space needed, and the probe is removed, not left behind."""
    out = tmp_path / "full"
    out.mkdir()
    real_open = builtins.open

    class FullFile:
        def __init__(self, f) -> None:
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.f.close()

        def write(self, data) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return FullFile(f) if Path(str(file)).parent == out and "w" in mode else f

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(T2TError) as info:
        check_output_dir(out, overwrite=False)
    monkeypatch.undo()
    assert str(info.value).startswith(f"--output-dir {out} is not writable (No space left on device: needs about "
                                      f"{human_bytes(PROBE_BYTES)} free in {out}, ")
    assert list(out.iterdir()) == []
