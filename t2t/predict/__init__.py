"""``t2t predict``: a model (base, adapter, merged or fully fine-tuned) on new inputs, JSONL out.

:mod:`t2t.predict.cli` is the command line, :mod:`t2t.predict.inputs` reads and renders the inputs,
:mod:`t2t.predict.model` loads the model as evaluation does and predicts with evaluation's scoring.
"""
