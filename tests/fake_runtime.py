"""A recording stand-in for the CUDA runtime: CPU tests see which streams gpuimage orders and which
events it records, and decide when those events complete."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gpuimage import _cuda, _lifetime

__all__ = ["RecordedEvent", "Runtime", "runtime"]


class Runtime:
    """Records waits as ``(producer stream, consumer stream, device)``, whether ordered at use
    (``wait``) or through an event recorded at a write (``record`` then ``Event.wait_on``)."""

    def __init__(self) -> None:
        self.waits: list[tuple[int, int, int]] = []
        self.syncs: list[tuple[int, int]] = []
        self.recorded: list[tuple[int, int]] = []
        self.events: list[RecordedEvent] = []
        self.fail_records = False

    def wait(self, producer: int, consumer: int, device: int) -> None:
        self.waits.append((producer, consumer, device))

    def synchronize(self, stream: int, device: int) -> None:
        self.syncs.append((stream, device))

    def record(self, stream: int, device: int) -> RecordedEvent:
        if self.fail_records:
            raise RuntimeError("cudaErrorInvalidResourceHandle")
        self.recorded.append((stream, device))
        event = RecordedEvent(self, stream, device)
        self.events.append(event)
        return event

    def complete_all(self) -> None:
        for event in self.events:
            event.done = True


class RecordedEvent:
    def __init__(self, runtime: Runtime, stream: int, device: int) -> None:
        self.runtime, self.stream, self.device = runtime, stream, device
        self.done = False

    def wait_on(self, consumer: int) -> None:
        self.runtime.waits.append((self.stream, consumer, self.device))

    def synchronize(self) -> None:
        self.runtime.syncs.append((self.stream, self.device))
        self.done = True

    def query(self) -> bool:
        return self.done


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """Installs a ``Runtime`` as gpuimage's CUDA runtime for one test; afterwards every event it
    recorded completes, so no release waits on into the next test."""
    recorder = Runtime()
    calls = (
        recorder.wait,
        recorder.synchronize,
        recorder.record,
        lambda: 0,
        lambda device: None,
        lambda stream, device: False,  # no stream is ever idle: every release records its events
    )
    monkeypatch.setattr(_cuda, "_chosen", [calls])
    monkeypatch.setattr(_lifetime, "_recorder", [recorder.record])
    yield recorder
    gc.collect()
    recorder.complete_all()
    _lifetime.pending_releases()
