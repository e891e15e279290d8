"""Stage 6: zero- and k-shot evaluation behind ``python -m t2t.evaluate``: prompts, rank classification and
generation, metrics, the report (median over templates) and paired-bootstrap intervals. Never imports
training.
"""
