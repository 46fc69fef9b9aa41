"""The torch spoke's CUDA runtime calls (``_runtime.Runtime``): streams, events, and memory from
torch's caching allocator. Part of the torch spoke (``_torch``), loaded when the runtime is picked.

Allocations take the caching allocator's raw entry point where torch has it
(``torch._C._cuda_cudaCachingAllocator_raw_alloc``, what ``torch.cuda.caching_allocator_alloc``
calls): the same pool, stream and accounting as ``torch.empty``, without making a tensor, which is
most of ``torch.empty``'s host cost. The block goes back with ``raw_delete`` when its owner goes.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Generator
from typing import cast

import torch

from ._device import Device
from ._runtime import Allocation, DeviceGuard, Memory, cuda_error, wait_for_event
from ._spec import ImageSpec
from ._streams import is_default_stream

__all__ = [
    "RecordedEvent",
    "TorchRuntime",
    "cuda_available",
    "current_stream",
    "current_stream_object",
    "stream_context",
    "torch_device",
]


@functools.cache
def cuda_available() -> bool:
    """True when this torch build has CUDA and sees a GPU (asked once: views ask on every creation)."""
    return bool(torch.cuda.is_available())


def _public_current_stream(index: int) -> int:
    return int(torch.cuda.current_stream(index).cuda_stream)


_raw_current_stream: object = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # pyright: ignore[reportPrivateUsage]
# The raw handle of torch's current stream on a device (0 for the default stream). Views ask on
# every call: torch's private getter returns the int directly and costs ~10x less than the public
# torch.cuda.current_stream(), which is the fallback.
current_stream: Callable[[int], int] = (
    cast("Callable[[int], int]", _raw_current_stream)
    if callable(_raw_current_stream)
    else _public_current_stream
)


def current_stream_object(index: int) -> object:
    """None: torch never destroys its own streams (the default and pool streams), so nothing needs
    keeping. A foreign stream made current through ``torch.cuda.ExternalStream`` is its maker's."""
    return None


@functools.cache
def torch_device(index: int) -> torch.device:
    """``torch.device("cuda", index)``, made once."""
    return torch.device("cuda", index)


def _stream(handle: int, device: int) -> torch.cuda.Stream:
    """A torch stream object for a raw handle (0: the device's legacy default stream)."""
    if handle == 0:
        return torch.cuda.default_stream(device)
    return torch.cuda.ExternalStream(handle, device=device)


class RecordedEvent:
    """A ``torch.cuda.Event`` recorded on a raw stream handle."""

    __slots__ = ("_device", "_event")

    def __init__(self, stream: int, device: int) -> None:
        self._device = device
        with torch.cuda.device(device):
            self._event = torch.cuda.Event()
            self._event.record(_stream(stream, device))

    def wait_on(self, consumer: int) -> None:
        """Make stream ``consumer`` wait, on the GPU, until the event has completed."""
        with torch.cuda.device(self._device):
            _stream(consumer, self._device).wait_event(self._event)

    def synchronize(self) -> None:
        """Block the host until the event has completed."""
        self._event.synchronize()

    def query(self) -> bool:
        """True once the event has completed (never blocks)."""
        return bool(self._event.query())


class TorchRuntime:
    """gpuimage's CUDA runtime calls (``_runtime.Runtime``) through torch's streams, events and
    caching allocator. CUDA errors (torch raises ``RuntimeError`` subclasses) become ``CudaError``."""

    __slots__ = ("_view",)
    name = "torch"
    has_gpu = True

    def __init__(self, view: Callable[[int, ImageSpec, object], torch.Tensor]) -> None:
        self._view = view  # the torch spoke's view, for copies of images

    def current_stream(self, device: int, /) -> int:
        return current_stream(device)

    def current_stream_object(self, device: int, /) -> object:
        return current_stream_object(device)

    def record(self, stream: int, device: int, /) -> RecordedEvent:
        try:
            return RecordedEvent(stream, device)
        except RuntimeError as exc:
            raise cuda_error(f"recording an event on stream {stream:#x} on cuda:{device}", exc) from exc

    def wait(self, producer: int, consumer: int, device: int, /) -> None:
        if producer == consumer:
            return
        try:
            with torch.cuda.device(device):
                event = torch.cuda.Event()
                event.record(_stream(producer, device))
                _stream(consumer, device).wait_event(event)
        except RuntimeError as exc:
            action = f"ordering stream {consumer:#x} after stream {producer:#x} on cuda:{device}"
            raise cuda_error(action, exc) from exc

    wait_event = staticmethod(wait_for_event)

    def synchronize(self, stream: int, device: int, /) -> None:
        try:
            _stream(stream, device).synchronize()
        except RuntimeError as exc:
            raise cuda_error(f"synchronizing stream {stream:#x} on cuda:{device}", exc) from exc

    def stream_idle(self, stream: int, device: int, /) -> bool:
        try:
            with torch.cuda.device(device):
                return bool(_stream(stream, device).query())
        except RuntimeError as exc:
            raise cuda_error(f"querying stream {stream:#x} on cuda:{device}", exc) from exc

    def allocate(self, nbytes: int, device: Device, /, *, alignment: int, stream: int | None) -> Allocation:
        """From torch's caching allocator: for ``stream`` where it is a default stream, else for
        torch's current stream.

        The allocator keeps each block's stream, and may synchronize it later (expandable
        segments) or free on it (``cudaMallocAsync``), so it is handed only streams that outlive
        every block: the default streams, which always exist, and torch's current one (torch never
        destroys its own; an external one is its caller's to keep). A conversion queued on the
        default stream from inside another stream's context so allocates where it runs: no wait
        between the two streams, and no event at release."""
        index = device.index
        home = stream if stream is not None and is_default_stream(stream) else current_stream(index)
        size = nbytes + alignment - 1
        owner: object  # no typing.cast call: this runs once per conversion
        try:
            if _raw_alloc is not None and _current_device() == index:
                block = _RawBlock(_raw_alloc(max(size, 1), home))
                base, owner = int(block), block
            else:  # torch.empty serves the current stream
                home = current_stream(index)
                buffer = torch.empty(size, dtype=torch.uint8, device=torch_device(index))
                base, owner = buffer.data_ptr(), buffer
        except RuntimeError as exc:  # torch.OutOfMemoryError included
            raise cuda_error(f"allocating {nbytes} bytes on {device} from torch's allocator", exc) from exc
        return _allocation((base + (-base) % alignment, owner, home))

    def copy(self, source: Memory, target: Memory, stream: int, device: int, /) -> None:
        """``Tensor.copy_`` on ``stream``; into host memory it has completed on return."""
        tensors = [self._view(each.ptr, each.spec, each.owner) for each in (source, target)]
        current = stream == current_stream(device)
        try:
            with contextlib.nullcontext() if current else stream_context(stream, device):
                tensors[1].copy_(tensors[0])
        except RuntimeError as exc:
            raise cuda_error(f"copying an image to {target.spec.device} on stream {stream:#x}", exc) from exc

    def pointer_device(self, ptr: int, /) -> int | None:
        return None  # torch has no call that asks CUDA which device owns a pointer

    def device(self, index: int, /) -> DeviceGuard:
        return DeviceGuard(index, torch.cuda.current_device, torch.cuda.set_device)


class _RawBlock(int):
    """A block of torch's caching allocator (its address), given back when this owner goes (as a
    tensor would). An int, so that making one (once per conversion) runs no Python ``__init__``."""

    __slots__ = ()

    @property
    def ptr(self) -> int:
        return int(self)

    def __del__(self) -> None:
        try:  # not contextlib.suppress: it costs more than the delete, once per conversion
            _raw_delete(int(self))  # type: ignore[misc]  # pyright: ignore[reportOptionalCall]  # set where blocks are made
        except Exception:  # at exit torch may be gone first: the process frees it all
            return


# NamedTuple's __new__ is Python code: the tuple's own is not (a conversion allocates every call)
_allocation: Callable[[tuple[int, object, int | None]], Allocation] = functools.partial(
    tuple.__new__,  # pyright: ignore[reportUnknownMemberType]
    Allocation,
)

_C = torch._C  # pyright: ignore[reportPrivateUsage]
_raw_alloc: Callable[[int, int], int] | None = getattr(_C, "_cuda_cudaCachingAllocator_raw_alloc", None)
_raw_delete: Callable[[int], None] | None = getattr(_C, "_cuda_cudaCachingAllocator_raw_delete", None)
_current_device: Callable[[], int] = getattr(_C, "_cuda_getDevice", torch.cuda.current_device)
if _raw_delete is None:
    _raw_alloc = None


@contextlib.contextmanager
def stream_context(handle: int, device: int) -> Generator[None]:
    """Run torch operations on the raw stream ``handle`` of ``device`` inside the block."""
    with torch.cuda.device(device), torch.cuda.stream(_stream(handle, device)):
        yield
