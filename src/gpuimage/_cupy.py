"""CuPy spoke: ``cupy.ndarray`` in, ``cupy.ndarray`` out. Everything gpuimage knows about CuPy is here.

Views are built as headers (``UnownedMemory`` + ``MemoryPointer`` + ``ndarray``): no CUDA call, no
host synchronization (``cupy.asarray`` on a CAI with a stream would block the host), and it works on
machines without a GPU, which is how CPU-only tests check them.
"""

from __future__ import annotations

from typing import Any

from ._backends import missing_backend

try:
    import cupy
except ImportError as exc:  # pragma: no cover - exercised only where CuPy is absent
    raise missing_backend("cupy") from exc

import functools
import threading

import numpy as np
import numpy.typing as npt

from ._device import Device
from ._dtypes import DTypeName, parse_dtype
from ._errors import CudaError, DeviceError, DTypeError, InteropError, MissingBackendError
from ._layout import Layout
from ._source import Imported, spec_from_strided
from ._spec import ImageSpec

__all__ = [
    "allocate",
    "copy",
    "current_stream",
    "current_stream_object",
    "empty",
    "external_stream",
    "strided_parts",
    "get_device",
    "gpu_available",
    "RecordedEvent",
    "set_device",
    "parse",
    "pointer_device",
    "stream_idle",
    "synchronize",
    "view",
    "wait",
]


def parse(array: object, *, layout: Layout | None, stream: int | None, where: str) -> Imported:
    """Wrap a ``cupy.ndarray`` (2-D, or 3-D with a layout) as it is, strided or sliced."""
    if not isinstance(array, cupy.ndarray):
        raise InteropError(f"{where}: expected a cupy.ndarray, got {type(array).__name__}.")
    dtype = parse_dtype(array.dtype, where=where)
    memory = array.data.mem
    spec = spec_from_strided(
        array.data.ptr,
        array.shape,
        array.strides,
        dtype,
        layout,
        Device("cuda", array.device.id),
        where=where,
        allocation=(memory.ptr, memory.size),
    )
    if stream is None and gpu_available():
        stream = current_stream(array.device.id)
    return Imported(array.data.ptr, spec, array, stream, False)


def view(ptr: int, spec: ImageSpec, owner: object) -> cupy.ndarray:
    """A ``cupy.ndarray`` header over the image (same pointer, same byte strides) keeping ``owner`` alive."""
    if not spec.device.is_cuda:
        raise DeviceError(
            "as_cupy(): the image is in host memory; CuPy arrays live on a GPU. Call image.cuda() first, "
            "or use as_numpy()."
        )
    if spec.dtype == "bfloat16":
        raise DTypeError("as_cupy(): CuPy has no bfloat16 dtype. Use as_torch() instead.")
    memory = cupy.cuda.UnownedMemory(ptr, spec.nbytes, owner, device_id=spec.device.index)
    return cupy.ndarray(
        spec.shape, np.dtype(spec.dtype), cupy.cuda.MemoryPointer(memory, 0), strides=spec.strides
    )


def current_stream(index: int) -> int:
    """The raw handle of CuPy's current stream on device ``index`` (0 for the null stream)."""
    return int(cupy.cuda.get_current_stream(index).ptr)


def current_stream_object(index: int) -> object:
    """CuPy's current stream object on device ``index``: holding it keeps its handle valid."""
    return cupy.cuda.get_current_stream(index)


def gpu_available() -> bool:
    """True when CuPy can reach a GPU."""
    return bool(cupy.is_available())


def pointer_device(ptr: int) -> int | None:
    """The CUDA ordinal that owns ``ptr``, or None when CuPy cannot tell (no GPU, host pointer)."""
    if not gpu_available():
        return None
    try:
        attributes = cupy.cuda.runtime.pointerGetAttributes(ptr)
    except (cupy.cuda.runtime.CUDARuntimeError, OverflowError):
        return None
    return int(attributes.device) if attributes.type in (2, 3) else None  # device or managed memory


def allocate(nbytes: int, device: Device, stream: int | None = None) -> tuple[int, cupy.ndarray]:
    """``nbytes`` bytes from CuPy's memory pool on ``device``; returns (pointer, owner).

    With ``stream``, the memory is taken for that stream: once freed, the pool hands it out again
    only to work on that stream, which runs after whatever the first user queued there.
    """
    with cupy.cuda.Device(device.index):
        if stream is None:
            buffer = cupy.empty(nbytes, dtype=cupy.uint8)
        else:
            with external_stream(stream, device.index):
                buffer = cupy.empty(nbytes, dtype=cupy.uint8)
    return buffer.data.ptr, buffer


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


def copy(
    source: cupy.ndarray | npt.NDArray[Any], target: cupy.ndarray | npt.NDArray[Any], device: Device
) -> None:
    """``target[...] = source`` across host and device; a copy into host memory has completed on return."""
    with cupy.cuda.Device(device.index):
        if isinstance(target, cupy.ndarray):
            target[...] = source if isinstance(source, cupy.ndarray) else cupy.asarray(source)
        else:
            target[...] = cupy.asnumpy(source)


_events = threading.local()


def _event(device: int) -> int:
    """This thread's ordering event on ``device`` (re-recorded each time; see ``wait``)."""
    events: dict[int, int] | None = getattr(_events, "by_device", None)
    if events is None:
        events = _events.by_device = {}
    event = events.get(device)
    if event is None:
        runtime = cupy.cuda.runtime
        event = events[device] = int(runtime.eventCreateWithFlags(runtime.eventDisableTiming))
    return event


def wait(producer: int, consumer: int, device: int) -> None:
    """Make stream ``consumer`` wait for the work queued on ``producer`` (an event, no host sync).

    Runs with ``device`` current (handle 0 is the current device's legacy stream) and restores it.
    Reusing one event per thread is safe: a wait takes the event's state when it is enqueued.
    """
    runtime = cupy.cuda.runtime
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


def stream_idle(stream: int, device: int) -> bool:
    """True when every piece of work queued on ``stream`` so far has finished (never blocks)."""
    runtime = cupy.cuda.runtime
    previous = runtime.getDevice()
    if previous != device:
        runtime.setDevice(device)
    try:
        return int(runtime.streamQuery(stream)) == 0
    finally:
        if previous != device:
            runtime.setDevice(previous)


def synchronize(stream: int, device: int) -> None:
    """Block the host until the work queued on ``stream`` (on ``device``) has finished."""
    runtime = cupy.cuda.runtime
    previous = runtime.getDevice()
    if previous != device:
        runtime.setDevice(device)
    try:
        runtime.streamSynchronize(stream)
    finally:
        if previous != device:
            runtime.setDevice(previous)


class RecordedEvent:
    """A CUDA event recorded on a stream; destroyed when the last reference to it goes."""

    __slots__ = ("_device", "_handle")

    def __init__(self, stream: int, device: int) -> None:
        runtime = cupy.cuda.runtime
        previous = runtime.getDevice()
        if previous != device:
            runtime.setDevice(device)
        try:
            self._handle = int(runtime.eventCreateWithFlags(runtime.eventDisableTiming))
            self._device = device
            runtime.eventRecord(self._handle, stream)
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
        if handle is not None:
            # Legal while waits on it are still pending: CUDA frees it once it has completed.
            cupy.cuda.runtime.eventDestroy(handle)


def get_device() -> int:
    """The current CUDA device, as the runtime reports it."""
    return int(cupy.cuda.runtime.getDevice())


def set_device(device: int) -> None:
    """Make ``device`` the current CUDA device."""
    cupy.cuda.runtime.setDevice(device)


def strided_parts(
    array: object, *, where: str = "out"
) -> tuple[int, tuple[int, ...], tuple[int, ...], DTypeName, Device]:
    """(pointer, shape, byte strides, dtype, device) of a CuPy array of an image dtype (an ``out=``)."""
    if not isinstance(array, cupy.ndarray):
        raise InteropError(f"{where}: expected out to be a cupy.ndarray, got {type(array).__name__}.")
    dtype = parse_dtype(array.dtype, where=f"{where} out")
    return array.data.ptr, tuple(array.shape), tuple(array.strides), dtype, Device("cuda", array.device.id)


def empty(
    shape: tuple[int, ...], dtype: DTypeName, device: Device, *, where: str = "like='cupy'"
) -> cupy.ndarray:
    """A new packed array on ``device`` (CuPy has no bfloat16: ``DTypeError``)."""
    if dtype == "bfloat16":
        raise DTypeError(f"{where}: CuPy has no bfloat16 dtype; use like='torch'.")
    if not device.is_cuda:
        raise DeviceError(f"{where}: CuPy arrays live on a GPU, got device={device}; use like='numpy'.")
    if not gpu_available():  # without a GPU, cupy.empty raises CUDARuntimeError
        raise MissingBackendError(
            f"{where}: expected a GPU that CuPy can reach for a new CuPy array on {device}, got none "
            "(cupy.is_available() is False: no GPU or driver). Run where CuPy sees the GPU, or pass "
            "like='torch' or out=."
        )
    try:
        with cupy.cuda.Device(device.index):
            return cupy.empty(shape, dtype=np.dtype(dtype))
    except (cupy.cuda.runtime.CUDARuntimeError, cupy.cuda.memory.OutOfMemoryError) as exc:
        raise CudaError(
            f"{where}: expected a new {dtype} CuPy array of shape {shape} on {device}, got a CUDA "
            f"error ({exc}). Free GPU memory, or check the device index."
        ) from exc
