"""What seq2seq scoring (:mod:`t2t.evaluation.scoring`) and causal scoring (:mod:`t2t.evaluation.causal_scoring`)
share: a choice's score, the checks on a request, and the batching.

It sits below both, so that ``scoring`` (which hands a decoder-only model to ``causal_scoring``) and
``causal_scoring`` (which returns the same :class:`ChoiceScore` and batches the same way) import it and
not each other. Batches group inputs of similar length, longest first (an out-of-memory shows at once)::

    lengths [3, 9, 5, 9], batch_size 2  ->  [1, 3], [2, 0]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from t2t.errors import T2TError


@dataclass(frozen=True)
class ChoiceScore:
    """Score of one answer choice for one input.

    ``logprob``: sum of log-probabilities of the choice's tokens (natural log); EOS included under the t2t
    convention, the delimiter instead of EOS under lm-eval's. ``num_tokens``: how many tokens were scored.
    ``num_chars``: ``len(choice)``, without the delimiter (lm-eval's ``acc_norm`` divides by the same).
    ``is_greedy``: whether greedy decoding reproduces every scored token (lm-eval's ``is_greedy``, its
    ``exact_match``); computed for causal models, ``None`` for seq2seq ones.
    """

    logprob: float
    num_tokens: int
    num_chars: int
    is_greedy: bool | None = None

    @property
    def logprob_per_char(self) -> float:
        # An empty choice has 0 characters; dividing by 1 keeps it comparable instead of failing.
        return self.logprob / max(self.num_chars, 1)

    @property
    def logprob_per_token(self) -> float:
        return self.logprob / self.num_tokens


CONVENTIONS = ("t2t", "lm-eval")


def check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise T2TError(f"--choice-scoring {convention}: unknown convention; use t2t (choice + EOS, the "
                       "default) or lm-eval (target_delimiter + choice, no EOS)")


def _check_model(model: torch.nn.Module) -> None:
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and getattr(peft_config, "is_prompt_learning", False):
        raise T2TError(
            f"scoring supports injected-layer adapters such as LoRA, not the prompt-learning adapter "
            f"'{peft_config.peft_type}'; merge it or evaluate a LoRA adapter instead."
        )


def _device_of(model: torch.nn.Module, device: torch.device | str | None) -> torch.device:
    return torch.device(device) if device is not None else next(model.parameters()).device


def _batches_by_length(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, longest first (an OOM shows up at once)."""
    if batch_size < 1:
        raise T2TError(
            f"batch_size must be at least 1, got {batch_size}; set --batch-size to a positive number."
        )
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off while scoring, and the caller's train/eval state restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _check_choices(inputs: Sequence[str], choices: Sequence[Sequence[str]]) -> None:
    if len(inputs) != len(choices):
        raise T2TError(
            f"rank classification got {len(inputs)} inputs but {len(choices)} choice lists; "
            "give one list of answer choices per input."
        )
    for i, row in enumerate(choices):
        if isinstance(row, str) or not row:
            raise T2TError(
                f"rank classification: choices[{i}] must be a non-empty list of strings, got {row!r}; "
                "check the template's answer_choices."
            )
