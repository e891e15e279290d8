"""Test-wide settings: one torch thread per process, no network, and optional dependencies that CI must have.

The suite runs tiny models, several processes at a time (torchrun, CLI subprocesses) on 2-core
machines; with torch's default of one thread per core they oversubscribe the CPU and run many times
slower. The tests use built-in generators and local files only; a test that reached for the hub by
mistake (the built-in hub tasks) would wait through the hub client's retries (~25 s), so the hub is
switched off and such a test fails at once. Subprocesses inherit the environment.

Optional dependencies (lm_eval for the parity tests, libyaml in PyYAML, ...) are asked for with
:func:`require` / :func:`require_that`: on a developer's machine without one the test is skipped, naming
what to install; where the ``CI`` environment variable is set (``.ci/run`` sets ``CI=true``, as GitHub
Actions and most runners do) it fails instead, because CI installs every one of them and a skip there
would pass a check that never ran. A test written with ``pytest.importorskip`` is held to the same rule:
under CI its "could not import" skip is reported as a failure.
"""

import importlib
import os
from collections.abc import Generator
from types import ModuleType
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

# Every skip for a missing dependency starts with this, so that .ci/run can count them in its report.
MISSING = "missing dependency: "


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_that(available: bool, what: str) -> None:
    """Skip (locally) or fail (under CI) unless ``available``; ``what`` names the dependency and how to get it."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{MISSING}{what}: CI installs it (pip install -e '.[test]'), so this test may not skip",
                    pytrace=False)
    pytest.skip(f"{MISSING}{what}", allow_module_level=True)


def require(module: str) -> ModuleType:
    """``pytest.importorskip(module)`` that fails under CI: the module, or a skip naming it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        error = exc
    require_that(False, f"{module} ({error})")
    raise error  # not reached: require_that skipped or failed


def _importorskip_under_ci(outcome: Any) -> None:
    """Turn a ``pytest.importorskip`` skip into a failure under CI (see the module docstring)."""
    report = outcome.get_result()
    if not (in_ci() and report.skipped and isinstance(report.longrepr, tuple)):
        return
    reason = str(report.longrepr[2])
    if "could not import" in reason or reason.startswith(f"Skipped: {MISSING}"):
        report.outcome = "failed"
        report.longrepr = f"under CI a missing dependency fails the test: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    _importorskip_under_ci(outcome)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield  # a module-level importorskip skips the whole file at collection
    _importorskip_under_ci(outcome)


def printed_command(out: str, module: str) -> list[str]:
    """The arguments of the ``python -m MODULE ...`` command a t2t command printed for the user to run next
    (the last such line of ``out``), so that a test runs exactly what was printed."""
    import shlex

    prefix = f"python -m {module} "
    lines = [line[line.index(prefix) + len(prefix):] for line in out.splitlines() if prefix in line]
    assert lines, f"no '{prefix}...' command printed in:\n{out}"
    return shlex.split(lines[-1])
