"""t2t.data.batches: one step's micro-batches as a pure function of the step number, sent whole from workers."""

from __future__ import annotations

import pickle

import pytest
import torch

from t2t.data.batches import Batcher, StepBatches, StepDataset, auto_workers, step_loader
from t2t.training.config import build_config


@pytest.fixture(scope="module")
def steps() -> StepDataset:
    from t2t.mixtures.stream import build_stream
    from t2t.modeling.loading import load_tokenizer, resolve_model

    batcher = Batcher(load_tokenizer(resolve_model("t2t-tiny")), build_config({"micro_batch_tokens": 256}).data, 0)
    return StepDataset(build_stream("offline", seed=3), batcher, batch_size=16, grad_accum=2, rank=0, world=1)


def test_step_batches_travel_between_processes_unchanged() -> None:
    sb = StepBatches([{"a": torch.arange(6).view(2, 3), "m": torch.tensor([[True, False]])},
                      {"a": torch.tensor([[-100, 7]])}], global_tokens=9)
    back = pickle.loads(pickle.dumps(sb))
    assert back.global_tokens == 9 and back.error is None and len(back.batches) == 2
    for mine, theirs in zip(sb.batches, back.batches, strict=True):
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert theirs[key].dtype == mine[key].dtype and torch.equal(theirs[key], mine[key])
    floats = pickle.loads(pickle.dumps(StepBatches([{"w": torch.tensor([0.5, 1e-8])}], 1)))
    assert torch.equal(floats.batches[0]["w"], torch.tensor([0.5, 1e-8]))
    empty = pickle.loads(pickle.dumps(StepBatches([], 0, error="the stream ended")))
    assert empty.batches == [] and empty.error == "the stream ended"


def test_a_step_is_a_pure_function_of_its_number(steps: StepDataset) -> None:
    first, again = steps[5], steps[5]
    assert first.error is None and len(first.batches) > 1  # the 256-token budget cuts several micro-batches
    for a, b in zip(first.batches, again.batches, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.global_tokens == sum(int((b["labels"] >= 0).sum()) for b in first.batches)
    loaded = list(step_loader(steps, 4, 7, workers=2))
    assert len(loaded) == 3
    for a, b in zip(loaded[1].batches, first.batches, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_processes_split_the_global_batch(steps: StepDataset) -> None:
    """Two ranks take disjoint halves whose target tokens add up to the whole global batch."""
    labels = []
    for rank in (0, 1):
        mine = StepDataset(steps.stream, steps.batcher, 16, 1, rank, 2)[5]
        assert mine.global_tokens == steps[5].global_tokens
        labels.append(sum(int((b["labels"] >= 0).sum()) for b in mine.batches))
    assert labels[0] > 0 and labels[1] > 0 and sum(labels) == steps[5].global_tokens


def test_auto_workers() -> None:
    assert auto_workers(3, on_gpu=False) == 3
    assert auto_workers(-1, on_gpu=False) == 0
    assert 1 <= auto_workers(-1, on_gpu=True) <= 4
