"""Importers: other formats' task definitions turned into t2t task files (and t2t tasks exported).

- :mod:`~t2t.tasks.importers.promptsource`: promptsource ``templates.yaml`` collections (T0's prompts);
- :mod:`~t2t.tasks.importers.sni`: Super-NaturalInstructions task JSON files, with their instances as
  JSON Lines data;
- :mod:`~t2t.tasks.importers.lm_eval`: lm-evaluation-harness task YAML, both ways;
- :mod:`~t2t.tasks.importers.chat_formats`: alpaca, sharegpt and OpenAI ``messages`` instruction data, with
  their rows as JSON Lines data.

They sit on top of the task core (format, sandbox, Task, the promptsource-compatible runtime in
:mod:`t2t.tasks.runtime`) and the registry: each writes a file, then loads it back through the registry
and renders it before it lands. Nothing below imports them (import-linter's ``tasks`` contract in
pyproject.toml holds it).
"""
