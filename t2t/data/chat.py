"""Rendering an (input, target) pair through a tokenizer's chat template, the same at training and evaluation.

With ``--chat-template`` a decoder-only model sees each example as one conversation: the rendered input is
the user turn, the target is the assistant turn. The prompt is the conversation up to and including the
template's generation prompt (``add_generation_prompt=True``); the completion is what the full
conversation adds after it (the target, then whatever the template closes the turn with, e.g.
``<|im_end|>\\n``). Training puts the loss on the completion only; evaluation scores or generates after
the prompt. Both call :func:`chat_prompt`, so the two can never drift apart.

The texts come back untokenized; they already hold the template's special tokens (BOS, turn markers), so
they are encoded with ``add_special_tokens=False`` (BOS exactly once: a chat template's BOS plus the
tokenizer's own would be the double-BOS bug of OpenRLHF #393 and sglang #888).
"""

from __future__ import annotations

from typing import Any

from t2t.errors import T2TError


def _check(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise T2TError(f"--chat-template: the tokenizer of {name!r} has no chat template; train and evaluate "
                       "this model on plain text (leave --chat-template off), or use an instruct model")


def chat_prompt(tokenizer: Any, input_text: str) -> str:
    """The conversation with ``input_text`` as the user turn, ending where the assistant's answer starts."""
    _check(tokenizer)
    return tokenizer.apply_chat_template([{"role": "user", "content": input_text}], tokenize=False,
                                         add_generation_prompt=True)


def chat_pair(tokenizer: Any, input_text: str, target_text: str) -> tuple[str, str]:
    """``(prompt, completion)``: :func:`chat_prompt` and the text the assistant turn adds after it.

    Raises a one-line error if the template does not render the prompt as a prefix of the whole
    conversation (then no exact prompt/answer boundary exists).
    """
    prompt = chat_prompt(tokenizer, input_text)
    full = tokenizer.apply_chat_template([{"role": "user", "content": input_text},
                                          {"role": "assistant", "content": target_text}], tokenize=False)
    if not full.startswith(prompt):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise T2TError(f"--chat-template: the chat template of {name!r} does not render the prompt as a "
                       "prefix of the conversation with the answer, so the answer's tokens cannot be found; "
                       "train without --chat-template")
    return prompt, full[len(prompt):]
