"""Hostile input on the GPU paths: strided, overlapping, sliced and odd-dtype CUDA tensors and CuPy
arrays through every constructor, view and op. Each works, agrees with the source and stays inside
its allocation, or raises a GpuImageError; nothing else escapes."""

from __future__ import annotations

from typing import Any

import cupy
import pytest
import torch
import torch.utils.dlpack
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import GpuImage, GpuImageError

from ._support import gpu_settings

pytestmark = pytest.mark.cuda

DTYPES = [torch.uint8, torch.int16, torch.float16, torch.bfloat16, torch.float32, torch.int64, torch.bool]


@st.composite
def strided_tensors(draw: st.DrawFn) -> torch.Tensor:
    dtype = draw(st.sampled_from(DTYPES))
    storage = torch.arange(512, device="cuda").to(dtype)
    ndim = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim))
    strides = draw(st.lists(st.integers(0, 9), min_size=ndim, max_size=ndim))  # 0: broadcast
    offset = draw(st.integers(0, 40))
    if offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) >= storage.numel():
        strides = [1] * ndim
    return torch.as_strided(storage, shape, strides, offset)


def _attempt(call: Any) -> Any:
    try:
        return call()
    except GpuImageError:
        return None


@gpu_settings(200)
@given(tensor=strided_tensors(), layout=st.sampled_from([None, "HWC", "CHW"]), data=st.data())
def test_strided_cuda_tensors(tensor: torch.Tensor, layout: Any, data: st.DataObject) -> None:
    storage = tensor.untyped_storage()
    start, end = storage.data_ptr(), storage.data_ptr() + storage.nbytes()
    image = _attempt(lambda: GpuImage.from_torch(tensor, layout=layout))
    if image is None:
        return
    assert start <= image.ptr
    assert image.ptr + image.nbytes <= end
    view = image.as_torch()
    assert view.data_ptr() == tensor.data_ptr()
    # a 2-D source is one channel: last for HWC, first for CHW
    channel_first = tensor[None] if layout == "CHW" else tensor[..., None]
    expected = tensor if tensor.dim() == 3 else channel_first
    assert torch.equal(view, expected)
    x, y = data.draw(st.integers(-1, 6)), data.draw(st.integers(-1, 6))
    width, height = data.draw(st.integers(-1, 6)), data.draw(st.integers(-1, 6))
    crop = _attempt(lambda: image.crop(x, y, width, height))
    if crop is not None:
        assert start <= crop.ptr
        assert crop.ptr + crop.nbytes <= end
    if tensor.dtype != torch.bfloat16:
        array = _attempt(image.as_cupy)
        if array is not None:
            assert bool(cupy.array_equal(array, cupy.asarray(expected)))
    mat = _attempt(lambda: image.expect("HWC").as_gpumat())
    if mat is not None:
        assert torch.equal(GpuImage.from_gpumat(mat).as_torch(), expected)
    converted = _attempt(lambda: image.to_layout("CHW" if image.layout.value == "HWC" else "HWC"))
    if converted is not None:
        assert torch.equal(converted.to_layout(image.layout).as_torch(), expected)
    exported = torch.utils.dlpack.from_dlpack(image)
    assert torch.equal(exported, expected)


@gpu_settings(100)
@given(
    shape=st.lists(st.integers(1, 7), min_size=2, max_size=3),
    step=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dtype=st.sampled_from(["uint8", "int32", "float32", "float64", "complex64", "uint64"]),
)
def test_sliced_cupy_arrays(shape: list[int], step: tuple[int, int], dtype: str) -> None:
    base = cupy.arange(2 * 8 * 8 * 8).astype(dtype).reshape(2, 8, 8, 8)[1]
    array = base[: shape[0] * step[0] : step[0], : shape[1] * step[1] : step[1]]
    if len(shape) == 2:
        array = array[..., 0]
    image = _attempt(lambda: GpuImage.from_cupy(array, layout="HWC"))
    if image is None:
        assert dtype in ("complex64", "uint64")
        return
    memory = array.data.mem
    assert memory.ptr <= image.ptr
    assert image.ptr + image.nbytes <= memory.ptr + memory.size
    assert bool(cupy.array_equal(image.as_cupy(), array if array.ndim == 3 else array[..., None]))
