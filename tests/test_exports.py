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
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given

from fake_backends import fake_missing
from gpuimage import (
    DeviceError,
    DTypeError,
    GpuImage,
    GpuImageError,
    HostMemoryError,
    ImageSpec,
    LayoutError,
    LayoutLike,
    MissingBackendError,
    ReadOnlyError,
    StrideError,
)
from gpuimage._exports import view_refusal
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


# -- refusals: one order, the same error whatever is installed --------------------------------------


def _host(shape: tuple[int, ...], layout: LayoutLike, *, readonly: bool = False) -> GpuImage:
    array = np.zeros(shape, np.uint8)
    array.flags.writeable = not readonly
    return GpuImage.from_numpy(array, layout=layout)


class Misuse(NamedTuple):
    """A view asked of an image it cannot show: the error, and the one chain of calls that fixes it
    (None: no chain does), whatever is installed."""

    image: Callable[[], GpuImage]
    view: str
    error: type[GpuImageError]
    fix: str | None
    library: str  # the library the view needs, faked missing in the second run


MISUSES = {
    "host CHW GpuMat": Misuse(
        lambda: _host((3, 4, 5), "CHW"),
        "as_gpumat",
        LayoutError,
        "image.to_layout('HWC').cuda().as_gpumat()",
        "cv2",
    ),
    "host HWC GpuMat": Misuse(
        lambda: _host((4, 5, 3), "HWC"), "as_gpumat", DeviceError, "image.cuda().as_gpumat()", "cv2"
    ),
    "host HWC CuPy": Misuse(
        lambda: _host((4, 5, 3), "HWC"), "as_cupy", DeviceError, "image.cuda().as_cupy()", "cupy"
    ),
    "host read-only CuPy": Misuse(
        lambda: _host((4, 5, 3), "HWC", readonly=True),
        "as_cupy",
        DeviceError,
        "image.cuda().as_cupy()",
        "cupy",
    ),
    "device CHW bfloat16 GpuMat": Misuse(
        lambda: _fake(ImageSpec(height=2, width=3, channels=3, dtype="bfloat16", layout="CHW")),
        "as_gpumat",
        LayoutError,
        "image.to_layout('HWC').astype('float32').as_gpumat()",
        "cv2",
    ),
    "device bfloat16 CuPy": Misuse(
        lambda: _fake(ImageSpec(height=2, width=3, dtype="bfloat16")),
        "as_cupy",
        DTypeError,
        "image.astype('float32').as_cupy()",
        "cupy",
    ),
    "device channel slice GpuMat": Misuse(
        lambda: _fake(ImageSpec(height=2, width=3, channels=2, pixel_stride=3)),
        "as_gpumat",
        StrideError,
        "image.contiguous().as_gpumat()",
        "cv2",
    ),
    "device read-only GpuMat": Misuse(
        lambda: GpuImage.from_pointer(FAKE, ImageSpec(height=2, width=3, channels=3), readonly=True),
        "as_gpumat",
        ReadOnlyError,
        "image.copy().as_gpumat()",
        "cv2",
    ),
    "host read-only torch": Misuse(
        lambda: _host((4, 5, 3), "HWC", readonly=True),
        "as_torch",
        ReadOnlyError,
        "image.copy().as_torch()",
        "torch",
    ),
    "device 5 channels GpuMat": Misuse(
        lambda: _fake(ImageSpec(height=2, width=3, channels=5)), "as_gpumat", LayoutError, None, "cv2"
    ),
}


def _refused(misuse: Misuse) -> GpuImageError:
    image = misuse.image()
    with pytest.raises(GpuImageError) as caught:
        getattr(image, misuse.view)()
    return caught.value


@pytest.mark.parametrize("case", list(MISUSES))
def test_a_misuse_raises_one_error_that_names_every_fix(case: str) -> None:
    misuse = MISUSES[case]
    error = _refused(misuse)
    assert type(error) is misuse.error, str(error)
    message = str(error)
    assert message.startswith(f"{misuse.view}(): ")
    if misuse.fix is None:
        assert "Call image." not in message, "no chain of calls makes this image viewable"
    else:
        assert f"Call {misuse.fix}" in message
    assert "not installed" not in message


@pytest.mark.parametrize("case", list(MISUSES))
def test_a_misuse_raises_the_same_error_where_the_library_is_missing(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    misuse = MISUSES[case]
    installed = str(_refused(misuse))
    fake_missing(monkeypatch, misuse.library)
    error = _refused(misuse)
    assert type(error) is misuse.error, str(error)
    message = str(error)
    hint = {"cv2": "gpuimage[opencv]", "cupy": "gpuimage[cupy]", "torch": "gpuimage[torch]"}[misuse.library]
    assert f"pip install '{hint}'" in message, "the first error also names the library to install"
    assert isinstance(error.__cause__, ImportError), "the failed import stays the cause"
    problems = installed.split(". ", 1)[0]  # what was wrong, before what to do
    assert message.startswith(problems + "; "), "the same problems, in the same order, then the library"
    if misuse.fix is not None:
        assert f"then call {misuse.fix}" in message


def test_a_good_view_where_the_library_is_missing_names_only_the_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_missing(monkeypatch, "cv2")
    image = _fake(ImageSpec(height=2, width=3, channels=3)).expect("HWC")
    with pytest.raises(MissingBackendError) as caught:
        image.as_gpumat()
    assert str(caught.value) == (
        "as_gpumat(): OpenCV is not installed. Install OpenCV: pip install 'gpuimage[opencv]' (one OpenCV "
        "distribution only)."
    )


def test_host_chw_gpumat_message_is_pinned() -> None:
    error = _refused(MISUSES["host CHW GpuMat"])
    assert str(error) == (
        "as_gpumat(): a GpuMat holds one interleaved plane, got layout=CHW; the image is in host memory, and "
        "a GpuMat needs device memory. Call image.to_layout('HWC').cuda().as_gpumat(), or use as_numpy() "
        "with cv2's host functions."
    )


def test_what_no_check_here_refuses_is_left_to_the_spoke() -> None:
    spec = ImageSpec(height=2, width=3, channels=3)
    assert view_refusal("opencv", "as_gpumat()", spec, readonly=False) is None
    assert view_refusal("cupy", "as_cupy()", spec, readonly=False) is None
    assert view_refusal("torch", "as_torch()", spec.replace(device="cpu"), readonly=False) is None


def test_a_refused_view_is_not_cached_and_a_fixed_image_gets_its_view() -> None:
    planar = _fake(ImageSpec(height=2, width=3, channels=3, layout="CHW"))
    for _ in range(2):
        with pytest.raises(LayoutError):
            planar.as_gpumat()  # type: ignore[misc]  # also a static error: as_gpumat needs GpuImage[HWC]
    interleaved = _fake(ImageSpec(height=2, width=3, channels=3)).expect("HWC")
    assert interleaved.as_gpumat().cudaPtr() == FAKE
