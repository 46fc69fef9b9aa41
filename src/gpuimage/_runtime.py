"""The one CUDA runtime: the current stream, events, waits, synchronization, allocation, copies, which
device owns a pointer, and a device guard, behind one object (``Runtime``).

gpuimage picks it once, on first use, in this documented order (``gpuimage.set_runtime`` overrides it):

1. Events and stream ordering (``record``, ``wait``, ``wait_event``, ``synchronize``, ``stream_idle``,
   ``device``, ``pointer_device``): CuPy's runtime bindings where CuPy reaches a GPU (two binding calls
   per ordering; the only binding here that can say which device owns a pointer), else torch's.
2. Device memory (``allocate``, ``copy``, and the ``current_stream`` they queue on): torch's caching
   allocator where torch reaches a GPU, else CuPy's pool; picked at the first allocation or copy.
3. Host memory: NumPy.

Where neither library reaches a GPU, host allocations work and every GPU call raises
``MissingBackendError``: what to install, or that no GPU is visible when a library is installed and
sees none. Each library's calls live in its spoke (``_cupy_runtime.CupyRuntime``,
``_torch_runtime.TorchRuntime``), loaded by name: this module imports no spoke. The chosen
runtime's release-event recorder goes to ``_lifetime``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Literal, NamedTuple, Protocol, runtime_checkable

from typing_extensions import get_protocol_members

from ._backends import imported_version, is_installed
from ._device import Device
from ._driver import is_capturing
from ._errors import CudaError, InteropError, MissingBackendError
from ._lifetime import StreamCapturing, set_recorder
from ._spec import ImageSpec
from ._spokes import spoke
from ._streams import Event

__all__ = [
    "Allocation",
    "DeviceGuard",
    "Memory",
    "Runtime",
    "cuda_error",
    "missing_runtime",
    "runtime",
    "set_runtime",
    "wait_for_event",
    "why_no_gpu",
]


class Allocation(NamedTuple):
    """Fresh memory: its first aligned byte, what frees it when dropped, and the stream it is ready on
    (pools reuse blocks in stream order: work queued on ``stream`` may still use it; None: host memory)."""

    ptr: int
    owner: object
    stream: int | None


class Memory(Protocol):
    """What ``Runtime.copy`` reads and writes: a ``GpuImage``, or anything with its ``ptr``, ``spec``
    (geometry, dtype and device; strides in bytes), ``owner`` and ``readonly``."""

    @property
    def ptr(self) -> int: ...
    @property
    def spec(self) -> ImageSpec: ...
    @property
    def owner(self) -> object: ...
    @property
    def readonly(self) -> bool: ...


@runtime_checkable
class Runtime(Protocol):
    """The CUDA runtime calls gpuimage makes, in one object; ``gpuimage.set_runtime`` installs yours.

    Streams are raw ``cudaStream_t`` handles (0: the legacy default stream of the device, 2: the
    per-thread default stream); devices are CUDA ordinals. Nothing blocks the host except
    ``synchronize`` and copies into host memory. A failed CUDA call raises ``gpuimage.CudaError``.

    - ``name``: who does the work, for people (``"cupy+torch"``: CuPy's events, torch's allocator);
      ``has_gpu``: False when only host memory is reachable (then every GPU call raises).
    - ``current_stream(device)``: the raw handle ``allocate`` and ``copy`` queue on by default;
      ``current_stream_object(device)``: what keeps it alive (None: the library never destroys it).
    - ``record(stream, device)``: an event recorded on ``stream`` now, with ``wait_on(consumer)``,
      ``synchronize()`` and ``query()``; ``wait_event(event, consumer)``: ``consumer`` waits for it.
    - ``wait(producer, consumer, device)``: ``consumer`` waits, on the GPU, for the work queued so
      far on ``producer``; ``synchronize(stream, device)``: the host waits for it;
      ``stream_idle(stream, device)``: whether all of it has finished (never blocks).
    - ``allocate(nbytes, device, *, alignment, stream)``: an ``Allocation`` of ``nbytes`` on a GPU
      or the host, its first byte aligned, for use on ``stream`` (None: the allocator's stream).
    - ``copy(source, target, stream, device)``: copy one image into another of the same shape and
      dtype on another device (any strides), on ``stream`` of GPU ``device``; a copy into host
      memory has completed on return.
    - ``pointer_device(ptr)``: the GPU that owns ``ptr``; None for host memory or when unknown.
    - ``device(index)``: a context manager that makes GPU ``index`` current and restores the last.

    Notes:
        Lifetime: when the last image of a family that other streams used goes, gpuimage records an
        event on each of those streams (``record``, skipped where ``stream_idle``) and holds the
        memory's owner until the events complete, so ``record`` may be called from a finalizer.
    """

    @property
    def name(self) -> str: ...
    @property
    def has_gpu(self) -> bool: ...
    def current_stream(self, device: int, /) -> int: ...
    def current_stream_object(self, device: int, /) -> object: ...
    def record(self, stream: int, device: int, /) -> Event: ...
    def wait(self, producer: int, consumer: int, device: int, /) -> None: ...
    def wait_event(self, event: Event, consumer: int, /) -> None: ...
    def synchronize(self, stream: int, device: int, /) -> None: ...
    def stream_idle(self, stream: int, device: int, /) -> bool: ...
    def allocate(
        self, nbytes: int, device: Device, /, *, alignment: int, stream: int | None
    ) -> Allocation: ...
    def copy(self, source: Memory, target: Memory, stream: int, device: int, /) -> None: ...
    def pointer_device(self, ptr: int, /) -> int | None: ...
    def device(self, index: int, /) -> AbstractContextManager[None]: ...


class DeviceGuard:
    """``Runtime.device``: makes a device current in a ``with`` block, then restores the previous one
    (no call when it is current already)."""

    __slots__ = ("_get", "_index", "_previous", "_set")

    def __init__(self, index: int, get_device: Callable[[], int], set_device: Callable[[int], None]) -> None:
        self._index = index
        self._get = get_device
        self._set = set_device
        self._previous = index

    def __enter__(self) -> None:
        self._previous = previous = self._get()
        if previous != self._index:
            self._set(self._index)

    def __exit__(self, *exc: object) -> None:
        if self._previous != self._index:
            self._set(self._previous)


_NO_GUARD = contextlib.nullcontext()  # a runtime without a GPU has no device to switch


def cuda_error(action: str, error: BaseException) -> CudaError:
    """The ``CudaError`` for a CUDA call that failed while doing ``action`` (spokes raise it)."""
    return CudaError(
        f"{action}: expected the CUDA call to succeed, got {type(error).__name__}: {error}. Check that "
        "every stream handle given is alive and belongs to that device."
    )


def wait_for_event(event: Event, consumer: int, /) -> None:
    """``Runtime.wait_event`` for events whose library raises ``RuntimeError`` (CuPy's, torch's)."""
    try:
        event.wait_on(consumer)
    except RuntimeError as exc:
        raise cuda_error(f"making stream {consumer:#x} wait for an event", exc) from exc


# -- the default: picked from the spokes, in the documented order ----------------------------------

_Library = Literal["cupy", "torch"]
_LABELS: dict[_Library, str] = {"cupy": "CuPy", "torch": "torch"}
EVENTS_ORDER: tuple[_Library, ...] = ("cupy", "torch")
"""Who records events and orders streams: the first library that reaches a GPU."""
MEMORY_ORDER: tuple[_Library, ...] = ("torch", "cupy")
"""Who allocates and copies device memory: the first library that reaches a GPU."""


@functools.cache
def _probe(library: _Library) -> Runtime | str:
    """The spoke's runtime where ``library`` reaches a GPU, else why not (asked once per library)."""
    if not is_installed(library):
        return "not installed"
    try:
        found_spoke = spoke(library)  # through the registry: this module imports no spoke
    except (MissingBackendError, OSError) as exc:  # installed, but a shared library is missing
        cause = exc.__cause__ or exc
        return f"fails to import ({type(cause).__name__}: {cause})"
    found: Runtime | None = found_spoke.gpu_runtime()
    return "sees no GPU" if found is None else found


def why_no_gpu() -> str:
    """Why no runtime reaches a GPU, and what to do: the tail of every error for a GPU call then."""
    reasons: dict[_Library, Runtime | str] = {library: _probe(library) for library in EVENTS_ORDER}
    blind: list[_Library] = [library for library, reason in reasons.items() if reason == "sees no GPU"]
    if blind:  # installing would not help: say so, and what was found (its version tells its build)
        found = ", ".join(f"{_LABELS[library]} {imported_version(library)}".strip() for library in blind)
        return (
            f"no GPU is visible to {' or '.join(_LABELS[library] for library in blind)} (found {found}). Run "
            "where a GPU is visible (check the driver and CUDA_VISIBLE_DEVICES); a CPU-only build of torch "
            "(a version ending in +cpu) sees none."
        )
    broken = [
        f"{_LABELS[library]} {reason}" for library, reason in reasons.items() if reason != "not installed"
    ]
    if broken:
        return f"{'; '.join(broken)}. Repair that installation, or install a CUDA build of torch or CuPy."
    return "install a CUDA build of torch or CuPy: pip install 'gpuimage[torch]' or 'gpuimage[cupy]'."


def missing_runtime(action: str) -> MissingBackendError:
    """The error for ``action``, a GPU call that no runtime here can make."""
    return MissingBackendError(f"{action} needs a CUDA runtime, and none reaches a GPU here: {why_no_gpu()}")


def _first(order: tuple[_Library, ...]) -> Runtime | None:
    for library in order:
        found = _probe(library)
        if not isinstance(found, str):
            return found
    return None


def _host_allocation(nbytes: int, alignment: int) -> Allocation:
    host = importlib.import_module("gpuimage._numpy")  # by name, as the spokes are
    ptr, owner = host.allocate(nbytes, alignment)
    return Allocation(ptr, owner, None)


class DefaultRuntime:
    """gpuimage's own runtime: one library's events and another's device memory (see the module).
    The event calls are the spoke's bound methods, so an ordering costs no call of its own."""

    has_gpu = True

    def __init__(self, events: Runtime) -> None:
        self._events = events
        self._memory: Runtime | None = None
        self.record: Callable[[int, int], Event] = events.record
        self.wait: Callable[[int, int, int], None] = events.wait
        self.wait_event: Callable[[Event, int], None] = events.wait_event
        self.synchronize: Callable[[int, int], None] = events.synchronize
        self.stream_idle: Callable[[int, int], bool] = events.stream_idle
        self.pointer_device: Callable[[int], int | None] = events.pointer_device
        self.device: Callable[[int], AbstractContextManager[None]] = events.device

    def _memory_runtime(self) -> Runtime:
        memory = self._memory
        if memory is None:  # a race only picks the same one twice
            found = _first(MEMORY_ORDER)
            memory = self._memory = self._events if found is None else found
        return memory

    @property
    def name(self) -> str:
        """``"<events>+<memory>"``, or one name when one library does both."""
        events, memory = self._events.name, self._memory_runtime().name
        return events if events == memory else f"{events}+{memory}"

    def current_stream(self, device: int, /) -> int:
        """The memory library's current stream: where its allocations and copies are queued."""
        return self._memory_runtime().current_stream(device)

    def current_stream_object(self, device: int, /) -> object:
        """The object that keeps ``current_stream`` alive."""
        return self._memory_runtime().current_stream_object(device)

    def allocate(self, nbytes: int, device: Device, /, *, alignment: int, stream: int | None) -> Allocation:
        """Host memory from NumPy; device memory from the memory library."""
        if device.kind != "cuda":
            return _host_allocation(nbytes, alignment)
        memory = self._memory or self._memory_runtime()  # once per conversion: no call once picked
        return memory.allocate(nbytes, device, alignment=alignment, stream=stream)

    def copy(self, source: Memory, target: Memory, stream: int, device: int, /) -> None:
        """A copy by the memory library."""
        self._memory_runtime().copy(source, target, stream, device)


class HostRuntime:
    """The runtime where nothing reaches a GPU: NumPy host memory; every GPU call raises
    ``MissingBackendError`` with what to do."""

    __slots__ = ()
    name = "numpy"
    has_gpu = False

    def current_stream(self, device: int, /) -> int:
        raise missing_runtime("asking for the current CUDA stream")

    def current_stream_object(self, device: int, /) -> object:
        raise missing_runtime("asking for the current CUDA stream")

    def record(self, stream: int, device: int, /) -> Event:
        raise missing_runtime("recording an event")

    def wait(self, producer: int, consumer: int, device: int, /) -> None:
        raise missing_runtime("ordering two streams")

    wait_event = staticmethod(wait_for_event)  # an event's own library orders it

    def synchronize(self, stream: int, device: int, /) -> None:
        raise missing_runtime("synchronizing a stream")

    def stream_idle(self, stream: int, device: int, /) -> bool:
        raise missing_runtime("querying a stream")

    def allocate(self, nbytes: int, device: Device, /, *, alignment: int, stream: int | None) -> Allocation:
        if device.kind != "cuda":
            return _host_allocation(nbytes, alignment)
        raise missing_runtime(f"GpuImage.empty(device='{device}'): allocating GPU memory")

    def copy(self, source: Memory, target: Memory, stream: int, device: int, /) -> None:
        raise missing_runtime("copying a GPU image")

    def pointer_device(self, ptr: int, /) -> int | None:
        return None

    def device(self, index: int, /) -> AbstractContextManager[None]:
        return _NO_GUARD


@functools.cache
def _default_runtime() -> Runtime:
    """The runtime the documented order gives here, built once."""
    events = _first(EVENTS_ORDER)
    return HostRuntime() if events is None else DefaultRuntime(events)


# -- the chosen one ----------------------------------------------------------------------------------

_chosen: Runtime | None = None
_pick_lock = threading.Lock()


def runtime() -> Runtime:
    """The CUDA runtime gpuimage uses: yours if you called ``set_runtime``, else its default, picked
    once on first use (torch and CuPy are imported then, not at ``import gpuimage``).

    Returns:
        An object with ``name`` (``"cupy+torch"``: CuPy's events with torch's allocator; ``"numpy"``:
        no GPU is reachable) and the calls of the ``Runtime`` protocol.
    """
    chosen = _chosen
    return chosen if chosen is not None else _pick()


def _pick() -> Runtime:
    with _pick_lock:  # another thread may have picked it meanwhile
        return _install(_default_runtime()) if _chosen is None else _chosen


def set_runtime(runtime: Runtime | None) -> None:
    """Make ``runtime`` the CUDA runtime gpuimage uses from now on; None goes back to the default.

    Parameters:
        runtime: an object with the calls of ``gpuimage.Runtime`` (for example one that wraps
            ``gpuimage.runtime()`` to allocate from your own pool), or None.

    Raises:
        InteropError: ``runtime`` lacks a call of the protocol.

    Notes:
        Set it before making images: events recorded by the previous runtime stay with the images
        that hold them, and are waited for and queried through their own objects.
    """
    # hasattr, not isinstance: a wrapper that forwards through __getattr__ counts (3.12's
    # runtime-checkable isinstance looks attributes up statically)
    missing = (
        [] if runtime is None else sorted(n for n in get_protocol_members(Runtime) if not hasattr(runtime, n))
    )
    if missing:
        raise InteropError(
            f"set_runtime(): expected a gpuimage.Runtime or None, got {type(runtime).__name__} without "
            f"{', '.join(missing)}. Implement every call of the protocol, or wrap gpuimage.runtime()."
        )
    with _pick_lock:
        _install(_default_runtime() if runtime is None else runtime)


def _install(chosen: Runtime) -> Runtime:
    """Make ``chosen`` the runtime, and its release-event recorder ``_lifetime``'s."""
    global _chosen
    set_recorder(_release_event_recorder(chosen) if chosen.has_gpu else None)
    _chosen = chosen
    return chosen


def _release_event_recorder(chosen: Runtime) -> Callable[[int, int], Event | None]:
    """What a release records on a stream that used the memory: nothing when the stream is idle
    already (all its work has finished), else an event."""
    record, idle = chosen.record, chosen.stream_idle

    def release_event(stream: int, device: int) -> Event | None:
        if is_capturing(stream):  # a query would invalidate the graph being captured: wait for its end
            raise StreamCapturing(stream)
        return None if idle(stream, device) else record(stream, device)

    return release_event
