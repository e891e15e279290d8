"""Hub datasets in the contamination check when the hub cannot be reached: seconds, not minutes.

Why. With no network and offline mode off, ``datasets.load_dataset`` of a hub dataset retries each request
(huggingface_hub 2.4 ``utils/_http.py``, ``_http_backoff_base``: 5 retries, waiting 1, 2, 4, 8 and 8 s) and
only then looks in its cache: measured here, ``python -m t2t.mixture check t0_mini`` spent 1 min 41 s on its
three held-out hub tasks before it printed that none could be read; 23 s with ``HF_HUB_OFFLINE=1``, almost
all of it imports.

How the libraries decide offline mode. huggingface_hub reads ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``)
into ``huggingface_hub.constants.HF_HUB_OFFLINE`` once, at import ("All environment variables are read at
import time of huggingface_hub", its docs, package_reference/environment_variables); datasets 5 takes
``HF_DATASETS_OFFLINE`` when it is set, else the hub's value, into ``datasets.config.HF_HUB_OFFLINE``
(``datasets/config.py``). Both are read again at each call (``datasets/load.py``, ``utils/file_utils.py``;
``constants.is_offline_mode()`` in huggingface_hub's HTTP session), so that is what :func:`offline_mode`
reads. In offline mode ``load_dataset`` reads cached copies only and fails at once for the rest.

The rule for one check (:class:`HubGate`):

* offline mode on: nothing is added; datasets reads cached copies and fails fast on the others;
* otherwise, before the first hub task is read, one HEAD request to the hub endpoint (``HF_ENDPOINT``), with a
  short timeout and no retry; if it cannot connect, no hub task is tried;
* a hub task that fails with a connection error (datasets raises ``ConnectionError("Couldn't reach ... on the
  Hub")``, ``datasets/load.py``) closes the gate the same way for the hub tasks after it.

A task not tried is listed as unavailable, with the reason and ``HF_HUB_OFFLINE=1`` (which reads the cached
copies without network), never as clean; local sources are read as usual.
"""

from __future__ import annotations

from collections.abc import Callable

from t2t.tasks.task import Task

PROBE_TIMEOUT_S = 5.0
OFFLINE_HINT = ("set HF_HUB_OFFLINE=1 to read cached copies only, without network (or HF_DATASETS_OFFLINE=1 "
                "for datasets alone)")


def is_hub(task: Task) -> bool:
    """Whether the task's rows come from a hub dataset (``source: {hf: ...}``)."""
    return "hf" in task.source


def offline_mode() -> bool:
    """Whether datasets / huggingface_hub are in offline mode now (see the module docstring)."""
    import datasets  # only asked for hub tasks, which datasets reads anyway
    from huggingface_hub import constants

    return bool(datasets.config.HF_HUB_OFFLINE) or constants.is_offline_mode()


def probe_endpoint(timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why the hub endpoint cannot be reached (None when it answers with any HTTP status): one HEAD request
    through huggingface_hub's own session (its proxies and certificates), no retry."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as exc:  # the HTTP client raises its own kinds; every one means "cannot connect"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no answer'}"
    return None


def connection_failure(exc: BaseException) -> str | None:
    """The connection error somewhere in ``exc``'s chain of causes, as one line (None if there is none)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionError) or type(cur).__name__ in ("ConnectError", "ConnectTimeout"):
            return f"{type(cur).__name__}: {str(cur).splitlines()[0] if str(cur) else ''}"
        cur = cur.__cause__ or cur.__context__
    return None


class HubGate:
    """Per check: whether hub tasks are still worth trying (see the module docstring)."""

    def __init__(self, probe: Callable[[], str | None] | None = None) -> None:
        """``probe`` replaces :func:`probe_endpoint` (tests)."""
        self._probe = probe
        self._probed = False
        self.closed: str | None = None  # why hub tasks are no longer tried

    def skip_reason(self, task: Task) -> str | None:
        """Why ``task`` is not to be read at all (None: read it)."""
        if not is_hub(task) or offline_mode():
            return None
        if not self._probed:
            self._probed = True
            why = (self._probe or probe_endpoint)()
            if why is not None and self.closed is None:
                from huggingface_hub import constants

                self.closed = f"the hub ({constants.ENDPOINT}) cannot be reached ({why})"
        if self.closed is None:
            return None
        return f"{task.source_id} not tried: {self.closed}; {OFFLINE_HINT}"

    def failed(self, task: Task, exc: Exception) -> str:
        """The reason to report for ``task``, whose read raised ``exc``; closes the gate on a connection error."""
        if not is_hub(task):
            return str(exc)
        if offline_mode():
            return f"{exc} (offline mode is on: HF_HUB_OFFLINE or HF_DATASETS_OFFLINE; only cached copies are read)"
        why = connection_failure(exc)
        if why is None:
            return str(exc)
        if self.closed is None:
            self.closed = f"reading {task.name} could not connect ({why})"
        return f"{exc} [{why}]; the later hub tasks are not tried: {OFFLINE_HINT}"
