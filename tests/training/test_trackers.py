"""``--report-to``: TensorBoard, W&B (offline mode, files in the run folder) and MLflow through accelerate's
tracker classes, beside metrics.jsonl, which is always written.

wandb is in the ``test`` extra (its install took 9 s in the dev venv). mlflow is not (mlflow-skinny took 20 s
and 146 MB in a fresh venv, most of it a web stack the file store never uses): its test drives accelerate's
``MLflowTracker`` over a stand-in ``mlflow`` module that records the calls the tracker makes, so what reaches
MLflow (experiment, run name, params, metrics by step) is checked without the library."""

from __future__ import annotations

import json
import struct
import sys
import types
from pathlib import Path
from typing import Any

import accelerate.tracking  # noqa: F401 - it looks for mlflow as it is imported: before a test puts in its stand-in
import pytest

from t2t.errors import T2TError
from t2t.training.config import build_config
from t2t.training.monitor import MetricsLogger
from tests.conftest import require

CONFIG = {"model": {"model": "t2t-tiny"}, "train": {"max_steps": 3, "report_to": ["wandb"]}}


def log_three_steps(out: Path, report_to: tuple[str, ...]) -> dict[int, float]:
    """What the training loop does with its logger, three steps long; returns the losses logged."""
    from accelerate import PartialState

    PartialState(cpu=True)  # accelerate's trackers log on the main process, which this asks for
    out.mkdir(parents=True, exist_ok=True)
    logger = MetricsLogger(out, True, False, 0, 3, 1, report_to=report_to, config=CONFIG)
    for step in (1, 2, 3):
        logger.step(step, loss=1.0 / step, lr=0.1, grad_norm=None, tokens=10)
    logger.close()
    return losses(out)


def losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def wandb_records(run_file: Path) -> list[Any]:
    """The records of an offline W&B run file: a LevelDB-style log (7-byte file header, 32 KiB blocks of
    chunks with a 7-byte header: crc32, length, type FULL=1 FIRST=2 MIDDLE=3 LAST=4) of wandb's Record
    protobufs (wandb/sdk/internal/datastore.py before wandb moved its writer to Go)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, block = run_file.read_bytes(), 7, 32768
    records, pending = [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (length == 0 and kind == 0):  # the block's zero padding
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_and_tensorboard_get_the_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wandb = require("wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    logged = log_three_steps(out, ("tensorboard", "wandb"))
    wandb.teardown()  # the run file is written by wandb's service process: flushed when it shuts down
    assert sorted(logged) == [1, 2, 3]  # metrics.jsonl as always
    events = EventAccumulator(str(out / "tb")).Reload()
    assert {e.step: e.value for e in events.Scalars("train/loss")} == pytest.approx(logged)
    run_files = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1, list((out / "wandb").iterdir())
    records = wandb_records(run_files[0])
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    assert {h.get("_step"): h.get("train/loss") for h in history} == pytest.approx(logged), history
    config = {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "config"
              for i in r.config.update}
    assert config["train.max_steps"] == 3 and config["train.report_to"] == "wandb"
    assert [r.run.display_name for r in records if r.WhichOneof("record_type") == "run"] == ["run"]


class FakeMlflow(types.ModuleType):
    """What accelerate's MLflowTracker calls on ``mlflow``, recorded."""

    def __init__(self) -> None:
        super().__init__("mlflow")
        self.calls: list[tuple[str, Any]] = []
        self.utils = types.SimpleNamespace(validation=types.SimpleNamespace(MAX_PARAM_VAL_LENGTH=6000,
                                                                            MAX_PARAMS_TAGS_PER_BATCH=100))

    def search_experiments(self, filter_string: str) -> list:
        self.calls.append(("search_experiments", filter_string))
        return []

    def create_experiment(self, name: str, **kwargs: Any) -> str:
        self.calls.append(("create_experiment", name))
        return "7"

    def start_run(self, **kwargs: Any) -> object:
        self.calls.append(("start_run", kwargs))
        return object()

    def log_params(self, params: dict) -> None:
        self.calls.append(("log_params", params))

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.calls.append(("log_metrics", (step, metrics)))

    def end_run(self) -> None:
        self.calls.append(("end_run", None))


def test_mlflow_gets_params_and_metrics_through_accelerate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    out = tmp_path / "ml run"
    logged = log_three_steps(out, ("mlflow",))
    names = [name for name, _ in fake.calls]
    assert names[:3] == ["search_experiments", "create_experiment", "start_run"] and names[-1] == "end_run"
    assert fake.calls[1] == ("create_experiment", "mine")
    assert fake.calls[2][1]["run_name"] == "ml run" and fake.calls[2][1]["experiment_id"] == "7"
    params = {k: v for name, p in fake.calls if name == "log_params" for k, v in p.items()}
    assert params["train.max_steps"] == 3 and params["model.model"] == "t2t-tiny"
    metrics = {step: m["train/loss"] for name, (step, m) in ((n, c) for n, c in fake.calls if n == "log_metrics")}
    assert metrics == pytest.approx(logged)
    assert not (out / "tb").exists()  # tensorboard not asked for


def test_report_to_is_checked_and_none_keeps_only_metrics_jsonl(tmp_path: Path) -> None:
    with pytest.raises(T2TError, match="--report-to tensorboard,comet: choose from tensorboard, wandb, mlflow"):
        build_config({"report_to": "tensorboard,comet"})
    with pytest.raises(T2TError, match="or none alone"):
        build_config({"report_to": "none,wandb"})
    out = tmp_path / "quiet"
    assert sorted(log_three_steps(out, ("none",))) == [1, 2, 3] and not (out / "tb").exists()
    # (a whole run with --report-to none: tests/training/test_next_commands.py, the full fine-tuning)


def test_a_tracker_that_cannot_start_is_one_line_before_training(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMlflow()

    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("The filesystem tracking backend is in maintenance mode\nsee the docs")

    fake.start_run = refuse  # type: ignore[method-assign]
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    with pytest.raises(T2TError, match=r"^--report-to mlflow: the tracker did not start \(The filesystem tracking "
                                       r"backend is in maintenance mode\); fix its settings"):
        log_three_steps(tmp_path / "run", ("mlflow",))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
