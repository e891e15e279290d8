"""Decoder-only training: packed rows against padded, length-grouped batches, and the LM head only where a label
is predicted against the full logits, in one process on the same data.

    python benchmarks/causal_packing.py --shape tiny                    # CPU, well under a minute
    python benchmarks/causal_packing.py --shape smollm2-135m --device cuda --out smollm2.json

Every variant trains the same randomly initialised Llama-shaped model (LoRA r 16, alpha 32, no dropout, on
q/k/v/o/gate/up/down; AdamW; bf16 autocast on a GPU, fp32 on a CPU) on the same synthetic instruction
examples: random token ids, prompt lengths lognormal (median ``--prompt-median``) in [4, --max-input-len],
target lengths lognormal (median 8) in [1, --max-target-len] plus EOS; loss on the target and EOS
(t2t.data.causal's layout). ``--batch-size`` examples per optimiser step, cut by t2t's ``Batcher`` into
micro-batches of at most ``--budget`` padded tokens, the loss summed and divided by the step's target
tokens (so the variants compute the same update; checked as ``loss_rel_diff``).

    padded        one example per row, right-padded, rows length-grouped under the budget (--packing false)
    packed        rows of --row-len tokens, first-fit decreasing, block-diagonal causal mask (the default)
    packed_full   packed, but the LM head over every position (what ``model(...).logits`` costs)

Rounds interleave the variants (rotated order); each figure is the median over rounds. Peak memory is
measured as in train_throughput.py (GPU: max allocated above the start; CPU: growth of the resident set).
Shapes: ``tiny`` and ``small`` for CPUs; ``smollm2-135m`` (SmolLM2-135M's config: 576 wide, 30 layers, GQA
9/3, 49,152-token vocabulary, tied head) and ``llama-1b`` (Llama 3.2 1B's: 2,048 wide, 16 layers, GQA 32/8,
128,256-token vocabulary) built from configs, no download. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import statistics
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from benchmarks.machine import machine_info  # noqa: E402
from benchmarks.train_throughput import MemoryMeter  # noqa: E402
from t2t.data.batches import Batcher  # noqa: E402
from t2t.data.config import DataConfig  # noqa: E402
from t2t.modeling import loss as loss_mod  # noqa: E402
from t2t.modeling.loading import apply_lora  # noqa: E402

SHAPES = {
    "tiny": dict(vocab_size=8192, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
    "small": dict(vocab_size=49152, hidden_size=256, intermediate_size=768, num_hidden_layers=6,
                  num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
                         rope_theta=100000.0, rms_norm_eps=1e-5),
    "llama-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                     num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True,
                     rope_theta=500000.0, rms_norm_eps=1e-5),
}
VARIANTS = ("padded", "packed", "packed_full")
EOS = 2


def make_examples(n: int, args: argparse.Namespace, rng: random.Random, vocab: int) -> list[dict[str, list[int]]]:
    out = []
    for _ in range(n):
        n_in = min(args.max_input_len, max(4, round(rng.lognormvariate(math.log(args.prompt_median), 0.8))))
        n_out = min(args.max_target_len - 1, max(1, round(rng.lognormvariate(math.log(8), 0.9))))
        prompt = [1] + [rng.randrange(3, vocab) for _ in range(n_in - 1)]
        target = [rng.randrange(3, vocab) for _ in range(n_out)] + [EOS]
        out.append({"input_ids": prompt + target, "labels": [-100] * len(prompt) + target})
    return out


def build_model(shape: str, device: str, attn: str) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, bos_token_id=1, eos_token_id=EOS)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.set_attn_implementation(attn)
    model = apply_lora(model, r=16, alpha=32, dropout=0.0).to(device)
    return model


def run_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batcher: Batcher, tokens: list,
             device: str, autocast: contextlib.AbstractContextManager) -> float:
    prepared = batcher.step_batches(tokens, 0, 1, 1)
    total = torch.zeros((), device=device)
    for cpu_batch in prepared.batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in cpu_batch.items()}
        with autocast:
            loss_sum, _ = loss_mod.causal_loss_sum(model, batch)
        (loss_sum / prepared.global_tokens).backward()
        total += loss_sum.detach()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(total) / prepared.global_tokens


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"))
    parser.add_argument("--batch-size", type=int, default=16, help="examples per optimiser step")
    parser.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-input-len", type=int, default=256)
    parser.add_argument("--max-target-len", type=int, default=64)
    parser.add_argument("--prompt-median", type=float, default=60.0)
    parser.add_argument("--row-len", type=int, default=320, help="packed row length (pack_input_len + "
                        "pack_target_len)")
    parser.add_argument("--budget", type=int, default=0, help="padded tokens per micro-batch (0: 1024 on a "
                        "CPU, 16384 on a GPU, as t2t's default)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the JSON here after every round")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    on_gpu = args.device.startswith("cuda")
    budget = args.budget or (16384 if on_gpu else 1024)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else contextlib.nullcontext()
    model = build_model(args.shape, args.device, args.attn)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    tokenizer = SimpleNamespace(pad_token_id=0)
    pack = args.row_len - args.row_len // 5
    batchers = {name: Batcher(tokenizer, DataConfig(packing=name != "padded", pack_input_len=pack,
                                                    pack_target_len=args.row_len - pack, micro_batch_tokens=budget),
                              0, family="causal") for name in VARIANTS}
    vocab = SHAPES[args.shape]["vocab_size"]
    rng = random.Random(0)
    meter = MemoryMeter(args.device)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    peaks: dict[str, list[float]] = {v: [] for v in VARIANTS}
    real = {v: 0 for v in VARIANTS}
    result: dict = {**machine_info(args.device), "shape": args.shape, "attn": args.attn, "args": vars(args)}
    # Warm-up (allocator, kernels) and the exactness check on one batch, before any timing.
    warm = make_examples(args.batch_size, args, rng, vocab)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    losses = {}
    for name in VARIANTS:
        with contextlib.ExitStack() as stack:
            if name == "packed_full":
                stack.enter_context(_full_logits())
            losses[name] = run_step(model, optimizer, batchers[name], warm, args.device, autocast)
        model.load_state_dict(state)
    result["loss_rel_diff"] = max(abs(losses[v] - losses["padded"]) / losses["padded"] for v in VARIANTS)
    for r in range(args.rounds):
        steps = [make_examples(args.batch_size, args, rng, vocab) for _ in range(args.steps)]
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        for name in order:
            out: dict = {}
            with contextlib.ExitStack() as stack:
                if name == "packed_full":
                    stack.enter_context(_full_logits())
                with meter.measure(out):
                    if on_gpu:
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    for tokens in steps:
                        run_step(model, optimizer, batchers[name], tokens, args.device, autocast)
                    if on_gpu:
                        torch.cuda.synchronize()
                    elapsed = time.perf_counter() - start
            times[name].append(elapsed / args.steps)
            if out.get("peak") is not None:
                peaks[name].append(out["peak"])
            real[name] = sum(len(ex["input_ids"]) for tokens in steps for ex in tokens) // args.steps
        result["variants"] = {
            name: {"step_s": statistics.median(times[name]),
                   "tokens_per_s": real[name] / statistics.median(times[name]),
                   "peak_mem_mb": statistics.median(peaks[name]) if peaks[name] else None}
            for name in VARIANTS}
        v = result["variants"]
        result["rounds_done"] = r + 1
        result["ratio_packed_padded"] = v["packed"]["tokens_per_s"] / v["padded"]["tokens_per_s"]
        if v["packed"]["peak_mem_mb"] and v["padded"]["peak_mem_mb"]:
            result["memory_ratio_padded_packed"] = v["padded"]["peak_mem_mb"] / v["packed"]["peak_mem_mb"]
        result["ratio_full_head_step_time"] = v["packed_full"]["step_s"] / v["packed"]["step_s"]
        if args.out:
            with open(args.out + ".tmp", "w") as f:
                json.dump(result, f, indent=1)
            os.replace(args.out + ".tmp", args.out)
    print(json.dumps(result))
    return result


@contextlib.contextmanager
def _full_logits():
    """The LM head over every position, as ``model(...).logits`` computes it."""
    saved = loss_mod._takes_logits_to_keep
    loss_mod._takes_logits_to_keep = lambda model: False
    try:
        yield
    finally:
        loss_mod._takes_logits_to_keep = saved


if __name__ == "__main__":
    main()
