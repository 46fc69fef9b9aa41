"""Host images: NumPy and CPU-torch views, crops, writes seen everywhere, copies and conversions."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
import torch.utils.dlpack
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuimage import (
    CHW,
    CPU,
    HWC,
    BoundsError,
    DeviceError,
    DTypeError,
    GpuImage,
    HostMemoryError,
    InteropError,
    Layout,
    LayoutError,
    UInt8,
)
from gpuimage.strategies import crops, image_specs, images

HOST_SPECS = image_specs(device="cpu")


def _torch_bits(tensor: torch.Tensor) -> npt.NDArray[Any]:
    """Elements as raw integers (bfloat16 has no NumPy dtype)."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy()
    return tensor.numpy()


def _numpy_bits(image: GpuImage) -> npt.NDArray[Any]:
    if image.dtype == "bfloat16":
        return image.as_torch().view(torch.int16).numpy()
    return image.as_numpy()


@given(images(HOST_SPECS))
def test_views_share_pointer_and_strides(image: GpuImage) -> None:
    tensor = image.as_torch()
    assert tensor.data_ptr() == image.ptr
    assert tuple(tensor.shape) == image.shape
    assert tuple(stride * tensor.element_size() for stride in tensor.stride()) == image.strides
    if image.dtype != "bfloat16":
        array = image.as_numpy()
        assert array.__array_interface__["data"][0] == image.ptr
        assert array.strides == image.strides
        np.testing.assert_array_equal(array, _torch_bits(tensor))


@given(images(HOST_SPECS), st.data())
def test_crops_view_the_right_elements(image: GpuImage, data: st.DataObject) -> None:
    x, y, width, height = data.draw(crops(image.spec))
    crop = image.crop(x, y, width, height)
    full = _numpy_bits(image)
    expected = (
        full[y : y + height, x : x + width]
        if image.layout is Layout.HWC
        else full[:, y : y + height, x : x + width]
    )
    np.testing.assert_array_equal(_numpy_bits(crop), expected)
    assert crop.row_pitch == image.row_pitch
    assert crop.owner is image.owner
    # crops of crops stay inside and agree
    inner = crop.crop(width - 1, height - 1, 1, 1)
    np.testing.assert_array_equal(
        _numpy_bits(inner), _numpy_bits(image.crop(x + width - 1, y + height - 1, 1, 1))
    )
    with pytest.raises(BoundsError):
        crop.crop(0, 0, width + 1, height)


@given(images(image_specs(device="cpu", dtypes=("uint8", "int32", "float32"))))
def test_a_write_through_one_view_is_seen_through_the_others(image: GpuImage) -> None:
    image.as_torch()[0, 0, 0] = 7
    assert image.as_numpy()[0, 0, 0] == 7
    assert np.from_dlpack(image)[0, 0, 0] == 7
    image.as_numpy()[-1, -1, -1] = 5
    assert image.as_torch()[-1, -1, -1].item() == 5


def test_views_are_cached() -> None:
    image = GpuImage.from_numpy(np.zeros((4, 5, 3), np.uint8), layout="HWC")
    assert image.as_numpy() is image.as_numpy()
    assert image.as_torch() is image.as_torch()


def test_round_trip_numpy_torch_dlpack_keeps_pointer_shape_strides() -> None:
    base = np.arange(2 * 6 * 7 * 3, dtype=np.uint16).reshape(2, 6, 7, 3)[1, 1:5, 2:6]  # sliced, pitched
    first = GpuImage.from_numpy(base, layout="HWC")
    second = GpuImage.from_torch(first.as_torch(), layout="HWC")
    third = GpuImage.from_dlpack(second, layout="HWC")
    fourth = GpuImage.from_numpy(np.from_dlpack(third), layout="HWC")
    for image in (first, second, third, fourth):
        assert (image.ptr, image.shape, image.strides) == (first.ptr, (4, 4, 3), base.strides)
    np.testing.assert_array_equal(fourth.as_numpy(), base)


def test_permuted_tensor_is_wrapped_without_copy() -> None:
    hwc = torch.arange(4 * 5 * 3, dtype=torch.float32).reshape(4, 5, 3)
    image = GpuImage.from_torch(hwc.permute(2, 0, 1), layout="CHW")
    assert image.ptr == hwc.data_ptr()
    assert image.strides == (4, 60, 12)
    assert not image.is_contiguous
    assert torch.equal(image.as_torch(), hwc.permute(2, 0, 1))
    packed = image.contiguous()
    assert packed.is_contiguous
    assert packed.ptr != image.ptr
    assert torch.equal(packed.as_torch(), hwc.permute(2, 0, 1))


@given(images(HOST_SPECS))
def test_layout_conversions_round_trip(image: GpuImage) -> None:
    other = Layout.CHW if image.layout is Layout.HWC else Layout.HWC
    converted = image.to_layout(other)
    assert converted.layout is other
    assert converted.is_contiguous
    back = converted.to_layout(image.layout)
    np.testing.assert_array_equal(_numpy_bits(back), _numpy_bits(image))
    assert image.to_layout(image.layout) is image
    copied = image.copy()
    assert copied.ptr != image.ptr
    np.testing.assert_array_equal(_numpy_bits(copied), _numpy_bits(image))


def test_copy_and_cpu_return_self_where_nothing_is_needed() -> None:
    image = GpuImage.from_numpy(np.zeros((2, 3), np.uint8))
    assert image.cpu() is image
    assert image.contiguous() is image
    assert image.layout is Layout.HWC
    assert image.device == CPU


def test_empty_allocates_aligned_rows_on_the_host() -> None:
    image = GpuImage.empty(5, 7, 3, "float32", layout="CHW", device="cpu", row_alignment=64)
    assert image.row_pitch == 64
    assert image.ptr % 64 == 0
    image.as_numpy()[...] = 1.5
    assert float(image.as_numpy().sum()) == 1.5 * 5 * 7 * 3


def test_read_only_arrays_give_read_only_images() -> None:
    array = np.zeros((3, 4), np.uint8)
    array.flags.writeable = False
    image = GpuImage.from_numpy(array)
    assert image.readonly
    assert not image.as_numpy().flags.writeable


def test_views_keep_the_owner_alive() -> None:
    class Buffer(np.ndarray[Any, Any]):
        pass

    array = np.arange(60, dtype=np.uint8).reshape(4, 5, 3).view(Buffer)
    alive = weakref.ref(array)
    image = GpuImage.from_numpy(array, layout="HWC")
    numpy_view, torch_view = image.as_numpy(), image.as_torch()
    del array, image
    gc.collect()
    assert alive() is not None
    assert int(numpy_view[3, 4, 2]) == 59
    assert int(torch_view[3, 4, 2]) == 59
    del numpy_view
    gc.collect()
    assert alive() is not None
    del torch_view
    gc.collect()
    assert alive() is None


def test_host_images_refuse_device_protocols_and_views() -> None:
    image = GpuImage.from_numpy(np.zeros((2, 2), np.uint8))
    assert not hasattr(image, "__cuda_array_interface__")
    with pytest.raises(HostMemoryError):
        _ = image.__cuda_array_interface__
    with pytest.raises(DeviceError, match="host memory"):
        image.as_cupy()
    with pytest.raises(DeviceError, match="host memory"):
        image.as_gpumat()


def test_numpy_conversion_hook() -> None:
    image = GpuImage.from_numpy(np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert np.asarray(image).base is not None
    np.testing.assert_array_equal(np.asarray(image, dtype=np.float32)[..., 0], [[0, 1, 2], [3, 4, 5]])


def test_constructor_type_errors() -> None:
    with pytest.raises(InteropError, match=r"numpy\.ndarray"):
        GpuImage.from_numpy([[1, 2]])  # type: ignore[call-overload]
    with pytest.raises(InteropError, match=r"torch\.Tensor"):
        GpuImage.from_torch(np.zeros((2, 2)))  # type: ignore[call-overload]
    with pytest.raises(LayoutError, match="never guesses"):
        GpuImage.from_numpy(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DTypeError):
        GpuImage.from_numpy(np.zeros((2, 2), np.complex64))
    with pytest.raises(DTypeError):
        GpuImage.from_torch(torch.zeros(2, 2, dtype=torch.complex64))
    with pytest.raises(TypeError, match="from_torch"):
        GpuImage()


def test_torch_views_outside_their_storage_are_refused() -> None:
    storage = torch.zeros(100, dtype=torch.uint8)
    inside = torch.as_strided(storage, (4, 5), (20, 1))
    assert GpuImage.from_torch(inside).nbytes == 3 * 20 + 5  # extent: no padding after the last row
    storage.untyped_storage().resize_(50)  # the view now reaches past its (shrunk) storage
    with pytest.raises(BoundsError, match="outside the memory"):
        GpuImage.from_torch(inside)


def test_bfloat16_host_images_work_through_torch() -> None:
    tensor = torch.arange(12, dtype=torch.bfloat16).reshape(3, 4)
    image = GpuImage.from_torch(tensor)
    assert image.dtype == "bfloat16"
    assert torch.equal(image.as_torch()[..., 0], tensor)
    with pytest.raises(DTypeError, match="bfloat16"):
        image.as_numpy()
    assert torch.equal(torch.utils.dlpack.from_dlpack(image)[..., 0], tensor)


@settings(max_examples=30, database=None)
@given(st.from_type(GpuImage[CHW, UInt8]), st.from_type(GpuImage[HWC]))
def test_from_type_draws_the_layout_and_dtype_the_type_names(
    planar: GpuImage[CHW, UInt8], interleaved: GpuImage[HWC]
) -> None:
    assert planar.layout is Layout.CHW
    assert planar.dtype == "uint8"
    assert interleaved.layout is Layout.HWC
