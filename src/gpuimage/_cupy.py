"""CuPy spoke: ``cupy.ndarray`` in, ``cupy.ndarray`` out. Everything gpuimage knows about CuPy is here.

Views are built as headers (``UnownedMemory`` + ``MemoryPointer`` + ``ndarray``): no CUDA call, no
host synchronization (``cupy.asarray`` on a CAI with a stream would block the host), and it works on
machines without a GPU, which is how CPU-only tests check them.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ._backends import missing_backend

try:
    import cupy
except ImportError as exc:  # pragma: no cover - exercised only where CuPy is absent
    raise missing_backend("cupy") from exc

import contextlib
import functools
import threading

import numpy as np

from ._device import Device, cuda_device
from ._dtypes import DTypeName, parse_dtype
from ._errors import CudaError, DeviceError, DTypeError, InteropError, MissingBackendError
from ._interfaces import host_view
from ._layout import Layout
from ._runtime import Allocation, DeviceGuard, Memory, cuda_error, wait_for_event
from ._source import Imported, SpecCache, SpecMemo, check_placement, spec_from_strided
from ._spec import ImageSpec
from ._spokes import OutArray, Spoke

__all__ = [
    "current_stream",
    "current_stream_object",
    "empty",
    "external_stream",
    "strided_parts",
    "gpu_available",
    "CupyRuntime",
    "RecordedEvent",
    "gpu_runtime",
    "parse",
    "view",
]


_specs = SpecCache()


def parse(
    array: object, /, *, layout: Layout | None, device: Device | None = None, stream: int | None, where: str
) -> Imported:
    """Wrap a ``cupy.ndarray`` (2-D, or 3-D with a layout) as it is, strided or sliced.

    Without ``stream``, the data is ready on CuPy's current stream, whose object is kept: CuPy
    destroys a stream with its object."""
    if not isinstance(array, cupy.ndarray):
        raise InteropError(f"{where}: expected a cupy.ndarray, got {type(array).__name__}.")
    data = array.data
    device_id = data.device_id
    spec = _specs.get((array.dtype, array.shape, array.strides, device_id, layout))
    if spec is None:
        spec = _checked_spec(array, layout, where)
    memory = data.mem
    ptr = check_placement(data.ptr, spec, memory.ptr, memory.size, where=where)
    keep: object = None
    if stream is None and gpu_available():
        current = cupy.cuda.get_current_stream(device_id)
        stream, keep = int(current.ptr), current
    # memory CuPy did not allocate carries the device its wrapper gave (our own views included)
    located = type(memory) is not cupy.cuda.UnownedMemory
    return Imported(ptr, spec, array, stream, False, keep, located)


def _checked_spec(array: cupy.ndarray, layout: Layout | None, where: str) -> ImageSpec:
    """Every check of an array's dtype and geometry; the spec, stored for reuse."""
    dtype = parse_dtype(array.dtype, where=where)
    memory = array.data.mem
    spec = spec_from_strided(
        array.data.ptr,
        array.shape,
        array.strides,
        dtype,
        layout,
        cuda_device(array.data.device_id),
        where=where,
        allocation=(memory.ptr, memory.size),
    )
    return _specs.put((array.dtype, array.shape, array.strides, array.data.device_id, layout), spec)


def view(ptr: int, spec: ImageSpec, owner: object) -> cupy.ndarray:
    """A ``cupy.ndarray`` header over the image (same pointer, same byte strides) keeping ``owner`` alive."""
    shape, dtype, strides, nbytes, index = _headers(spec)
    memory = cupy.cuda.UnownedMemory(ptr, nbytes, owner, device_id=index)
    return cupy.ndarray(shape, dtype, cupy.cuda.MemoryPointer(memory, 0), strides=strides)


def _header(spec: ImageSpec) -> tuple[tuple[int, ...], np.dtype[Any], tuple[int, ...], int, int]:
    """``(shape, dtype, byte strides, extent, device)`` of an array over an image of ``spec``."""
    if not spec.device.is_cuda:
        raise DeviceError(
            "as_cupy(): the image is in host memory; CuPy arrays live on a GPU. Call image.cuda() first, "
            "or use as_numpy()."
        )
    if spec.dtype == "bfloat16":
        raise DTypeError("as_cupy(): CuPy has no bfloat16 dtype. Use as_torch() instead.")
    return spec.shape, np.dtype(spec.dtype), spec.strides, spec.nbytes, spec.device.index


_headers = SpecMemo(_header)


def current_stream(index: int) -> int:
    """The raw handle of CuPy's current stream on device ``index`` (0 for the null stream)."""
    return int(cupy.cuda.get_current_stream(index).ptr)


def current_stream_object(index: int) -> object:
    """CuPy's current stream object on device ``index``: holding it keeps its handle valid."""
    return cupy.cuda.get_current_stream(index)


def gpu_available() -> bool:
    """True when CuPy can reach a GPU."""
    return bool(cupy.is_available())


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

    __slots__ = ()
    name = "cupy"
    has_gpu = True

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
            view(each.ptr, each.spec, each.owner)
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


def gpu_runtime() -> CupyRuntime | None:
    """CuPy's runtime calls where CuPy reaches a GPU, else None (``_runtime`` asks once)."""
    return CupyRuntime() if gpu_available() else None


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


def _describe_out(out: object, /, *, where: str) -> OutArray:
    return OutArray(*strided_parts(out, where=where))


def _out_signature(out: object, /) -> tuple[int, Hashable] | None:
    """A plain array's pointer, and what ``strided_parts`` reads of it besides. None for
    subclasses, which may override any of it."""
    if type(out) is not cupy.ndarray:
        return None
    array = out
    return array.data.ptr, (array.shape, array.strides, array.dtype, array.device.id)


def _always(array: object, /) -> bool:
    return True  # CuPy's __dlpack__ exports every array parse reads


SPOKE = Spoke(
    name="cupy",
    parse=parse,
    view=view,
    current_stream=current_stream,
    current_stream_object=current_stream_object,
    describe_out=_describe_out,
    gpu_runtime=gpu_runtime,
    parses_as_dlpack=_always,
    out_signature=_out_signature,
)
