"""t2t's rank classification against lm-evaluation-harness on t2t's own exported prompts.

    python benchmarks/lm_eval_parity.py [--tasks compare_numbers,sentiment_movie] [--limit 50]
                                        [--model t2t-tiny | --model DIR | --model tiny-llama] [--adapter DIR]
                                        [--max-length 1024] [--chat-template]

Exports the tasks (``python -m t2t.tasks export-lm-eval``), scores them with lm-eval 0.4 (``HFLM`` with its
defaults: ``target_delimiter " "``, no EOS) and with ``t2t.evaluate`` under both conventions
(``--choice-scoring lm-eval`` and t2t's default, choice + EOS), on the same rows. The model's config picks
HFLM's backend: ``"seq2seq"`` for encoder-decoder models, ``"causal"`` for decoder-only ones (then both
sides get ``--max-length`` as lm-eval's ``max_length`` / t2t's ``--max-input-len``, and ``--chat-template``
renders the prompts through the tokenizer's chat template on both: lm-eval's ``apply_chat_template``).
``--model tiny-llama`` builds the tests' tiny random Llama (byte-level BPE, BOS, a ChatML template) in a
temporary folder. Reports per convention: the largest per-choice log-likelihood difference to lm-eval and
how many ``acc`` predictions agree with lm-eval's. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="compare_numbers,sentiment_movie")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--model", default="t2t-tiny")
    parser.add_argument("--adapter", help="a peft adapter folder, scored by both (HFLM peft=)")
    parser.add_argument("--max-length", type=int, default=1024, help="causal models: the scoring window")
    parser.add_argument("--chat-template", action="store_true", help="causal models: prompts as chat turns")
    args = parser.parse_args(argv)

    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoConfig

    from t2t.evaluation.config import build_config
    from t2t.evaluation.runner import evaluate
    from t2t.modeling.family import model_family
    from t2t.modeling.loading import resolve_model
    from t2t.tasks.importers import lm_eval
    from t2t.tasks.registry import TaskRegistry

    registry = TaskRegistry.load()
    tasks = [registry.get(t) for t in args.tasks.split(",")]
    scratch = tempfile.TemporaryDirectory()
    model = args.model
    if model == "tiny-llama":
        from tests.causal_tiny import save_model_folder

        model = str(save_model_folder(Path(scratch.name) / "tiny-llama", chat=True))
    model_path = str(resolve_model(model, ()))
    backend = model_family(AutoConfig.from_pretrained(model_path))
    causal = backend == "causal"
    if args.chat_template and not causal:
        parser.error("--chat-template is for causal models")
    adapters = {"adapter": args.adapter} if args.adapter else {}
    report: dict = {"model": args.model, "backend": backend, "adapter": args.adapter, "limit": args.limit,
                    "tasks": {}}
    if causal:
        report.update(max_length=args.max_length, chat_template=args.chat_template)
    with tempfile.TemporaryDirectory() as out:
        done = lm_eval.export_tasks(tasks, out, limit=args.limit)
        lm = HFLM(pretrained=model_path, backend=backend, device="cpu", batch_size=8,
                  **({"peft": args.adapter} if args.adapter else {}),
                  **({"max_length": args.max_length} if causal else {}))
        theirs = simple_evaluate(model=lm, tasks=list(done.rows), task_manager=TaskManager(include_path=out),
                                 log_samples=True, apply_chat_template=args.chat_template)["samples"]
    label = "adapter" if args.adapter else model
    for convention in ("lm-eval", "t2t"):
        causal_options = {"max_input_len": args.max_length, "chat_template": args.chat_template} if causal else {}
        config = build_config({"model": model, "device": "cpu", "progress": False, "limit": args.limit,
                               "log_samples": True, "bootstrap": 0, "choice_scoring": convention,
                               **causal_options})
        result = evaluate(config, tasks, adapters)
        mine = {(s["task"], s["template"], s["index"]): s for s in result.samples if s["model"] == label}
        for task in tasks:
            diff, agree, rows = 0.0, 0, 0
            for template in task.scored_templates():
                for sample in theirs.get(lm_eval.lm_eval_name(task.name, template), []):
                    got = mine[(task.name, template, sample["doc"]["index"])]
                    # t2t logs the context it scored: lm-eval's request context, chat template included
                    same_input = got["input"] == sample["arguments"][0][0]
                    report.setdefault("inputs_equal_lm_eval_contexts", True)
                    report["inputs_equal_lm_eval_contexts"] &= same_input
                    lls = [r[0][0] for r in sample["resps"]]
                    diff = max(diff, max(abs(a - b) for a, b in zip(got["logprobs"], lls, strict=True)))
                    ours_pred = got["logprobs"].index(max(got["logprobs"]))
                    agree += ours_pred == lls.index(max(lls))
                    rows += 1
            report["tasks"].setdefault(task.name, {})[convention] = {
                "rows": rows, "max_abs_diff_nats": diff, "predictions_agree": agree}
    scratch.cleanup()
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
