"""t2t: text-to-text instruction tuning in the T5/FLAN style.

Task files -> rows -> rendered text -> mixture stream -> tokens -> packed batches -> model -> adapter
-> evaluation report. Importing the package registers nothing and loads nothing.
"""

__version__ = "0.1.0"
