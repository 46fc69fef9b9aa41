"""CUDA IPC through the driver API (ctypes, ``libcuda.so.1``): what no array library offers in one place.

- memory: the allocation a pointer lies in (``cuMemGetAddressRange``), its IPC handle
  (``cuIpcGetMemHandle``), and opening and closing another process's handle (``cuIpcOpenMemHandle``
  with ``CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS``, ``cuIpcCloseMemHandle``);
- events: interprocess events (``CU_EVENT_INTERPROCESS | CU_EVENT_DISABLE_TIMING``), their handles, and
  recording, waiting on and querying them (``IpcEvent``, an ``Event`` of ``_streams``);
- devices: the UUID and PCI bus id of an ordinal, the ordinal of a UUID here (ordinals differ
  between processes with different ``CUDA_VISIBLE_DEVICES``; a UUID does not), and whether one GPU's
  kernels can reach another's memory (``cuDeviceCanAccessPeer``).

Every call runs in the primary context of its device (the one torch and CuPy use), made current for
the call when another one is. A stream of another GPU than an interprocess event's does not wait on it
on the GPU (that crashed CUDA): ``wait_on(stream, device)`` waits on the host then. Every failure
raises a ``GpuImageError`` that says what to do. Neutral: no foreign Python library. Tests replace
the driver with ``set_driver`` (see ``Driver``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import threading
from collections.abc import Callable
from typing import Protocol, cast

from ._errors import CudaError, ExportError, MissingBackendError

__all__ = ["CudaDriver", "Driver", "IpcEvent", "driver", "set_driver"]

HANDLE_BYTES = 64  # CU_IPC_HANDLE_SIZE: memory and event handles alike
UUID_BYTES = 16
_NOT_READY = 600  # CUDA_ERROR_NOT_READY: an event query before completion
_EVENT_FLAGS = 0x2 | 0x4  # CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS (IPC requires both)
_LAZY_PEER_ACCESS = 0x1  # CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS


class IpcEvent(Protocol):
    """An interprocess CUDA event, made here (``create_event``) or opened from a handle (``open_event``):
    ``handle`` (64 bytes, what another process opens it with), ``record(stream)`` (a raw handle of the
    event's device; 0: its legacy stream), ``wait_on(consumer, device)`` (the stream, of ``device``,
    default the event's, waits on the GPU for the last record), ``query()`` (never blocks),
    ``synchronize()`` and ``close()`` (idempotent, never raises): an ``Event`` of ``_streams``."""

    @property
    def handle(self) -> bytes: ...
    def record(self, stream: int) -> None: ...
    def wait_on(self, consumer: int, device: int | None = None) -> None: ...
    def query(self) -> bool: ...
    def synchronize(self) -> None: ...
    def close(self) -> None: ...


class Driver(Protocol):
    """The IPC calls of the CUDA driver; ``CudaDriver`` is the real one. Devices are this process's
    ordinals, pointers raw ints, handles ``bytes``."""

    def device_uuid(self, device: int, /) -> bytes: ...
    def pci_bus_id(self, device: int, /) -> str: ...
    def device_of_uuid(self, uuid: bytes, /) -> int | None: ...
    def can_access_peer(self, device: int, peer: int, /) -> bool: ...
    def address_range(self, ptr: int, device: int, /) -> tuple[int, int]: ...
    def mem_handle(self, base: int, device: int, /) -> bytes: ...
    def open_mem_handle(self, handle: bytes, device: int, /) -> int: ...
    def close_mem_handle(self, ptr: int, device: int, /) -> None: ...
    def create_event(self, device: int, /) -> IpcEvent: ...
    def open_event(self, handle: bytes, device: int, /) -> IpcEvent: ...


class _Handle(ctypes.Structure):
    """``CUipcMemHandle`` / ``CUipcEventHandle``: 64 opaque bytes, passed by value."""

    _fields_ = (("reserved", ctypes.c_char * HANDLE_BYTES),)


class _Uuid(ctypes.Structure):
    _fields_ = (("bytes", ctypes.c_char * UUID_BYTES),)


_P = ctypes.c_void_p  # CUcontext, CUevent, CUstream
_SIGNATURES: dict[str, tuple[type, ...]] = {
    "cuInit": (ctypes.c_uint,),
    "cuGetErrorName": (ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)),
    "cuGetErrorString": (ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)),
    "cuDeviceGetCount": (ctypes.POINTER(ctypes.c_int),),
    "cuDeviceGet": (ctypes.POINTER(ctypes.c_int), ctypes.c_int),
    "cuDeviceGetUuid": (ctypes.POINTER(_Uuid), ctypes.c_int),
    "cuDeviceGetPCIBusId": (ctypes.c_char_p, ctypes.c_int, ctypes.c_int),
    "cuDeviceCanAccessPeer": (ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int),
    "cuDevicePrimaryCtxRetain": (ctypes.POINTER(_P), ctypes.c_int),
    "cuCtxGetCurrent": (ctypes.POINTER(_P),),
    "cuCtxPushCurrent": (_P,),
    "cuCtxPopCurrent": (ctypes.POINTER(_P),),
    "cuMemGetAddressRange": (
        ctypes.POINTER(ctypes.c_uint64),
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_uint64,
    ),
    "cuIpcGetMemHandle": (ctypes.POINTER(_Handle), ctypes.c_uint64),
    "cuIpcOpenMemHandle": (ctypes.POINTER(ctypes.c_uint64), _Handle, ctypes.c_uint),
    "cuIpcCloseMemHandle": (ctypes.c_uint64,),
    "cuEventCreate": (ctypes.POINTER(_P), ctypes.c_uint),
    "cuEventRecord": (_P, _P),
    "cuStreamWaitEvent": (_P, _P, ctypes.c_uint),
    "cuEventQuery": (_P,),
    "cuEventSynchronize": (_P,),
    "cuEventDestroy": (_P,),
    "cuIpcGetEventHandle": (ctypes.POINTER(_Handle), _P),
    "cuIpcOpenEventHandle": (ctypes.POINTER(_P), _Handle),
}
"""Each driver function by its header name; the ``_v2`` symbol is preferred where the library has one
(``cuIpcOpenMemHandle``, ``cuMemGetAddressRange``, ``cuEventDestroy``, ``cuCtxPushCurrent``, ...)."""


class _Library:
    """``libcuda.so.1``'s functions, bound once (``call`` returns the ``CUresult``)."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._functions: dict[str, Callable[..., int]] = {}
        for name, argtypes in _SIGNATURES.items():
            try:
                function = library[f"{name}_v2"]
            except AttributeError:
                function = library[name]
            function.restype = ctypes.c_int
            function.argtypes = argtypes
            self._functions[name] = cast("Callable[..., int]", function)

    def call(self, name: str, *args: object) -> int:
        return int(self._functions[name](*args))

    def error_name(self, result: int) -> str:
        """``CUDA_ERROR_X: text`` for a ``CUresult``."""
        text = ctypes.c_char_p()
        if self.call("cuGetErrorName", result, ctypes.byref(text)) or text.value is None:
            return f"CUresult {result}"
        name, words = text.value.decode(), ctypes.c_char_p()
        if self.call("cuGetErrorString", result, ctypes.byref(words)) == 0 and words.value is not None:
            return f"{name}: {words.value.decode()}"
        return name


@functools.cache
def _library() -> _Library:
    try:
        library = _Library(ctypes.CDLL("libcuda.so.1"))
    except (OSError, AttributeError) as exc:
        raise MissingBackendError(
            "CUDA IPC: expected the CUDA driver (libcuda.so.1) with its IPC calls, got none loadable here "
            f"({exc}). Run on a Linux machine with an NVIDIA driver, where the GPU is visible."
        ) from exc
    result = library.call("cuInit", 0)
    if result:
        raise CudaError(
            f"CUDA IPC: expected cuInit(0) to succeed, got {library.error_name(result)}. Check the driver "
            "and CUDA_VISIBLE_DEVICES."
        )
    return library


_NO_HINT = "Check that the device is visible and the pointer or handle is alive."
NO_HANDLE_HINT = (
    "Memory from stream-ordered pools (cudaMallocAsync, torch's backend:cudaMallocAsync, CuPy's "
    "MemoryAsyncPool), from torch's expandable_segments:True or from cuMemCreate has no legacy IPC "
    "handle: allocate the image with GpuImage.empty() under an allocator without those settings, or "
    "pickle a copy made there."
)


class CudaDriver:
    """The real ``Driver``: ``libcuda.so.1`` through ctypes, loaded on first use."""

    def __init__(self) -> None:
        self._contexts: dict[int, int] = {}
        self._devices: dict[int, int] = {}
        self._uuids: dict[int, bytes] = {}
        self._bus_ids: dict[int, str] = {}
        self._lock = threading.Lock()

    def _device(self, ordinal: int) -> int:
        """The ``CUdevice`` of an ordinal (``cuDeviceGet``), asked once."""
        found = self._devices.get(ordinal)
        if found is None:
            device = ctypes.c_int()
            _check(_library().call("cuDeviceGet", ctypes.byref(device), ordinal), f"finding cuda:{ordinal}")
            found = self._devices[ordinal] = device.value
        return found

    def _context(self, device: int) -> int:
        """The primary context of ``device`` (torch's and CuPy's), retained once per process."""
        context = self._contexts.get(device)
        if context is None:
            with self._lock:
                handle = ctypes.c_void_p()
                result = _library().call(
                    "cuDevicePrimaryCtxRetain", ctypes.byref(handle), self._device(device)
                )
                _check(result, f"opening cuda:{device}")
                context = self._contexts[device] = int(handle.value or 0)
        return context

    def call(self, device: int, name: str, *args: object) -> int:
        """``name(*args)`` with ``device``'s primary context current; returns the ``CUresult``."""
        library = _library()
        context = self._context(device)
        current = ctypes.c_void_p()
        pushed = (
            not library.call("cuCtxGetCurrent", ctypes.byref(current)) and (current.value or 0) != context
        )
        if pushed:
            _check(
                library.call("cuCtxPushCurrent", ctypes.c_void_p(context)), f"making cuda:{device} current"
            )
        try:
            return library.call(name, *args)
        finally:
            if pushed:
                library.call("cuCtxPopCurrent", ctypes.byref(ctypes.c_void_p()))

    # -- devices -------------------------------------------------------------------------------

    def device_uuid(self, device: int, /) -> bytes:
        """The 16-byte UUID of ordinal ``device`` (``nvidia-smi -L`` prints it as GPU-...)."""
        uuid = self._uuids.get(device)
        if uuid is None:
            found = _Uuid()
            result = _library().call("cuDeviceGetUuid", ctypes.byref(found), self._device(device))
            _check(result, f"reading the UUID of cuda:{device}")
            uuid = self._uuids[device] = bytes(found)  # the raw 16 bytes (a field would stop at a NUL)
        return uuid

    def pci_bus_id(self, device: int, /) -> str:
        """The PCI bus id of ordinal ``device`` (``0000:1b:00.0``)."""
        bus_id = self._bus_ids.get(device)
        if bus_id is None:
            text = ctypes.create_string_buffer(32)
            result = _library().call("cuDeviceGetPCIBusId", text, 32, self._device(device))
            _check(result, f"reading the PCI bus id of cuda:{device}")
            bus_id = self._bus_ids[device] = text.value.decode()
        return bus_id

    def device_of_uuid(self, uuid: bytes, /) -> int | None:
        """This process's ordinal of the GPU with ``uuid``, or None when it sees no such GPU."""
        count = ctypes.c_int()
        _check(_library().call("cuDeviceGetCount", ctypes.byref(count)), "counting the CUDA devices")
        return next((device for device in range(count.value) if self.device_uuid(device) == uuid), None)

    def can_access_peer(self, device: int, peer: int, /) -> bool:
        """Whether kernels on ordinal ``device`` can read and write memory on ordinal ``peer``."""
        found = ctypes.c_int()
        result = _library().call(
            "cuDeviceCanAccessPeer", ctypes.byref(found), self._device(device), self._device(peer)
        )
        _check(result, f"asking whether cuda:{device} can access cuda:{peer}'s memory")
        return bool(found.value)

    # -- memory --------------------------------------------------------------------------------

    def address_range(self, ptr: int, device: int, /) -> tuple[int, int]:
        """``(base, size)`` of the allocation ``ptr`` lies in (bytes)."""
        base, size = ctypes.c_uint64(), ctypes.c_size_t()
        result = self.call(
            device, "cuMemGetAddressRange", ctypes.byref(base), ctypes.byref(size), ctypes.c_uint64(ptr)
        )
        if result:
            raise ExportError(
                f"pickle.dumps(): expected device memory allocated by CUDA, got pointer {ptr:#x} on "
                f"cuda:{device}, for which cuMemGetAddressRange failed ({_library().error_name(result)}). "
                f"Host, pinned and managed memory cannot be shared this way. {NO_HANDLE_HINT}"
            )
        return int(base.value), int(size.value)

    def mem_handle(self, base: int, device: int, /) -> bytes:
        """The IPC handle of the allocation starting at ``base``."""
        handle = _Handle()
        result = self.call(device, "cuIpcGetMemHandle", ctypes.byref(handle), ctypes.c_uint64(base))
        if result:
            why = _library().error_name(result)
            raise ExportError(
                f"pickle.dumps(): expected device memory with a CUDA IPC handle (cudaMalloc'd: torch's "
                f"default caching allocator, CuPy's default pool, GpuImage.empty), got the allocation at "
                f"{base:#x} on cuda:{device}, for which cuIpcGetMemHandle failed ({why}). {NO_HANDLE_HINT}"
            )
        return bytes(handle)  # the raw 64 bytes: ``handle.reserved`` would stop at the first NUL

    def open_mem_handle(self, handle: bytes, device: int, /) -> int:
        """Map another process's allocation here; returns its base in this process."""
        ptr, given = ctypes.c_uint64(), _Handle.from_buffer_copy(handle)
        result = self.call(device, "cuIpcOpenMemHandle", ctypes.byref(ptr), given, _LAZY_PEER_ACCESS)
        hint = f"The producer may have exited, or cuda:{device} cannot reach the memory's GPU (open a copy)."
        _check(result, f"pickle.loads(): opening another process's memory on cuda:{device}", hint)
        return int(ptr.value)

    def close_mem_handle(self, ptr: int, device: int, /) -> None:
        """Unmap what ``open_mem_handle`` mapped at ``ptr``."""
        result = self.call(device, "cuIpcCloseMemHandle", ctypes.c_uint64(ptr))
        _check(result, f"closing the mapping at {ptr:#x}")

    # -- events --------------------------------------------------------------------------------

    def create_event(self, device: int, /) -> DriverEvent:
        """A new interprocess event on ``device``."""
        event = ctypes.c_void_p()
        result = self.call(device, "cuEventCreate", ctypes.byref(event), _EVENT_FLAGS)
        _check(result, f"creating an interprocess event on cuda:{device}")
        return DriverEvent(self, int(event.value or 0), device, None)

    def open_event(self, handle: bytes, device: int, /) -> DriverEvent:
        """Open another process's interprocess event here."""
        event, given = ctypes.c_void_p(), _Handle.from_buffer_copy(handle)
        result = self.call(device, "cuIpcOpenEventHandle", ctypes.byref(event), given)
        hint = "The producer may have exited or let go of the image (or ring) it described."
        _check(result, f"pickle.loads(): opening another process's event on cuda:{device}", hint)
        return DriverEvent(self, int(event.value or 0), device, handle)


def _check(result: int, action: str, hint: str = _NO_HINT) -> None:
    if result:
        raise CudaError(
            f"{action}: expected the CUDA driver call to succeed, got {_library().error_name(result)}. {hint}"
        )


class DriverEvent:
    """An ``IpcEvent`` of ``CudaDriver``; destroyed by ``close()`` or when the last reference goes."""

    __slots__ = ("_device", "_driver", "_event", "_handle")

    def __init__(self, owner: CudaDriver, event: int, device: int, handle: bytes | None) -> None:
        self._driver, self._event, self._device, self._handle = owner, event, device, handle

    @property
    def handle(self) -> bytes:
        if self._handle is None:
            handle = _Handle()
            result = self._driver.call(
                self._device, "cuIpcGetEventHandle", ctypes.byref(handle), self._pointer()
            )
            _check(result, "exporting an interprocess event")
            self._handle = bytes(handle)
        return self._handle

    def _pointer(self) -> ctypes.c_void_p:
        if not self._event:
            raise CudaError("using an interprocess event: expected a live event, got one already closed.")
        return ctypes.c_void_p(self._event)

    def record(self, stream: int) -> None:
        result = self._driver.call(self._device, "cuEventRecord", self._pointer(), ctypes.c_void_p(stream))
        _check(result, f"recording an interprocess event on stream {stream:#x}")

    def wait_on(self, consumer: int, device: int | None = None) -> None:
        if device is not None and device != self._device:
            # A stream of another GPU waiting on an interprocess event crashed the process (SIGSEGV in
            # cuStreamWaitEvent; 2 x H100, measured): the host waits for the event instead
            self.synchronize()
            return
        result = self._driver.call(
            self._device, "cuStreamWaitEvent", ctypes.c_void_p(consumer), self._pointer(), 0
        )
        _check(result, f"making stream {consumer:#x} wait for another process's event")

    def query(self) -> bool:
        result = self._driver.call(self._device, "cuEventQuery", self._pointer())
        if result == _NOT_READY:
            return False
        _check(result, "querying an interprocess event")
        return True

    def synchronize(self) -> None:
        result = self._driver.call(self._device, "cuEventSynchronize", self._pointer())
        _check(result, "waiting for an interprocess event")

    def close(self) -> None:
        event, self._event = self._event, 0
        if event and not sys.is_finalizing():  # at exit the driver frees what the process held
            with contextlib.suppress(Exception):  # a lost context: nothing left to free
                self._driver.call(self._device, "cuEventDestroy", ctypes.c_void_p(event))

    def __del__(self) -> None:
        self.close()


_active: list[Driver | None] = [None]


def driver() -> Driver:
    """The driver IPC goes through: ``CudaDriver`` unless a test installed another (``set_driver``)."""
    found = _active[0]
    if found is None:
        found = _active[0] = CudaDriver()
    return found


def set_driver(replacement: Driver | None) -> None:
    """Install ``replacement`` (a test's fake); None goes back to ``CudaDriver``."""
    _active[0] = replacement
