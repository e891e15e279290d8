"""``python -m t2t.evaluate``: zero- or k-shot evaluation of a base model and its adapters, side by side.

Which tasks (one of):

* ``--tasks a,b`` and/or ``--clusters c,d``;
* ``--mixture M [--heldout C,...]``: the held-out part of mixture M (disjoint from its training tasks);
* nothing: the held-out tasks recorded in the first adapter's run (``<run>/manifest.json`` beside
  ``<run>/adapter``), as ``python -m t2t.finetune`` wrote them.

With no arguments at all it evaluates ``--model t2t-tiny`` and, if the offline demo ran,
``--adapter runs/offline-demo/adapter`` on its held-out tasks (else the ``offline`` mixture's).
An adapter whose run trained on a selected task (or on its source dataset) is refused, since its score
would not be held-out, unless ``--allow-train-tasks``; the report then names those tasks. The base model
and its ``--revision`` default to the adapter run's; another revision than the one the adapter was trained
on is refused unless ``--allow-revision-mismatch`` (:mod:`t2t.evaluation.selection`).

How each example is scored (sources in docs/references.md, "Scoring"):

* tasks with answer choices: rank classification (:func:`t2t.evaluation.scoring.score_choices`), reported as
  ``acc`` (argmax of the summed log-probability, T0) and ``acc_norm`` (per character, lm-eval);
* other tasks: greedy (or ``--num-beams``) generation with ``--max-new-tokens`` (default per task: the
  longest reference in tokens + 8), scored with the task file's ``metrics``.

Only the non-inverted templates are scored; a task's result is the median over templates with the
spread, a cluster's the mean of its task medians (:mod:`t2t.evaluation.report`); each adapter's deltas get a 95%
interval from a paired bootstrap over the evaluated rows (``--bootstrap N``, :mod:`t2t.evaluation.significance`).
``--contamination`` also scores apart the rows that share a 13-gram with the mixture's training rows and the
others, GPT-3's clean/dirty split (:mod:`t2t.evaluation.contamination`).
``--limit N`` takes the first N rows of the split. ``--num-shots K`` prepends K exemplars from the train
split, FLAN style (``x + "\\n\\n" + y``, joined and followed by ``"\\n\\n\\n"``), drawn per example from
``--seed``, never the example itself; when the prompt exceeds ``--max-input-len`` the farthest exemplars
are dropped (:mod:`t2t.evaluation.prompts`).

The base model is loaded once; adapters are loaded onto it one after another with peft.
Outputs in ``--output-dir`` (default ``<run>/eval`` for a t2t.finetune run, ``<adapter>/eval`` for
another adapter, else ``runs/eval``): ``report.md`` (also printed), ``results.json`` (config, library
versions, per-template scores, aggregates, and per-example predictions with ``--log-samples``),
``report.png`` and ``config.yaml``, the resolved options (``--config`` it to run the same evaluation
again). A folder that already holds results is refused unless ``--overwrite``.

Options: defaults < ``--config`` YAML (flat keys, or under model/tasks/scoring/output) < flags; lists
are comma-separated and repeatable; a yes/no option is given bare (``--log-samples``), with a value
(``--log-samples false``) or negated (``--no-progress``).

    python -m t2t.evaluate --adapter runs/offline-demo/adapter
    python -m t2t.evaluate --model google/flan-t5-base --tasks rte,copa --num-shots 2 --limit 200
    python -m t2t.evaluate --adapter base-lr3=runs/a/adapter --adapter runs/b/adapter --mixture offline
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from t2t import config as configs
from t2t.errors import run_cli
from t2t.evaluation import contamination
from t2t.evaluation.adapter_runs import check_not_trained, read_adapter
from t2t.evaluation.config import COMMAND, EvaluateConfig, add_arguments, config_from_args, parse_bool_flags
from t2t.evaluation.runner import OUTPUT_FILES, evaluate, write_outputs
from t2t.evaluation.selection import resolve_from_runs, select_tasks
from t2t.modeling.config import DEFAULT_MODEL
from t2t.outputs import check_output_dir

DEMO_ADAPTER = Path("runs/offline-demo/adapter")
DEMO_MIXTURE = "offline"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=configs.program("t2t.evaluate"), formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Zero- or k-shot evaluation of a base model and its adapters, side by side.",
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    add_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return p


def demo_config(cfg: EvaluateConfig) -> EvaluateConfig:
    """No options at all: the offline demo's adapter on its held-out tasks, else the base on the offline
    mixture's."""
    if DEMO_ADAPTER.is_dir():
        print(f"no options: evaluating --model {DEFAULT_MODEL} --adapter {DEMO_ADAPTER} on its held-out "
              "tasks", file=sys.stderr)
        return cfg.override(adapter=[str(DEMO_ADAPTER)])
    print(f"no options: evaluating --model {DEFAULT_MODEL} --mixture {DEMO_MIXTURE} (base only; no "
          f"adapter at {DEMO_ADAPTER}: run python -m t2t.finetune first)", file=sys.stderr)
    return cfg.override(mixture=DEMO_MIXTURE)


def model_alone_note(model: str | None) -> str:
    """What an evaluation without ``--adapter`` scores, in words: the base model only, or (a t2t.finetune
    run's ``model/`` or ``merged/``) the tuned model itself."""
    path = Path(str(model))
    if path.name in ("model", "merged") and (path.parent / "config.json").is_file():
        kind = "fully fine-tuned" if path.name == "model" else "merged (base + adapter)"
        return f"no --adapter: scoring the {kind} model {model} of run {path.parent} on its own"
    return (f"no --adapter: scoring the base model {model} only, with no fine-tuning; to score an adapter add "
            "--adapter RUN/adapter (the folder python -m t2t.finetune printed)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = configs.parse_args(build_parser(), parse_bool_flags(argv), COMMAND)
    cfg = config_from_args(args)
    if not argv:
        cfg = demo_config(cfg)
    runs = [read_adapter(spec) for spec in cfg.model.adapter]
    cfg = resolve_from_runs(cfg, runs)
    out = Path(cfg.output.output_dir)
    check_output_dir(out, OUTPUT_FILES, cfg.output.overwrite)  # before any model is loaded

    import datasets

    datasets.disable_progress_bars()
    tasks, chosen = select_tasks(cfg, runs)
    trained = check_not_trained(tasks, runs, cfg.tasks.allow_train_tasks)
    overlap = contamination.check_tasks(cfg, tasks, chosen, runs) if cfg.tasks.contamination else None
    alone = model_alone_note(cfg.model.model) if not runs else None
    if alone:
        print(f"note: {alone}", file=sys.stderr)  # first, before progress bars scroll it away
    print(f"evaluating {cfg.model.model}" + "".join(f" + {r.label} ({r.path})" for r in runs)
          + f" on {len(tasks)} task(s): {', '.join(t.name for t in tasks)}", file=sys.stderr)
    result = evaluate(cfg, tasks, {r.label: r.path for r in runs})
    result.notes += [alone] if alone else []
    result.settings["selection"] = chosen
    if overlap is not None:  # scores on clean and dirty rows apart (GPT-3 appendix C)
        scores = contamination.split_scores(result.examples, overlap.dirty(), result.report.primary)
        result.contamination = contamination.as_dict(overlap, scores)
        result.contamination_markdown = contamination.render_markdown(overlap, scores)
    result.settings["argv"] = argv
    result.notes += [f"{label} was trained on {', '.join(names)}: not held-out" for label, names in trained.items()]
    paths = write_outputs(result, out)  # the four files renamed into place together, at the end
    print(result.markdown())
    print(f"wrote {', '.join(map(str, paths.values()))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
