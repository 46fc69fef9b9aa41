"""The CUDA driver's IPC calls (``_ipc_driver``) over a fake ``libcuda``: symbols bound (``_v2`` first),
each call made in its device's primary context, flags as CUDA IPC needs them, and every failure a
``GpuImageError`` that says what to do. On a GPU the real driver runs in ``gpu/test_cuda_ipc.py``."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import pytest

from gpuimage import CudaError, ExportError, MissingBackendError, _ipc_driver
from gpuimage._ipc_driver import _SIGNATURES, CudaDriver, _Library


class FakeFunction:
    """A ``libcuda`` symbol: ctypes sets ``restype`` and ``argtypes``; calls go to ``body``."""

    def __init__(self, body: Callable[..., int]) -> None:
        self.body = body
        self.restype: object = None
        self.argtypes: object = None

    def __call__(self, *args: object) -> int:
        return self.body(*args)


def _target(reference: Any) -> Any:
    return reference._obj  # ctypes.byref(x)._obj is x


V2 = {"cuIpcOpenMemHandle", "cuEventDestroy", "cuMemGetAddressRange", "cuCtxPushCurrent", "cuCtxPopCurrent",
      "cuDeviceGetUuid"}  # fmt: skip
"""The symbols a driver has in a ``_v2`` version too (as libcuda since CUDA 11.4)."""


HANDLE = bytes(range(64))  # NULs inside: a handle is 64 raw bytes, not a string


class FakeCuda:
    """A ``ctypes.CDLL`` of the driver: records calls, answers as a one-GPU machine would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.current = 0  # no context current
        self.fail: dict[str, int] = {}
        self.not_ready = 1  # event queries before completion
        self.bodies: dict[str, Callable[..., int]] = {
            "cuInit": lambda flags: 0,
            "cuGetErrorName": self._name,
            "cuGetErrorString": self._text,
            "cuDeviceGetCount": lambda count: self._set(count, 2),
            "cuDeviceGet": lambda device, ordinal: self._set(device, ordinal + 100),
            "cuDeviceGetUuid": self._uuid,
            "cuDeviceGetPCIBusId": self._bus_id,
            "cuDevicePrimaryCtxRetain": lambda context, device: self._set(context, 0x1000 + device - 100),
            "cuCtxGetCurrent": lambda context: self._set(context, self.current),
            "cuCtxPushCurrent": lambda context: 0,
            "cuCtxPopCurrent": lambda context: 0,
            "cuMemGetAddressRange": self._range,
            "cuIpcGetMemHandle": self._handle,
            "cuIpcOpenMemHandle": lambda ptr, handle, flags: self._set(ptr, 0xABC000),
            "cuIpcCloseMemHandle": lambda ptr: 0,
            "cuEventCreate": lambda event, flags: self._set(event, 0x500),
            "cuEventRecord": lambda event, stream: 0,
            "cuStreamWaitEvent": lambda stream, event, flags: 0,
            "cuEventQuery": self._query,
            "cuEventSynchronize": lambda event: 0,
            "cuEventDestroy": lambda event: 0,
            "cuIpcGetEventHandle": self._handle,
            "cuIpcOpenEventHandle": lambda event, handle: self._set(event, 0x600),
        }

    def __getitem__(self, name: str) -> FakeFunction:
        base = name.removesuffix("_v2")
        if name.endswith("_v2") and base not in V2:
            raise AttributeError(name)

        def body(*args: object) -> int:
            self.calls.append((name, args))
            return self.fail.get(base) or self.bodies[base](*args)

        return FakeFunction(body)

    @staticmethod
    def _set(reference: Any, value: int) -> int:
        _target(reference).value = value
        return 0

    def _name(self, result: int, text: Any) -> int:
        _target(text).value = {1: b"CUDA_ERROR_INVALID_VALUE", 201: b"CUDA_ERROR_INVALID_CONTEXT"}.get(result)
        return 0 if _target(text).value else 1

    def _text(self, result: int, text: Any) -> int:
        _target(text).value = b"invalid argument"
        return 0

    def _uuid(self, uuid: Any, device: int) -> int:  # device: the CUdevice, 100 + ordinal here
        ctypes.memmove(ctypes.addressof(_target(uuid)), bytes([0, device - 93]) * 8, 16)
        return 0

    def _bus_id(self, text: Any, length: int, device: int) -> int:
        text.value = f"0000:{0x1B + device - 100:02x}:00.0".encode()
        return 0

    def _range(self, base: Any, size: Any, ptr: Any) -> int:
        _target(base).value = ptr.value & ~0xFFF
        _target(size).value = 0x10000
        return 0

    def _handle(self, handle: Any, source: object) -> int:
        ctypes.memmove(ctypes.addressof(_target(handle)), HANDLE, 64)
        return 0

    def _query(self, event: object) -> int:
        if self.not_ready:
            self.not_ready -= 1
            return 600
        return 0

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    fake = FakeCuda()
    library = _Library(fake)  # type: ignore[arg-type]  # duck-typed CDLL
    monkeypatch.setattr(_ipc_driver, "_library", lambda: library)
    return fake


def test_every_symbol_is_bound_preferring_v2() -> None:
    fake = FakeCuda()
    library = _Library(fake)  # type: ignore[arg-type]
    bound = library._functions
    assert set(bound) == set(_SIGNATURES)
    library.call("cuIpcOpenMemHandle", ctypes.byref(ctypes.c_uint64()), None, 1)
    library.call("cuEventRecord", None, None)
    assert fake.names() == ["cuIpcOpenMemHandle_v2", "cuEventRecord"]


def test_no_driver_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> object:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", absent)
    _ipc_driver._library.cache_clear()
    try:
        with pytest.raises(MissingBackendError, match=r"libcuda\.so\.1"):
            CudaDriver().address_range(0x1000, 0)
    finally:
        _ipc_driver._library.cache_clear()


def test_calls_run_in_the_device_s_primary_context_pushed_only_when_needed(cuda: FakeCuda) -> None:
    driver = CudaDriver()
    assert driver.address_range(0x7F00_0000_1234, 1) == (0x7F00_0000_1000, 0x10000)
    assert cuda.names()[-4:] == ["cuCtxGetCurrent", "cuCtxPushCurrent_v2", "cuMemGetAddressRange_v2",
                                 "cuCtxPopCurrent_v2"]  # fmt: skip
    cuda.calls.clear()
    cuda.current = 0x1001  # cuda:1's primary context is current already
    driver.address_range(0x7F00_0000_1234, 1)
    assert cuda.names() == ["cuCtxGetCurrent", "cuMemGetAddressRange_v2"]
    assert "cuDeviceGetUuid_v2" not in cuda.names()
    assert driver._contexts == {1: 0x1001}, "retained once per device"


def test_memory_handles_open_with_lazy_peer_access_and_close(cuda: FakeCuda) -> None:
    driver = CudaDriver()
    handle = driver.mem_handle(0x7F00_0000_0000, 0)
    assert handle == HANDLE, "all 64 bytes, NULs included"
    assert driver.open_mem_handle(handle, 0) == 0xABC000
    flags = next(args[2] for name, args in cuda.calls if name == "cuIpcOpenMemHandle_v2")
    assert flags == 1  # CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS
    driver.close_mem_handle(0xABC000, 0)
    assert "cuIpcCloseMemHandle" in cuda.names()


def test_memory_cuda_did_not_allocate_names_what_can_be_shared(cuda: FakeCuda) -> None:
    cuda.fail["cuMemGetAddressRange"] = 1
    with pytest.raises(ExportError, match="Host, pinned and managed memory") as raised:
        CudaDriver().address_range(0x1000, 0)
    assert "expandable_segments" in str(raised.value)


def test_memory_without_a_handle_names_the_allocators_that_give_one(cuda: FakeCuda) -> None:
    cuda.fail["cuIpcGetMemHandle"] = 1
    with pytest.raises(ExportError, match="cudaMallocAsync") as raised:
        CudaDriver().mem_handle(0x7F00_0000_0000, 0)
    assert "expandable_segments" in str(raised.value)
    assert "CUDA_ERROR_INVALID_VALUE: invalid argument" in str(raised.value)


@pytest.mark.parametrize(
    ("call", "symbol", "message"),
    [
        (lambda d: d.open_mem_handle(bytes(64), 0), "cuIpcOpenMemHandle", "producer may have exited"),
        (lambda d: d.open_event(bytes(64), 0), "cuIpcOpenEventHandle", "let go of the image"),
        (lambda d: d.create_event(0), "cuEventCreate", "interprocess event"),
        (lambda d: d.device_uuid(0), "cuDeviceGetUuid", "UUID of cuda:0"),
        (lambda d: d.address_range(0x1000, 3), "cuDevicePrimaryCtxRetain", "opening cuda:3"),
    ],
    ids=["open", "open event", "create event", "uuid", "context"],
)
def test_failures_are_cuda_errors_with_what_to_do(
    cuda: FakeCuda, call: Callable[[CudaDriver], object], symbol: str, message: str
) -> None:
    cuda.fail[symbol] = 201
    with pytest.raises(CudaError, match=message) as raised:
        call(CudaDriver())
    assert "CUDA_ERROR_INVALID_CONTEXT" in str(raised.value)


def test_an_unknown_result_is_named_by_its_number(cuda: FakeCuda) -> None:
    cuda.fail["cuIpcCloseMemHandle"] = 999
    with pytest.raises(CudaError, match="CUresult 999"):
        CudaDriver().close_mem_handle(0x1000, 0)


def test_interprocess_events(cuda: FakeCuda) -> None:
    driver = CudaDriver()
    event = driver.create_event(0)
    flags = next(args[1] for name, args in cuda.calls if name == "cuEventCreate")
    assert flags == 0x2 | 0x4  # DISABLE_TIMING | INTERPROCESS
    assert event.handle == HANDLE
    assert event.handle == HANDLE
    assert cuda.names().count("cuIpcGetEventHandle") == 1, "the handle is asked once"
    event.record(7)
    event.wait_on(9)
    event.wait_on(9, 0)  # a stream of the event's own GPU: on the GPU too
    assert cuda.names().count("cuStreamWaitEvent") == 2
    assert "cuEventSynchronize" not in cuda.names()
    event.wait_on(9, 1)  # another GPU's stream: the host waits (a GPU wait crashed CUDA)
    assert cuda.names().count("cuStreamWaitEvent") == 2
    assert cuda.names().count("cuEventSynchronize") == 1
    assert event.query() is False  # CUDA_ERROR_NOT_READY is an answer, not an error
    assert event.query() is True
    event.synchronize()
    assert cuda.names().count("cuEventSynchronize") == 2
    event.close()
    event.close()
    assert cuda.names().count("cuEventDestroy_v2") == 1
    with pytest.raises(CudaError, match="already closed"):
        event.record(7)
    opened = driver.open_event(b"x" * 64, 0)
    assert opened.handle == b"x" * 64


def test_devices_are_found_by_uuid_and_named_by_bus_id(cuda: FakeCuda) -> None:
    driver = CudaDriver()
    assert driver.device_uuid(1) == bytes([0, 8]) * 8, "all 16 bytes, NULs included"
    assert driver.pci_bus_id(1) == "0000:1c:00.0"
    assert driver.device_of_uuid(bytes([0, 8]) * 8) == 1
    assert driver.device_of_uuid(bytes(16)) is None


def test_the_driver_can_be_replaced_for_tests() -> None:
    real = _ipc_driver.driver()
    assert isinstance(real, CudaDriver)
    stand_in: Any = object()
    _ipc_driver.set_driver(stand_in)
    try:
        assert _ipc_driver.driver() is stand_in
    finally:
        _ipc_driver.set_driver(None)
    assert isinstance(_ipc_driver.driver(), CudaDriver)
