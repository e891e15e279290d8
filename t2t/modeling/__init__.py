"""Stage 4: the model: loading (hub, local, the offline bases), LoRA targets per architecture, the packed
loss summed per token, checkpoints and the integrity checks of what is loaded.
"""
