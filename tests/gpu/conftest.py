"""A hang watchdog for the CUDA tests.

A deadlock on a GPU machine (a lock taken again from a garbage-collector callback, say) would stall
the whole run without a word. Each CUDA test therefore runs under ``faulthandler``: past
``GPUIMAGE_TEST_HANG_S`` seconds (default 180) every thread's traceback is written to the real
stderr and the process exits, so the hang is reported where it happened.
"""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Generator
from typing import IO

import pytest

_HANG_SECONDS = float(os.environ.get("GPUIMAGE_TEST_HANG_S", "180"))
_report: list[IO[str]] = []


def _real_stderr(config: pytest.Config) -> IO[str]:
    """A duplicate of the stderr that pytest's capturing replaced (faulthandler writes to an fd)."""
    if not _report:
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            with capture.global_and_fixture_disabled():  # pyright: ignore[reportAttributeAccessIssue]  # pytest plugin API
                _report.append(os.fdopen(os.dup(2), "w"))
        else:
            _report.append(os.fdopen(os.dup(2), "w"))
    return _report[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    if _HANG_SECONDS > 0 and "cuda" in item.keywords:
        faulthandler.dump_traceback_later(_HANG_SECONDS, exit=True, file=_real_stderr(item.config))
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
