"""CuPy's runtime calls (``_cupy_runtime``) on a machine without a GPU: recorded events take their
handles from the spares that dropped events leave (no create and destroy per conversion), never one
an event still holds, and destroy them past the limit; with CuPy's runtime functions recorded."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

pytest.importorskip("cupy")

import cupy

from gpuimage import _cupy_runtime
from gpuimage._cupy_runtime import RecordedEvent


class Calls:
    """Stands in for ``cupy.cuda.runtime``'s event functions, numbering the handles it creates."""

    eventDisableTiming = 2  # noqa: N815

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []
        self.made = 0

    def getDevice(self) -> int:  # noqa: N802
        return 0

    def setDevice(self, device: int) -> None:  # noqa: N802
        self.log.append(("setDevice", device))

    def eventCreateWithFlags(self, flags: int) -> int:  # noqa: N802
        self.made += 1
        self.log.append(("create", 0xE000 + self.made))
        return 0xE000 + self.made

    def eventRecord(self, event: int, stream: int) -> None:  # noqa: N802
        self.log.append(("record", event))

    def eventDestroy(self, event: int) -> None:  # noqa: N802
        self.log.append(("destroy", event))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    recorded = Calls()
    monkeypatch.setattr(cupy.cuda, "runtime", recorded)
    monkeypatch.setattr(_cupy_runtime, "_spare_events", {})
    yield recorded
    gc.collect()


def test_a_dropped_events_handle_is_recorded_again(calls: Calls) -> None:
    first = RecordedEvent(7, 0)
    held = RecordedEvent(7, 0)
    handle = first._handle  # pyright: ignore[reportPrivateUsage]
    del first
    again = RecordedEvent(9, 0)
    assert again._handle == handle  # pyright: ignore[reportPrivateUsage]
    assert held._handle != handle  # pyright: ignore[reportPrivateUsage]
    assert [name for name, _ in calls.log].count("create") == 2
    assert ("destroy", handle) not in calls.log
    assert calls.log[-1] == ("record", handle)


def test_spares_are_kept_per_device_up_to_the_limit(calls: Calls) -> None:
    limit = _cupy_runtime._SPARE_LIMIT  # pyright: ignore[reportPrivateUsage]
    events = [RecordedEvent(7, 0) for _ in range(limit + 3)]
    handles = [event._handle for event in events]  # pyright: ignore[reportPrivateUsage]
    del events
    gc.collect()
    destroyed = [handle for name, handle in calls.log if name == "destroy"]
    assert len(destroyed) == 3
    assert set(destroyed) <= set(handles)
    spare = _cupy_runtime._spare_events[0]  # pyright: ignore[reportPrivateUsage]
    assert len(spare) == limit
    other = RecordedEvent(7, 1)  # another device's spares are its own: a new handle there
    assert other._handle not in handles  # pyright: ignore[reportPrivateUsage]
    assert ("setDevice", 1) in calls.log
