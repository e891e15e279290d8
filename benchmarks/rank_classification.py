"""Rank-classification examples per second: t2t's scorer against one forward per (input, choice).

    python benchmarks/rank_classification.py --shape tiny             # CPU, under a minute
    python benchmarks/rank_classification.py --shape base --device cuda

``t2t.evaluation.scoring.score_choices`` encodes each input once and scores all its choices in one decoder pass;
``score_choices_naive`` runs ``model(input_ids, labels=choice)`` once per choice (what a hand-written
loop does). Both score the same synthetic FLAN-like prompts (inputs of 20-400 pseudo-words with an
``OPTIONS:`` list, 2-5 choices of 1-6 words) with the same random-init model of the given shape and a
SentencePiece tokenizer trained on those prompts (no download, no ``datasets``). Rounds alternate the two
and each figure is the median; the JSON also says whether both pick the same choices and how far their
log-probabilities differ. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from benchmarks.machine import machine_info  # noqa: E402
from benchmarks.train_throughput import SHAPES  # noqa: E402
from t2t.evaluation.scoring import predict, score_choices, score_choices_naive  # noqa: E402


def synthetic_tasks(n: int, seed: int) -> tuple[list[str], list[list[str]], list[str]]:
    """(inputs, choices, corpus): prompts with an OPTIONS list, their choices, and text for the tokenizer."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(2, 8))) for _ in range(1500)})
    inputs, choices = [], []
    for _ in range(n):
        body = " ".join(
            rng.choice(words) for _ in range(int(min(400, max(20, rng.lognormvariate(4.3, 0.6)))))
        )
        options = [
            " ".join(rng.choice(words) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(2, 5))
        ]
        inputs.append(body + "\nOPTIONS:\n" + "\n".join(f"- {o}" for o in options))
        choices.append(options)
    corpus = inputs + [o for row in choices for o in row] + words
    return inputs, choices, corpus


def build(shape: str, device: str, corpus: list[str], folder: str):
    from transformers import T5Config, T5ForConditionalGeneration

    from t2t.modeling.tiny import train_tokenizer

    tokenizer = train_tokenizer(corpus, folder, vocab_size=min(4000, SHAPES[shape]["vocab_size"] - 100))
    dims = dict(SHAPES[shape], vocab_size=max(len(tokenizer), SHAPES[shape]["vocab_size"]))
    config = T5Config(
        **dims, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = T5ForConditionalGeneration(config)
    model.set_attn_implementation("eager")
    return model.eval(), tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--n", type=int, help="inputs per round (default 256 on CPU, 1024 on a GPU)")
    parser.add_argument(
        "--naive-n",
        type=int,
        help="inputs the naive loop scores per round (default n/4; "
        "its rate is per example and does not depend on n)",
    )
    parser.add_argument(
        "--batch-sizes",
        help="inputs per encoder pass for t2t, comma-separated (default 8,32 "
        "on CPU, 32,128 on a GPU; t2t.evaluate's default is 32)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (see train_throughput)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads and not device.startswith("cuda"):
        torch.set_num_threads(args.threads)
    n = args.n or (1024 if device.startswith("cuda") else 256)
    naive_n = min(args.naive_n or max(n // 4, 1), n)
    sizes = [
        int(b) for b in (args.batch_sizes or ("32,128" if device.startswith("cuda") else "8,32")).split(",")
    ]
    inputs, choices, corpus = synthetic_tasks(n, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        model, tokenizer = build(args.shape, device, corpus, folder)

    def fast(k: int, bs: int):
        return score_choices(model, tokenizer, inputs[:k], choices[:k], batch_size=bs)

    def naive(k: int, bs: int = 1):
        return score_choices_naive(model, tokenizer, inputs[:k], choices[:k])

    def timed(fn, k: int, bs: int) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(k, bs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return k / (time.perf_counter() - start)

    methods = [(f"t2t_bs{bs}", fast, n, bs) for bs in sizes]
    methods.append(("naive", naive, naive_n, 1))
    for _, fn, k, bs in methods:  # warm-up
        fn(min(k, bs, 4), bs)
    rates: dict[str, list[float]] = {name: [] for name, *_ in methods}
    for r in range(args.rounds):
        shift = r % len(methods)
        for name, fn, k, bs in methods[shift:] + methods[:shift]:
            rates[name].append(timed(fn, k, bs))

    k = min(naive_n, 32)
    ref = naive(k)
    got = fast(k, sizes[0])
    diff = max(
        abs(x.logprob - y.logprob)
        for rr, rg in zip(ref, got, strict=True)
        for x, y in zip(rr, rg, strict=True)
    )
    med = {name: round(statistics.median(v), 1) for name, v in rates.items()}
    best = max((m for m in med if m.startswith("t2t_bs")), key=med.get)
    result = {
        "benchmark": "rank_classification",
        "shape": args.shape,
        **machine_info(device),
        "inputs": n,
        "naive_inputs": naive_n,
        "mean_choices": round(sum(map(len, choices)) / n, 2),
        "mean_input_tokens": round(sum(len(x) for x in tokenizer(inputs)["input_ids"]) / n, 1),
        "rounds": args.rounds,
        "precision": "fp32",
        "attention": "eager",
        "examples_per_s": {"t2t": med[best], "naive": med["naive"]},
        "best": {"t2t": best},
        "examples_per_s_all": med,
        "examples_per_s_rounds": {name: [round(x, 1) for x in v] for name, v in rates.items()},
        "ratio_t2t_naive": round(med[best] / med["naive"], 2),
        "same_predictions": predict(ref) == predict(got),
        "max_logprob_diff": diff,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
