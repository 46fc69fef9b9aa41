"""torch's runtime calls (``_torch_runtime``) on a machine without a GPU: the torch spoke offers no
runtime here, the pieces that need no GPU behave (raw blocks go back exactly once, errors at exit
are swallowed, cached devices, no stream objects to keep), and ``TorchRuntime`` is a ``Runtime``
whose allocation and copy logic is checked over host memory with torch's GPU entry points replaced."""

from __future__ import annotations

import gc
import sys
from typing import Any

import numpy as np
import pytest
from typing_extensions import get_protocol_members

from gpuimage import CudaError, Device, ImageSpec, Runtime
from gpuimage._executor import Buffer
from gpuimage._interfaces import host_view
from gpuimage._runtime import DeviceGuard

torch = pytest.importorskip("torch")

from gpuimage import _torch  # noqa: E402
from gpuimage import _torch_runtime as torch_runtime  # noqa: E402


def _host_view(ptr: int, spec: ImageSpec, owner: object) -> Any:
    """The torch spoke's view, over host memory (``TorchRuntime`` copies through it)."""
    return torch.from_numpy(host_view(ptr, spec, owner, readonly=False))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the behaviour without a GPU")
def test_the_torch_spoke_offers_no_runtime_without_a_gpu() -> None:
    assert torch_runtime.cuda_available() is False
    assert _torch.gpu_runtime() is None


def test_no_stream_object_needs_keeping() -> None:
    assert torch_runtime.current_stream_object(0) is None
    assert torch_runtime.current_stream_object(3) is None
    assert torch_runtime.TorchRuntime(_host_view).current_stream_object(1) is None


def test_torch_devices_are_made_once() -> None:
    device = torch_runtime.torch_device(3)
    assert device == torch.device("cuda", 3)
    assert torch_runtime.torch_device(3) is device
    assert torch_runtime.torch_device(2) == torch.device("cuda", 2)


# -- raw blocks -----------------------------------------------------------------------------------------


def test_a_raw_block_goes_back_once_when_its_owner_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    deleted: list[int] = []
    monkeypatch.setattr(torch_runtime, "_raw_delete", deleted.append)
    block = torch_runtime._RawBlock(0x7F00_1000)
    kept = block
    del block
    gc.collect()
    assert deleted == [], "still held"
    del kept
    gc.collect()
    assert deleted == [0x7F00_1000]
    gc.collect()
    assert deleted == [0x7F00_1000], "once"


def test_a_raw_block_swallows_errors_at_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(ptr: int) -> None:
        raise RuntimeError("torch is shutting down")

    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    monkeypatch.setattr(torch_runtime, "_raw_delete", gone)
    torch_runtime._RawBlock(0x7F00_2000).__del__()  # a direct call raises nothing either
    block = torch_runtime._RawBlock(0x7F00_3000)
    del block
    gc.collect()
    assert unraisable == [], "no 'Exception ignored in __del__' at interpreter exit"


# -- TorchRuntime ----------------------------------------------------------------------------------------


def test_torch_runtime_implements_the_runtime_protocol() -> None:
    found = torch_runtime.TorchRuntime(_host_view)
    assert isinstance(found, Runtime)
    assert all(hasattr(found, name) for name in get_protocol_members(Runtime))
    assert (found.name, found.has_gpu) == ("torch", True)
    assert found.pointer_device(0x7F00_0000) is None, "torch cannot ask which device owns a pointer"
    assert isinstance(found.device(0), DeviceGuard)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the behaviour without a GPU")
def test_waiting_for_the_same_stream_is_no_call() -> None:
    found = torch_runtime.TorchRuntime(_host_view)
    found.wait(7, 7, 0)  # no CUDA call: one would fail here, as the next shows
    with pytest.raises(CudaError, match=r"^ordering stream 0x8 after stream 0x7 on cuda:0: expected"):
        found.wait(7, 8, 0)


class _Allocator:
    """torch's raw allocator entry points, recorded (``ptr`` is what the next allocation returns)."""

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr
        self.allocations: list[tuple[int, int]] = []
        self.deleted: list[int] = []

    def alloc(self, size: int, stream: int) -> int:
        self.allocations.append((size, stream))
        return self.ptr


def _fake_allocator(monkeypatch: pytest.MonkeyPatch, ptr: int, *, current: int = 0) -> _Allocator:
    allocator = _Allocator(ptr)
    monkeypatch.setattr(torch_runtime, "_raw_alloc", allocator.alloc)
    monkeypatch.setattr(torch_runtime, "_raw_delete", allocator.deleted.append)
    monkeypatch.setattr(torch_runtime, "_current_device", lambda: current)
    monkeypatch.setattr(torch_runtime, "current_stream", lambda device: 0x500 + device)
    return allocator


@pytest.mark.parametrize(
    ("base", "alignment", "aligned"), [(0x1001, 256, 0x1100), (0x2000, 256, 0x2000), (0x3003, 4, 0x3004)]
)
def test_allocations_come_aligned_from_the_raw_allocator_on_torchs_stream(
    monkeypatch: pytest.MonkeyPatch, base: int, alignment: int, aligned: int
) -> None:
    allocator = _fake_allocator(monkeypatch, base)
    allocation = torch_runtime.TorchRuntime(_host_view).allocate(
        1000, Device("cuda", 0), alignment=alignment, stream=9
    )
    assert allocation.ptr == aligned
    assert allocation.stream == 0x500, (
        "an external stream may go before the block: torch's current one serves"
    )
    assert allocator.allocations == [(1000 + alignment - 1, 0x500)], "room to align inside the block"
    assert isinstance(allocation.owner, torch_runtime._RawBlock)
    del allocation
    gc.collect()
    assert allocator.deleted == [base], "the block, not the aligned pointer, goes back"


@pytest.mark.parametrize("stream", [0, 2], ids=["legacy-default", "per-thread-default"])
def test_an_allocation_for_a_default_stream_is_that_streams(
    monkeypatch: pytest.MonkeyPatch, stream: int
) -> None:
    """A default stream always exists, so the allocator may keep it as the block's: a conversion
    queued there from inside another stream's context needs no wait between the two."""
    allocator = _fake_allocator(monkeypatch, 0x4000)
    allocation = torch_runtime.TorchRuntime(_host_view).allocate(
        64, Device("cuda", 0), alignment=1, stream=stream
    )
    assert allocation.stream == stream
    assert allocator.allocations == [(64, stream)]


def test_an_allocation_for_another_device_goes_through_torch_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    allocator = _fake_allocator(monkeypatch, 0x1000, current=0)
    monkeypatch.setattr(torch_runtime, "torch_device", lambda index: torch.device("cpu"))  # host memory
    allocation = torch_runtime.TorchRuntime(_host_view).allocate(
        100, Device("cuda", 1), alignment=64, stream=None
    )
    assert allocator.allocations == [], "the raw entry point serves the current device only"
    buffer: Any = allocation.owner
    assert isinstance(buffer, torch.Tensor)
    assert allocation.ptr % 64 == 0
    start = buffer.data_ptr()
    assert start <= allocation.ptr
    assert allocation.ptr + 100 <= start + buffer.numel()
    assert allocation.stream == 0x501


def test_allocation_failures_are_cuda_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_allocator(monkeypatch, 0x1000)

    def out_of_memory(size: int, stream: int) -> int:
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(torch_runtime, "_raw_alloc", out_of_memory)
    with pytest.raises(CudaError, match=r"^allocating 4096 bytes on cuda:0 from torch's allocator: expected"):
        torch_runtime.TorchRuntime(_host_view).allocate(4096, Device("cuda", 0), alignment=1, stream=None)


def _memory(values: Any, spec: ImageSpec) -> Buffer:
    return Buffer(values.ctypes.data, spec, values)


def test_a_copy_on_the_current_stream_copies_every_element(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_runtime, "current_stream", lambda device: 0x600)
    source_values = np.arange(4 * 9 * 2, dtype=np.float32).reshape(4, 9, 2)
    source_spec = ImageSpec(
        height=4, width=3, channels=2, dtype="float32", row_pitch=72, pixel_stride=24, device="cpu"
    )  # every third pixel of each row
    target_values = np.zeros((4, 3, 2), np.float32)
    target_spec = ImageSpec.packed(height=4, width=3, channels=2, dtype="float32", device=0)
    torch_runtime.TorchRuntime(_host_view).copy(
        _memory(source_values, source_spec), _memory(target_values, target_spec), 0x600, 0
    )
    assert np.array_equal(target_values, source_values[:, ::3])


def test_a_failed_copy_is_a_cuda_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_runtime, "current_stream", lambda device: 0x600)
    source = np.zeros((2, 2, 1), np.uint8)
    target = np.zeros((3, 2, 1), np.uint8)  # another shape: torch refuses
    spec = ImageSpec.packed(height=2, width=2, channels=1, device="cpu")
    other = ImageSpec.packed(height=3, width=2, channels=1, device=0)
    with pytest.raises(CudaError, match=r"^copying an image to cuda:0 on stream 0x600: expected"):
        torch_runtime.TorchRuntime(_host_view).copy(_memory(source, spec), _memory(target, other), 0x600, 0)
