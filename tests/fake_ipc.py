"""A recording stand-in for the CUDA driver's IPC calls (``gpuimage._ipc_driver.Driver``), and fixtures
that install it with the fake runtime of ``fake_runtime``: CPU tests pickle "device" images (host
memory the fake runtime allocated) and open them as another process would, over the same memory, so
values survive the round trip and every driver call is seen. The "mapping" is at the producer's own
address: pickle what a test shares before it opens any of it (an open range is refused for pickling,
as memory mapped from another process is).

``elsewhere`` makes descriptions made in this process look foreign (the consumer path, with its
lease, mappings and stream waits) instead of returning the original object.

Two devices: the fake sees GPUs 0 and 1 (two UUIDs), each with its own current stream
(``IpcRuntime.streams``), and says which can reach the other (``FakeDriver.peers``). ``FakeDriver.ops``
records each event call with the device whose context it ran in (a record in the event's, a wait in
the one it was asked to wait in), and ``opened_on`` the device each mapping was opened for.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import gpuimage
from fake_runtime import Runtime, install
from gpuimage import (
    Allocation,
    Device,
    DTypeName,
    GpuImage,
    _ipc_driver,
    _ipc_lease,
    _ipc_open,
    _ipc_ring_open,
    _lifetime,
)
from gpuimage._errors import ExportError
from gpuimage._interfaces import host_view

__all__ = [
    "FakeDriver",
    "FakeEvent",
    "IpcRuntime",
    "elsewhere",
    "end_every_lease",
    "fake_ipc_driver",
    "filled",
    "ipc",
    "values",
]


class IpcRuntime(Runtime):
    """The fake runtime, whose allocations the fake driver knows (as ``cuMemGetAddressRange`` would)."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: dict[int, int] = {}  # base -> size
        self.streams: dict[int, int] = {}  # device -> its current stream (else ``current``)

    def current_stream(self, device: int, /) -> int:
        return self.streams.get(device, self.current)

    def allocate(self, nbytes: int, device: Device, /, *, alignment: int, stream: int | None) -> Allocation:
        allocation = super().allocate(nbytes, device, alignment=alignment, stream=stream)
        buffer: npt.NDArray[Any] = allocation.owner  # type: ignore[assignment]  # the fake's NumPy buffer
        self.ranges[int(buffer.ctypes.data)] = buffer.nbytes
        return allocation


class FakeEvent:
    """An interprocess event: each handle names one shared record count; opening shares it."""

    def __init__(self, driver: FakeDriver, handle: bytes, device: int) -> None:
        self.driver, self.handle, self.device = driver, handle, device
        self.closed = False

    @property
    def name(self) -> int:
        return int.from_bytes(self.handle[:4], "little")

    def record(self, stream: int) -> None:
        self.driver.log.append(("record", self.name, stream))
        self.driver.ops.append(("record", self.name, stream, self.device))
        self.driver.records[self.handle] = self.driver.records.get(self.handle, 0) + 1

    def wait_on(self, consumer: int, device: int | None = None) -> None:
        self.driver.log.append(("wait", self.name, consumer))
        self.driver.ops.append(("wait", self.name, consumer, self.device if device is None else device))

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        self.driver.log.append(("sync", self.name, -1))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.driver.log.append(("destroy", self.name, -1))


class FakeDriver:
    """``Driver`` over the fake runtime's host memory: a handle names an allocation's base, and opening
    it "maps" that same base (so a consumer sees the producer's bytes)."""

    def __init__(self, ranges: dict[int, int]) -> None:
        self.ranges = ranges
        self.log: list[tuple[str, int, int]] = []
        self.ops: list[tuple[str, int, int, int]] = []  # (call, event, stream, device of the context)
        self.peers = {(0, 1), (1, 0)}  # (device, peer): device's kernels can reach peer's memory
        self.opened_on: list[int] = []
        self.records: dict[bytes, int] = {}
        self.opened: list[int] = []
        self.closed: list[int] = []
        self.visible = {0, 1}
        self.refuse_handles = False
        self.events = 0
        self.runtime = IpcRuntime()  # the fixture's

    def settle(self) -> None:
        """Let every deferred release go: all recorded work completes (as after a synchronize)."""
        gc.collect()
        self.runtime.complete_all()
        gpuimage.pending_releases()

    def device_uuid(self, device: int, /) -> bytes:
        return bytes([device + 1]) * 16

    def pci_bus_id(self, device: int, /) -> str:
        return f"0000:{device + 0x1B:02x}:00.0"

    def device_of_uuid(self, uuid: bytes, /) -> int | None:
        return next((device for device in self.visible if self.device_uuid(device) == uuid), None)

    def can_access_peer(self, device: int, peer: int, /) -> bool:
        return (device, peer) in self.peers

    def address_range(self, ptr: int, device: int, /) -> tuple[int, int]:
        for base, size in self.ranges.items():
            if base <= ptr < base + size:
                return base, size
        raise ExportError(f"pickle.dumps(): cuMemGetAddressRange: {ptr:#x} is not device memory (fake)")

    def mem_handle(self, base: int, device: int, /) -> bytes:
        if self.refuse_handles:
            raise ExportError("pickle.dumps(): cuIpcGetMemHandle failed (fake: an expandable segment)")
        return b"M" + base.to_bytes(8, "little") + bytes(55)

    def open_mem_handle(self, handle: bytes, device: int, /) -> int:
        base = int.from_bytes(handle[1:9], "little")
        self.opened.append(base)
        self.opened_on.append(device)
        return base

    def close_mem_handle(self, ptr: int, device: int, /) -> None:
        self.closed.append(ptr)

    def create_event(self, device: int, /) -> FakeEvent:
        self.events += 1
        return FakeEvent(self, self.events.to_bytes(4, "little") + bytes(60), device)

    def open_event(self, handle: bytes, device: int, /) -> FakeEvent:
        return FakeEvent(self, handle, device)

    def opened_events(self) -> list[int]:
        return [name for kind, name, _ in self.log if kind == "wait"]


@pytest.fixture
def ipc(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDriver]:
    """The fake driver over an ``IpcRuntime``, installed for one test; afterwards every description
    made in it has ended and its files are gone."""
    with fake_ipc_driver(monkeypatch) as driver:
        yield driver


@contextlib.contextmanager
def fake_ipc_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDriver]:
    """``ipc``'s setup and clean-up, for callers that are not tests (the docs-truth table)."""
    fake_runtime = IpcRuntime()
    install(fake_runtime, monkeypatch)
    driver = FakeDriver(fake_runtime.ranges)
    driver.runtime = fake_runtime
    _ipc_driver.set_driver(driver)
    previous = gpuimage.set_unopened_timeout(60.0)
    try:
        yield driver
    finally:  # every description ends, then every release it let go of completes
        gc.collect()
        end_every_lease()
        gpuimage.collect_shared()
        gc.collect()
        fake_runtime.complete_all()
        _lifetime.pending_releases()
        _ipc_driver.set_driver(None)
        gpuimage.set_unopened_timeout(previous)


def end_every_lease() -> None:
    """End every description made here, as if every consumer let go (no reference stays behind)."""
    for entry in list(_ipc_lease._exports.values()):
        entry.lease.end()


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Descriptions made here are opened as another process opens them."""
    monkeypatch.setattr(_ipc_open, "is_this_process", lambda pid, token: False)
    monkeypatch.setattr(_ipc_ring_open, "is_this_process", lambda pid, token: False)


def values(image: GpuImage) -> npt.NDArray[Any]:
    """A NumPy view of a fake-device image's elements (its memory is host memory; bfloat16 as bits)."""
    bits: DTypeName | None = "uint16" if image.dtype == "bfloat16" else None
    return host_view(image.ptr, image.spec, image, readonly=True, as_dtype=bits)


def filled(image: GpuImage, seed: int = 0) -> GpuImage:
    """``image`` with distinct values written through a host view."""
    bits: DTypeName | None = "uint16" if image.dtype == "bfloat16" else None
    view = host_view(image.ptr, image.spec, image, readonly=False, as_dtype=bits)
    view[...] = (np.arange(view.size).reshape(view.shape) * 7 + seed) % 251
    return image
