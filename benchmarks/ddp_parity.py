"""How far apart the adapters of a 1-process and a 2-process (torchrun, gloo, CPU) finetune run are, and how
far real errors move them: the figures behind tests/training/test_finetune.py's DDP parity bound.

Two optimiser settings, each 2 steps of batch 8 on the tests' small mixture with t2t-tiny:

* ``default``: AdamW as t2t trains (eps 1e-8, clipping 1.0): the first updates are lr * sign(g), so float
  noise in near-zero gradients moves weights by a fraction of lr, by an amount that depends on the CPU;
* ``linear``: lr 1, eps 1, no clipping: the update is linear in the gradient (what the test uses).

For ``linear`` it also trains one process with another seed, a learning rate 1% higher (a global
gradient-scale error) and half the batch, to show the size of a real difference. Every gap is the largest
absolute difference over the adapter's tensors, and relative to the largest LoRA B entry (B starts at zero,
so that is the largest update).

    python benchmarks/ddp_parity.py             # about 1 minute on 2 cores; last line: JSON
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
MIXTURE = """\
description: the tests' small mixture
include: {tasks: [sentiment_movie, topic_sentence, arith_sum, extract_person]}
heldout: {tasks: [sentiment_product]}
rate: {strategy: proportional, cap: 3000}
"""
LINEAR = ["--lr", "1", "--adam-epsilon", "1", "--max-grad-norm", "0"]


def finetune(mixtures: Path, out: Path, extra: list[str], nproc: int = 1) -> dict:
    args = ["-m", "t2t.finetune", "--mixture", "small", "--mixture-dir", str(mixtures), "--max-steps", "2",
            "--batch-size", "8", "--lora-dropout", "0", "--eval-steps", "0", "--save-steps", "0", "--no-progress",
            "--warmup-steps", "0", *extra, "--output-dir", str(out)]
    launch = ["-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port", "29541"]
    cmd = [sys.executable, *(launch if nproc > 1 else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        sys.exit(done.stderr[-2000:])
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def gap(a: dict, b: dict) -> dict[str, float]:
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    update = max(w.abs().max().item() for k, w in a.items() if "lora_B" in k)
    return {"max_abs_diff": diff, "largest_update": update, "relative": diff / update}


def main() -> int:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "mixtures").mkdir()
    (tmp / "mixtures" / "small.yaml").write_text(MIXTURE)
    result: dict = {"machine": platform.processor() or platform.machine()}
    try:
        result["cpu"] = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                             if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    for name, extra in (("default", []), ("linear", LINEAR)):
        one = finetune(tmp / "mixtures", tmp / f"{name}-1", extra)
        row = {"two_processes": gap(one, finetune(tmp / "mixtures", tmp / f"{name}-2", extra, nproc=2))}
        if name == "linear":
            row["other_seed"] = gap(one, finetune(tmp / "mixtures", tmp / "seed", [*extra, "--seed", "1"]))
            scaled = [*extra[:1], "1.01", *extra[2:]]
            row["lr_times_1.01"] = gap(one, finetune(tmp / "mixtures", tmp / "lr", scaled))
            row["half_batch"] = gap(one, finetune(tmp / "mixtures", tmp / "half", [*extra, "--batch-size", "4"]))
        result[name] = row
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
