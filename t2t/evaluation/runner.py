"""Scoring a base model and its adapters on tasks, side by side: the engine behind ``python -m t2t.evaluate``.

:func:`evaluate` loads the base model once and each adapter onto it in turn, scores every task's
non-inverted templates (rank classification where the task has answer choices, generation otherwise),
and returns an :class:`EvalResult`: the report (median over templates, cluster means), per-example
scores for the paired bootstrap, the settings and the library versions. :func:`write_outputs` writes
``report.md``, ``results.json``, ``report.png`` and the resolved ``config.yaml``, each renamed into place.
The command line, task selection and output folder rules: :mod:`t2t.evaluate`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2t import config as configs
from t2t.atomic import write_files
from t2t.data.chat import chat_prompt
from t2t.errors import T2TError
from t2t.evaluation import metrics
from t2t.evaluation.adapter_runs import read_adapter
from t2t.evaluation.config import EvaluateConfig
from t2t.evaluation.prompts import Exemplars, Prompt, build_prompts, pick_split
from t2t.evaluation.report import Report, Score, plot_bars, render_markdown, summarize, to_dict
from t2t.evaluation.significance import ExampleScores, paired_bootstrap
from t2t.evaluation.significance import render_markdown as bootstrap_markdown
from t2t.modeling.adapter_base import check_adapter_base
from t2t.modeling.config import DEFAULT_MODEL
from t2t.modeling.provenance import record, summary_line
from t2t.outputs import write_error
from t2t.tasks import sources
from t2t.tasks.cot import ZERO_SHOT_TRIGGER, is_cot_task
from t2t.tasks.fewshot import FEW_SHOT_SEP, FEW_SHOT_XY
from t2t.tasks.task import Task, warn
from t2t.versions import library_versions

GEN_MARGIN = 8  # extra new tokens beyond the longest reference
GEN_FALLBACK = 32
COT_NEW_TOKENS = 128  # --cot on a task without rationales: the reasoning's budget (Kojima et al. 2022: 128)
OUTPUT_FILES = ("report.md", "results.json", "report.png", "config.yaml")


# --- scoring one model ----------------------------------------------------------------------------


@dataclass
class TaskPlan:
    """What is scored for one task, shared by every model."""

    task: Task
    split: str
    prompts: dict[str, list[Prompt]]  # template -> prompts
    skipped: dict[str, int]
    max_new_tokens: int | None = None  # generation tasks only
    cot: bool = False  # --cot on a task without rationales: generated, scored by the answer it extracts

    @property
    def kind(self) -> str:
        return "choices" if self.task.has_choices and not self.cot else "generation"

    @property
    def metrics(self) -> list[str]:
        if self.cot:
            return ["cot_exact_match"]  # t2t.tasks.cot's answer rule, then exact match
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
    from t2t.evaluation import scoring  # torch, transformers (seconds): only once a model is scored

    flat = [(t, p.example) for t, ps in plan.prompts.items() for p in ps]
    inputs = [ex.input for _, ex in flat]
    common = {k: opts[k] for k in ("batch_size", "max_input_len", "device")}
    per_example: list[dict[str, Any]]
    if opts["family"] == "causal":
        common["chat_template"] = opts["chat_template"]
    if plan.kind == "choices":
        scores = scoring.score_choices(model, tokenizer, inputs, [ex.choices for _, ex in flat], **common,
                                       convention=opts["choice_scoring"], target_delimiter=opts["target_delimiter"])
        by_sum, by_char = scoring.predict(scores, "sum"), scoring.predict(scores, "chars")
        per_example = [{"choices": list(ex.choices), "logprobs": [s.logprob for s in row],
                        "prediction": ex.choices[a], "prediction_norm": ex.choices[b],
                        "acc": float(a == ex.choices.index(ex.target)),
                        "acc_norm": float(b == ex.choices.index(ex.target)),
                        **({"is_greedy": [s.is_greedy for s in row]} if row[0].is_greedy is not None else {})}
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
                # "input" is the context that was scored: with --chat-template, the chat prompt
                scored_input = chat_prompt(tokenizer, ex.input) if opts["chat_template"] else ex.input
                samples.append({"model": label, "task": ex.task, "template": template, "index": ex.index,
                                "shots": list(p.shots), "input": scored_input, "target": ex.target,
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
    config: EvaluateConfig | None = None  # the resolved config, saved as config.yaml beside the report
    examples: list[ExampleScores] = field(default_factory=list, repr=False)  # the per-example scores
    contamination: dict | None = None  # --contamination: t2t.evaluation.contamination.as_dict
    contamination_markdown: str = ""
    provenance: dict | None = None  # t2t.modeling.provenance.record: base hash, adapters' hashes, machine

    def to_dict(self) -> dict[str, Any]:
        data = to_dict(self.report)
        data.update({"config": {**self.settings, "models": self.models, "tasks": self.tasks},
                     "versions": library_versions(), "notes": self.notes})
        if self.bootstrap is not None:
            data["paired_bootstrap"] = self.bootstrap
        if self.provenance is not None:
            data["provenance"] = self.provenance
        if self.samples is not None:
            data["samples"] = self.samples
        if self.contamination is not None:
            data["contamination"] = self.contamination
        return data

    def markdown(self) -> str:
        head = (f"# t2t evaluation\n\n{self.settings['num_shots']}-shot, split {self.settings['split']}, "
                f"limit {self.settings['limit']}, seed {self.settings['seed']}; task = median over templates "
                "±std (min–max); cluster and all = mean of task medians.\n\n")
        if self.provenance is not None:  # what the numbers depend on (issue #28): base weights and machine
            head += summary_line(self.provenance) + "\n\n"
        scoring = self.settings.get("choice_scoring", {})
        if scoring.get("convention") == "lm-eval":  # t2t's default is the unmarked case
            head += (f"Choices scored as lm-eval does: target_delimiter {scoring['target_delimiter']!r} + choice, "
                     "no EOS.\n\n")
        if scoring.get("family") == "causal":
            head += (f"Causal model: target_delimiter {scoring['target_delimiter']!r}, chat template "
                     f"{'on' if scoring['chat_template'] else 'off'}.\n\n")
        if self.settings.get("cot"):  # the choices tasks were generated, not ranked: say so above their scores
            head += (f"Chain of thought (--cot): tasks without rationales prompted with {ZERO_SHOT_TRIGGER!r}, "
                     "generated and scored by their extracted answer (cot_exact_match).\n\n")
        notes = "".join(f"\n- note: {n}" for n in self.notes)
        body = head + render_markdown(self.report) + (notes + "\n" if notes else "")
        if self.bootstrap is not None:
            body += "\n" + bootstrap_markdown(self.bootstrap)
        if self.contamination_markdown:
            body += "\n" + self.contamination_markdown
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


def evaluate(config: EvaluateConfig, tasks: Sequence[Task], adapters: Mapping[str, str | Path] | None = None,
             *, base_label: str | None = None) -> EvalResult:
    """Score the base model of ``config`` and each adapter (label -> folder) on ``tasks``, same prompts for all.

    ``adapters`` defaults to the config's ``--adapter [LABEL=]DIR`` folders. The base is scored first on
    the plain model; then each adapter is loaded onto that same model (peft ``load_adapter``/
    ``set_adapter``), so the base weights are read once. With adapters, ``--bootstrap`` resamples of the
    evaluated rows give each delta an interval (:mod:`t2t.evaluation.significance`).
    """
    config.validate()  # a config built by t2t.config is checked already; one made by hand is checked here
    if adapters is None:
        adapters = {run.label: run.path for run in map(read_adapter, config.model.adapter)}
    if not tasks:
        raise T2TError("no task to evaluate; pick some with --tasks, --clusters or --mixture")
    model_name = config.model.model or DEFAULT_MODEL
    labels = [base_label or model_name, *adapters]
    if len(set(labels)) != len(labels):
        raise T2TError(f"model labels must differ, got {labels}; name adapters with --adapter LABEL=DIR")
    base = load_base(config, model_name)
    paths = {label: str(adapters[label]) for label in labels[1:]}
    prov, notes = check_bases(config, base, paths)  # each adapter on its own base, before any model is scored
    plans = plan_tasks(config, tasks, base.tokenizer)
    scored = score_models(config, base, plans, labels, paths)
    if prov["base"]["weights_sha256"] is None:  # a hub model's weights are downloaded only as it loads
        prov, notes = check_bases(config, base, paths)
    result = assemble(config, base, plans, labels, scored)
    result.notes += notes
    result.provenance = prov
    return result


def check_bases(config: EvaluateConfig, base: Base, adapters: Mapping[str, str]) -> tuple[dict, list[str]]:
    """The provenance record (:mod:`t2t.modeling.provenance`) and the notes of adapters scored on a base
    they were not trained on (with ``--allow-other-base``); without it such an adapter is refused here."""
    prov = record(base.path, base.revision, base.name, adapters, base.device)
    notes = [n for p in adapters.values()
             if (n := check_adapter_base(p, prov["base"], allow_other_base=config.model.allow_other_base))]
    return prov, notes


@dataclass
class Base:
    """The base model, read once for every adapter: its name, resolved path, device and tokenizer."""

    name: str
    path: str
    device: str
    batch_size: int
    precision: str
    tokenizer: Any
    revision: str | None = None
    attn_implementation: str = "eager"

    def load_model(self) -> Any:
        import torch

        from t2t.modeling.loading import load_model  # torch, transformers: only once a model is loaded

        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        return load_model(self.path, self.attn_implementation, self.revision, dtype=dtype).to(self.device)


def resolve_scoring(config: EvaluateConfig, family: str) -> dict[str, Any]:
    """The scoring options the model's family gives meaning to, defaults filled in: ``choice_scoring``,
    ``target_delimiter`` (``" "``, lm-eval's default) and ``chat_template`` (off)."""
    s = config.scoring
    delimiter = " " if s.target_delimiter is None else s.target_delimiter
    if family == "seq2seq":
        if s.chat_template:
            raise T2TError(f"--chat-template is for causal (decoder-only) models; {config.model.model} is "
                           "encoder-decoder: drop --chat-template")
        if delimiter != " " and s.choice_scoring != "lm-eval":
            raise T2TError(f"--target-delimiter {delimiter!r} is used only with --choice-scoring lm-eval on a seq2seq "
                           "model; add that or drop --target-delimiter")
    return {"choice_scoring": s.choice_scoring, "target_delimiter": delimiter, "family": family,
            "chat_template": bool(s.chat_template)}


@dataclass
class Scored:
    """Every model's per-template scores, the per-example scores behind them, and the samples."""

    models: dict[str, str]  # label -> model or adapter path; the first is the base
    scores: list[Score] = field(default_factory=list)
    examples: list[ExampleScores] = field(default_factory=list)
    samples: list[dict] | None = None
    family: str = "seq2seq"  # t2t.modeling.family, of the loaded base


def load_base(config: EvaluateConfig, model_name: str) -> Base:
    """Where ``model_name`` is (t2t-tiny is built on first use), its tokenizer, the device and batch size;
    the weights are read by :meth:`Base.load_model` once the tasks are planned."""
    from t2t.modeling.loading import load_tokenizer, resolve_model  # torch, transformers: as above

    device = _device(config.model.device)
    batch_size = config.scoring.batch_size or (32 if device.startswith("cuda") else 8)
    path = str(resolve_model(model_name, config.tasks.task_dir))
    m = config.model
    return Base(model_name, path, device, batch_size, m.precision, load_tokenizer(path, m.revision), m.revision,
                m.attn_implementation)


def plan_tasks(config: EvaluateConfig, tasks: Sequence[Task], tokenizer: Any) -> list[TaskPlan]:
    """Each task's prompts (one list per scored template), the same for every model."""
    t, s = config.tasks, config.scoring
    fits = (lambda text: len(tokenizer(text)["input_ids"]) <= s.max_input_len) if s.max_input_len else None
    plans = []
    for task in tasks:
        task_split = pick_split(task, t.split)
        rows = sources.load_rows(task, task_split)
        rows = rows.select(range(min(t.limit, len(rows)))) if t.limit else rows
        rows = rows.to_list()
        exemplars = Exemplars(task, s.seed) if s.num_shots else None
        prompts, skipped = {}, {}
        for template in task.scored_templates():
            prompts[template], skipped[template] = build_prompts(
                task, rows, task_split, template, num_shots=s.num_shots, seed=s.seed, exemplars=exemplars,
                fits=fits, cot=s.cot)
        if not any(prompts.values()):
            warn(f"task '{task.name}': no example rendered from split '{task_split}'; it is left out")
            continue
        plan = TaskPlan(task, task_split, prompts, skipped, cot=s.cot and not is_cot_task(task.tags))
        if plan.kind == "generation":
            # a CoT task's references are bare answers: its budget is the longest target, rationale included
            reasons = is_cot_task(task.tags)
            longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"])
                           for ps in prompts.values() for p in ps
                           for r in ((p.example.target,) if reasons else p.example.references)), default=0)
            fallback = COT_NEW_TOKENS if plan.cot else (longest + GEN_MARGIN if longest else GEN_FALLBACK)
            plan.max_new_tokens = s.max_new_tokens or fallback
        plans.append(plan)
    if not plans:
        raise T2TError("none of the selected tasks has an example to score")
    return plans


def score_models(config: EvaluateConfig, base: Base, plans: Sequence[TaskPlan], labels: Sequence[str],
                 adapters: Mapping[str, str]) -> Scored:
    """The base, then each adapter loaded onto it in turn, on every plan; each model from the same seed."""
    import torch
    from tqdm.auto import tqdm  # ~0.2 s: with torch, once models are scored

    from t2t.modeling.family import model_family  # torch (t2t.modeling.architecture): as the model

    s = config.scoring
    opts = {"batch_size": base.batch_size, "max_input_len": s.max_input_len, "device": base.device,
            "num_beams": s.num_beams}
    scored = Scored({labels[0]: base.name}, samples=[] if s.log_samples else None)
    model = base.load_model()
    scored.family = model_family(model)
    opts.update(resolve_scoring(config, scored.family))
    for k, label in enumerate(labels):
        if k > 0:
            model = _switch_adapter(model, adapters[label], f"adapter{k}", k == 1)
            scored.models[label] = adapters[label]
        torch.manual_seed(s.seed)
        bar = tqdm(plans, desc=f"{label}", unit="task", disable=not config.output.progress, file=sys.stderr,
                   leave=False)
        for plan in bar:
            bar.set_postfix_str(plan.task.name)
            scored.scores += _score_plan(model, base.tokenizer, plan, label, opts, scored.samples, scored.examples)
    return scored


def assemble(config: EvaluateConfig, base: Base, plans: Sequence[TaskPlan], labels: Sequence[str],
             scored: Scored) -> EvalResult:
    """The report (median over templates, cluster means), bootstrap intervals, settings and the config."""
    t, s = config.tasks, config.scoring
    r = resolve_scoring(config, scored.family)
    primary = {p.task.name: p.metrics[0] for p in plans}
    report = summarize(scored.scores, clusters={p.task.name: p.task.cluster for p in plans}, models=list(labels),
                       primary=primary)
    intervals = (paired_bootstrap(scored.examples, list(labels), primary, resamples=s.bootstrap, seed=s.seed)
                 if s.bootstrap and len(labels) > 1 else None)
    settings = {"model": base.name, "model_path": base.path, "split": t.split, "num_shots": s.num_shots,
                "limit": t.limit, "batch_size": base.batch_size, "max_input_len": s.max_input_len,
                "max_new_tokens": s.max_new_tokens, "num_beams": s.num_beams, "seed": s.seed, "cot": s.cot,
                "device": base.device, "precision": config.model.precision,
                "few_shot_format": {"xy": FEW_SHOT_XY, "separator": FEW_SHOT_SEP}, "bootstrap": s.bootstrap,
                "choice_scoring": choice_scoring(r["choice_scoring"], r["target_delimiter"], r["family"],
                                                 r["chat_template"]),
                "resolved": configs.to_dict(config)}
    return EvalResult(report, scored.models, {p.task.name: p.info() for p in plans}, settings, scored.samples,
                      bootstrap=intervals, config=config, examples=scored.examples)


def choice_scoring(convention: str, target_delimiter: str, family: str = "seq2seq",
                   chat_template: bool = False) -> dict[str, Any]:
    """The rank-classification convention as results.json records it: scores under t2t's and lm-eval's
    conventions are not comparable (t2t.evaluation.scoring), so a reader must be able to tell them apart."""
    if family == "causal":
        from t2t.evaluation.causal_scoring import DEFAULT_STOP  # imports torch: only for a causal model

        common = {"family": "causal", "chat_template": chat_template, "generation_stop": list(DEFAULT_STOP)}
        if convention == "lm-eval":
            return {"convention": "lm-eval", "rule": "lm-eval 0.4 HFLM causal loglikelihood",
                    "target": "target_delimiter + choice", "eos": False,
                    "target_delimiter": "" if chat_template else target_delimiter,
                    "input_truncation": "left, context + choice window of max_input_len", **common}
        return {"convention": "t2t", "rule": "the training target (t2t.data.causal)",
                "target": "assistant turn + EOS" if chat_template else "target_delimiter + choice + EOS",
                "eos": True, "target_delimiter": "" if chat_template else target_delimiter,
                "input_truncation": "left, BOS kept", **common}
    if convention == "lm-eval":
        return {"convention": "lm-eval", "target": "target_delimiter + choice", "eos": False,
                "target_delimiter": target_delimiter, "input_truncation": "left"}
    return {"convention": "t2t", "target": "choice + EOS", "eos": True, "target_delimiter": "",
            "input_truncation": "right, EOS kept"}


def _switch_adapter(model, adapter_dir: str, name: str, first: bool):
    """Load an adapter onto the (shared) base model and make it the active one."""
    from peft import PeftModel

    from t2t.modeling.loading import add_adapter, load_adapter  # torch, transformers: as peft

    if first:
        return load_adapter(model, adapter_dir, name)
    assert isinstance(model, PeftModel)
    previous = model.active_adapter
    add_adapter(model, adapter_dir, name)
    model.set_adapter(name)
    model.delete_adapter(previous)  # one adapter in memory at a time
    return model




def write_outputs(result: EvalResult, out: Path) -> dict[str, Path]:
    """``report.md``, ``results.json``, ``report.png`` and (with a config) ``config.yaml`` in ``out``.

    Every file is rendered and written under a hidden name first; only when all are whole are they renamed
    into place. A full disk or a read-only folder is one T2TError, and earlier results stay as they were.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise T2TError(f"--output-dir {out}: cannot create it ({exc.strerror or exc})") from None
    paths = {"markdown": out / "report.md", "json": out / "results.json", "png": out / "report.png"}
    texts = {"markdown": result.markdown(), "json": json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"}
    if result.config is not None:
        paths["config"] = out / "config.yaml"
        texts["config"] = configs.dump(result.config)  # what --config accepts back
    writers = {paths[key]: (lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
               for key, text in texts.items()}
    # matplotlib writes to a path (its suffix names the format)
    writers[paths["png"]] = lambda tmp: plot_bars(result.report, tmp)
    try:
        write_files(writers)
    except OSError as exc:
        # the space needed: the texts, and the chart at the size of the earlier one (else ~100 kB)
        png = paths["png"].stat().st_size if paths["png"].is_file() else 100_000
        needed = sum(len(text.encode("utf-8")) for text in texts.values()) + png
        raise T2TError(f"--output-dir {out}: cannot write the report ({write_error(exc, out, needed)}); earlier "
                       "results there are unchanged; free space or choose another --output-dir") from None
    return paths
