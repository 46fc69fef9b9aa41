"""The CuPy spoke's CUDA runtime calls (``_runtime.Runtime``): streams, events, allocation, copies,
pointer queries and the device guard, through CuPy's bindings. Kept apart from ``_cupy`` (views and
imports) as ``_torch_runtime`` is from ``_torch``."""

from __future__ import annotations

from ._backends import missing_backend

try:
    import cupy
except ImportError as exc:  # pragma: no cover - exercised only where CuPy is absent
    raise missing_backend("cupy") from exc

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._device import Device
from ._interfaces import host_view

if TYPE_CHECKING:
    from ._spec import ImageSpec
from ._runtime import Allocation, DeviceGuard, Memory, cuda_error, wait_for_event

__all__ = ["CupyRuntime", "RecordedEvent", "current_stream", "current_stream_object", "external_stream"]


_get_current_stream = cupy.cuda.get_current_stream  # bound once: a cached view asks per call


def current_stream(index: int) -> int:
    """The raw handle of CuPy's current stream on device ``index`` (0 for the null stream)."""
    return _get_current_stream(index).ptr


def current_stream_object(index: int) -> object:
    """CuPy's current stream object on device ``index``: holding it keeps its handle valid."""
    return cupy.cuda.get_current_stream(index)


# -- the CUDA runtime calls (``_runtime.Runtime``) ---------------------------------------------------


class _Handle:
    """A raw stream handle in the ``__cuda_stream__`` protocol, for ``cupy.cuda.Stream.from_external``."""

    __slots__ = ("handle",)

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.handle)


@functools.lru_cache(maxsize=64)
def external_stream(handle: int, device: int) -> cupy.cuda.Stream:
    """CuPy's stream object for a raw handle of ``device`` (usable as a context manager)."""
    with cupy.cuda.Device(device):
        return cupy.cuda.Stream.from_external(_Handle(handle))


_events = threading.local()


def _event(device: int) -> int:
    """This thread's ordering event on ``device`` (re-recorded each time; see ``CupyRuntime.wait``)."""
    events: dict[int, int] | None = getattr(_events, "by_device", None)
    if events is None:
        events = _events.by_device = {}
    event = events.get(device)
    if event is None:
        runtime = cupy.cuda.runtime
        event = events[device] = int(runtime.eventCreateWithFlags(runtime.eventDisableTiming))
    return event


_spare_events: dict[int, list[int]] = {}
"""Per device, handles of events no ``RecordedEvent`` holds any more, to record again: creating and
destroying one per conversion cost more than the record. Re-recording is safe: a stream that waits
on an event waits for the record made before its wait, never a later one."""
_SPARE_LIMIT = 64


class RecordedEvent:
    """A CUDA event recorded on a stream; its handle is reused (or destroyed) when the last
    reference to it goes."""

    __slots__ = ("_device", "_handle")

    def __init__(self, stream: int, device: int) -> None:
        runtime = cupy.cuda.runtime
        previous = runtime.getDevice()
        if previous != device:
            runtime.setDevice(device)
        try:
            spare = _spare_events.get(device)
            try:
                handle = spare.pop() if spare else None  # pop is atomic: threads never share one
            except IndexError:  # another thread took the last one
                handle = None
            if handle is None:
                handle = int(runtime.eventCreateWithFlags(runtime.eventDisableTiming))
            self._handle = handle
            self._device = device
            runtime.eventRecord(handle, stream)
        finally:
            if previous != device:
                runtime.setDevice(previous)

    def wait_on(self, consumer: int) -> None:
        """Make stream ``consumer`` wait, on the GPU, until the event has completed."""
        runtime = cupy.cuda.runtime
        previous = runtime.getDevice()
        if previous != self._device:  # handle 0 means the current device's legacy stream
            runtime.setDevice(self._device)
        try:
            runtime.streamWaitEvent(consumer, self._handle, 0)
        finally:
            if previous != self._device:
                runtime.setDevice(previous)

    def synchronize(self) -> None:
        """Block the host until the event has completed."""
        cupy.cuda.runtime.eventSynchronize(self._handle)

    def query(self) -> bool:
        """True once the event has completed (``cudaEventQuery``; never blocks)."""
        return int(cupy.cuda.runtime.eventQuery(self._handle)) == 0

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is None:
            return
        spare = _spare_events.setdefault(self._device, [])
        if len(spare) < _SPARE_LIMIT:
            spare.append(handle)
        else:  # legal while waits on it are still pending: CUDA frees it once it has completed
            cupy.cuda.runtime.eventDestroy(handle)


def _get_device() -> int:
    return int(cupy.cuda.runtime.getDevice())


def _set_device(device: int) -> None:
    cupy.cuda.runtime.setDevice(device)


class CupyRuntime:
    """gpuimage's CUDA runtime calls (``_runtime.Runtime``) through CuPy's runtime bindings.

    Each call runs with the stream's device current (handle 0 is that device's legacy default
    stream) and restores the previous one. CUDA errors become ``CudaError``.
    """

    __slots__ = ("_view",)
    name = "cupy"
    has_gpu = True

    def __init__(self, view: Callable[[int, ImageSpec, object], cupy.ndarray]) -> None:
        self._view = view  # the spoke's header over device memory, for copies (handed in: no circle)

    def current_stream(self, device: int, /) -> int:
        return current_stream(device)

    def current_stream_object(self, device: int, /) -> object:
        return current_stream_object(device)

    def record(self, stream: int, device: int, /) -> RecordedEvent:
        try:
            return RecordedEvent(stream, device)
        except RuntimeError as exc:  # CUDARuntimeError
            raise cuda_error(f"recording an event on stream {stream:#x} on cuda:{device}", exc) from exc

    def wait(self, producer: int, consumer: int, device: int, /) -> None:
        """Two binding calls: record this thread's event on ``producer``, make ``consumer`` wait.
        Reusing one event per thread is safe: a wait takes the event's state when it is enqueued."""
        if producer == consumer:
            return
        runtime = cupy.cuda.runtime
        try:
            previous = runtime.getDevice()
            if previous != device:
                runtime.setDevice(device)
            try:
                event = _event(device)
                runtime.eventRecord(event, producer)
                runtime.streamWaitEvent(consumer, event, 0)
            finally:
                if previous != device:
                    runtime.setDevice(previous)
        except RuntimeError as exc:
            action = f"ordering stream {consumer:#x} after stream {producer:#x} on cuda:{device}"
            raise cuda_error(action, exc) from exc

    wait_event = staticmethod(wait_for_event)

    def synchronize(self, stream: int, device: int, /) -> None:
        try:
            with DeviceGuard(device, _get_device, _set_device):
                cupy.cuda.runtime.streamSynchronize(stream)
        except RuntimeError as exc:
            raise cuda_error(f"synchronizing stream {stream:#x} on cuda:{device}", exc) from exc

    def stream_idle(self, stream: int, device: int, /) -> bool:
        try:
            with DeviceGuard(device, _get_device, _set_device):
                return int(cupy.cuda.runtime.streamQuery(stream)) == 0
        except RuntimeError as exc:
            raise cuda_error(f"querying stream {stream:#x} on cuda:{device}", exc) from exc

    def allocate(self, nbytes: int, device: Device, /, *, alignment: int, stream: int | None) -> Allocation:
        """From CuPy's pool. With ``stream``, the memory is taken for that stream: once freed, the pool
        hands it out again only to work on that stream, which runs after what the first user queued."""
        try:
            with cupy.cuda.Device(device.index):
                if stream is None:
                    buffer = cupy.empty(nbytes + alignment - 1, dtype=cupy.uint8)
                    stream = current_stream(device.index)
                else:
                    with external_stream(stream, device.index):
                        buffer = cupy.empty(nbytes + alignment - 1, dtype=cupy.uint8)
        except (RuntimeError, MemoryError) as exc:  # CUDARuntimeError, OutOfMemoryError
            raise cuda_error(f"allocating {nbytes} bytes on {device} from CuPy's pool", exc) from exc
        base = int(buffer.data.ptr)
        return Allocation(base + (-base) % alignment, buffer, stream)

    def copy(self, source: Memory, target: Memory, stream: int, device: int, /) -> None:
        """``target[...] = source`` on ``stream``; into host memory it has completed on return."""
        arrays = [
            self._view(each.ptr, each.spec, each.owner)
            if each.spec.device.is_cuda
            else host_view(each.ptr, each.spec, each.owner, readonly=each.readonly)
            for each in (source, target)
        ]
        try:
            with cupy.cuda.Device(device):
                current = stream == current_stream(device)
                with contextlib.nullcontext() if current else external_stream(stream, device):
                    if not isinstance(arrays[1], cupy.ndarray):
                        arrays[1][...] = cupy.asnumpy(arrays[0])  # blocks until the copy is done
                    elif isinstance(arrays[0], cupy.ndarray):
                        arrays[1][...] = arrays[0]
                    else:
                        arrays[1][...] = cupy.asarray(arrays[0])
        except RuntimeError as exc:
            raise cuda_error(f"copying an image to {target.spec.device} on stream {stream:#x}", exc) from exc

    def pointer_device(self, ptr: int, /) -> int | None:
        """Through ``cudaPointerGetAttributes``: device or managed memory has an owner, host memory none."""
        try:
            attributes = cupy.cuda.runtime.pointerGetAttributes(ptr)
        except (cupy.cuda.runtime.CUDARuntimeError, OverflowError):
            return None
        return int(attributes.device) if attributes.type in (2, 3) else None

    def device(self, index: int, /) -> DeviceGuard:
        return DeviceGuard(index, _get_device, _set_device)
