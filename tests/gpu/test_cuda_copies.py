"""Copies of CUDA images: ``copy()``, ``contiguous()``, ``to_layout()``, ``cpu()`` and ``cuda()``.

Each copy holds the same elements as its source, in new packed memory that it owns; views of the
same layout are returned as they are.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("cupy")
pytest.importorskip("cv2")
pytest.importorskip("torch")

import numpy as np
import numpy.typing as npt
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import CPU, Device, GpuImage, Layout
from gpuimage.strategies import crops, fill_pattern, image_specs, images

from ._support import (
    assert_bits_equal,
    expected_bits,
    gpu_settings,
    memory_bits,
    numpy_bits,
    region_index,
    torch_bits,
)

pytestmark = pytest.mark.cuda


def _hwc_bits(image: GpuImage) -> npt.NDArray[Any]:
    """The image's elements on the host in (H, W, C) order, whatever its layout and device."""
    tensor = image.as_torch()
    return torch_bits(tensor.permute(1, 2, 0) if image.layout is Layout.CHW else tensor)


def _check_packed_copy(copy: GpuImage, source: GpuImage, device: Device, what: str) -> None:
    assert copy.ptr != source.ptr, f"{what}: no new memory"
    assert copy.device == device, what
    assert copy.is_contiguous, f"{what}: not packed ({copy.spec})"
    assert (copy.height, copy.width, copy.channels, copy.dtype) == (
        source.height,
        source.width,
        source.channels,
        source.dtype,
    ), what


@gpu_settings(30)
@given(image=images(image_specs(device=0), device=0), seed=st.integers(0, 100), data=st.data())
def test_copies_preserve_the_data(image: GpuImage, seed: int, data: st.DataObject) -> None:
    fill_pattern(image, seed)
    expected = expected_bits(image.shape, image.layout, image.spec.dtype, seed)
    expected_hwc = _hwc_bits(image)
    assert_bits_equal(memory_bits(image), expected, "source")

    copy = image.copy()
    _check_packed_copy(copy, image, image.device, "copy()")
    assert copy.layout is image.layout
    assert_bits_equal(memory_bits(copy), expected, "copy()")
    fill_pattern(copy, (seed + 1) % 101)  # the copy is independent of its source
    assert_bits_equal(memory_bits(image), expected, "source after writing to its copy")

    packed = image.contiguous()
    if image.is_contiguous:
        assert packed is image
    else:
        _check_packed_copy(packed, image, image.device, "contiguous()")
        assert_bits_equal(memory_bits(packed), expected, "contiguous()")

    other = Layout.CHW if image.layout is Layout.HWC else Layout.HWC
    assert image.to_layout(image.layout) is image
    converted = image.to_layout(other)
    _check_packed_copy(converted, image, image.device, f"to_layout({other.value})")
    assert converted.layout is other
    assert_bits_equal(_hwc_bits(converted), expected_hwc, f"to_layout({other.value})")
    restored = converted.to_layout(image.layout)
    _check_packed_copy(restored, image, image.device, "to_layout() and back")
    assert_bits_equal(memory_bits(restored), expected, "to_layout() and back")

    host = image.cpu()
    _check_packed_copy(host, image, CPU, "cpu()")
    assert host.layout is image.layout
    assert host.cpu() is host
    assert_bits_equal(torch_bits(host.as_torch()), expected, "cpu().as_torch()")
    if image.dtype != "bfloat16":
        assert_bits_equal(numpy_bits(host.as_numpy()), expected, "cpu().as_numpy()")
    assert image.cuda() is image
    assert image.cuda(image.device) is image
    device = host.cuda()
    _check_packed_copy(device, host, Device("cuda", 0), "cpu().cuda()")
    assert_bits_equal(memory_bits(device), expected, "cpu().cuda()")

    x, y, width, height = data.draw(crops(image.spec), label="crop")
    region = image.crop(x, y, width, height)
    region_packed = region.contiguous()
    if region.is_contiguous:
        assert region_packed is region
    else:
        _check_packed_copy(region_packed, region, image.device, "crop().contiguous()")
    index = region_index(image.layout, x, y, width, height)
    assert_bits_equal(memory_bits(region_packed), expected[index], "crop().contiguous()")
    assert_bits_equal(torch_bits(region.cpu().as_torch()), expected[index], "crop().cpu()")


def test_contiguous_packs_a_pitched_image() -> None:
    image = GpuImage.empty(7, 9, 3, "uint8", row_alignment=256)
    fill_pattern(image, 11)
    assert not image.is_contiguous
    packed = image.contiguous()
    assert packed.is_contiguous
    assert packed.row_pitch == 9 * 3
    assert packed.strides == (27, 3, 1)
    assert np.array_equal(memory_bits(packed), memory_bits(image))
