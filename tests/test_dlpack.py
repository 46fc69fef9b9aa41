"""DLPack both ways: versioned and legacy capsules, deleters called exactly once, array-API arguments."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np
import pytest
import torch
import torch.utils.dlpack

from gpuimage import ExportError, GpuImage, ImageSpec, InteropError, LifetimeError
from gpuimage._dlpack import _exports


class Buffer(np.ndarray[Any, Any]):
    """A weak-referenceable ndarray, to watch the memory owner die."""


def _host_image() -> tuple[GpuImage, weakref.ref[Buffer]]:
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4).view(Buffer)
    return GpuImage.from_numpy(array, layout="CHW"), weakref.ref(array)


@pytest.mark.parametrize("max_version", [None, (0, 8), (1, 0), (1, 3)])
def test_export_is_consumed_by_numpy_and_torch(max_version: tuple[int, int] | None) -> None:
    image, _ = _host_image()
    capsule = image.__dlpack__(max_version=max_version)
    versioned = max_version is not None and max_version >= (1, 0)
    assert ("dltensor_versioned" if versioned else "dltensor") in repr(capsule)
    tensor = torch.utils.dlpack.from_dlpack(capsule)
    assert tensor.data_ptr() == image.ptr
    assert tuple(tensor.shape) == image.shape
    assert tuple(s * 4 for s in tensor.stride()) == image.strides
    array = np.from_dlpack(image)
    assert array.__array_interface__["data"][0] == image.ptr
    assert array.strides == image.strides


def test_consumer_deleter_releases_the_owner_exactly_once() -> None:
    image, alive = _host_image()
    before = len(_exports)
    tensor = torch.utils.dlpack.from_dlpack(image)
    del image
    gc.collect()
    assert alive() is not None
    assert float(tensor[1, 2, 3]) == 23.0
    del tensor
    gc.collect()
    assert alive() is None
    assert len(_exports) == before


def test_unconsumed_capsule_releases_the_owner() -> None:
    image, alive = _host_image()
    before = len(_exports)
    capsule = image.__dlpack__(max_version=(1, 0))
    del image
    gc.collect()
    assert alive() is not None
    del capsule
    gc.collect()
    assert alive() is None
    assert len(_exports) == before


def test_import_takes_ownership_and_calls_the_producer_deleter() -> None:
    source = np.arange(24, dtype=np.int32).reshape(2, 3, 4).view(Buffer)
    alive = weakref.ref(source)
    image = GpuImage.from_dlpack(source, layout="HWC")
    assert image.ptr == source.ctypes.data
    assert image.owner.capsule_name == "dltensor_versioned"  # type: ignore[attr-defined]
    view = image.as_torch()
    del source, image
    gc.collect()
    assert alive() is not None, "NumPy's capsule holds the array until the deleter runs"
    assert int(view[1, 2, 3]) == 23
    del view
    gc.collect()
    assert alive() is None, "the producer's deleter ran once the last view was gone"


def test_legacy_capsule_import() -> None:
    capsule = torch.ones(3, 5, dtype=torch.float16).__dlpack__()  # no max_version: a legacy capsule
    image = GpuImage.from_dlpack(capsule)
    assert image.shape == (3, 5, 1)
    assert image.owner.capsule_name == "dltensor"  # type: ignore[attr-defined]
    with pytest.raises(LifetimeError, match="already consumed"):
        GpuImage.from_dlpack(capsule)


def test_legacy_producer_without_max_version() -> None:
    class OldProducer:
        def __init__(self) -> None:
            self.array = np.zeros((4, 4), np.uint8)

        def __dlpack__(self, stream: Any = None) -> Any:
            return self.array.__dlpack__()

        def __dlpack_device__(self) -> tuple[int, int]:
            return (1, 0)

    assert GpuImage.from_dlpack(OldProducer()).shape == (4, 4, 1)


def test_dlpack_device_and_array_api_arguments() -> None:
    image, _ = _host_image()
    assert image.__dlpack_device__() == (1, 0)
    with pytest.raises(ExportError, match="takes no stream"):
        image.__dlpack__(stream=1)
    with pytest.raises(ExportError, match="cannot export"):
        image.__dlpack__(dl_device=(2, 0))
    copied = np.from_dlpack(image, copy=True)
    assert copied.__array_interface__["data"][0] != image.ptr
    np.testing.assert_array_equal(copied, image.as_numpy())
    same = np.from_dlpack(image, device="cpu")
    assert same.__array_interface__["data"][0] == image.ptr


def test_device_image_capsule_over_fake_pointer_carries_device_and_stream_checks() -> None:
    image = GpuImage.from_pointer(0x7F00_0000_0000, ImageSpec(height=2, width=3, device="cuda:1"))
    assert image.__dlpack_device__() == (2, 1)
    for bad in (0, -2, "s"):
        with pytest.raises(ExportError, match="stream"):
            image.__dlpack__(stream=bad)  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="copy=False"):
        image.__dlpack__(dl_device=(1, 0), copy=False)
    capsule = image.__dlpack__(stream=-1, max_version=(1, 0))
    del capsule


def test_not_dlpack() -> None:
    with pytest.raises(InteropError, match="no __dlpack__"):
        GpuImage.from_dlpack(object())


def test_read_only_flag_travels_in_versioned_capsules() -> None:
    array = np.zeros((3, 3), np.uint8)
    array.flags.writeable = False
    image = GpuImage.from_numpy(array)
    back = GpuImage.from_dlpack(image)
    assert back.readonly
    assert back.layout is image.layout  # a GpuImage source carries its layout
