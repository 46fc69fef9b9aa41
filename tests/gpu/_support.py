"""Helpers shared by the CUDA tests: bit-exact host copies, expected patterns, allocator churn.

Every comparison here is bit-exact: elements are reinterpreted as unsigned/signed integers of the
same size before they are compared, so float16/bfloat16/bool values and signed zeros compare by
their bits, and no comparison kernel has to exist for a dtype on the GPU (torch has few for
uint16/uint32). Expected values come from the same pattern written into a host image.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, settings

pytest.importorskip("torch")
pytest.importorskip("cupy")
pytest.importorskip("cv2")

import cupy
import torch

from gpuimage import CPU, DTypeName, GpuImage, Layout
from gpuimage.strategies import fill_pattern

__all__ = [
    "SENTINEL",
    "TORCH_DTYPES",
    "assert_bits_equal",
    "assert_strides",
    "churn",
    "count_replayed_launches",
    "cupy_bits",
    "device_bytes",
    "expected_bits",
    "host_pattern",
    "memory_bits",
    "numpy_bits",
    "region_index",
    "torch_bits",
    "gpu_settings",
]

TORCH_DTYPES: dict[DTypeName, torch.dtype] = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "int8": torch.int8,
    "uint16": torch.uint16,
    "int16": torch.int16,
    "uint32": torch.uint32,
    "int32": torch.int32,
    "int64": torch.int64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}
_TORCH_BITS: dict[int, torch.dtype] = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_NUMPY_BITS: dict[int, type[np.integer[Any]]] = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}

SENTINEL = 0xA5
"""The byte that churn writes: never a byte of the pattern (values 0..100, in any dtype) at every place."""


def torch_bits(tensor: torch.Tensor) -> npt.NDArray[Any]:
    """A host copy (never shared) of a tensor on any device, reinterpreted as integers of the same size."""
    return tensor.detach().view(_TORCH_BITS[tensor.element_size()]).cpu().numpy().copy()


def numpy_bits(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A NumPy array reinterpreted as integers of the same size (no copy)."""
    return array.view(_NUMPY_BITS[array.itemsize])


def cupy_bits(array: cupy.ndarray) -> npt.NDArray[Any]:
    """A host copy of a CuPy array, reinterpreted as integers of the same size."""
    return numpy_bits(array.get())


def host_pattern(shape: Sequence[int], layout: Layout, dtype: DTypeName, seed: int) -> GpuImage:
    """A packed host image of ``shape`` (layout order) holding ``fill_pattern(image, seed)``."""
    if layout is Layout.HWC:
        height, width, channels = shape
    else:
        channels, height, width = shape
    image = GpuImage.empty(height, width, channels, dtype, layout=layout, device=CPU)
    fill_pattern(image, seed)
    return image


def expected_bits(shape: Sequence[int], layout: Layout, dtype: DTypeName, seed: int) -> npt.NDArray[Any]:
    """The bits ``fill_pattern(image, seed)`` writes into an image of this shape, layout and dtype."""
    return torch_bits(host_pattern(shape, layout, dtype, seed).as_torch())


def memory_bits(image: GpuImage) -> npt.NDArray[Any]:
    """The image's elements read straight from device memory, without any of its views.

    The bytes ``[ptr, ptr + nbytes)`` are copied to the host with one ``cudaMemcpy`` and then
    indexed with the spec's shape and byte strides: the reference every view is checked against.
    """
    spec = image.spec
    host = np.empty(spec.nbytes, dtype=np.uint8)
    memory = cupy.cuda.UnownedMemory(image.ptr, spec.nbytes, image, device_id=spec.device.index)
    cupy.cuda.MemoryPointer(memory, 0).copy_to_host(host.ctypes.data, spec.nbytes)
    bits = np.ndarray(spec.shape, dtype=_NUMPY_BITS[spec.itemsize], buffer=host, strides=spec.strides)
    return bits.copy()


def region_index(layout: Layout, x: int, y: int, width: int, height: int) -> tuple[slice, slice, slice]:
    """The index of a crop in an array of the given layout order."""
    rows, cols = slice(y, y + height), slice(x, x + width)
    return (rows, cols, slice(None)) if layout is Layout.HWC else (slice(None), rows, cols)


def assert_bits_equal(actual: npt.NDArray[Any], expected: npt.NDArray[Any], what: str) -> None:
    """Equal shapes and equal bits, element by element."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: element size {actual.dtype} != {expected.dtype}"
    mismatches = np.argwhere(actual != expected)
    assert mismatches.size == 0, (
        f"{what}: {len(mismatches)} of {expected.size} elements differ; first at index "
        f"{tuple(int(i) for i in mismatches[0])}: {actual[tuple(mismatches[0])]!r} != "
        f"{expected[tuple(mismatches[0])]!r}"
    )


def assert_strides(shape: Sequence[int], actual: Sequence[int], expected: Sequence[int], what: str) -> None:
    """Byte strides equal wherever they matter (a dimension of size 1 has no meaningful stride)."""
    assert len(actual) == len(expected) == len(shape), f"{what}: {actual} vs {expected} for shape {shape}"
    for axis, (size, mine, theirs) in enumerate(zip(shape, actual, expected, strict=True)):
        assert size == 1 or mine == theirs, (
            f"{what}: stride of axis {axis} is {mine} bytes, expected {theirs} (strides {tuple(actual)} "
            f"vs {tuple(expected)}, shape {tuple(shape)})"
        )


def device_bytes() -> int:
    """Bytes in use in torch's caching allocator and CuPy's default pool together."""
    return int(torch.cuda.memory_allocated()) + int(cupy.get_default_memory_pool().used_bytes())


def churn(nbytes: int, *, count: int = 48) -> list[object]:
    """Allocate and fill ``count`` buffers of about ``nbytes`` from torch and from CuPy.

    Memory freed too early is handed out again by the caching allocators, here, and overwritten
    with ``SENTINEL``. Half the buffers are freed again on the way (fragmentation, as in a real
    pipeline); the rest are returned so that the caller keeps them alive while it checks its data.
    ``torch.cuda.empty_cache()`` is not called: that would hide reuse.
    """
    kept: list[object] = []
    sizes = (nbytes, nbytes + 1, max(nbytes - 511, 1), nbytes * 2)
    for index in range(count):
        size = sizes[index % len(sizes)]
        tensor = torch.full((size,), SENTINEL, dtype=torch.uint8, device="cuda")
        array = cupy.full((size,), SENTINEL, dtype=cupy.uint8)
        if index % 2:
            kept.extend((tensor, array))
        del tensor, array
    torch.cuda.synchronize()
    cupy.cuda.runtime.deviceSynchronize()
    gc.collect()
    return kept


def gpu_settings(max_examples: int) -> settings:
    """Hypothesis settings for GPU tests: a fixed example budget, no deadline (first CUDA calls are slow)."""
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def count_replayed_launches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The item count of every launch a frame replay makes (``FramesReplay.__call__``: the fast path
    of ``normalize_batch`` and ``PreparedBatch``), from an empty replay table on."""
    from gpuimage import _frame_kernels, _frame_replay

    counted: list[int] = []
    real = _frame_kernels.FramesReplay.__call__

    def counting(self: Any, pointers: Any, target_ptr: int, stream: int) -> None:
        counted.append(len(pointers))
        real(self, pointers, target_ptr, stream)

    monkeypatch.setattr(_frame_kernels.FramesReplay, "__call__", counting)
    monkeypatch.setattr(_frame_replay, "_entries", {})
    return counted
