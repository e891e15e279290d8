"""Chain of thought (the Flan Collection's CoT submix): which tasks reason, how their answer is read back, and
the zero-shot CoT prompt.

A *CoT task* is a task file with the tag ``cot``. Every scored template of a CoT task renders a target that is
the rationale followed by the answer in FLAN's form, e.g. ``"... So the answer is 72."`` (FLAN 2022 writes its CoT
targets as ``{chain_of_thought} ... the answer is {answer}.`` or ``... The answer: {answer}.``: google-research/FLAN
``flan/v2/templates.py``, ``PATTERNS["cot_gsm8k"]`` ... ``PATTERNS["stream_aqua"]``); its ``references`` are the
bare answers and its metric is ``cot_exact_match``.

The answer of a generated text (:func:`extract_answer`), the one rule every CoT score uses:

1. find the last answer marker, case-insensitive: ``the answer is`` (also ``answer is:``), ``answer:`` (FLAN's
   ``The answer: X.``, ``Final answer: X.``, ``The final answer: X.``) or GSM8K's ``####``; take the text after it;
   with no marker, the whole text;
2. keep its first line, strip spaces, drop one trailing period.

``cot_exact_match`` (t2t/evaluation/metrics.py) compares the extracted answers of prediction and reference after
SNI normalisation (lowercase, ASCII punctuation dropped, whitespace collapsed): ``"So the answer is (C)."`` matches
``C``, ``"#### 1,000"`` matches ``1000``.

Zero-shot CoT prompting of a task without rationales (``python -m t2t.evaluate --cot``) appends
:data:`ZERO_SHOT_TRIGGER` to the input, Kojima et al. (2022)'s "Let's think step by step.", which FLAN 2022's own
CoT templates also use (``PATTERNS["cot_ecqa"]``: ``"{question} Let's think step by step:"``) and which Chung et
al. (2022, section 4.3) use for zero-shot CoT evaluation of Flan-PaLM.
"""

from __future__ import annotations

import re

COT_TAG = "cot"
ANSWER_MARKER = re.compile(r"\banswer\s+is\b\s*:?|\banswer\s*:|####", re.IGNORECASE)
ZERO_SHOT_TRIGGER = "Let's think step by step."


def is_cot_task(tags: tuple[str, ...] | list[str]) -> bool:
    """Whether a task with these tags is a CoT task (its templates reason before they answer)."""
    return COT_TAG in tags


def extract_answer(text: str) -> str:
    """The answer a (generated) CoT text gives, by the rule in this module's docstring."""
    ends = [m.end() for m in ANSWER_MARKER.finditer(text)]
    tail = text[ends[-1]:] if ends else text
    lines = tail.strip().splitlines()
    answer = lines[0].strip() if lines else ""
    return answer[:-1].rstrip() if answer.endswith(".") else answer


def zero_shot_cot_input(text: str) -> str:
    """A rendered input prompted for zero-shot CoT: the trigger on its own line after it."""
    return f"{text}\n{ZERO_SHOT_TRIGGER}"
