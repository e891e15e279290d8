"""The cost of one LoRA training step on the real offline decoder-only bases (smollm2-135m, gemma3-270m).

    python benchmarks/offline_bases.py --model smollm2-135m --steps 2
    python benchmarks/offline_bases.py --model gemma3-270m --steps 2 --loss-on all   # LM head everywhere

The step is t2t's own causal training path, on the base that ``--model NAME`` gives finetune (converted
once and cached, :mod:`t2t.modeling.gguf_bases`): LoRA r 16, alpha 32, dropout 0.05 on the architecture's
default targets (attention and MLP projections), ``--examples`` examples of exactly
``--prompt-len + --target-len`` tokens (prompt cut from the left, target ending in EOS, t2t.data.causal),
padded rows, fp32, the loss of :func:`t2t.modeling.loss.causal_loss_sum` (LM head only at labelled
positions unless ``--loss-on all``), backward, AdamW. One warm-up step, then ``--steps`` timed steps: the
median and the fastest wall time per step and the median process CPU time, with the load average before
and after. On a shared machine the fastest step is the best estimate of the cost on idle cores (the same
SmolLM2 step took 65.9 s and then 19.0 s at load 4 to 6; CPU time is no steadier, as busy threads spin
while they wait). The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from benchmarks.machine import machine_info  # noqa: E402
from t2t.data.causal import collate_causal_padded, tokenize_causal  # noqa: E402
from t2t.modeling.gguf_bases import GGUF_BASES  # noqa: E402
from t2t.modeling.loading import apply_lora, load_model, load_tokenizer, resolve_model  # noqa: E402
from t2t.modeling.loss import causal_loss_sum  # noqa: E402

# Ordinary English, long enough to fill any prompt and target length below (the content does not change
# the cost of a step; the lengths do).
WORDS = ("the quick brown fox jumps over the lazy dog while a review says the film was good and the plot was "
         "clear but the ending felt rushed so the question is whether the sentiment is positive ") * 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(GGUF_BASES), default="smollm2-135m")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=96)
    parser.add_argument("--target-len", type=int, default=32, help="target tokens, EOS included")
    parser.add_argument("--loss-on", choices=("target", "all"), default="target")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    path = resolve_model(args.model)
    tokenizer = load_tokenizer(path)
    model = apply_lora(load_model(path), 16, 32, 0.05)
    inputs = [f"Example {i}: {WORDS}" for i in range(args.examples)]
    targets = [f"answer {i} {WORDS}" for i in range(args.examples)]
    examples = tokenize_causal(tokenizer, inputs, targets, max_input_len=args.prompt_len,
                               max_target_len=args.target_len, loss_on=args.loss_on)
    batch = collate_causal_padded(examples, pad_id=tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    wall, cpu, losses = [], [], []
    for step in range(args.steps + 1):
        began, began_cpu = time.perf_counter(), time.process_time()
        loss, n = causal_loss_sum(model, batch)
        (loss / n).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        wall.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
        losses.append(round((loss / n).item(), 4))
        print(f"step {step}{' (warm-up)' if step == 0 else ''}: {wall[-1]:.2f} s wall, {cpu[-1]:.2f} s CPU, "
              f"loss {losses[-1]}", file=sys.stderr, flush=True)
    step_s = statistics.median(wall[1:])
    result = {"model": args.model, "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "targets": sorted(model.peft_config["default"].target_modules),
              "batch": list(batch["input_ids"].shape), "label_tokens": int(batch["labels"].ne(-100).sum()),
              "loss_on": args.loss_on, "threads": torch.get_num_threads(), "steps": args.steps,
              "step_s": round(step_s, 2), "fastest_step_s": round(min(wall[1:]), 2),
              "cpu_s": round(statistics.median(cpu[1:]), 2),
              "tokens_per_s": round(batch["input_ids"].numel() / step_s, 1), "losses": losses,
              "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in os.getloadavg()], "machine": machine_info("cpu")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
