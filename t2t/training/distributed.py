"""The start of a distributed run: a process whose peers do not come says so, and gives up in bounded time.

A process started by torchrun or ``accelerate launch`` (or by hand, with ``RANK``/``WORLD_SIZE``/
``MASTER_ADDR``/``MASTER_PORT``) meets the others in ``torch.distributed.init_process_group``, which
accelerate calls as the ``Accelerator`` is built. Rank 0 serves a TCP store and waits there until every
rank has joined; the others connect to it. If a peer never starts (a node that failed, a wrong address),
that wait is silent and lasts torch's default timeout (30 minutes for gloo). Here it is announced after
a few seconds and bounded by ``--dist-timeout``, passed as accelerate's ``InitProcessGroupKwargs(timeout=)``
(accelerate 1.16, accelerate/utils/dataclasses.py; it becomes init_process_group's ``timeout``, which
bounds the store's wait). torch raises ``DistStoreError`` on rank 0 ("Timed out after N seconds waiting
for clients. 1/2 clients joined.") and ``DistNetworkError`` on the others (both ``DistError``): that
becomes one T2TError.

The same timeout would also bound every later collective (a barrier while rank 0 writes a large
checkpoint), so once started the process group gets torch's default back.

What torchrun itself does before it starts a worker (its rendezvous between nodes) is outside the
process: bound it with torchrun's ``--rdzv-conf timeout=N`` (static rendezvous, default 600 s) or
``join_timeout=N`` (c10d).
"""

from __future__ import annotations

import os
import sys
import threading
from datetime import timedelta
from typing import Any

from t2t.errors import T2TError

NOTICE_AFTER = 5.0  # seconds of waiting before the message: a normal start is quicker


def _where() -> str:
    return f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"


def start_accelerator(timeout: float, **kwargs: Any) -> Any:
    """``accelerate.Accelerator(**kwargs)``, whose process-group start waits at most ``timeout`` seconds for
    the other processes; a T2TError if they do not all come."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs
    from torch.distributed import DistError

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world <= 1:
        return Accelerator(**kwargs)
    notice = threading.Timer(min(NOTICE_AFTER, timeout / 2),
                             lambda: print(f"rank {rank}: waiting for the {world} processes of this run to start "
                                           f"at {_where()} (gives up after --dist-timeout {timeout:g} s)",
                                           file=sys.stderr, flush=True))
    notice.daemon = True
    notice.start()
    try:
        accelerator = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=timeout))],
                                  **kwargs)
    except DistError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise T2TError(f"rank {rank} of {world}: the other processes did not all start at {_where()} within "
                       f"--dist-timeout {timeout:g} s ({reason}); start every process (every node's launcher) "
                       "within that time, check that the address is reachable from every node, or raise "
                       "--dist-timeout") from None
    finally:
        notice.cancel()
    _default_collective_timeout()
    return accelerator


def _default_collective_timeout() -> None:
    """Give the started process group torch's default timeout for collectives back (30 min, NCCL 10 min).
    ``_set_pg_timeout`` is private (torch 2.13, distributed_c10d.py); where it is missing the start timeout
    stays."""
    import torch.distributed as dist
    from torch.distributed import distributed_c10d as c10d
    from torch.distributed.constants import default_pg_nccl_timeout, default_pg_timeout

    set_timeout = getattr(c10d, "_set_pg_timeout", None)
    if set_timeout is None or not dist.is_initialized():
        return
    nccl = dist.get_backend() == "nccl"
    set_timeout(default_pg_nccl_timeout if nccl and default_pg_nccl_timeout else default_pg_timeout)
