"""Stage 5: the training recipe behind ``python -m t2t.finetune`` (setup / train / save) and its config.
"""
