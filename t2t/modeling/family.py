"""The one model-family switch: seq2seq (encoder-decoder) or causal (decoder-only).

The family comes from the model's config, ``config.is_encoder_decoder``, as in transformers itself. The
rest of the flow asks this module instead of testing model classes: the feature layout
(:mod:`t2t.data.causal` or :mod:`t2t.data.tokens`), the loss (:mod:`t2t.modeling.loss`), the LoRA task
type, and the scoring rule (:mod:`t2t.evaluation.scoring`) all follow from :func:`model_family`.
"""

from __future__ import annotations

from typing import Any, Literal

from t2t.modeling.architecture import unwrap_model

Family = Literal["seq2seq", "causal"]
FAMILIES: tuple[Family, ...] = ("seq2seq", "causal")


def model_family(model_or_config: Any) -> Family:
    """``"seq2seq"`` for encoder-decoder models (T5, BART, a BERT encoder-decoder), else ``"causal"``.

    Accepts a model (plain, peft, DDP or compiled) or its config.
    """
    config = getattr(unwrap_model(model_or_config), "config", model_or_config)
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def is_causal(model_or_config: Any) -> bool:
    return model_family(model_or_config) == "causal"
