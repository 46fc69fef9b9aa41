"""Devices and foreign consumers: views land on the image's GPU; Numba sees the same memory.

Tests for a second GPU run only where there is one.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("cupy")
pytest.importorskip("cv2")
pytest.importorskip("torch")

import cupy
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.dlpack import from_dlpack as torch_from_dlpack

from gpuimage import Device, GpuImage
from gpuimage.strategies import ALL_DTYPES, crops, fill_pattern, image_specs, images

from ._support import assert_bits_equal, cupy_bits, expected_bits, numpy_bits, region_index, torch_bits

pytestmark = pytest.mark.cuda

_DLPACK_CUDA = 2


def _need_devices(count: int) -> None:
    available = torch.cuda.device_count()
    if available < count:
        pytest.skip(f"needs {count} CUDA devices, {available} present")


def _check_views_on(image: GpuImage, ordinal: int) -> None:
    assert image.device == Device("cuda", ordinal)
    assert image.__dlpack_device__() == (_DLPACK_CUDA, ordinal)
    assert image.as_torch().device == torch.device("cuda", ordinal)
    assert torch_from_dlpack(image).device == torch.device("cuda", ordinal)
    assert torch.as_tensor(image, device=f"cuda:{ordinal}").data_ptr() == image.ptr
    assert image.as_cupy().device.id == ordinal
    assert cupy.from_dlpack(image).device.id == ordinal
    with cupy.cuda.Device(ordinal):  # cupy.asarray copies to the current device otherwise
        assert cupy.asarray(image).device.id == ordinal
    mat = image.expect("HWC").as_gpumat()
    assert GpuImage.from_gpumat(mat, device=ordinal).as_torch().device.index == ordinal


@pytest.mark.parametrize("ordinal", [0, 1])
def test_views_land_on_the_image_device(ordinal: int) -> None:
    _need_devices(ordinal + 1)
    image = GpuImage.empty(5, 6, 3, "float32", device=ordinal, row_alignment=256)
    fill_pattern(image, 1)
    _check_views_on(image, ordinal)
    _check_views_on(image.crop(1, 1, 3, 3), ordinal)
    assert image.copy().device == image.device
    assert image.cpu().cuda(ordinal).device == image.device


@pytest.mark.parametrize("ordinal", [0, 1])
def test_imported_images_take_the_source_device(ordinal: int) -> None:
    _need_devices(ordinal + 1)
    tensor = torch.zeros((4, 5, 3), dtype=torch.uint8, device=f"cuda:{ordinal}")
    assert GpuImage.from_torch(tensor, layout="HWC").device == Device("cuda", ordinal)
    assert GpuImage.from_dlpack(tensor, layout="HWC").device == Device("cuda", ordinal)
    assert GpuImage.from_cuda_array_interface(tensor, layout="HWC").device == Device("cuda", ordinal)
    with cupy.cuda.Device(ordinal):
        array = cupy.zeros((4, 5, 3), dtype=cupy.uint8)
    assert GpuImage.from_cupy(array, layout="HWC").device == Device("cuda", ordinal)
    assert GpuImage.from_cuda_array_interface(array, layout="HWC").device == Device("cuda", ordinal)


def test_cuda_moves_between_devices() -> None:
    _need_devices(2)
    image = GpuImage.empty(8, 9, 2, "int16", device=0)
    fill_pattern(image, 9)
    moved = image.cuda(1)
    assert moved.device == Device("cuda", 1)
    assert moved.as_torch().device == torch.device("cuda", 1)
    assert_bits_equal(torch_bits(moved.as_torch()), torch_bits(image.as_torch()), "cuda(1)")
    back = moved.cuda(0)
    assert back.device == Device("cuda", 0)
    assert_bits_equal(torch_bits(back.as_torch()), torch_bits(image.as_torch()), "cuda(1).cuda(0)")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    image=images(image_specs(dtypes=[d for d in ALL_DTYPES if d != "bfloat16"], device=0), device=0),
    seed=st.integers(0, 100),
    data=st.data(),
)
def test_numba_sees_the_same_pointer_and_data(image: GpuImage, seed: int, data: st.DataObject) -> None:
    numba_cuda: Any = pytest.importorskip("numba.cuda")
    if not numba_cuda.is_available():
        pytest.skip("numba.cuda sees no GPU")
    fill_pattern(image, seed)
    expected = expected_bits(image.shape, image.layout, image.spec.dtype, seed)
    x, y, width, height = data.draw(crops(image.spec), label="crop")
    for view, wanted in (
        (image, expected),
        (image.crop(x, y, width, height), expected[region_index(image.layout, x, y, width, height)]),
    ):
        array = numba_cuda.as_cuda_array(view)
        assert array.device_ctypes_pointer.value == view.ptr
        assert tuple(array.shape) == view.shape
        assert tuple(array.strides) == view.strides
        assert array.dtype == np.dtype(view.dtype)
        assert_bits_equal(numpy_bits(array.copy_to_host()), wanted, "numba.cuda.as_cuda_array")
        assert_bits_equal(cupy_bits(view.as_cupy()), wanted, "as_cupy() beside numba")
