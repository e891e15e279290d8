"""FSDP through an accelerate config, on 2 CPU processes (gloo): the update of one process, an exact resume,
an adapter that plain peft loads (issue #16, scale-out).

accelerate 1.15 runs FSDP only on accelerators: on CPU it drops an FSDP config and trains with DDP, which
t2t refuses (first test). torch's FSDP2 runs on CPU with gloo, so the other test lifts only accelerate's
gate (tests/training/fsdp_on_cpu.py, which says what it changes) and trains through accelerate's own FSDP2
preparation: T5 blocks and the whole model sharded by ``fully_shard``, parameters and Adam states DTensors.
A launch's two processes spend most of their time starting (imports); the one-process reference runs in
the test's own process meanwhile, on a CI machine's 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from t2t.errors import T2TError
from t2t.training.config import build_config
from t2t.training.recipe import train

REPO = Path(__file__).resolve().parents[2]
MIXTURE = """\
description: a small mixture for tests
include: {tasks: [sentiment_movie, topic_sentence, arith_sum, extract_person]}
heldout: {tasks: [sentiment_product]}
rate: {strategy: proportional, cap: 3000}
"""
# The accelerate config of docs/scale-out.md, with use_cpu: true and 2 processes.
FSDP2_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: T5Block
  fsdp_reshard_after_forward: true
  fsdp_state_dict_type: FULL_STATE_DICT
  fsdp_cpu_ram_efficient_loading: false
mixed_precision: 'no'
num_machines: 1
num_processes: 2
use_cpu: true
"""
# Adam's update is linear in the gradient with epsilon far above the gradients and no clipping (see
# tests/training/test_finetune.py::test_torchrun_finetune_matches_one_process for why that bound holds).
OPTIONS = ["--mixture", "small", "--max-steps", "4", "--save-steps", "2", "--keep-checkpoints", "5",
           "--batch-size", "8", "--lora-dropout", "0", "--eval-steps", "0", "--no-progress", "--warmup-steps", "0",
           "--lr", "1", "--adam-epsilon", "1", "--max-grad-norm", "0"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fsdp")
    (folder / "mixtures").mkdir()
    (folder / "mixtures" / "small.yaml").write_text(MIXTURE)
    (folder / "fsdp2.yaml").write_text(FSDP2_CONFIG)
    (folder / "fsdp1.yaml").write_text(FSDP2_CONFIG.replace("fsdp_version: 2", "fsdp_version: 1").replace(
        "fsdp_reshard_after_forward: true", "fsdp_sharding_strategy: FULL_SHARD"))
    return folder


def start(config: Path, *args: str) -> subprocess.Popen[str]:
    """``accelerate launch`` started in the background: the test trains its one-process reference meanwhile."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # port 0: accelerate picks a free port, so that two test runs on one machine never collide
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--main_process_port",
           "0", *args]
    # a session of its own, so that a test that fails before it waits can stop the launcher and its workers
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
                            start_new_session=True)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        stop(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[str]]]:
    """Launches a test started and waits for later: stopped if the test fails before it waits."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        stop(proc)


def launch(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return finish(start(config, *args))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.mark.parametrize("config", ["fsdp2.yaml", "fsdp1.yaml"])
def test_an_fsdp_config_on_cpu_is_refused_not_run_as_ddp(folders: Path, config: str) -> None:
    out = folders / f"refused-{config}"
    done = launch(folders / config, "-m", "t2t.finetune", *OPTIONS, "--mixture-dir", str(folders / "mixtures"),
                  "--output-dir", str(out))
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all("the accelerate config asks for FSDP" in line for line in errors), done.stderr[-2000:]
    # each process exits 2 with that one line (the launcher's own traceback reports the exit code)
    assert "exitcode  : 2" in done.stderr and str(REPO / "t2t") not in done.stderr
    assert not (out / "checkpoints").exists()


def test_fsdp2_trains_the_update_of_one_process_and_resumes_exactly(folders: Path,
                                                                   background: list[subprocess.Popen[str]]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM

    mixtures, two = str(folders / "mixtures"), folders / "two"
    script = str(REPO / "tests" / "training" / "fsdp_on_cpu.py")
    done = launch(folders / "fsdp2.yaml", script, *OPTIONS, "--mixture-dir", mixtures, "--output-dir", str(two),
                  "--merge")
    assert done.returncode == 0, done.stderr[-3000:]
    # Really sharded: each rank holds half of every parameter (DTensors), through accelerate's FSDP2 prepare.
    shards = [line for line in done.stderr.splitlines() if line.startswith("fsdp-test rank")]
    assert len(shards) == 2 and all("FSDPSeq2SeqLoss" in line for line in shards), done.stderr[-3000:]
    here, total = (int(x) for x in shards[0].split("parameters, ")[1].split(" elements")[0].split(" of "))
    assert 0 < here <= total // 2 + 1000
    assert json.loads((two / "versions.json").read_text())["processes"] == 2
    # Resume under FSDP2 from the step-2 checkpoint (checked at the end), launched now to overlap the rest.
    resumed = folders / "resumed"
    shutil.copytree(two, resumed)
    for name in ("checkpoints/checkpoint-000004", "adapter", "merged"):
        shutil.rmtree(resumed / name)
    resuming = start(folders / "fsdp2.yaml", script, *OPTIONS, "--mixture-dir", mixtures, "--output-dir",
                     str(resumed), "--merge", "--resume")
    background.append(resuming)

    one = folders / "one"
    one_options = {"mixture": "small", "mixture_dir": [mixtures], "max_steps": 4, "save_steps": 2,
                   "keep_checkpoints": 5, "batch_size": 8, "lora_dropout": 0.0, "eval_steps": 0, "progress": False,
                   "warmup_steps": 0, "lr": 1.0, "adam_epsilon": 1.0, "max_grad_norm": 0.0, "merge": True}
    train(build_config({**one_options, "output_dir": str(one)}))
    losses = [[json.loads(x)["loss"] for x in (folders / d / "metrics.jsonl").read_text().splitlines()]
              for d in ("one", "two")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    weights = {d: load_file(str(folders / d / "adapter" / "adapter_model.safetensors")) for d in ("one", "two")}
    update = max(w.abs().max().item() for k, w in weights["one"].items() if "lora_B" in k)
    assert update > 1e-2
    assert max_diff(weights["one"], weights["two"]) < 1e-4 * update
    # Checkpoints are sharded (torch.distributed.checkpoint): each rank wrote its own shards, nothing
    # gathered, and state.json records the sha256 of every file, shards included.
    ckpt = two / "checkpoints" / "checkpoint-000002"
    files = json.loads((ckpt / "state.json").read_text())["files"]
    assert {"sharded/.metadata", "sharded/__0_0.distcp", "sharded/__1_0.distcp", "rng-rank0.safetensors",
            "rng-rank1.safetensors"} == set(files)
    assert not (ckpt / "trainable.safetensors").exists()
    # Resumed by 1 process (no FSDP): DCP reads the 2 ranks' shards whole; the run ends as the run of one.
    single = folders / "resumed-by-one"
    shutil.copytree(two, single)
    for name in ("checkpoints/checkpoint-000004", "adapter", "merged"):
        shutil.rmtree(single / name)
    train(build_config({**one_options, "output_dir": str(single), "resume": True}))
    by_one = load_file(str(single / "adapter" / "adapter_model.safetensors"))
    assert max_diff(weights["one"], by_one) < 1e-4 * update
    # A damaged shard is refused by name before DCP reads anything (its sha256 in state.json).
    damaged = folders / "damaged"
    shutil.copytree(two, damaged, ignore=shutil.ignore_patterns("checkpoint-000004", "adapter", "merged"))
    shard = damaged / "checkpoints" / "checkpoint-000002" / "sharded" / "__1_0.distcp"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(T2TError, match=f"{shard}.*delete {shard.parents[1]} to resume from the checkpoint before"):
        train(build_config({**one_options, "output_dir": str(damaged), "resume": True}))
    # merged/ (made from the base and the saved adapter, since a sharded model cannot merge in place)
    merged = {d: load_file(str(folders / d / "merged" / "model.safetensors")) for d in ("one", "two")}
    assert max_diff(merged["one"], merged["two"]) < 1e-4 * update

    # The adapter loads in plain peft, with the weights t2t wrote.
    base = json.loads((two / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    plain = PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(base), two / "adapter")
    loaded = {n: p for n, p in plain.named_parameters() if "lora_" in n}
    assert len(loaded) == len(weights["two"])
    for name, tensor in weights["two"].items():
        assert torch.equal(loaded[name.replace(".weight", ".default.weight")], tensor)

    # The resume under FSDP2 from the step-2 checkpoint: the same adapter and step-4 checkpoint, bit for bit.
    done = finish(resuming)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout + done.stderr
    assert max_diff(weights["two"], load_file(str(resumed / "adapter" / "adapter_model.safetensors"))) == 0.0
    step4 = [json.loads((d / "checkpoints" / "checkpoint-000004" / "state.json").read_text())["files"]
             for d in (two, resumed)]
    for files in step4:  # DCP's .metadata holds a per-save id: the same shards, another file
        files.pop("sharded/.metadata")
    assert step4[0] == step4[1]  # every shard and RNG file of the step-4 checkpoint, byte for byte (sha256)


def test_fsdp2_full_finetuning_saves_the_model_of_one_process(folders: Path,
                                                             background: list[subprocess.Popen[str]]) -> None:
    """--method full: every weight sharded; model/ is gathered whole (tied embeddings stay one tensor) and
    has the weights one process trains."""
    from t2t.modeling.loading import load_model, resolve_model

    mixtures, two = str(folders / "mixtures"), folders / "full-two"
    options = [*OPTIONS[:OPTIONS.index("--max-steps")], "--max-steps", "2", "--save-steps", "0",
               *OPTIONS[OPTIONS.index("--batch-size"):], "--method", "full"]
    running = start(folders / "fsdp2.yaml", str(REPO / "tests" / "training" / "fsdp_on_cpu.py"), *options,
                    "--mixture-dir", mixtures, "--output-dir", str(two))
    background.append(running)
    one = folders / "full-one"
    train(build_config({"mixture": "small", "mixture_dir": [mixtures], "output_dir": str(one), "max_steps": 2,
                        "save_steps": 0, "batch_size": 8, "lora_dropout": 0.0, "eval_steps": 0, "progress": False,
                        "warmup_steps": 0, "lr": 1.0, "adam_epsilon": 1.0, "max_grad_norm": 0.0, "method": "full"}))
    done = finish(running)
    assert done.returncode == 0, done.stderr[-3000:]
    base = load_file(str(Path(resolve_model("t2t-tiny")) / "model.safetensors"))
    weights = {d: load_file(str(d / "model" / "model.safetensors")) for d in (one, two)}
    update = max((weights[one][k] - base[k]).abs().max().item() for k in base)
    assert update > 1e-2
    assert max_diff(weights[one], weights[two]) < 1e-4 * update
    load_model(str(two / "model"))  # checksums recorded and verified
