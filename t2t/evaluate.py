"""``python -m t2t.evaluate``: zero- or k-shot evaluation of a base model and its adapters, side by side.

Which tasks (one of):

* ``--tasks a,b`` and/or ``--clusters c,d``;
* ``--mixture M [--heldout C,...]``: the held-out part of mixture M (disjoint from its training tasks);
* nothing: the held-out tasks recorded in the first adapter's run (``<run>/manifest.json`` beside
  ``<run>/adapter``), as ``python -m t2t.finetune`` wrote them.

With no arguments at all it evaluates ``--model t2t-tiny`` and, if the offline demo ran,
``--adapter runs/offline-demo/adapter`` on its held-out tasks (else the ``offline`` mixture's).
An adapter whose run trained on a selected task (or on its source dataset) is refused, since its score
would not be held-out, unless ``--allow-train-tasks``; the report then names those tasks.

How each example is scored (REFERENCE.md, "Scoring"):

* tasks with answer choices: rank classification (:func:`t2t.scoring.score_choices`), reported as
  ``acc`` (argmax of the summed log-probability, T0) and ``acc_norm`` (per character, lm-eval);
* other tasks: greedy (or ``--num-beams``) generation with ``--max-new-tokens`` (default per task: the
  longest reference in tokens + 8), scored with the task file's ``metrics``.

Only the non-inverted templates are scored; a task's result is the median over templates with the
spread, a cluster's the mean of its task medians (:mod:`t2t.report`); each adapter's deltas get a 95%
interval from a paired bootstrap over the evaluated rows (``--bootstrap N``, :mod:`t2t.significance`).
``--limit N`` takes the first N rows of the split. ``--num-shots K`` prepends K exemplars from the train
split, FLAN style (``x + "\\n\\n" + y``, joined and followed by ``"\\n\\n\\n"``), drawn per example from
``--seed``, never the example itself; when the prompt exceeds ``--max-input-len`` the farthest exemplars
are dropped (:mod:`t2t.prompts`).

The base model is loaded once; adapters are loaded onto it one after another with peft.
Outputs in ``--output-dir`` (default ``<run>/eval`` for a t2t.finetune run, ``<adapter>/eval`` for
another adapter, else ``runs/eval``): ``report.md`` (also printed), ``results.json`` (config, library
versions, per-template scores, aggregates, and per-example predictions with ``--log-samples``) and
``report.png``. A folder that already holds results is refused unless ``--overwrite``.

    python -m t2t.evaluate --adapter runs/offline-demo/adapter
    python -m t2t.evaluate --model google/flan-t5-base --tasks rte,copa --num-shots 2 --limit 200
    python -m t2t.evaluate --adapter base-lr3=runs/a/adapter --adapter runs/b/adapter --mixture offline
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2t.adapter_runs import AdapterRun, check_not_trained, read_adapter
from t2t.config import DEFAULT_MODEL
from t2t.errors import T2TError, run_cli
from t2t.prompts import Exemplars, Prompt, build_prompts, pick_split
from t2t.report import Report, Score, plot_bars, render_markdown, summarize, to_dict
from t2t.significance import ExampleScores, paired_bootstrap
from t2t.templates import Task, warn

DEMO_ADAPTER = Path("runs/offline-demo/adapter")
DEMO_MIXTURE = "offline"
GEN_MARGIN = 8  # extra new tokens beyond the longest reference
GEN_FALLBACK = 32
OUTPUT_FILES = ("report.md", "results.json", "report.png")


# --- scoring one model ----------------------------------------------------------------------------


@dataclass
class TaskPlan:
    """What is scored for one task, shared by every model."""

    task: Task
    split: str
    prompts: dict[str, list[Prompt]]  # template -> prompts
    skipped: dict[str, int]
    max_new_tokens: int | None = None  # generation tasks only

    @property
    def kind(self) -> str:
        return "choices" if self.task.has_choices else "generation"

    @property
    def metrics(self) -> list[str]:
        if self.kind == "generation":
            return list(self.task.metrics)
        return ["acc", "acc_norm"] + [m for m in self.task.metrics if m != "accuracy"]

    def info(self) -> dict[str, Any]:
        templates = {t: {"examples": len(p), "skipped": self.skipped[t]} for t, p in self.prompts.items()}
        return {"cluster": self.task.cluster, "kind": self.kind, "split": self.split, "metrics": self.metrics,
                "max_new_tokens": self.max_new_tokens, "templates": templates}


def _score_plan(model, tokenizer, plan: TaskPlan, label: str, opts: dict[str, Any],
                samples: list[dict] | None, examples: list[ExampleScores]) -> list[Score]:
    """Score one model on one task's prompts: per-template :class:`Score` records (returned) and the
    per-example scores behind them (appended to ``examples``, for the paired bootstrap)."""
    from t2t import metrics, scoring

    flat = [(t, p.example) for t, ps in plan.prompts.items() for p in ps]
    inputs = [ex.input for _, ex in flat]
    common = {k: opts[k] for k in ("batch_size", "max_input_len", "device")}
    per_example: list[dict[str, Any]]
    if plan.kind == "choices":
        scores = scoring.score_choices(model, tokenizer, inputs, [ex.choices for _, ex in flat], **common)
        by_sum, by_char = scoring.predict(scores, "sum"), scoring.predict(scores, "chars")
        per_example = [{"choices": list(ex.choices), "logprobs": [s.logprob for s in row],
                        "prediction": ex.choices[a], "prediction_norm": ex.choices[b],
                        "acc": float(a == ex.choices.index(ex.target)),
                        "acc_norm": float(b == ex.choices.index(ex.target))}
                       for (_, ex), row, a, b in zip(flat, scores, by_sum, by_char, strict=True)]
    else:
        texts = scoring.generate(model, tokenizer, inputs, plan.max_new_tokens, opts["num_beams"], **common)
        per_example = [{"prediction": t} for t in texts]

    out: list[Score] = []
    start = 0
    for template, prompts in plan.prompts.items():
        part = per_example[start:start + len(prompts)]
        exs = [p.example for p in prompts]
        start += len(prompts)
        if not prompts:
            continue
        refs = [list(ex.references) for ex in exs]
        rows = tuple(ex.index for ex in exs)
        predictions = [e["prediction"] for e in part]
        for metric in plan.metrics:
            if metric in ("acc", "acc_norm"):
                values = [100.0 * e[metric] for e in part]
            else:
                values = metrics.example_scores(metric, predictions, refs)
            if values is None:  # corpus-level: kept whole for the bootstrap to recompute
                value = metrics.compute(metric, predictions, refs)
                kept = ExampleScores(label, plan.task.name, template, metric, rows, None, tuple(predictions),
                                     tuple(map(tuple, refs)))
            else:
                value = sum(values) / len(values)
                kept = ExampleScores(label, plan.task.name, template, metric, rows, tuple(values))
            out.append(Score(label, plan.task.name, template, metric, value))
            examples.append(kept)
        if samples is not None:
            for p, ex, e in zip(prompts, exs, part, strict=True):
                samples.append({"model": label, "task": ex.task, "template": template, "index": ex.index,
                                "shots": list(p.shots), "input": ex.input, "target": ex.target,
                                "references": list(ex.references), **e})
    return out


# --- the library entry point ----------------------------------------------------------------------


@dataclass
class EvalResult:
    """The report (``report.scores`` holds the raw per-template scores), the per-task plan and samples."""

    report: Report
    models: dict[str, str]  # label -> model or adapter path; the first is the base
    tasks: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    samples: list[dict] | None = None
    notes: list[str] = field(default_factory=list)
    bootstrap: dict | None = None  # t2t.significance.paired_bootstrap's result (2+ models)

    def to_dict(self) -> dict[str, Any]:
        from t2t.finetune import library_versions

        data = to_dict(self.report)
        data.update({"config": {**self.settings, "models": self.models, "tasks": self.tasks},
                     "versions": library_versions(), "notes": self.notes})
        if self.bootstrap is not None:
            data["paired_bootstrap"] = self.bootstrap
        if self.samples is not None:
            data["samples"] = self.samples
        return data

    def markdown(self) -> str:
        head = (f"# t2t evaluation\n\n{self.settings['num_shots']}-shot, split {self.settings['split']}, "
                f"limit {self.settings['limit']}, seed {self.settings['seed']}; task = median over templates "
                "±std (min–max); cluster and all = mean of task medians.\n\n")
        notes = "".join(f"\n- note: {n}" for n in self.notes)
        body = head + render_markdown(self.report) + (notes + "\n" if notes else "")
        if self.bootstrap is not None:
            from t2t.significance import render_markdown as bootstrap_markdown

            body += "\n" + bootstrap_markdown(self.bootstrap)
        return body


def _device(device: str | None) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError:
        raise T2TError(f"--device {device}: not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise T2TError(f"--device {device}: CUDA is not available here; use --device cpu or auto")
    return device


def evaluate(model_name: str, adapters: Mapping[str, str | Path], tasks: Sequence[Task], *,
             split: str = "validation", num_shots: int = 0, limit: int | None = None, batch_size: int = 32,
             max_input_len: int | None = 1024, max_new_tokens: int | None = None, num_beams: int = 1,
             seed: int = 0, device: str | None = None, precision: str = "fp32", log_samples: bool = False,
             task_dirs: Sequence[str] = (), base_label: str | None = None, progress: bool = False,
             bootstrap: int = 1000) -> EvalResult:
    """Score the base ``model_name`` and each adapter (label -> folder) on ``tasks``, same prompts for all.

    The base is scored first on the plain model; then each adapter is loaded onto that same model
    (peft ``load_adapter``/``set_adapter``), so the base weights are read once. With adapters,
    ``bootstrap`` resamples (0: none) of the evaluated rows give each delta an interval
    (:mod:`t2t.significance`).
    """
    import torch
    from tqdm.auto import tqdm

    from t2t.loading import load_model, load_tokenizer, resolve_model
    from t2t.sources import load_rows
    from t2t.stream import FEW_SHOT_SEP, FEW_SHOT_XY

    for name, value, least in (("--num-shots", num_shots, 0), ("--batch-size", batch_size, 1),
                               ("--bootstrap", bootstrap, 0),
                               ("--num-beams", num_beams, 1), ("--limit", limit, 1),
                               ("--max-new-tokens", max_new_tokens, 1),
                               ("--max-input-len", max_input_len, 2)):
        if value is not None and value < least:
            raise T2TError(f"{name} must be at least {least}, got {value}")
    if not tasks:
        raise T2TError("no task to evaluate; pick some with --tasks, --clusters or --mixture")
    if precision not in ("fp32", "bf16"):
        raise T2TError(f"--precision {precision}: use fp32 or bf16 (fp16 breaks T5)")
    base_label = base_label or model_name
    labels = [base_label, *adapters]
    if len(set(labels)) != len(labels):
        raise T2TError(f"model labels must differ, got {labels}; name adapters with --adapter LABEL=DIR")
    device = _device(device)
    path = resolve_model(model_name, task_dirs)
    tokenizer = load_tokenizer(path)
    fits = (lambda text: len(tokenizer(text)["input_ids"]) <= max_input_len) if max_input_len else None

    plans = []
    for task in tasks:
        task_split = pick_split(task, split)
        rows = load_rows(task, task_split)
        rows = rows.select(range(min(limit, len(rows)))) if limit else rows
        rows = rows.to_list()
        exemplars = Exemplars(task, seed) if num_shots else None
        prompts, skipped = {}, {}
        for template in task.scored_templates():
            prompts[template], skipped[template] = build_prompts(
                task, rows, task_split, template, num_shots=num_shots, seed=seed, exemplars=exemplars,
                fits=fits)
        if not any(prompts.values()):
            warn(f"task '{task.name}': no example rendered from split '{task_split}'; it is left out")
            continue
        plan = TaskPlan(task, task_split, prompts, skipped)
        if plan.kind == "generation":
            longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"])
                           for ps in prompts.values() for p in ps for r in p.example.references), default=0)
            plan.max_new_tokens = max_new_tokens or (longest + GEN_MARGIN if longest else GEN_FALLBACK)
        plans.append(plan)
    if not plans:
        raise T2TError("none of the selected tasks has an example to score")

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = load_model(path, dtype=dtype).to(device)
    opts = {"batch_size": batch_size, "max_input_len": max_input_len, "device": device,
            "num_beams": num_beams}
    samples: list[dict] | None = [] if log_samples else None
    scores: list[Score] = []
    examples: list[ExampleScores] = []
    models = {base_label: str(model_name)}
    for k, label in enumerate(labels):
        if k > 0:
            model = _switch_adapter(model, str(adapters[label]), f"adapter{k}", k == 1)
            models[label] = str(adapters[label])
        torch.manual_seed(seed)
        bar = tqdm(plans, desc=f"{label}", unit="task", disable=not progress, file=sys.stderr, leave=False)
        for plan in bar:
            bar.set_postfix_str(plan.task.name)
            scores += _score_plan(model, tokenizer, plan, label, opts, samples, examples)
    primary = {p.task.name: p.metrics[0] for p in plans}
    report = summarize(scores, clusters={p.task.name: p.task.cluster for p in plans}, models=labels,
                       primary=primary)
    intervals = (paired_bootstrap(examples, labels, primary, resamples=bootstrap, seed=seed)
                 if bootstrap and len(labels) > 1 else None)
    settings = {"model": model_name, "model_path": str(path), "split": split, "num_shots": num_shots,
                "limit": limit, "batch_size": batch_size, "max_input_len": max_input_len,
                "max_new_tokens": max_new_tokens, "num_beams": num_beams, "seed": seed, "device": device,
                "precision": precision, "few_shot_format": {"xy": FEW_SHOT_XY, "separator": FEW_SHOT_SEP},
                "bootstrap": bootstrap}
    return EvalResult(report, models, {p.task.name: p.info() for p in plans}, settings, samples,
                      bootstrap=intervals)


def _switch_adapter(model, adapter_dir: str, name: str, first: bool):
    """Load an adapter onto the (shared) base model and make it the active one."""
    from peft import PeftModel

    from t2t.loading import load_adapter

    if first:
        return load_adapter(model, adapter_dir, name)
    assert isinstance(model, PeftModel)
    previous = model.active_adapter
    model.load_adapter(adapter_dir, adapter_name=name, is_trainable=False)
    model.set_adapter(name)
    model.delete_adapter(previous)  # one adapter in memory at a time
    return model


# --- task selection and the command line ----------------------------------------------------------


def _names(values: Sequence[str] | None) -> list[str]:
    return [n.strip() for v in values or () for n in v.split(",") if n.strip()]


def select_tasks(args: argparse.Namespace, runs: Sequence[AdapterRun]) -> tuple[list[Task], dict[str, Any]]:
    """The tasks to evaluate and a record of how they were chosen."""
    from t2t.mixture import heldout_split
    from t2t.registry import TaskRegistry

    registry = TaskRegistry.load(args.task_dir)
    names, clusters, heldout = _names(args.tasks), _names(args.clusters), _names(args.heldout)
    if (names or clusters) and (args.mixture or heldout):
        raise T2TError("choose tasks with --tasks/--clusters or with --mixture/--heldout, not both")
    if names or clusters:
        tasks = {t.name: t for c in clusters for t in registry.by_cluster(c)}
        tasks.update({n: registry.get(n) for n in names})
        chosen = sorted(tasks.values(), key=lambda t: (t.cluster, t.name))
        return chosen, {"tasks": names, "clusters": clusters}
    run = next((r for r in runs if r.manifest is not None), None)
    if args.mixture is None and run is not None and not heldout:
        recorded = [t["name"] for t in run.manifest.get("heldout", {}).get("tasks", [])]
        if not recorded:
            raise T2TError(f"{run.path.parent}/manifest.json records no held-out task; pick tasks with "
                           "--tasks or --mixture")
        try:
            tasks = [registry.get(n) for n in recorded]
        except T2TError as exc:
            raise T2TError(f"{run.path.parent}/manifest.json: {exc}; pass the run's --task-dir") from None
        return tasks, {"heldout_of": str(run.path.parent / "manifest.json"),
                       "mixture": run.manifest.get("mixture")}
    mixture = args.mixture or (run.manifest.get("mixture") if run is not None else None)
    if mixture is None:
        raise T2TError("no tasks chosen: pass --tasks, --clusters or --mixture M [--heldout C] (the adapter "
                       "has no manifest.json beside it to take its held-out tasks from)")
    # The run's own extra held-out names apply when the mixture is the run's.
    extra = list(run.manifest.get("extra_heldout", [])) if run is not None and not args.mixture else []
    split = heldout_split(mixture, heldout=extra + heldout, task_dirs=args.task_dir,
                          mixture_dirs=args.mixture_dir, tasks=registry)
    assert not {t.name for t in split.train} & {t.name for t in split.heldout}
    if not split.heldout:
        raise T2TError(f"mixture '{mixture}' holds nothing out; add --heldout CLUSTER or use --tasks")
    return split.heldout, {"mixture": mixture, "heldout": extra + heldout,
                           "train_tasks": sorted(t.name for t in split.train)}


def default_output_dir(runs: Sequence[AdapterRun]) -> Path:
    if not runs:
        return Path("runs/eval")
    first = runs[0]
    return (first.run_dir or first.path) / "eval"


def check_output_dir(out: Path, overwrite: bool) -> Path:
    """Refuse to replace earlier results silently (checked before any model is loaded)."""
    if out.exists() and not out.is_dir():
        raise T2TError(f"--output-dir {out} is a file, not a folder")
    existing = [f for f in OUTPUT_FILES if (out / f).exists()]
    if existing and not overwrite:
        raise T2TError(f"--output-dir {out} already holds results ({', '.join(existing)}); pass --overwrite "
                       "to replace them or choose another --output-dir")
    return out


def write_outputs(result: EvalResult, out: Path) -> dict[str, Path]:
    """``report.md``, ``results.json`` and ``report.png`` in ``out``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise T2TError(f"--output-dir {out}: cannot create it ({exc.strerror or exc})") from None
    paths = {"markdown": out / "report.md", "json": out / "results.json", "png": out / "report.png"}
    # Each file is written under a hidden name and renamed into place: an interrupted run never leaves
    # a truncated report in place of an earlier one (with --overwrite).
    staged = {key: path.with_name(f".{path.stem}.tmp{path.suffix}") for key, path in paths.items()}
    staged["markdown"].write_text(result.markdown(), encoding="utf-8")
    staged["json"].write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_bars(result.report, staged["png"])
    for key, path in paths.items():
        os.replace(staged[key], path)
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m t2t.evaluate", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Zero- or k-shot evaluation of a base model and its adapters, side by side.",
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    a = p.add_argument
    a("--model", default=None, help=f"base model: hub name, folder or {DEFAULT_MODEL} (default: the "
                                    f"adapter run's base model, else {DEFAULT_MODEL})")
    a("--adapter", action="append", default=[], metavar="[LABEL=]DIR",
      help="peft adapter folder (repeatable); LABEL defaults to the (run) folder name")
    a("--tasks", action="append", metavar="A,B", help="tasks to evaluate (comma-separated, repeatable)")
    a("--clusters", action="append", metavar="C", help="evaluate every task of these clusters")
    a("--mixture", help="evaluate the held-out tasks of this mixture")
    a("--heldout", action="append", metavar="C", help="extra held-out clusters or tasks of the mixture")
    a("--allow-train-tasks", action="store_true",
      help="report tasks an adapter was trained on (flagged: not held-out)")
    a("--split", default="validation", help="split to score (default validation; else test, then train)")
    a("--num-shots", type=int, default=0, help="exemplars from the train split per prompt (default 0)")
    a("--limit", type=int, help="score the first N rows of each task")
    a("--batch-size", type=int, default=None,
      help="inputs per forward pass (default: 8 on CPU, where it measured fastest, 32 on a GPU)")
    a("--max-input-len", type=int, default=1024, help="input tokens kept (default 1024; EOS kept)")
    a("--max-new-tokens", type=int, help="generation budget (default: longest reference + 8, per task)")
    a("--num-beams", type=int, default=1, help="beam search width (default 1: greedy)")
    a("--precision", default="fp32", choices=("fp32", "bf16"))
    a("--output-dir", help="default <run>/eval, <adapter>/eval or runs/eval")
    a("--overwrite", action="store_true", help="replace results already in --output-dir")
    a("--log-samples", action="store_true", help="keep every prompt and prediction in results.json")
    a("--bootstrap", type=int, default=1000, metavar="N",
      help="paired bootstrap resamples of the evaluated rows for each adapter's delta interval (0: none; "
           "default 1000)")
    a("--seed", type=int, default=0)
    a("--task-dir", action="append", default=[], metavar="DIR", help="extra task folder (repeatable)")
    a("--mixture-dir", action="append", default=[], metavar="DIR", help="extra mixture folder (repeatable)")
    a("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    a("--no-progress", action="store_true", help="no progress bars")
    a("--debug", action="store_true", help="show tracebacks for errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not argv:
        if DEMO_ADAPTER.is_dir():
            args.adapter = [str(DEMO_ADAPTER)]
            print(f"no options: evaluating --model {DEFAULT_MODEL} --adapter {DEMO_ADAPTER} on its held-out "
                  "tasks", file=sys.stderr)
        else:
            args.mixture = DEMO_MIXTURE
            print(f"no options: evaluating --model {DEFAULT_MODEL} --mixture {DEMO_MIXTURE} (base only; no "
                  f"adapter at {DEMO_ADAPTER}: run python -m t2t.finetune first)", file=sys.stderr)
    runs = [read_adapter(spec) for spec in args.adapter]
    bases = {r.base_model for r in runs if r.base_model}
    if args.model is None:
        args.model = next(iter(bases)) if len(bases) == 1 else DEFAULT_MODEL
    elif bases - {args.model}:
        warn(f"--model {args.model}, but the adapters were trained on {', '.join(sorted(bases))}")
    if not args.task_dir:  # an adapter run trained on extra task folders names them in its config
        data = ((runs[0].config or {}).get("data") or {}) if runs else {}
        args.task_dir = list(data.get("task_dir") or ())
    out = Path(args.output_dir) if args.output_dir else default_output_dir(runs)
    check_output_dir(out, args.overwrite)

    import datasets

    datasets.disable_progress_bars()
    tasks, chosen = select_tasks(args, runs)
    trained = check_not_trained(tasks, runs, args.allow_train_tasks)
    print(f"evaluating {args.model}" + "".join(f" + {r.label} ({r.path})" for r in runs)
          + f" on {len(tasks)} task(s): {', '.join(t.name for t in tasks)}", file=sys.stderr)
    result = evaluate(args.model, {r.label: r.path for r in runs}, tasks, split=args.split,
                      num_shots=args.num_shots, limit=args.limit,
                      batch_size=args.batch_size or (32 if _device(args.device).startswith("cuda") else 8),
                      max_input_len=args.max_input_len, max_new_tokens=args.max_new_tokens,
                      num_beams=args.num_beams, seed=args.seed, device=args.device, precision=args.precision,
                      log_samples=args.log_samples, task_dirs=args.task_dir, progress=not args.no_progress,
                      bootstrap=args.bootstrap)
    result.settings["selection"] = chosen
    result.settings["argv"] = argv
    result.notes += [f"{label} was trained on {', '.join(names)}: not held-out"
                     for label, names in trained.items()]
    paths = write_outputs(result, out)
    print(result.markdown())
    print(f"wrote {', '.join(map(str, paths.values()))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
