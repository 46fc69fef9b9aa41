"""Every view of a CUDA image sees the same memory, element for element, and sees the others' writes.

Images come from ``gpuimage.strategies``: every dtype, both layouts, padded pitches and planes,
sizes from 1x1, and crops at any (odd) offset. Each view is checked against the bytes read straight
from device memory through the spec's strides, and against the pattern that was written.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("cupy")
pytest.importorskip("cv2")
pytest.importorskip("torch")

import cupy
import numpy as np
import numpy.typing as npt
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.dlpack import from_dlpack as torch_from_dlpack

from gpuimage import DTypeError, DTypeName, GpuImage, Layout, LayoutError
from gpuimage._opencv import DEPTHS
from gpuimage.strategies import ALL_DTYPES, crops, fill_pattern, image_specs, images

from ._support import (
    TORCH_DTYPES,
    assert_bits_equal,
    assert_strides,
    cupy_bits,
    expected_bits,
    gpu_settings,
    host_pattern,
    memory_bits,
    region_index,
    torch_bits,
)

pytestmark = pytest.mark.cuda


_NO_BFLOAT16: tuple[DTypeName, ...] = tuple(dtype for dtype in ALL_DTYPES if dtype != "bfloat16")


def _check_torch(image: GpuImage, expected: npt.NDArray[Any]) -> None:
    tensor = image.as_torch()
    assert image.as_torch() is tensor, "as_torch() is not cached"
    assert tensor.is_cuda
    assert tensor.device.index == image.device.index
    assert tensor.dtype == TORCH_DTYPES[image.spec.dtype]
    assert tensor.data_ptr() == image.ptr
    assert tuple(tensor.shape) == image.shape
    strides = [s * tensor.element_size() for s in tensor.stride()]
    assert_strides(image.shape, strides, image.strides, "as_torch")
    assert_bits_equal(torch_bits(tensor), expected, "as_torch()")


def _check_cupy(image: GpuImage, expected: npt.NDArray[Any]) -> None:
    if image.dtype == "bfloat16":
        with pytest.raises(DTypeError):
            image.as_cupy()
        return
    array = image.as_cupy()
    assert image.as_cupy() is array, "as_cupy() is not cached"
    assert array.device.id == image.device.index
    assert array.dtype == np.dtype(image.dtype)
    assert array.data.ptr == image.ptr
    assert array.shape == image.shape
    assert_strides(image.shape, array.strides, image.strides, "as_cupy")
    assert_bits_equal(cupy_bits(array), expected, "as_cupy()")


def _check_gpumat(image: GpuImage, expected: npt.NDArray[Any]) -> None:
    if image.layout is Layout.CHW:
        with pytest.raises(LayoutError):
            image.as_gpumat()  # type: ignore[misc]  # the static check says the same: a GpuMat is HWC
        return
    hwc = image.expect("HWC")
    if image.spec.dtype not in DEPTHS:
        with pytest.raises(DTypeError):
            hwc.as_gpumat()
        return
    mat = hwc.as_gpumat()
    assert hwc.as_gpumat() is mat, "as_gpumat() is not cached"
    assert mat.cudaPtr() == image.ptr
    assert tuple(mat.size()) == (image.width, image.height)
    assert mat.channels() == image.channels
    assert mat.depth() == DEPTHS[image.spec.dtype]
    assert mat.elemSize1() == image.spec.itemsize
    if image.height > 1:
        assert mat.step == image.row_pitch
    back = GpuImage.from_gpumat(mat)
    assert back.ptr == image.ptr
    assert back.dtype == image.dtype
    assert back.shape == image.shape
    assert back.device == image.device
    assert_strides(image.shape, back.strides, image.strides, "from_gpumat(as_gpumat())")
    assert_bits_equal(torch_bits(back.as_torch()), expected, "from_gpumat(as_gpumat()).as_torch()")


def _check_dlpack(image: GpuImage, expected: npt.NDArray[Any]) -> None:
    tensor = torch_from_dlpack(image)
    assert tensor.data_ptr() == image.ptr
    assert tensor.device.index == image.device.index
    assert tensor.dtype == TORCH_DTYPES[image.spec.dtype]
    assert tuple(tensor.shape) == image.shape
    strides = [s * tensor.element_size() for s in tensor.stride()]
    assert_strides(image.shape, strides, image.strides, "torch.from_dlpack")
    assert_bits_equal(torch_bits(tensor), expected, "torch.from_dlpack(image)")
    if image.dtype == "bfloat16":
        return
    array = cupy.from_dlpack(image)
    assert array.data.ptr == image.ptr
    assert array.device.id == image.device.index
    assert array.dtype == np.dtype(image.dtype)
    assert array.shape == image.shape
    assert_strides(image.shape, array.strides, image.strides, "cupy.from_dlpack")
    assert_bits_equal(cupy_bits(array), expected, "cupy.from_dlpack(image)")


def _check_cai(image: GpuImage, expected: npt.NDArray[Any]) -> None:
    if image.dtype == "bfloat16":
        with pytest.raises(DTypeError):
            image.__cuda_array_interface__  # noqa: B018  # the property raises
        return
    interface = image.__cuda_array_interface__
    assert interface["data"] == (image.ptr, False)
    assert tuple(interface["shape"]) == image.shape
    assert tuple(interface["strides"]) == image.strides
    array = cupy.asarray(image)
    assert array.data.ptr == image.ptr
    assert array.device.id == image.device.index
    assert array.dtype == np.dtype(image.dtype)
    assert_strides(image.shape, array.strides, image.strides, "cupy.asarray")
    assert_bits_equal(cupy_bits(array), expected, "cupy.asarray(image)")
    tensor = torch.as_tensor(image, device=f"cuda:{image.device.index}")
    assert tensor.data_ptr() == image.ptr
    assert tensor.dtype == TORCH_DTYPES[image.spec.dtype]
    strides = [s * tensor.element_size() for s in tensor.stride()]
    assert_strides(image.shape, strides, image.strides, "torch.as_tensor")
    assert_bits_equal(torch_bits(tensor), expected, "torch.as_tensor(image)")


def _check_all_views(image: GpuImage, expected: npt.NDArray[Any]) -> None:
    assert_bits_equal(memory_bits(image), expected, "device memory read through the spec's strides")
    _check_torch(image, expected)
    _check_cupy(image, expected)
    _check_gpumat(image, expected)
    _check_dlpack(image, expected)
    _check_cai(image, expected)


@gpu_settings(40)
@given(image=images(image_specs(device=0), device=0), seed=st.integers(0, 100), data=st.data())
def test_every_view_agrees_with_memory(image: GpuImage, seed: int, data: st.DataObject) -> None:
    fill_pattern(image, seed)
    expected = expected_bits(image.shape, image.layout, image.spec.dtype, seed)
    _check_all_views(image, expected)

    x, y, width, height = data.draw(crops(image.spec), label="crop")
    region = image.crop(x, y, width, height)
    assert region.ptr == image.ptr + y * image.row_pitch + x * image.spec.pixel_stride
    _check_all_views(region, expected[region_index(image.layout, x, y, width, height)])


def _read_everywhere(image: GpuImage, expected: npt.NDArray[Any], after: str) -> None:
    """Read the whole image through torch, CuPy and a GpuMat round trip (HWC)."""
    assert_bits_equal(torch_bits(image.as_torch()), expected, f"as_torch() after {after}")
    assert_bits_equal(cupy_bits(image.as_cupy()), expected, f"as_cupy() after {after}")
    if image.layout is Layout.HWC:
        back = GpuImage.from_gpumat(image.expect("HWC").as_gpumat())
        assert_bits_equal(torch_bits(back.as_torch()), expected, f"GpuMat round trip after {after}")


@gpu_settings(30)
@given(
    image=images(image_specs(dtypes=_NO_BFLOAT16, device=0), device=0),
    seed=st.integers(0, 100),
    steps=st.lists(st.integers(1, 100), min_size=3, max_size=3),
    data=st.data(),
)
def test_writes_through_one_view_are_seen_through_the_others(
    image: GpuImage, seed: int, steps: list[int], data: st.DataObject
) -> None:
    fill_pattern(image, seed)
    expected = expected_bits(image.shape, image.layout, image.spec.dtype, seed)
    x, y, width, height = data.draw(crops(image.spec), label="crop")
    region = image.crop(x, y, width, height)
    index = region_index(image.layout, x, y, width, height)

    # Each write uses another seed (a shift of 1..100 changes every non-bool element) and covers
    # only the crop: what lies outside it must stay as it was.
    seeds = [(seed + sum(steps[: i + 1])) % 101 for i in range(3)]
    writes = [host_pattern(region.shape, region.layout, region.spec.dtype, s) for s in seeds]

    region.as_torch().copy_(writes[0].as_torch().to(region.as_torch().device))
    expected[index] = torch_bits(writes[0].as_torch())
    _read_everywhere(image, expected, "a write through torch")

    region.as_cupy()[...] = cupy.asarray(np.ascontiguousarray(writes[1].as_numpy()))
    expected[index] = torch_bits(writes[1].as_torch())
    _read_everywhere(image, expected, "a write through CuPy")

    if region.layout is Layout.HWC and region.spec.dtype in DEPTHS:
        through_mat = GpuImage.from_gpumat(region.expect("HWC").as_gpumat())
        through_mat.as_torch().copy_(writes[2].as_torch().to(through_mat.as_torch().device))
        expected[index] = torch_bits(writes[2].as_torch())
        _read_everywhere(image, expected, "a write through a GpuMat")
    assert_bits_equal(memory_bits(image), expected, "device memory after the writes")


@pytest.mark.parametrize("dtype", ["uint8", "float32", "bfloat16"])
def test_views_are_cached_per_image_and_fresh_per_crop(dtype: DTypeName) -> None:
    image = GpuImage.empty(6, 7, 3, dtype, row_alignment=256)
    tensor = image.as_torch()
    assert image.as_torch() is tensor
    crop = image.crop(1, 1, 3, 3)
    assert crop.as_torch() is not tensor
    assert crop.as_torch().data_ptr() == tensor[1:4, 1:4].data_ptr()
    if dtype != "bfloat16":
        assert image.as_cupy() is image.as_cupy()
        assert image.as_gpumat() is image.as_gpumat()
