"""Scoring a base model and its adapters on tasks, side by side: the engine behind ``python -m t2t.evaluate``.

:func:`evaluate` loads the base model once and each adapter onto it in turn, scores every task's
non-inverted templates (rank classification where the task has answer choices, generation otherwise),
and returns an :class:`EvalResult`: the report (median over templates, cluster means), per-example
scores for the paired bootstrap, the settings and the library versions. :func:`write_outputs` writes
``report.md``, ``results.json`` and ``report.png``, each renamed into place. The command line, task
selection and output folder rules: :mod:`t2t.evaluate`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2t.errors import T2TError
from t2t.evaluation.prompts import Exemplars, Prompt, build_prompts, pick_split
from t2t.evaluation.report import Report, Score, plot_bars, render_markdown, summarize, to_dict
from t2t.evaluation.significance import ExampleScores, paired_bootstrap
from t2t.tasks.task import Task, warn

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
    from t2t.evaluation import metrics, scoring

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
    bootstrap: dict | None = None  # t2t.evaluation.significance.paired_bootstrap's result (2+ models)

    def to_dict(self) -> dict[str, Any]:
        from t2t.versions import library_versions

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
            from t2t.evaluation.significance import render_markdown as bootstrap_markdown

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
    (:mod:`t2t.evaluation.significance`).
    """
    import torch
    from tqdm.auto import tqdm

    from t2t.modeling.loading import load_model, load_tokenizer, resolve_model
    from t2t.tasks.fewshot import FEW_SHOT_SEP, FEW_SHOT_XY
    from t2t.tasks.sources import load_rows

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

    from t2t.modeling.loading import load_adapter

    if first:
        return load_adapter(model, adapter_dir, name)
    assert isinstance(model, PeftModel)
    previous = model.active_adapter
    model.load_adapter(adapter_dir, adapter_name=name, is_trainable=False)
    model.set_adapter(name)
    model.delete_adapter(previous)  # one adapter in memory at a time
    return model




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

