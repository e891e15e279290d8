"""Examples per second per core through the mixture stream (one process = one core).

    python benchmarks/data_pipeline.py [--mixture offline] [--n 50000] [--seed 0] [--tokenizer PATH]

Measures, in one process:
- ``task_ids``: drawing task indices only (what the rate test uses);
- ``uncached``: every draw rendered (cache_size=0), the cost on data too large to memoise;
- ``first_pass`` / ``steady``: a memoising stream on its first n draws (rows load, renders fill the cache)
  and on the next n (mostly cache hits once tasks have cycled);
- ``tokenized``: the steady stream rendered and then tokenised one example at a time with
  ``t2t.data.tokens.tokenize_example`` (``--tokenizer``, default the offline t2t-tiny; ``none`` skips it);
- ``steps_workers_W``: what the trainer's loop consumes: whole steps of ``--batch-size`` examples drawn,
  rendered, tokenised, packed and collated into micro-batch tensors by ``t2t.data.batches.StepDataset``,
  through ``t2t.data.batches.step_loader`` with W DataLoader worker processes (``--workers``, default 0,1,2;
  a fresh stream each, rows loaded before timing, ``--steps`` steps timed after 2 warm-up steps).
Prints a human-readable line per measure on stderr and one JSON line last on stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from t2t.errors import run_cli  # noqa: E402
from t2t.mixtures.resolve import load_mixture  # noqa: E402
from t2t.mixtures.stream import ExampleStream  # noqa: E402


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def timed(it, n: int) -> tuple[int, float]:
    start = time.perf_counter()
    count = sum(1 for _ in itertools.islice(it, n))
    return count, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mixture", default="offline")
    parser.add_argument("--heldout", action="append", default=[])
    parser.add_argument("--n", type=int, default=50_000, help="draws per measure (default 50000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", default="t2t-tiny",
                        help="tokenizer for the tokenised measure (model name or folder; 'none' skips it)")
    parser.add_argument("--max-input-len", type=int, default=256)
    parser.add_argument("--max-target-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="examples per step (trainer default 32)")
    parser.add_argument("--steps", type=int, default=300, help="steps per workers setting (default 300)")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts (default 0,1,2)")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    import datasets

    datasets.disable_progress_bars()
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False  # no hub ping per local load
    t0 = time.perf_counter()
    mixture = load_mixture(args.mixture, heldout=args.heldout)
    load_s = time.perf_counter() - t0
    result: dict = {"benchmark": "data_pipeline", "mixture": args.mixture, "tasks": len(mixture.entries),
                    "n": args.n, "seed": args.seed, "mixture_load_s": round(load_s, 2),
                    "python": platform.python_version(), "cpu": platform.processor() or platform.machine()}

    stream = ExampleStream(mixture, seed=args.seed)
    t0 = time.perf_counter()
    ids = stream.task_ids(10 * args.n)
    result["task_ids_per_s"] = rate(len(ids), time.perf_counter() - t0)

    uncached = ExampleStream(mixture, seed=args.seed, cache_size=0)
    list(itertools.islice(uncached, 1000))  # load every task's rows first: measure rendering only
    count, seconds = timed(iter(uncached), args.n)
    result["uncached_per_s"] = rate(count, seconds)

    stream = ExampleStream(mixture, seed=args.seed)
    it = iter(stream)
    count, seconds = timed(it, args.n)
    result["first_pass_per_s"] = rate(count, seconds)
    count, seconds = timed(it, args.n)
    result["steady_per_s"] = rate(count, seconds)
    result["cached_renders"] = len(stream._cache)
    result["fallback_draws"] = sum(stream.fallbacks.values())

    result["tokenized_per_s"] = None
    if args.tokenizer.lower() == "none":
        result["tokenized_note"] = "skipped (--tokenizer none)"
    else:
        try:
            from t2t.data.tokens import tokenize_example
            from t2t.modeling.loading import load_tokenizer, resolve_model
        except ImportError as exc:
            result["tokenized_note"] = f"tokenisation not available: {exc}"
        else:
            tokenizer = load_tokenizer(resolve_model(args.tokenizer))
            start = time.perf_counter()
            count = 0
            for ex in itertools.islice(it, args.n):
                tokenize_example(tokenizer, ex.input, ex.target, args.max_input_len, args.max_target_len)
                count += 1
            result["tokenized_per_s"] = rate(count, time.perf_counter() - start)
            result["tokenizer"] = args.tokenizer

        if args.steps > 0:
            result["steps"] = step_rates(mixture, tokenizer, args)

    for key in ("task_ids_per_s", "uncached_per_s", "first_pass_per_s", "steady_per_s", "tokenized_per_s"):
        if result.get(key) is not None:
            print(f"{key:>18}: {result[key]:>12,.0f} examples/s on one core", file=sys.stderr)
    for workers, r in result.get("steps", {}).items():
        print(f"{'steps_workers_' + workers:>18}: {r:>12,.0f} examples/s (whole steps)", file=sys.stderr)
    print(json.dumps(result))
    return 0


def step_rates(mixture, tokenizer, args) -> dict[str, float]:
    """Examples/s of whole training steps (render, tokenise, pack, collate) per DataLoader worker count."""
    from t2t.data.batches import Batcher, StepDataset, step_loader
    from t2t.training.config import build_config

    cfg = build_config({"batch_size": args.batch_size, "max_input_len": args.max_input_len,
                        "max_target_len": args.max_target_len})
    batcher = Batcher(tokenizer, cfg.data, decoder_start_id=0)
    out = {}
    for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
        steps = StepDataset(ExampleStream(mixture, seed=args.seed), batcher, args.batch_size, 1, 0, 1)
        for warm in range(2):  # every task's rows loaded in this process, so forked workers inherit them
            steps[warm]
        start = time.perf_counter()
        count = sum(1 for _ in step_loader(steps, 2, 2 + args.steps, workers))
        out[str(workers)] = rate(count * args.batch_size, time.perf_counter() - start)
    return out


if __name__ == "__main__":
    sys.exit(run_cli(main))
