"""Rows/s and peak memory of the n-gram contamination report (``python -m t2t.mixture check``).

    python benchmarks/contamination.py [--train-tokens 10000000] [--heldout-rows 2000] [--words 100] [--n 13]
                                       [--mixture offline] [--out FILE]

Measures, in one process, :func:`t2t.mixtures.contamination.check`:

- ``offline``: on ``--mixture`` (default the offline suite; ``none`` skips it), as the command runs it;
- ``generated``: on a generated corpus written as JSON Lines task files under a temporary folder: 4
  training tasks holding ``--train-tokens`` words together (rows of ``--words`` words drawn from a
  Zipf-shaped vocabulary of 20,000 made-up words, the shape of word frequencies in text), and one held-out
  task of ``--heldout-rows`` rows, of which every 50th is planted in a training task (every other one of
  those as a near copy: capitalised, punctuated) so that the dirty rows are known: the run checks it found
  exactly those, and that each names the one training task it was planted in (``origins_right``);
- ``generated_quarter``: the same held-out task against the first quarter of each training task (the
  mixture's ``train_limit``), to show the memory does not grow with the streamed side;
- ``train_indexed``: the generated mixture with the training side forced to be the index (the other
  direction of the same check; same dirty rows), on the quarter corpus.

Each measure runs twice: once timed (rows/s over both sides' rows and training n-grams/s, per wall second
and per CPU second of this process: on a shared machine the CPU time is the steadier figure), once under
``tracemalloc`` for the peak of Python and numpy allocations during the check (numpy reports its buffers to
tracemalloc). ``ru_maxrss`` of the whole process (imports included) is printed at the end. Prints a line per
measure on stderr and one JSON line last on stdout (``--out`` writes it to a file too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from t2t.atomic import write_text  # noqa: E402
from t2t.errors import run_cli  # noqa: E402
from t2t.mixtures import contamination  # noqa: E402
from t2t.mixtures.resolve import load_mixture  # noqa: E402

TRAIN_TASKS = 4
VOCAB = 20_000
PLANT_EVERY = 50
TASK = """---
cluster: {cluster}
source: {{files: {{{split}: {name}.jsonl}}}}
---
{{% block echo %}}
{{{{ text }}}}
|||
{{{{ label }}}}
{{% endblock %}}
"""


def _vocabulary(rng: np.random.Generator) -> np.ndarray:
    letters = rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=(VOCAB, 8)).tolist()
    lengths = rng.integers(3, 9, size=VOCAB).tolist()
    return np.array(["".join(w[:k]) for w, k in zip(letters, lengths, strict=True)])


def _rows(rng: np.random.Generator, vocab: np.ndarray, count: int, words: int) -> list[str]:
    ranks = np.minimum(rng.zipf(1.2, size=(count, words)) - 1, VOCAB - 1)
    return [" ".join(r) for r in vocab[ranks]]


def _write_task(folder: Path, name: str, cluster: str, split: str, texts: list[str]) -> None:
    lines = "".join(json.dumps({"text": t, "label": "x"}) + "\n" for t in texts)
    (folder / f"{name}.jsonl").write_text(lines)
    (folder / f"{name}.jinja").write_text(TASK.format(cluster=cluster, split=split, name=name))


def near_copy(text: str) -> str:
    """The same words, capitalised and punctuated: equal after GPT-3's normalisation."""
    return " ".join(w.upper() + ("," if i % 3 == 0 else "") for i, w in enumerate(text.split())) + "!"


def generate(folder: Path, train_tokens: int, heldout_rows: int, words: int, seed: int = 0) -> list[int]:
    """Task files and a mixture ``gen`` (and ``gen_quarter``) under ``folder``; returns the planted rows."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(rng)
    held = _rows(rng, vocab, heldout_rows, words)
    planted = list(range(0, heldout_rows, PLANT_EVERY))
    per_task = max(1, train_tokens // words // TRAIN_TASKS)
    for k in range(TRAIN_TASKS):
        texts = _rows(rng, vocab, per_task, words)
        for j, row in enumerate(planted[k::TRAIN_TASKS]):  # spread over tasks, inside each task's first quarter
            texts[j * 3 % max(1, per_task // 4)] = held[row] if j % 2 == 0 else near_copy(held[row])
        _write_task(folder, f"gen_train_{k}", "train_c", "train", texts)
    _write_task(folder, "gen_heldout", "heldout_c", "validation", held)
    names = [f"gen_train_{k}" for k in range(TRAIN_TASKS)] + ["gen_heldout"]
    include = f"include: {{tasks: [{', '.join(names)}]}}\nheldout: {{tasks: [gen_heldout]}}\n"
    write_text(folder / "gen.yaml", include)
    write_text(folder / "gen_quarter.yaml", include + f"train_limit: {max(1, per_task // 4)}\n")
    return planted


def measure(mixture, mode: str | None, n: int) -> dict:
    """One check timed (wall and this process's CPU time), then again under tracemalloc for its peak."""
    start, cpu = time.perf_counter(), time.process_time()
    report = contamination.check(mixture, n=n, mode=mode)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    tracemalloc.start()
    contamination.check(mixture, n=n, mode=mode)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    held_rows = sum(t.rows for t in report.tasks)
    rows = held_rows + report.train_rows
    return {"mode": report.mode, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "heldout_rows": held_rows,
            "train_rows": report.train_rows, "train_ngrams": report.train_ngrams,
            "rows_per_s": round(rows / seconds, 1), "rows_per_cpu_s": round(rows / cpu, 1),
            "train_ngrams_per_cpu_s": round(report.train_ngrams / cpu, 1),
            "peak_mib": round(peak / 2**20, 2), "index_mib": round(report.index_bytes / 2**20, 3),
            "dirty": {t.task: len(t.dirty) for t in report.tasks}, "report": report}


def _log(name: str, m: dict) -> None:
    print(f"{name}: {m['mode']}, {m['heldout_rows']} held-out + {m['train_rows']} training rows in {m['seconds']} s, "
          f"{m['cpu_seconds']} s CPU ({m['rows_per_cpu_s']} rows/CPU-s, {m['train_ngrams_per_cpu_s']} training "
          f"n-grams/CPU-s), peak {m['peak_mib']} MiB "
          f"(index {m['index_mib']} MiB), dirty {m['dirty']}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-tokens", type=int, default=10_000_000, help="words of the generated training side")
    parser.add_argument("--heldout-rows", type=int, default=2000)
    parser.add_argument("--words", type=int, default=100, help="words per generated row")
    parser.add_argument("--n", type=int, default=contamination.DEFAULT_N)
    parser.add_argument("--mixture", default="offline", help="a mixture to check as is ('none': skip)")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    result: dict = {"benchmark": "contamination", "n": args.n, "python": platform.python_version(),
                    "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "load_before": os.getloadavg()[0]}
    if args.mixture != "none":
        m = measure(load_mixture(args.mixture), None, args.n)
        _log(args.mixture, m)
        result["offline"] = {k: v for k, v in m.items() if k != "report"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        planted = generate(folder, args.train_tokens, args.heldout_rows, args.words)
        result["generate_seconds"] = round(time.perf_counter() - start, 1)
        load = {"task_dirs": [folder], "mixture_dirs": [folder]}
        runs = (("generated", "gen", None), ("generated_quarter", "gen_quarter", None),
                ("train_indexed", "gen_quarter", contamination.MODES[1]))
        for name, mixture_name, mode in runs:
            m = measure(load_mixture(mixture_name, **load), mode, args.n)
            _log(name, m)
            held = m.pop("report").tasks[0]
            m["found_planted"] = list(held.dirty) == planted
            # planted[j] went to gen_train_{j % 4} only (generate): each dirty row must name that task alone
            m["origins_right"] = [o.train_tasks for o in held.origins] == [
                (f"gen_train_{j % TRAIN_TASKS}",) for j in range(len(planted))]
            m["train_words"] = m["train_rows"] * args.words
            result[name] = m
    full, quarter = result["generated"], result["generated_quarter"]
    result["peak_ratio_full_vs_quarter"] = round(full["peak_mib"] / quarter["peak_mib"], 3)
    result["planted"] = len(planted)
    result["load_after"] = os.getloadavg()[0]
    result["ru_maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    text = json.dumps(result)
    if args.out:
        write_text(Path(args.out), text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
