"""Stage 3: rendered examples -> token ids -> packed micro-batches for one optimiser step.
"""
