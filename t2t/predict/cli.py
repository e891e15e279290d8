"""``python -m t2t.predict``: try a model on new inputs: generated text, or ranked answer choices, as JSONL.

The model: ``--model`` (a base, a merged or fully fine-tuned model folder, or a t2t run folder) and/or
``--adapter`` (a peft adapter folder, or the t2t.finetune run folder holding it; the run's base model,
revision, chat template and target delimiter are its defaults, as in t2t.evaluate). The inputs: ``--input
TEXT`` (repeatable; ``-``: stdin lines), ``--input-file FILE.jsonl`` (``{"input": ...}`` per line, or a
task's row fields with ``--task``; ``-``: stdin), or text piped on stdin. ``--task NAME [--template T]``
renders each row as training and evaluation render it.

Each input is answered by greedy (or ``--num-beams``) generation, at most ``--max-new-tokens``, or sampled
with ``--do-sample`` (``--temperature``, ``--top-p``, ``--top-k``; ``--seed``, default 0, makes a run
repeatable; ``--repetition-penalty`` for every mode), ``--num-return-sequences`` outputs each; generation
stops at EOS or the first ``--stop`` string (a decoder-only model's default: a blank line). With answer
choices (``--choices "a|||b"``, a row's ``choices`` list, or the task's) it is rank-classified instead: every
choice's log-likelihood (``--choice-scoring t2t`` or ``lm-eval``, as t2t.evaluate scores them), the best by
sum (``prediction``) and per character (``prediction_norm``). One JSON line per input on stdout or in
``--output FILE`` (written whole at the end; an existing file is kept unless ``--overwrite``): ``input``,
``prediction`` (and ``predictions``, all N outputs, and the ``seed`` of a sampled run) and, for choices,
``choices``, ``logprobs``, ``prediction_norm``; with ``--task`` also the task, template and row (and
``target`` when the row holds the answer). Usage and examples: docs/predict.md.

    python -m t2t.predict --adapter runs/offline-demo --input "What is 3 plus 4?"
    python -m t2t.predict --adapter runs/offline-demo --task sentiment_movie --input '{"text": "a dull film"}'
    echo "Is the sky blue?" | python -m t2t.predict --model smollm2-135m --choices "yes|||no"
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from t2t import config as configs
from t2t.atomic import write_text
from t2t.errors import T2TError, run_cli
from t2t.predict.config import COMMAND, PredictConfig, PredictGenerationConfig, choice_list, parse_bool_flags
from t2t.predict.inputs import Item, Record, read_records, to_items
from t2t.predict.model import load, predict, resolve
from t2t.tasks.registry import TaskRegistry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=configs.program(COMMAND), formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=__doc__.split("\n")[0].split(": ", 1)[1],
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--input", action="append", default=[], metavar="TEXT",
                   help="one input (repeatable; '-': stdin, one input per line); with --task a JSON object of the "
                        "task's fields")
    configs.add_arguments(p, PredictConfig)
    configs.add_save_config(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return p


def check_generated(records: Sequence[Record], items: Sequence[Item], g: PredictGenerationConfig) -> None:
    """Sampling and several outputs are for generated inputs: one with answer choices (its row's or its
    task's) is refused by name before the model is loaded, as ``--choices`` is by the config."""
    wanted = [flag for flag, on in (("--do-sample", g.do_sample),
                                    (f"--num-return-sequences {g.num_return_sequences}", g.num_return_sequences > 1))
              if on]
    ranked = next((where for (where, _), item in zip(records, items, strict=True) if item.choices), None)
    if wanted and ranked is not None:
        raise T2TError(f"{ranked}: has answer choices, which are ranked by log-likelihood, never sampled or "
                       f"returned several times; drop {' and '.join(wanted)}, or give inputs without choices")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = configs.parse_args(build_parser(), parse_bool_flags(argv), COMMAND)
    cfg = configs.from_args(PredictConfig, args, COMMAND)
    if args.save_config:
        configs.save(cfg, Path(args.save_config))
    out, i = cfg.output.output, cfg.inputs
    if out and Path(out).exists() and not cfg.output.overwrite:
        raise T2TError(f"--output {out} exists; pass --overwrite to replace it, or choose another file")
    records = read_records(args.input, i.input_file)  # every input checked before the model is loaded
    view, run = resolve(cfg)
    task = TaskRegistry.load(view.tasks.task_dir).get(i.task) if i.task else None
    items = to_items(records, task, i.template, choice_list(i.choices) if i.choices else None)
    check_generated(records, items, cfg.generation)
    print(f"predicting {len(items)} input(s) with {view.model.model}" + (f" + {run.path}" if run else ""),
          file=sys.stderr)
    lines = predict(load(view, run), items, cfg.generation)
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    if out:
        try:
            write_text(out, text)
        except OSError as exc:
            raise T2TError(f"--output {out}: cannot write it ({exc.strerror or exc}); choose another file") from None
        print(f"wrote {len(lines)} prediction(s) to {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
