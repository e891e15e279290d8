"""``python -m t2t.finetune`` under accelerate's FSDP2 on CPU processes (gloo), for tests/training/test_fsdp.py.

Launched with ``accelerate launch --config_file fsdp2.yaml``. accelerate 1.15 chooses FSDP only for
accelerators (``AcceleratorState``: the FSDP branch covers MULTI_GPU, MULTI_XPU, ..., not MULTI_CPU), so on
CPU it builds the plugin from the config and then trains with DDP; t2t refuses that (``check_fsdp``). torch's
FSDP2 itself (``fully_shard``) runs on CPU with gloo. This script lifts only accelerate's gate, setting the
state it would set on GPUs; the plugin (from the config's environment), ``prepare`` (accelerate's
``fsdp2_prepare_model``: ``fully_shard`` per T5 block and the whole model), the sharded optimiser, backward,
reductions and t2t's recipe are the real ones.
"""

from __future__ import annotations

import sys

import accelerate
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

from t2t.errors import run_cli
from t2t.finetune import main

_init, _prepare = accelerate.Accelerator.__init__, accelerate.Accelerator.prepare


def _init_fsdp_on_cpu(self: accelerate.Accelerator, *args: object, **kwargs: object) -> None:
    _init(self, *args, **kwargs)
    if self.state.distributed_type == DistributedType.MULTI_CPU:
        self.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # read from the config, as accelerate does
        self.state.distributed_type = DistributedType.FSDP


def _prepare_and_report(self: accelerate.Accelerator, *args: object, **kwargs: object) -> object:
    from torch.distributed.tensor import DTensor

    result = _prepare(self, *args, **kwargs)
    module = result[0] if isinstance(result, (tuple, list)) else result
    shards = [p for p in module.parameters() if isinstance(p, DTensor)]
    local = sum(p.to_local().numel() for p in shards)
    print(f"fsdp-test rank {self.process_index}: {type(module).__name__}, {len(shards)} DTensor parameters, "
          f"{local} of {sum(p.numel() for p in shards)} elements here", file=sys.stderr, flush=True)
    return result


accelerate.Accelerator.__init__ = _init_fsdp_on_cpu  # type: ignore[method-assign]
accelerate.Accelerator.prepare = _prepare_and_report  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(run_cli(main))
