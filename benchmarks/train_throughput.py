"""Training throughput: Hugging Face baselines against t2t's training step, in one process, on the same data.

    python benchmarks/train_throughput.py --shape tiny                 # CPU, about 2 minutes
    python benchmarks/train_throughput.py --shape base --device cuda --out base.json

Every variant trains the same model (random init, LoRA r=16 alpha 32 dropout 0.05 on every linear layer,
AdamW; bf16 autocast on a GPU, fp32 on a CPU) on synthetic long-tailed FLAN-like examples: random token
ids, input lengths lognormal (median 110) in [20, 1024], target lengths lognormal (median 8) in [1, 256],
the FLAN limits. Each round draws fresh examples; a and c train on exactly the same ones, in the same
order, ``--batch-size`` examples per optimizer step, so they see the same real (non-pad) tokens per step.

    a_*   the baseline as users run it: random order, ``DataCollatorForSeq2Seq``, ``model(**batch).loss``;
          ``a_sdpa`` is transformers' default attention.
    b_*   the best off-the-shelf setting: ``Trainer(group_by_length=True)``'s ``LengthGroupedSampler``
          (mega-batches of 50 batches sorted by input length) over a pool of 200 batches, same collator
          and loss, eager or sdpa attention. A round takes one batch at random from each of ``--steps``
          equal strata of the pool's batches ranked by real tokens, so it sees short and long batches in
          their proportions and about the same real tokens per step as a and c (reported per variant).
    c_*   t2t: each step's examples batched by t2t and trained with ``t2t.modeling.loss.seq2seq_loss_sum`` (loss
          summed, divided by the step's target tokens, so the update equals the unpacked one; checked per
          variant as ``loss_rel_diff``). ``c_now_L`` is ``t2t.training.recipe.backward_global_batch`` as it is:
          one micro-batch of rows packed to L input / L/4 target tokens. The others prototype another
          batching inside the step: ``c_grouped_T`` sorts the step's examples by length and cuts
          micro-batches of at most T padded tokens (no packing); ``c_packL_T`` packs rows of L / L/4
          tokens (longer examples get a row of their own), then cuts the rows, sorted by length, into
          micro-batches of at most T padded tokens. ``_sdpa`` switches attention; ``_compiled`` compiles
          each T5 block (slow to build; not in the default sets).

Rounds interleave the variants (rotated order); each variant's figure is its median over rounds. On a CPU
torch runs one thread by default (``--threads``): on a shared 2-core machine two OpenMP threads that
wait for each other made steps up to 25x slower and erratic. Peak memory: on a GPU
``torch.cuda.max_memory_allocated`` above what was held before the round (weights, optimizer state); on
a CPU the growth of the resident set (VmHWM, reset through /proc/self/clear_refs after malloc_trim) above
its size before the round; null where neither works. The last stdout line is one JSON object; ``--out``
also writes it after every round (a run cut short keeps its finished rounds).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from benchmarks.machine import machine_info, rss_mb  # noqa: E402
from t2t.data.packing import collate_packed, collate_padded, pack, token_budget_batches  # noqa: E402
from t2t.modeling.architecture import set_attention_implementation  # noqa: E402
from t2t.modeling.loss import seq2seq_loss_sum

# FLAN-T5 shapes (google/flan-t5-base, -large configs) and t2t-tiny's (t2t.modeling.tiny.TinyShape).
SHAPES = {
    "tiny": dict(
        vocab_size=4196,
        d_model=256,
        d_ff=512,
        d_kv=64,
        num_heads=4,
        num_layers=3,
        num_decoder_layers=3,
        dropout_rate=0.0,
        tie_word_embeddings=True,
    ),
    "base": dict(
        vocab_size=32128,
        d_model=768,
        d_ff=2048,
        d_kv=64,
        num_heads=12,
        num_layers=12,
        num_decoder_layers=12,
        dropout_rate=0.1,
        tie_word_embeddings=False,
    ),
    "large": dict(
        vocab_size=32128,
        d_model=1024,
        d_ff=2816,
        d_kv=64,
        num_heads=16,
        num_layers=24,
        num_decoder_layers=24,
        dropout_rate=0.1,
        tie_word_embeddings=False,
    ),
}
# Per shape: examples per step, steps per round, rounds, and the variants run by default.
DEFAULTS = {
    # CPU: a random-order step of 16 examples at FLAN lengths takes ~10 s and ~3.5 GB on one core, so
    # the tiny run keeps a to 3 steps a round; its a/c ratio is far from the goal either way.
    "tiny": dict(
        batch_size=16,
        steps=3,
        rounds=2,
        variants="a_sdpa,b_eager,b_sdpa,c_now_512,c_now_1024,c_grouped_2048,c_pack256_1024,c_pack512_1024,"
        "c_pack512_2048",
    ),
    "base": dict(
        batch_size=64,
        steps=12,
        rounds=2,
        variants="a_sdpa,b_eager,b_sdpa,c_now_1024,c_now_1024_sdpa,c_grouped_16384,c_pack256_16384,"
        "c_pack512_8192,c_pack512_16384,c_pack512_32768,c_pack512_16384_sdpa",
    ),
    "large": dict(
        batch_size=32,
        steps=6,
        rounds=1,
        variants="a_sdpa,b_eager,b_sdpa,c_now_1024,c_grouped_16384,c_pack512_16384",
    ),
}
MAX_INPUT, MAX_TARGET = 1024, 256
LORA_R, LORA_ALPHA, LORA_DROPOUT = 16, 32, 0.05  # t2t's defaults (t2t.modeling.config.LoraSettings)


# -- data -------------------------------------------------------------------------------------------


def synthetic_examples(
    n: int, vocab: int, seed: int, max_input: int = MAX_INPUT, max_target: int = MAX_TARGET
) -> list[dict[str, list[int]]]:
    """Long-tailed FLAN-like examples of random token ids, each side ending with EOS (1)."""
    g = torch.Generator().manual_seed(seed)

    def lengths(median: float, sigma: float, low: int, high: int) -> list[int]:
        x = torch.empty(n).log_normal_(math.log(median), sigma, generator=g)
        return x.round().clamp(low, high).long().tolist()

    n_in, n_out = lengths(110, 0.9, min(20, max_input), max_input), lengths(8, 1.3, 1, max_target)
    out = []
    for a, b in zip(n_in, n_out, strict=True):
        ids = torch.randint(3, vocab, (a + b,), generator=g).tolist()
        out.append({"input_ids": ids[: a - 1] + [1], "labels": ids[a : a + b - 1] + [1]})
    return out


def real_tokens(examples: Sequence[dict]) -> int:
    return sum(len(e["input_ids"]) + len(e["labels"]) for e in examples)


# -- model ------------------------------------------------------------------------------------------


def build_model(
    shape: str, device: str, seed: int = 0, lora_dropout: float = LORA_DROPOUT
) -> torch.nn.Module:
    from transformers import T5Config, T5ForConditionalGeneration

    from t2t.modeling.loading import apply_lora

    config = T5Config(
        **SHAPES[shape],
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = T5ForConditionalGeneration(config)
    return apply_lora(model, LORA_R, LORA_ALPHA, lora_dropout).train()


def pad_tokenizer():
    """A tokenizer that only pads (what DataCollatorForSeq2Seq asks of it): pad 0, eos 1."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<unk>")),
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
    )


# -- variants: how each one cuts a round into steps and micro-batches -------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    family: str  # hf | t2t_now | t2t
    attn: str = "eager"
    row_len: int = 0  # packed row input length (target rows are a quarter); 0 = no packing
    budget: int = 0  # padded tokens per micro-batch (t2t prototypes)
    compile: bool = False


def parse_variant(name: str) -> Variant:
    """``a_sdpa``, ``b_eager``, ``c_now_1024[_sdpa]``, ``c_grouped_T[_sdpa]``, ``c_packL_T[_sdpa]``, and
    any c name with ``_compiled`` appended."""
    parts = name.split("_")
    compiled = parts[-1] == "compiled"
    parts = parts[:-1] if compiled else parts
    attn = parts.pop() if parts[-1] in ("eager", "sdpa") else "eager"
    try:
        if parts[0] in ("a", "b") and len(parts) == 1 and not compiled:
            return Variant(name, "hf", attn)
        if parts[:2] == ["c", "now"]:
            return Variant(name, "t2t_now", attn, row_len=int(parts[2]), compile=compiled)
        if parts[:2] == ["c", "grouped"]:
            return Variant(name, "t2t", attn, budget=int(parts[2]), compile=compiled)
        if parts[0] == "c" and parts[1].startswith("pack"):
            return Variant(
                name, "t2t", attn, row_len=int(parts[1][4:]), budget=int(parts[2]), compile=compiled
            )
    except (IndexError, ValueError):
        pass
    raise SystemExit(
        f"unknown variant {name!r}: use a_sdpa, b_eager, c_now_1024, c_grouped_8192, "
        "c_pack512_8192, optionally with _sdpa / _eager and (c only) _compiled"
    )


@dataclass
class Plan:
    """One variant's round: optimizer steps, each a list of micro-batches, each a list of rows (lists of
    indices into ``examples``; a row holds one example unless the variant packs)."""

    examples: Sequence[dict]
    steps: list[list[list[list[int]]]]

    def real_tokens(self) -> int:
        return sum(
            len(self.examples[i]["input_ids"]) + len(self.examples[i]["labels"])
            for step in self.steps
            for mb in step
            for row in mb
            for i in row
        )

    def padded_tokens(self) -> int:
        """Encoder + decoder positions computed, padding included (rows padded to their micro-batch's
        longest)."""
        total = 0
        for step in self.steps:
            for rows in step:
                for key in ("input_ids", "labels"):
                    total += len(rows) * max(sum(len(self.examples[i][key]) for i in row) for row in rows)
        return total


def chunks(order: Sequence[int], size: int) -> list[list[int]]:
    return [list(order[i : i + size]) for i in range(0, len(order), size)]


def grouped_batches(examples: Sequence[dict], batch_size: int, seed: int) -> list[list[int]]:
    """Batches in the order of ``Trainer(group_by_length=True)``: its LengthGroupedSampler over input lengths
    (mega-batches of 50 batches sorted by length)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    lengths = [len(e["input_ids"]) for e in examples]
    order = list(
        LengthGroupedSampler(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed))
    )
    return [b for b in chunks(order, batch_size) if len(b) == batch_size]


def packed_rows(examples: Sequence[dict], idx: Sequence[int], row_len: int) -> list[list[int]]:
    """First-fit-decreasing rows of ``row_len`` / ``row_len // 4`` tokens; a longer example gets a row of
    its own."""
    target_len = max(row_len // 4, 1)
    fits = [
        i
        for i in idx
        if len(examples[i]["input_ids"]) <= row_len and len(examples[i]["labels"]) <= target_len
    ]
    rows = [[fits[j] for j in row] for row in pack([examples[i] for i in fits], row_len, target_len)]
    fit = set(fits)
    return rows + [[i] for i in idx if i not in fit]


def t2t_micro_batches(
    variant: Variant, examples: Sequence[dict], idx: Sequence[int]
) -> list[list[list[int]]]:
    """One step's examples -> micro-batches of rows: packed (or one example per row), rows sorted by length
    and cut so that rows x (longest input + longest target) stays within the variant's token budget."""
    rows = packed_rows(examples, idx, variant.row_len) if variant.row_len else [[i] for i in idx]
    sizes = [
        {
            "input_ids": [0] * sum(len(examples[i]["input_ids"]) for i in row),
            "labels": [0] * sum(len(examples[i]["labels"]) for i in row),
        }
        for row in rows
    ]
    return [[rows[r] for r in group] for group in token_budget_batches(sizes, variant.budget)]


def make_plan(
    variant: Variant,
    examples: Sequence[dict],
    batch_size: int,
    grouped: tuple | None = None,
    steps: int = 0,
    round_index: int = 0,
) -> Plan:
    """a and c take ``examples`` in order, ``batch_size`` per step. b takes ``steps`` batches from
    ``grouped`` = (pool, the pool's length-grouped batches): one at random from each of ``steps`` equal
    strata of the batches ranked by real tokens, so that a short round still sees short and long batches
    in their proportions and about the same real tokens per step as a and c."""
    if variant.name.startswith("b") and grouped is not None:
        pool, batches = grouped
        cost = [sum(len(pool[i]["input_ids"]) + len(pool[i]["labels"]) for i in b) for b in batches]
        ranked = sorted(range(len(batches)), key=cost.__getitem__)
        rng = random.Random(round_index)
        picked = [
            batches[rng.choice(ranked[k * len(ranked) // steps : (k + 1) * len(ranked) // steps])]
            for k in range(steps)
        ]
        rng.shuffle(picked)
        return Plan(pool, [[[[i] for i in b]] for b in picked])
    batches = chunks(range(len(examples)), batch_size)
    if variant.family == "t2t":
        return Plan(examples, [t2t_micro_batches(variant, examples, b) for b in batches])
    return Plan(examples, [[[[i] for i in b]] for b in batches])


# -- running ----------------------------------------------------------------------------------------


class Runner:
    """The model, its optimizer, and one step function per family; ``run`` trains one variant's plan."""

    def __init__(self, model: torch.nn.Module, device: str, bf16: bool) -> None:
        from transformers import DataCollatorForSeq2Seq

        from t2t.modeling.architecture import unwrap_model

        self.model, self.device, self.bf16 = model, device, bf16
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-4)
        self.collator = DataCollatorForSeq2Seq(
            pad_tokenizer(), model=unwrap_model(model), label_pad_token_id=-100
        )
        self.compiled = False

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def hf_step(self, examples: Sequence[dict], step: list[list[list[int]]]) -> None:
        for rows in step:
            batch = self.to_device(self.collator([dict(examples[row[0]]) for row in rows]))
            with self.autocast():
                loss = self.model(**batch).loss  # the mean over the micro-batch's target tokens, as Trainer
            loss.backward()

    def t2t_step(self, examples: Sequence[dict], step: list[list[list[int]]], packed: bool) -> None:
        global_targets = sum(len(examples[i]["labels"]) for rows in step for row in rows for i in row)
        for rows in step:
            if packed:
                batch = collate_packed([[examples[i] for i in row] for row in rows])
            else:
                batch = collate_padded([examples[row[0]] for row in rows])
            with self.autocast():
                loss_sum, _ = seq2seq_loss_sum(self.model, self.to_device(batch))
            (loss_sum / global_targets).backward()

    def run(self, variant: Variant, plan: Plan, now: tuple | None) -> None:
        from t2t.training.recipe import backward_global_batch

        set_attention_implementation(self.model, variant.attn)
        if variant.compile:
            self.compile_blocks()
        for step in plan.steps:
            if variant.family == "hf":
                self.hf_step(plan.examples, step)
            elif variant.family == "t2t_now":
                batcher, accelerator, loss_module = now
                tokens = [plan.examples[row[0]] for row in step[0]]
                backward_global_batch(loss_module, batcher, tokens, 1, accelerator)
            else:
                self.t2t_step(plan.examples, step, packed=bool(variant.row_len))
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.sync()

    def compile_blocks(self) -> None:
        """Compile each T5 block in place (regional compilation): every call path, packed or not, uses it,
        and blocks of the same kind share one compiled graph."""
        from t2t.modeling.architecture import unwrap_model

        if self.compiled:
            return
        torch._dynamo.config.recompile_limit = 64  # encoder/decoder blocks x masks x shapes
        base = unwrap_model(self.model)
        for stack in (base.encoder, base.decoder):
            for block in stack.block:
                block.compile(dynamic=True)
        self.compiled = True


class NowModule(torch.nn.Module):
    """What t2t.training.recipe hands backward_global_batch: a module returning (loss sum, target tokens)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch):
        return seq2seq_loss_sum(self.model, batch)


def t2t_now(row_len: int, device: str, bf16: bool, model: torch.nn.Module) -> tuple:
    """t2t.training.recipe's Batcher (packing at ``row_len`` / ``row_len // 4``) and an Accelerator, as train()
    has them."""
    from accelerate import Accelerator

    from t2t.data.batches import Batcher
    from t2t.training.config import FinetuneConfig

    cfg = FinetuneConfig()
    cfg = replace(
        cfg,
        data=replace(
            cfg.data,
            max_input_len=MAX_INPUT,
            max_target_len=MAX_TARGET,
            packing=True,
            pack_input_len=row_len,
            pack_target_len=row_len // 4,
        ),
    )
    batcher = Batcher(pad_tokenizer(), cfg.data, decoder_start_id=0)
    accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not device.startswith("cuda"))
    return batcher, accelerator, NowModule(model)


def now_padded_tokens(plan: Plan, batcher) -> int:
    """Positions computed by t2t.training.recipe's step: the batches its Batcher makes (packed rows, grouped under
    the token budget), padding included."""
    total = 0
    for step in plan.steps:
        tokens = [plan.examples[row[0]] for row in step[0]]
        for batch in batcher.batches(tokens, batcher.budget):
            total += batch["input_ids"].numel() + batch["labels"].numel()
    return total


class MemoryMeter:
    """Peak memory of a block above what was held when it began (MiB); None where it cannot be measured."""

    def __init__(self, device: str) -> None:
        self.device, self.cpu_ok = device, False
        if not device.startswith("cuda"):
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                self.libc = ctypes.CDLL("libc.so.6")
                self.cpu_ok = True
            except OSError:
                pass

    @contextlib.contextmanager
    def measure(self, out: dict):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = torch.cuda.memory_allocated()
            yield
            torch.cuda.synchronize()
            out["peak"] = (torch.cuda.max_memory_allocated() - start) / 2**20
        elif self.cpu_ok:
            self.libc.malloc_trim(0)  # hand freed heap back, so that the next variant's growth is its own
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident set
            start, _ = rss_mb()
            yield
            out["peak"] = rss_mb()[1] - start
        else:
            yield
            out["peak"] = None


def loss_check(runner: Runner, variant: Variant, plan: Plan, now: tuple | None) -> float:
    """|step loss - unpacked loss| / unpacked loss, in fp32 without dropout, on the plan's step that holds
    the longest input (the unpacked loss: each example alone, t2t's padded path)."""
    ex = plan.examples
    step = max(
        plan.steps, key=lambda s: max(len(ex[i]["input_ids"]) for rows in s for row in rows for i in row)
    )
    idx = [i for rows in step for row in rows for i in row]
    model = runner.model
    model.eval()
    set_attention_implementation(model, variant.attn)
    try:
        with torch.no_grad():
            ref = sum(
                float(seq2seq_loss_sum(model, runner.to_device(collate_padded([ex[i]])))[0]) for i in idx
            )
            if variant.family == "t2t_now":
                batches = [now[0].collate([ex[i] for i in idx])]
            elif variant.row_len:
                batches = [collate_packed([[ex[i] for i in row] for row in rows]) for rows in step]
            else:
                batches = [collate_padded([ex[row[0]] for row in rows]) for rows in step]
            got = sum(float(seq2seq_loss_sum(model, runner.to_device(b))[0]) for b in batches)
    finally:
        model.train()
    return abs(got - ref) / ref


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    parser.add_argument("--variants", help="comma-separated variant names (default: the shape's set)")
    parser.add_argument("--batch-size", type=int, help="examples per optimizer step (all variants)")
    parser.add_argument("--steps", type=int, help="optimizer steps per round")
    parser.add_argument(
        "--rounds", type=int, help="rounds (fresh examples each); a variant's figure is its median"
    )
    parser.add_argument("--max-input-len", type=int, default=MAX_INPUT)
    parser.add_argument("--max-target-len", type=int, default=MAX_TARGET)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--lora-dropout",
        type=float,
        default=LORA_DROPOUT,
        help=f"LoRA dropout (default {LORA_DROPOUT}, t2t's default)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared CPU, OpenMP threads that wait for "
        "each other made 2-thread steps up to 25x slower and erratic; 0 = torch's choice)",
    )
    parser.add_argument("--out", help="also write the JSON here, after every round")
    args = parser.parse_args(argv)

    defaults = DEFAULTS[args.shape]
    batch_size = args.batch_size or defaults["batch_size"]
    n_steps, rounds = args.steps or defaults["steps"], args.rounds or defaults["rounds"]
    variants = [parse_variant(v) for v in (args.variants or defaults["variants"]).split(",") if v]
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads and not device.startswith("cuda"):
        torch.set_num_threads(args.threads)
    bf16 = device.startswith("cuda")
    vocab = SHAPES[args.shape]["vocab_size"]

    def examples_for(seed: int, n: int) -> list[dict]:
        return synthetic_examples(n, vocab, seed, args.max_input_len, args.max_target_len)

    model = build_model(args.shape, device, args.seed, args.lora_dropout)
    runner = Runner(model, device, bf16)
    meter = MemoryMeter(device)
    nows = {v.name: t2t_now(v.row_len, device, bf16, model) for v in variants if v.family == "t2t_now"}
    # b draws its batches from a pool large enough for Trainer's 50-batch mega-batches (4 of them).
    pool = examples_for(args.seed + 10_000, max(200 * batch_size, batch_size * n_steps))
    grouped = (pool, grouped_batches(pool, batch_size, args.seed))

    result = {
        "benchmark": "train_throughput",
        "shape": args.shape,
        **machine_info(device),
        "precision": "bf16 autocast" if bf16 else "fp32",
        "lora": {"r": LORA_R, "alpha": LORA_ALPHA, "dropout": args.lora_dropout, "targets": "all linear"},
        "examples_per_step": batch_size,
        "steps_per_round": n_steps,
        "rounds": rounds,
        "data": {
            "max_input_len": args.max_input_len,
            "max_target_len": args.max_target_len,
            "mean_input_len": round(sum(len(e["input_ids"]) for e in pool) / len(pool), 1),
            "mean_target_len": round(sum(len(e["labels"]) for e in pool) / len(pool), 1),
        },
        "complete": False,
        "variants": {},
    }
    stats = {
        v.name: {"tps": [], "peak": [], "real": 0, "padded": 0, "steps": 0, "micro": 0, "error": None}
        for v in variants
    }

    def plan_for(v: Variant, examples: list[dict], r: int, warm: bool = False) -> Plan:
        return make_plan(v, examples, batch_size, None if warm else grouped, n_steps, r)

    def failed(v: Variant, exc: BaseException) -> None:
        stats[v.name]["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        runner.optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()

    # Warm-up (kernels, allocator, compilation): on a GPU each variant's first real step; on a CPU, where
    # nothing is compiled and a long step costs tens of seconds, one step of short examples.
    first = examples_for(args.seed, batch_size * n_steps)
    warm = first if device.startswith("cuda") else examples_for(args.seed + 20_000, batch_size)
    if not device.startswith("cuda"):
        warm = [{"input_ids": e["input_ids"][-32:], "labels": e["labels"][-8:]} for e in warm]
    for v in variants:
        try:
            plan = plan_for(v, warm, 0, warm=True)
            runner.run(v, Plan(plan.examples, plan.steps[:1]), nows.get(v.name))
            if v.family != "hf":
                stats[v.name]["loss_rel_diff"] = loss_check(
                    runner, v, plan_for(v, first, 0), nows.get(v.name)
                )
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            failed(v, exc)

    for r in range(rounds):
        examples = first if r == 0 else examples_for(args.seed + r, batch_size * n_steps)
        live = [v for v in variants if stats[v.name]["error"] is None]
        shift = r % max(len(live), 1)
        for v in live[shift:] + live[:shift]:  # rotate, so that no variant always runs first or last
            plan = plan_for(v, examples, r)
            s = stats[v.name]
            mem: dict = {}
            try:
                with meter.measure(mem):
                    start = time.perf_counter()
                    runner.run(v, plan, nows.get(v.name))
                    seconds = time.perf_counter() - start
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                failed(v, exc)
                continue
            real = plan.real_tokens()
            s["tps"].append(real / seconds)
            s["real"] += real
            s["padded"] += (
                now_padded_tokens(plan, nows[v.name][0]) if v.name in nows else plan.padded_tokens()
            )
            s["steps"] += len(plan.steps)
            s["micro"] += sum(len(step) for step in plan.steps)
            if mem.get("peak") is not None:
                s["peak"].append(mem["peak"])
        result["rounds_done"] = r + 1
        summarise(result, variants, stats)
        if args.out:
            write_json(args.out, result)
    result["complete"] = True
    summarise(result, variants, stats)
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result))
    return 0


def summarise(result: dict, variants: Sequence[Variant], stats: dict) -> None:
    for v in variants:
        s = stats[v.name]
        result["variants"][v.name] = {
            "tokens_per_s": round(statistics.median(s["tps"])) if s["tps"] else None,
            "tokens_per_s_rounds": [round(x) for x in s["tps"]],
            "real_tokens_per_step": round(s["real"] / s["steps"]) if s["steps"] else None,
            "padding_share": round(1 - s["real"] / s["padded"], 3) if s["padded"] else None,
            "peak_mem_mb": round(max(s["peak"]), 1) if s["peak"] else None,
            "micro_batches_per_step": round(s["micro"] / s["steps"], 2) if s["steps"] else None,
            "attn": v.attn,
            "loss_rel_diff": s.get("loss_rel_diff"),
            "error": s["error"],
        }
    table = result["variants"]

    def fastest(names: list[str]) -> str | None:
        names = [n for n in names if table[n]["tokens_per_s"]]
        return max(names, key=lambda n: table[n]["tokens_per_s"]) if names else None

    best = {g: fastest([n for n in table if n[0] == g]) for g in ("a", "b", "c")}
    best["c_now"] = fastest([n for n in table if n.startswith("c_now")])

    def pick(name: str | None, key: str):
        return table[name][key] if name else None

    def ratio(x, y):
        return round(x / y, 2) if x and y else None

    tps = {k: pick(n, "tokens_per_s") for k, n in best.items()}
    mem = {k: pick(n, "peak_mem_mb") for k, n in best.items()}
    per_example = result["data"]["mean_input_len"] + result["data"]["mean_target_len"]
    result.update(
        {
            "best": best,
            "tokens_per_s": tps,
            "peak_mem_mb": mem,
            "examples_per_s": {k: round(v / per_example, 1) if v else None for k, v in tps.items()},
            "padding_share": {k: pick(n, "padding_share") for k, n in best.items()},
            "ratio_c_a": ratio(tps["c"], tps["a"]),
            "ratio_c_b": ratio(tps["c"], tps["b"]),
            "ratio_c_now_a": ratio(tps["c_now"], tps["a"]),
            "ratio_c_now_b": ratio(tps["c_now"], tps["b"]),
            "memory_ratio_a_c": ratio(mem["a"], mem["c"]),
        }
    )


def write_json(path: str, data: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
