"""The views and protocol exports of ``GpuImage`` (``_exports``): ``as_torch``, ``as_numpy`` and
``as_cupy`` share the image's pointer and strides and are made once; ``__array__``,
``__cuda_array_interface__`` and ``__dlpack_device__``; round trips through views keep the memory;
views keep the owner alive; host images refuse the device protocols.

Host images are real memory; device images sit on a fake pointer that nothing dereferences (CuPy
and OpenCV build headers without a GPU).
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given

from gpuimage import DeviceError, DTypeError, GpuImage, HostMemoryError, ImageSpec
from gpuimage.strategies import image_specs, images

HOST_SPECS = image_specs(device="cpu")
FAKE = 0x7F00_0000_0000  # 256-byte aligned, never dereferenced


def _torch_bits(tensor: torch.Tensor) -> npt.NDArray[Any]:
    """Elements as raw integers (bfloat16 has no NumPy dtype)."""
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy()
    return tensor.numpy()


def _fake(spec: ImageSpec) -> GpuImage:
    return GpuImage.from_pointer(FAKE, spec)


# -- views share the memory ------------------------------------------------------------------------


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


def test_full_round_trip_cupy_gpumat_cai_dlpack_keeps_pointer_shape_strides() -> None:
    spec = ImageSpec.packed(height=6, width=10, channels=3, dtype="float32", row_alignment=256)
    start = _fake(spec).crop(1, 2, 7, 3)
    via_cupy = GpuImage.from_cupy(start.as_cupy(), layout="HWC")
    via_gpumat = GpuImage.from_gpumat(via_cupy.as_gpumat())
    via_cai = GpuImage.from_cuda_array_interface(via_gpumat, layout="HWC")
    for image in (via_cupy, via_gpumat, via_cai):
        assert (image.ptr, image.shape, image.strides, image.dtype) == (
            start.ptr,
            start.shape,
            start.strides,
            start.dtype,
        )


# -- the protocols ---------------------------------------------------------------------------------


def test_numpy_conversion_hook() -> None:
    image = GpuImage.from_numpy(np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert np.asarray(image).base is not None
    np.testing.assert_array_equal(np.asarray(image, dtype=np.float32)[..., 0], [[0, 1, 2], [3, 4, 5]])


def test_cuda_array_interface_v3() -> None:
    spec = ImageSpec(height=4, width=5, channels=2, dtype="uint16", layout="CHW")
    interface = GpuImage.from_pointer(FAKE, spec, stream=7, readonly=True).__cuda_array_interface__
    assert interface == {
        "shape": (2, 4, 5),
        "typestr": "<u2",
        "data": (FAKE, True),
        "strides": (40, 10, 2),
        "version": 3,
        "stream": 7,
    }
    assert GpuImage.from_pointer(FAKE, spec, stream=0).__cuda_array_interface__["stream"] == 1
    assert GpuImage.from_pointer(FAKE, spec).__cuda_array_interface__["stream"] is None


def test_bfloat16_has_no_cai_or_cupy_view() -> None:
    image = _fake(ImageSpec(height=2, width=2, dtype="bfloat16"))
    with pytest.raises(DTypeError, match="bfloat16"):
        _ = image.__cuda_array_interface__
    with pytest.raises(DTypeError, match="bfloat16"):
        image.as_cupy()


def test_device_of_views_follows_the_image() -> None:
    image = _fake(ImageSpec(height=2, width=2, device="cuda:1"))
    assert image.as_cupy().device.id == 1
    assert image.__dlpack_device__() == (2, 1)


def test_host_images_refuse_device_protocols_and_views() -> None:
    image = GpuImage.from_numpy(np.zeros((2, 2), np.uint8))
    assert not hasattr(image, "__cuda_array_interface__")
    with pytest.raises(HostMemoryError):
        _ = image.__cuda_array_interface__
    with pytest.raises(DeviceError, match="host memory"):
        image.as_cupy()
    with pytest.raises(DeviceError, match="host memory"):
        image.as_gpumat()


# -- lifetime --------------------------------------------------------------------------------------


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
