"""Stage 1: task files -> rows -> rendered examples.

A task is one Jinja file (YAML front matter + named template blocks, :mod:`t2t.tasks.taskfile`)
compiled in a sandbox (:mod:`t2t.tasks.sandbox`) into a :class:`t2t.tasks.task.Task` that renders a row into
an :class:`t2t.tasks.task.Example` (``input ||| target``); a file imported from promptsource renders in
promptsource's dialect (:mod:`t2t.tasks.runtime`). The registry finds task files in folders, sources load a
split's rows (hub, local files, built-in generators), and the importers (:mod:`t2t.tasks.importers`) turn
promptsource, Super-NaturalInstructions and lm-evaluation-harness files into task files, on top of the rest
(import-linter's ``tasks`` contract in pyproject.toml). ``python -m t2t.tasks`` lists, renders and checks them.
"""
