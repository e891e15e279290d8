"""Which model ``t2t.predict`` runs, loaded the way ``t2t.evaluate`` loads it, and its predictions.

What ``--model`` / ``--adapter`` may name (:func:`resolve`):

* a base model (hub name, local folder, ``t2t-tiny``, the offline GGUF bases), alone;
* a peft adapter folder, or the ``t2t.finetune`` run folder that holds it (``RUN/adapter``): the run's
  ``config.json`` gives the base model, its revision, the chat template and the target delimiter, exactly as
  ``t2t.evaluate --adapter`` takes them (:func:`t2t.evaluation.selection.resolve_from_runs`); a plain peft
  adapter without a run defaults to the ``base_model_name_or_path`` of its ``adapter_config.json``;
* a merged or fully fine-tuned model folder (``RUN/merged``, ``RUN/model``), or its run folder given as
  ``--model RUN``: loaded as a model, with the run's chat template and target delimiter.

Loading (:func:`load`) is evaluation's: :func:`t2t.evaluation.runner.load_base` (tokenizer, device, batch
size; t2t-tiny and the GGUF bases built on first use), :func:`t2t.evaluation.runner.resolve_scoring` (the
options the family gives meaning to), :func:`t2t.modeling.loading.load_adapter` (checksums, one-line peft
errors). An adapter of the other family than the base (a ``CAUSAL_LM`` adapter on a T5) is refused first.

Predictions (:func:`predict`) are evaluation's scoring functions: rank classification through
:func:`t2t.evaluation.scoring.score_choices` (seq2seq, or :mod:`t2t.evaluation.causal_scoring` for a
decoder-only model: left padding, stop strings) and generation through :func:`t2t.evaluation.scoring.generate`,
greedy or beam search as evaluation generates, or with predict's sampling options (:func:`sampling_options`,
seeded by ``--seed``) and ``--stop`` strings, by the same batched loop and stop rule.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2t import config as configs
from t2t.errors import T2TError
from t2t.evaluation.adapter_runs import AdapterRun, read_adapter
from t2t.evaluation.config import EvaluateConfig, build_config
from t2t.evaluation.selection import resolve_from_runs
from t2t.modeling.adapter_base import check_adapter_base
from t2t.modeling.provenance import base_identity
from t2t.predict.config import PredictConfig, PredictGenerationConfig, stop_strings
from t2t.predict.inputs import Item

MODEL_FOLDERS = ("model", "merged")  # what t2t.finetune writes for --method full and for --merge
PEFT_FAMILY = {"CAUSAL_LM": "causal", "SEQ_2_SEQ_LM": "seq2seq"}  # peft TaskType values


def _is_run(path: Path) -> bool:
    """A folder t2t.finetune wrote: its resolved config.json beside manifest.json."""
    return (path / "config.json").is_file() and (path / "manifest.json").is_file()


def _run_config(folder: Path) -> dict[str, Any] | None:
    """The run config.json above a merged/full model folder, if t2t.finetune wrote it."""
    if folder.name not in MODEL_FOLDERS or not _is_run(folder.parent):
        return None
    try:
        data = json.loads((folder.parent / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise T2TError(f"{folder.parent / 'config.json'}: cannot read the run config ({exc}); fix or remove it"
                       ) from None
    return data if isinstance(data, dict) else None


def _locate(model: str | None, adapter: str | None) -> tuple[str | None, str | None]:
    """``(model, adapter folder)`` with run folders replaced by the folder inside them that holds weights."""
    if model and Path(model).is_dir() and _is_run(Path(model)):
        run = Path(model)
        folder = next((run / n for n in MODEL_FOLDERS if (run / n / "config.json").is_file()), None)
        if folder is not None:
            model = str(folder)
        elif (run / "adapter" / "adapter_config.json").is_file() and adapter is None:
            model, adapter = None, str(run / "adapter")
        else:
            raise T2TError(f"--model {run}: a t2t run folder with no model/, merged/ or adapter/ inside; give the "
                           "folder that t2t.finetune printed")
    if adapter and not (Path(adapter) / "adapter_config.json").is_file() and \
            (Path(adapter) / "adapter" / "adapter_config.json").is_file():
        adapter = str(Path(adapter) / "adapter")  # the run folder given for its adapter
    return model, adapter


def resolve(cfg: PredictConfig) -> tuple[EvaluateConfig, AdapterRun | None]:
    """The evaluation config that loads and scores what ``cfg`` names (module docstring), and the adapter."""
    m, g = cfg.model, cfg.generation
    model, adapter = _locate(m.model, m.adapter)
    run = read_adapter(adapter) if adapter else None
    if model is None and run is not None and run.base_model is None:
        peft = json.loads((run.path / "adapter_config.json").read_text(encoding="utf-8"))
        model = peft.get("base_model_name_or_path") or None  # a peft adapter that t2t did not train
    values = {"model": model, "revision": m.revision, "precision": m.precision, "device": m.device,
              "attn_implementation": m.attn_implementation, "adapter": [str(run.path)] if run else [],
              "allow_other_base": m.allow_other_base,
              "task_dir": list(cfg.inputs.task_dir), "batch_size": g.batch_size,
              "max_input_len": g.max_input_len, "num_beams": g.num_beams, "choice_scoring": g.choice_scoring,
              "target_delimiter": g.target_delimiter, "chat_template": g.chat_template, "output_dir": "-"}
    view = build_config({k: v for k, v in values.items() if v is not None}, "options")
    view = resolve_from_runs(view, [run] if run else [])
    trained = _run_config(Path(model)) if model else None
    if trained is not None:  # a merged / full model: its run's prompt format, as resolve_from_runs gives an adapter
        data = trained.get("data") or {}
        causal = trained.get("model_family") == "causal"
        extra: dict[str, Any] = {k: data[k] for k in ("chat_template", "target_delimiter")
                                 if causal and getattr(view.scoring, k) is None and data.get(k) is not None}
        if not view.tasks.task_dir and data.get("task_dir"):
            extra["task_dir"] = list(data["task_dir"])
        view = configs.override(view, extra, "options", "t2t.predict") if extra else view
    return view, run


@dataclass
class Loaded:
    """A model ready to predict: the (adapted) model, its tokenizer and the resolved scoring options."""

    model: Any
    tokenizer: Any
    family: str
    batch_size: int
    device: str
    opts: dict[str, Any]


def check_family(run: AdapterRun, family: str, model: str) -> None:
    """Refuse an adapter trained for the other family than the loaded base, before peft reads it."""
    peft = json.loads((run.path / "adapter_config.json").read_text(encoding="utf-8"))
    trained = PEFT_FAMILY.get(str(peft.get("task_type"))) or (run.config or {}).get("model_family")
    if trained and trained != family:
        raise T2TError(f"--adapter {run.path} is a {trained} adapter (task_type {peft.get('task_type')}) but "
                       f"--model {model} is a {family} model; give the base it was trained on with --model "
                       f"(base_model_name_or_path in its adapter_config.json: "
                       f"{peft.get('base_model_name_or_path')!r})")


def load(view: EvaluateConfig, run: AdapterRun | None) -> Loaded:
    """The base model of ``view`` (evaluation's loader) with the adapter of ``run`` on it."""
    from t2t.evaluation.runner import load_base, resolve_scoring  # torch: only once a model is loaded
    from t2t.modeling.family import model_family
    from t2t.modeling.loading import load_adapter

    name = view.model.model or "t2t-tiny"
    base = load_base(view, name)
    model = base.load_model()
    family = model_family(model)
    if run is not None:  # before the options: a causal run's chat template would be refused on a T5 first
        check_family(run, family, name)
    opts = resolve_scoring(view, family)
    if run is not None:
        # the base it was trained on, by its weights hash, as evaluate checks (t2t.modeling.adapter_base)
        note = check_adapter_base(run.path, base_identity(base.path, base.revision, base.name),
                                  allow_other_base=view.model.allow_other_base)
        if note:
            print(f"note: {note}", file=sys.stderr)
        model = load_adapter(model, str(run.path))
    return Loaded(model, base.tokenizer, family, base.batch_size, base.device, opts)


def predict(loaded: Loaded, items: Sequence[Item], g: PredictGenerationConfig) -> list[dict[str, Any]]:
    """One output record per item, in order: ranked choices with their log-likelihoods, or generated text."""
    out: list[dict[str, Any] | None] = [None] * len(items)
    common = {"batch_size": loaded.batch_size, "max_input_len": g.max_input_len, "device": loaded.device,
              "chat_template": loaded.opts["chat_template"]}
    ranked = [k for k, item in enumerate(items) if item.choices]
    for k, record in zip(ranked, _rank(loaded, [items[k] for k in ranked], common), strict=True):
        out[k] = record
    generated = [k for k, item in enumerate(items) if not item.choices]
    for k, record in zip(generated, _generate(loaded, [items[k] for k in generated], g, common), strict=True):
        out[k] = record
    return out  # type: ignore[return-value]


def _rank(loaded: Loaded, items: Sequence[Item], common: dict[str, Any]) -> list[dict[str, Any]]:
    """Each item's choices scored as t2t.evaluate scores them, the best by sum and per character."""
    from t2t.evaluation import scoring  # torch

    if not items:
        return []
    scores = scoring.score_choices(loaded.model, loaded.tokenizer, [item.input for item in items],
                                   [list(item.choices or ()) for item in items], **common,
                                   convention=loaded.opts["choice_scoring"],
                                   target_delimiter=loaded.opts["target_delimiter"])
    by_sum, by_char = scoring.predict(scores, "sum"), scoring.predict(scores, "chars")
    out = []
    for item, row, a, b in zip(items, scores, by_sum, by_char, strict=True):
        choices = list(item.choices or ())
        out.append({**item.echo, "prediction": choices[a], "prediction_norm": choices[b], "choices": choices,
                    "logprobs": [s.logprob for s in row],
                    **({"is_greedy": [s.is_greedy for s in row]} if row[0].is_greedy is not None else {})})
    return out


def sampling_options(g: PredictGenerationConfig) -> dict[str, Any]:
    """The ``model.generate`` options beyond evaluation's (GenerationConfig's names and meaning): only those
    given, so that the model's generation_config.json fills in the rest as transformers does."""
    given = {name: getattr(g, name) for name in ("temperature", "top_p", "top_k", "repetition_penalty")}
    out: dict[str, Any] = {"do_sample": g.do_sample, **{k: v for k, v in given.items() if v is not None}}
    if g.num_return_sequences > 1:
        out["num_return_sequences"] = g.num_return_sequences
    return out


def _generate(loaded: Loaded, items: Sequence[Item], g: PredictGenerationConfig,
              common: dict[str, Any]) -> list[dict[str, Any]]:
    """Each item's generated text (all ``--num-return-sequences`` of them in ``predictions``) through
    evaluation's generation: batched, left-padded for a decoder-only model, cut at the stop strings."""
    import torch  # only once a model is loaded: --help loads no torch

    from t2t.evaluation import scoring

    if not items:
        return []
    if g.do_sample:
        # generate() draws from torch's global generator (every device's): seeded here, right before it, the
        # same inputs in the same batches draw the same tokens (another --batch-size draws differently)
        torch.manual_seed(g.seed)
    texts = scoring.generate(loaded.model, loaded.tokenizer, [item.input for item in items], g.max_new_tokens,
                             g.num_beams, **common, stop=stop_strings(g), sampling=sampling_options(g))
    n = g.num_return_sequences
    out = []
    for k, item in enumerate(items):
        mine = texts[k * n:(k + 1) * n]
        out.append({**item.echo, "prediction": mine[0], **({"predictions": mine} if n > 1 else {}),
                    **({"seed": g.seed} if g.do_sample else {})})
    return out
