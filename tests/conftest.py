"""Shared test set-up: the ``cuda`` marker skips unless a GPU is reachable; hypothesis profiles.

Where tests live (one module per source module, suites apart): ``tests/README.md``."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from gpu_probe import gpu_available

settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none is reachable here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """After the hostile-input fuzzing: how many examples ran and which error paths they hit."""
    from hypothesis_paths import PATHS

    if not PATHS:
        return
    errors = sorted(path for path in PATHS if path[1] != "ok")
    terminalreporter.write_sep("-", "hostile input")
    terminalreporter.write_line(
        f"{sum(PATHS.values())} outcomes checked, {len(errors)} distinct error paths "
        "(operation, GpuImageError subclass):"
    )
    terminalreporter.write_line("  " + ", ".join(f"{operation}:{error}" for operation, error in errors))
