"""Time and memory to the first training batch of a mixture over SNI-sized task files (issue #14).

    python benchmarks/sni_scale.py [--tasks 2000] [--instances 6188000] [--seed 0] [--work DIR]
                                   [--modes eager,lazy] [--steps 100] [--before-src DIR] [--out FILE.json]

1. Generates ``--tasks`` Super-NaturalInstructions task JSON files (Definition, 2-3 positive and 2 negative
   examples with explanations, Instances with 1-4 references, Categories), seeded. Instances per task are
   lognormal (median 1,800, sigma 1), cut to [30, 6500] and scaled to total ``--instances``. The default
   total keeps SNI's density: the issue's ~5M instances over SNI's 1,616 tasks (Wang et al. 2022) is 3,094 a task,
   so 2,000 files hold 6,188,000. Instance inputs are lognormal words (median 45), references median 3
   words; definitions about 57 words (the SNI paper's 56.6 average). 147 tasks (SNI's 119 of 1,616, scaled)
   are listed as test tasks.
2. Imports them with the real ``import-sni`` code (``t2t.tasks.importers.sni.import_tasks``, 100 files a call) and
   writes its mixture (``mixture_text``: proportional, cap 100, train_limit 100, test tasks held out) as
   ``sni``, and ``sni_all``: the same without train_limit and cap (every instance trainable).
3. For each mixture and mode, in a fresh process with an empty ``datasets`` cache: resolves the mixture
   as ``python -m t2t.finetune`` does (``build_stream``), then prepares the first step as the trainer does
   (``StepDataset(stream, Batcher(t2t-tiny tokenizer), 32, ...)[0]``: 32 draws rendered, tokenised, packed
   and collated; no model), then ``--steps`` more steps. Reports the seconds of each, the process's resident
   set before resolving and its high-water mark after each stage (``/proc/self/status`` VmRSS / VmHWM),
   the growth against the bytes of every instance file, and a sha256 of the first step's examples.

``--before-src DIR`` (a checkout of an earlier commit, e.g. ``git archive REV | tar -x -C DIR``) also
measures each mixture's ``lazy`` mode with that checkout's code, in the same run, as mode ``before``:
what a change to loading costs or saves, on the same files and the same machine load.

Modes: ``eager`` is the stream as it was before the lazy reader (``num_rows`` = ``len(load_rows(...))``
through ``datasets``, every row of a drawn task held as a dict); ``lazy`` is the stream now (JSON Lines
counted and read by byte offset, :mod:`t2t.tasks.jsonlines`). The first-step sha256 must agree.
Prints a line per measure on stderr and one JSON line last on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from benchmarks.machine import machine_info, rss_mb  # noqa: E402
from t2t.errors import T2TError, run_cli  # noqa: E402

SNI_TASKS, SNI_INSTANCES, SNI_TEST_TASKS = 1616, 5_000_000, 119
MAX_PER_TASK = 6500
CATEGORIES = ["Question Answering", "Sentiment Analysis", "Textual Entailment", "Program Execution",
              "Translation", "Summarization", "Named Entity Recognition", "Text Categorization",
              "Coreference Resolution", "Question Generation", "Commonsense Classification", "Paraphrasing",
              "Title Generation", "Fill in The Blank", "Answerability Classification", "Misc."]


def default_instances(tasks: int) -> int:
    return int(round(tasks * SNI_INSTANCES / SNI_TASKS, -3))


def instance_counts(tasks: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """Per-task instance counts: lognormal, in [30, MAX_PER_TASK], summing to ``total``."""
    if total > tasks * MAX_PER_TASK or total < tasks:
        raise T2TError(f"--instances {total}: {tasks} tasks hold between {tasks} and {tasks * MAX_PER_TASK}")
    raw = rng.lognormal(math.log(1800), 1.0, tasks)
    lo = min(30, total // tasks)
    scale = 1.0
    for _ in range(60):  # scale until the cut counts sum to the total
        counts = np.clip(raw * scale, lo, MAX_PER_TASK)
        scale *= total / counts.sum()
    counts = np.floor(np.clip(raw * scale, lo, MAX_PER_TASK)).astype(np.int64)
    for i in np.argsort(-raw):  # hand the rounding remainder to the tasks with room, largest first
        if counts.sum() >= total:
            break
        counts[i] = min(MAX_PER_TASK, counts[i] + total - counts.sum())
    return counts


class Words:
    """Seeded pseudo-words (a fixed vocabulary of 4,000) and sentences of lognormal length."""

    def __init__(self, rng: np.random.Generator) -> None:
        syllables = [c + v for c in "bcdfghklmnprstvwz" for v in "aeiou"]
        self.vocab = np.array(["".join(rng.choice(syllables, int(rng.integers(1, 4)))) for _ in range(4000)])
        self.rng = rng

    def text(self, median: float, sigma: float = 0.8, most: int = 600) -> str:
        return self.texts(1, median, sigma, most)[0]

    def texts(self, count: int, median: float, sigma: float = 0.8, most: int = 600) -> list[str]:
        lengths = np.clip(np.round(self.rng.lognormal(math.log(median), sigma, count)), 1, most).astype(np.int64)
        words = self.vocab[self.rng.integers(0, len(self.vocab), int(lengths.sum()))].tolist()
        ends = np.cumsum(lengths).tolist()
        return [" ".join(words[e - n:e]).capitalize() + "." for e, n in zip(ends, lengths.tolist(), strict=True)]


def write_task(path: Path, index: int, count: int, words: Words) -> None:
    """One SNI-shaped task JSON, its instances written one by one (the files are the size of SNI's)."""
    rng = words.rng
    example = lambda: {"input": words.text(40), "output": words.text(3, most=40),  # noqa: E731
                       "explanation": words.text(15)}
    head = {"Contributors": ["sni_scale benchmark"], "Source": ["synthetic"], "URL": [],
            "Categories": [CATEGORIES[index % len(CATEGORIES)]], "Reasoning": [], "Definition": [words.text(57, 0.5)],
            "Input_language": ["English"], "Output_language": ["English"], "Instruction_language": ["English"],
            "Domains": ["Miscellaneous"], "Positive Examples": [example() for _ in range(int(rng.integers(2, 4)))],
            "Negative Examples": [example() for _ in range(2)]}
    inputs = words.texts(count, 45)
    n_refs = np.where(rng.random(count) < 0.8, 1, rng.integers(2, 5, count))
    refs = words.texts(int(n_refs.sum()), 3, most=100)
    ends = np.cumsum(n_refs).tolist()
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "Instances": [')
        for k in range(count):
            inst = {"id": f"task{index:04d}-{k}", "input": inputs[k], "output": refs[ends[k] - n_refs[k]:ends[k]]}
            f.write(("," if k else "") + json.dumps(inst, ensure_ascii=False))
        f.write("]}")


def prepare(work: Path, tasks: int, total: int, seed: int) -> dict:
    """Generate, import and write the mixtures under ``work``; what it made and how long each part took."""
    from t2t.tasks.importers.sni import SniImport, import_tasks, mixture_text

    rng = np.random.default_rng(seed)
    counts = instance_counts(tasks, total, rng)
    words = Words(rng)
    raw, out, mixtures = work / "sni_json", work / "tasks", work / "mixtures"
    for folder in (raw, out, mixtures):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    t0 = time.perf_counter()
    paths = []
    for i, n in enumerate(counts.tolist()):
        paths.append(raw / f"task{i:04d}_synthetic_{CATEGORIES[i % len(CATEGORIES)].split()[0].lower()}.json")
        write_task(paths[-1], i, n, words)
    generate_s = time.perf_counter() - t0
    n_test = max(1, round(tasks * SNI_TEST_TASKS / SNI_TASKS)) if tasks > 1 else 0
    test = {p.stem for p in rng.choice(np.array(paths, dtype=object), n_test, replace=False)}
    t0 = time.perf_counter()
    done = SniImport([], [], [], {})
    for k in range(0, len(paths), 100):  # import_tasks stages a call's rows in memory: 100 files at a time
        part = import_tasks(paths[k:k + 100], out, test)
        for field in ("task_files", "test_tasks", "train_tasks"):
            getattr(done, field).extend(getattr(part, field))
    import_s = time.perf_counter() - t0
    text = mixture_text(done)
    (mixtures / "sni.yaml").write_text(text, encoding="utf-8")
    full = {**yaml.safe_load(text), "rate": {"strategy": "proportional"}}
    del full["train_limit"]
    (mixtures / "sni_all.yaml").write_text(yaml.safe_dump(full, sort_keys=False, width=1000), encoding="utf-8")
    data_bytes = sum(p.stat().st_size for p in (out / "data").glob("*.jsonl"))
    train_instances = int(sum(n for p, n in zip(paths, counts.tolist(), strict=True) if p.stem not in test))
    return {"tasks": tasks, "instances": int(counts.sum()), "train_tasks": len(done.train_tasks),
            "test_tasks": len(done.test_tasks), "train_instances": train_instances,
            "instances_per_task": {"min": int(counts.min()), "median": int(np.median(counts)),
                                   "mean": round(float(counts.mean()), 1), "max": int(counts.max())},
            "sni_json_bytes": sum(p.stat().st_size for p in paths), "instance_file_bytes": data_bytes,
            "generate_s": round(generate_s, 1), "import_s": round(import_s, 1)}


def measure(work: Path, mixture: str, mode: str, steps: int, batch_size: int) -> dict:
    """One fresh process: resolve, first step, more steps; seconds and resident memory of each."""
    import datasets

    import t2t.tasks.sources as sources
    from t2t.data.batches import Batcher, StepDataset
    from t2t.mixtures import stream as stream_module
    from t2t.modeling.loading import load_tokenizer, resolve_model
    from t2t.training.config import build_config

    datasets.disable_progress_bars()
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
    if mode == "eager":  # the stream before the lazy reader: every count and every row through datasets
        sources.num_rows = _eager_num_rows
    cfg = build_config({"batch_size": batch_size})
    tokenizer = load_tokenizer(resolve_model("t2t-tiny"))
    batcher = Batcher(tokenizer, cfg.data, decoder_start_id=0)
    rss0, _ = rss_mb()
    t0 = time.perf_counter()
    stream = stream_module.build_stream(mixture, task_dirs=[str(work / "tasks")],
                                        mixture_dirs=[str(work / "mixtures")])
    stream.lazy = mode == "lazy"
    resolve_s = time.perf_counter() - t0
    _, hwm_resolve = rss_mb()
    steps_ds = StepDataset(stream, batcher, batch_size, 1, 0, 1)
    t1 = time.perf_counter()
    first = steps_ds[0]
    first_s = time.perf_counter() - t1
    if first.error:
        raise T2TError(first.error)
    _, hwm_first = rss_mb()
    digest = hashlib.sha256(json.dumps([[d.task, d.row, d.template, d.example.input, d.example.target]
                                        for d in stream.draws(0, batch_size)]).encode()).hexdigest()[:16]
    t2 = time.perf_counter()
    for step in range(1, steps + 1):
        steps_ds[step]
    more_s = time.perf_counter() - t2
    rss_end, hwm_end = rss_mb()
    return {"mixture": mixture, "mode": mode, "train_tasks": len(stream.names),
            "train_examples": int(stream.sizes.sum()), "resolve_s": round(resolve_s, 2),
            "first_step_s": round(first_s, 2), "to_first_step_s": round(resolve_s + first_s, 2),
            "steps_after": steps, "steps_after_s": round(more_s, 2),
            "tasks_read": len(stream._rows), "rss_before_mb": round(rss0, 1),
            "peak_rss_after_resolve_mb": round(hwm_resolve, 1), "peak_rss_after_first_step_mb": round(hwm_first, 1),
            "peak_rss_after_steps_mb": round(hwm_end, 1), "rss_after_steps_mb": round(rss_end, 1),
            "growth_to_first_step_mb": round(hwm_first - rss0, 1), "growth_after_steps_mb": round(hwm_end - rss0, 1),
            "first_step_sha256": digest}


def _eager_num_rows(task, split: str) -> int:
    from t2t.tasks.sources import _generator_plan, load_rows

    if "generator" in task.source and split in task.splits:
        _, n, _ = _generator_plan(task, task.splits[split])
        return min(n, task.limit.get(split, n))
    return len(load_rows(task, split))


def run_measure(work: Path, mixture: str, mode: str, args: argparse.Namespace) -> dict:
    cache = Path(tempfile.mkdtemp(prefix="sni_scale_hf_", dir=work))
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    script = os.path.abspath(__file__)
    if mode == "before":  # the earlier checkout's own script measures its lazy stream
        script = os.path.join(os.path.abspath(args.before_src), "benchmarks", "sni_scale.py")
    cmd = [sys.executable, script, "--measure", f"{mixture}:{'lazy' if mode == 'before' else mode}",
           "--work", str(work), "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode != 0:
        raise T2TError(f"measuring {mixture}:{mode} failed: {proc.stderr.strip()[-2000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "mode": mode}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--instances", type=int, default=None,
                        help="total instances (default: SNI's 5M / 1,616 tasks, times --tasks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for the generated files (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="measure the files already in --work")
    parser.add_argument("--mixtures", default="sni,sni_all")
    parser.add_argument("--modes", default="eager,lazy")
    parser.add_argument("--steps", type=int, default=100, help="steps after the first (default 100)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--before-src", default=None,
                        help="a checkout of an earlier commit: also measure its lazy stream (mode 'before')")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # MIXTURE:MODE, in the child
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    if args.measure:
        mixture, _, mode = args.measure.partition(":")
        print(json.dumps(measure(Path(args.work), mixture, mode, args.steps, args.batch_size)))
        return 0
    temporary = args.work is None
    work = Path(args.work or tempfile.mkdtemp(prefix="sni_scale_"))
    try:
        total = args.instances if args.instances is not None else default_instances(args.tasks)
        result: dict = {"benchmark": "sni_scale", "seed": args.seed, "batch_size": args.batch_size,
                        "machine": machine_info()}
        if args.reuse:
            result["data"] = json.loads((work / "prepared.json").read_text())
        else:
            result["data"] = prepare(work, args.tasks, total, args.seed)
            (work / "prepared.json").write_text(json.dumps(result["data"]))
        data = result["data"]
        print(f"{data['tasks']} task files, {data['instances']:,} instances, "
              f"{data['instance_file_bytes'] / 2**20:,.0f} MiB of instance files; generated in "
              f"{data['generate_s']} s, imported in {data['import_s']} s", file=sys.stderr)
        runs = []
        modes = [m for m in args.modes.split(",") if m]
        if args.before_src:
            if not (Path(args.before_src) / "benchmarks" / "sni_scale.py").is_file():
                raise T2TError(f"--before-src {args.before_src}: no benchmarks/sni_scale.py there; give a checkout "
                               "of t2t (git archive REV | tar -x -C DIR)")
            modes = ["before", *modes]
        for mixture in [m for m in args.mixtures.split(",") if m]:
            for mode in modes:
                r = run_measure(work, mixture, mode, args)
                r["growth_per_instance_byte"] = round(r["growth_after_steps_mb"] * 2**20
                                                      / data["instance_file_bytes"], 4)
                runs.append(r)
                print(f"{mixture:>8} {mode:>5}: resolve {r['resolve_s']:7.2f} s, "
                      f"first step {r['first_step_s']:6.2f} s, "
                      f"{r['steps_after']} more steps {r['steps_after_s']:6.2f} s ({r['tasks_read']} tasks read); "
                      f"RSS +{r['growth_to_first_step_mb']:.0f} MiB to the first step, "
                      f"+{r['growth_after_steps_mb']:.0f} MiB after", file=sys.stderr)
        result["runs"] = runs
        for mixture in {r["mixture"] for r in runs}:
            by = {r["mode"]: r for r in runs if r["mixture"] == mixture}
            if "eager" in by and "lazy" in by:
                e, z = by["eager"], by["lazy"]
                result.setdefault("ratios", {})[mixture] = {
                    "to_first_step_eager_lazy": round(e["to_first_step_s"] / max(z["to_first_step_s"], 1e-9), 1),
                    "growth_after_steps_eager_lazy": round(e["growth_after_steps_mb"]
                                                           / max(z["growth_after_steps_mb"], 1e-9), 1),
                    "same_first_step": e["first_step_sha256"] == z["first_step_sha256"]}
            if "before" in by and "lazy" in by:
                b, z = by["before"], by["lazy"]
                result.setdefault("ratios_before", {})[mixture] = {
                    "resolve_before_now": round(b["resolve_s"] / max(z["resolve_s"], 1e-9), 1),
                    "to_first_step_before_now": round(b["to_first_step_s"] / max(z["to_first_step_s"], 1e-9), 1),
                    "growth_to_first_step_before_now": round(b["growth_to_first_step_mb"]
                                                             / max(z["growth_to_first_step_mb"], 1e-9), 1),
                    "same_first_step": b["first_step_sha256"] == z["first_step_sha256"]}
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result))
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
