"""A multi-node launch as docs/scale-out.md gives it (``torchrun --nnodes 2 --node-rank R --rdzv-endpoint
HOST:PORT``), with both "nodes" on this machine, one CPU process each (gloo): the two launchers meet at
the endpoint and train the adapter of one process (in the setting where Adam's update is linear in the
gradient: see tests/training/test_finetune.py::test_torchrun_finetune_matches_one_process).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from t2t.training.config import build_config
from t2t.training.recipe import train

REPO = Path(__file__).resolve().parents[2]
MIXTURE = """\
description: a small mixture for tests
include: {tasks: [sentiment_movie, topic_sentence, arith_sum, extract_person]}
heldout: {tasks: [sentiment_product]}
rate: {strategy: proportional, cap: 3000}
"""


@pytest.mark.slow
def test_two_nodes_meet_at_the_rendezvous_endpoint_and_train_the_adapter_of_one(tmp_path: Path) -> None:
    (tmp_path / "mixtures").mkdir()
    (tmp_path / "mixtures" / "small.yaml").write_text(MIXTURE)
    options = ["--mixture", "small", "--mixture-dir", str(tmp_path / "mixtures"), "--max-steps", "2",
               "--batch-size", "8", "--lora-dropout", "0", "--eval-steps", "0", "--no-progress", "--warmup-steps",
               "0", "--lr", "1", "--adam-epsilon", "1", "--max-grad-norm", "0"]
    out = tmp_path / "two"  # a shared folder, as on a cluster file system: rank 0 (node 0) writes it
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Both nodes need the same endpoint, so torchrun's port 0 will not do: a port the system hands out
    # as free now, so that two test runs on one machine never meet at one rendezvous.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node",
                               "1", "--node-rank", str(rank), "--rdzv-endpoint", f"127.0.0.1:{port}",
                               "-m", "t2t.finetune", *options, "--output-dir", str(out)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    try:
        # The run of one process meanwhile: the nodes' processes spend most of their time starting (imports).
        train(build_config({"mixture": "small", "mixture_dir": [str(tmp_path / "mixtures")],
                            "output_dir": str(tmp_path / "one"), "max_steps": 2, "batch_size": 8,
                            "lora_dropout": 0.0, "eval_steps": 0, "save_steps": 0, "progress": False,
                            "warmup_steps": 0, "lr": 1.0, "adam_epsilon": 1.0, "max_grad_norm": 0.0}))
        results = [node.communicate(timeout=600) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    for node, (_, err) in zip(nodes, results, strict=True):
        assert node.returncode == 0, err[-3000:]
    assert "adapter saved in" in results[0][0] and "adapter saved in" not in results[1][0]
    assert json.loads((out / "versions.json").read_text())["processes"] == 2

    one, two = (load_file(str(d / "adapter" / "adapter_model.safetensors")) for d in (tmp_path / "one", out))
    update = max(w.abs().max().item() for k, w in one.items() if "lora_B" in k)
    assert update > 1e-2
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-4 * update
