"""A recording stand-in for the CUDA runtime, an implementation of ``gpuimage.Runtime``: CPU tests see
which streams gpuimage orders, which events it records, what it allocates and copies, and decide when
events complete and which streams are idle. Its "device" memory is host memory, so copies are real."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

import numpy as np
import pytest

import gpuimage
from gpuimage import Allocation, Device, _driver, _lifetime, _runtime
from gpuimage._interfaces import host_view
from gpuimage._runtime import Memory
from gpuimage._streams import Event

__all__ = ["RecordedEvent", "Runtime", "install", "runtime"]


class Runtime:
    """Records waits as ``(producer stream, consumer stream, device)``, whether ordered at use
    (``wait``) or through an event recorded at a write (``record`` then ``Event.wait_on``)."""

    name = "fake"
    has_gpu = True

    def __init__(self) -> None:
        self.waits: list[tuple[int, int, int]] = []
        self.syncs: list[tuple[int, int]] = []
        self.recorded: list[tuple[int, int]] = []
        self.events: list[RecordedEvent] = []
        self.allocations: list[tuple[int, Device, int, int | None]] = []  # nbytes, device, alignment, stream
        self.copies: list[tuple[int, int, int, int]] = []  # source ptr, target ptr, stream, device
        self.guards: list[int] = []  # devices made current, in order (and restored: -1)
        self.idle: set[int] = set()  # streams whose work has all finished
        self.owners: dict[int, int] = {}  # pointer -> the device that owns it
        self.current = 0  # the current stream of every device
        self.home: int | None = None  # the pool's stream for allocations (None: the current stream)
        self.fail_records = False

    def current_stream(self, device: int, /) -> int:
        return self.current

    def current_stream_object(self, device: int, /) -> object:
        return None

    def record(self, stream: int, device: int, /) -> RecordedEvent:
        if self.fail_records:
            raise gpuimage.CudaError("cudaErrorInvalidResourceHandle")
        self.recorded.append((stream, device))
        event = RecordedEvent(self, stream, device)
        self.events.append(event)
        return event

    def wait(self, producer: int, consumer: int, device: int, /) -> None:
        self.waits.append((producer, consumer, device))

    def wait_event(self, event: Event, consumer: int, /) -> None:
        event.wait_on(consumer)

    def synchronize(self, stream: int, device: int, /) -> None:
        self.syncs.append((stream, device))

    def stream_idle(self, stream: int, device: int, /) -> bool:
        return stream in self.idle

    def allocate(self, nbytes: int, device: Device, /, *, alignment: int, stream: int | None) -> Allocation:
        """Host memory for every device. Like CuPy's pool it belongs to ``stream`` (default: the current
        stream); like torch's allocator, to its own stream when ``home`` is set."""
        self.allocations.append((nbytes, device, alignment, stream))
        buffer = np.empty(nbytes + alignment, np.uint8)
        base = int(buffer.ctypes.data)
        if not device.is_cuda:
            ready: int | None = None
        elif self.home is not None:
            ready = self.home
        else:
            ready = self.current if stream is None else stream
        return Allocation(base + (-base) % alignment, buffer, ready)

    def copy(self, source: Memory, target: Memory, stream: int, device: int, /) -> None:
        self.copies.append((source.ptr, target.ptr, stream, device))
        views = [host_view(each.ptr, each.spec, each.owner, readonly=False) for each in (source, target)]
        views[1][...] = views[0]

    def pointer_device(self, ptr: int, /) -> int | None:
        return self.owners.get(ptr)

    @contextlib.contextmanager
    def _guard(self, index: int) -> Iterator[None]:
        self.guards.append(index)
        try:
            yield
        finally:
            self.guards.append(-1)

    def device(self, index: int, /) -> contextlib.AbstractContextManager[None]:
        return self._guard(index)

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


def install(fake: gpuimage.Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``fake`` the runtime until ``monkeypatch`` undoes it, the runtime chosen before (or none)
    and its release-event recorder coming back then."""
    # a fake's streams are small numbers, not handles: on a machine with a GPU, the driver's capture
    # query (made outside the runtime) would read them as pointers and crash, so it finds no driver
    monkeypatch.setattr(_driver, "_stream_is_capturing", lambda: None)
    monkeypatch.setattr(_runtime, "_chosen", _runtime._chosen)
    monkeypatch.setattr(_lifetime, "_recorder", list(_lifetime._recorder))
    gpuimage.set_runtime(fake)


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """Installs a ``Runtime`` through ``gpuimage.set_runtime`` for one test, and puts back whatever
    was chosen before (also nothing); afterwards every event it recorded completes, so no release
    waits on into the next test."""
    fake = Runtime()
    install(fake, monkeypatch)
    yield fake
    gc.collect()
    fake.complete_all()
    _lifetime.pending_releases()
