"""The hub (``_image``): layouts and copies, what returns the image itself, ``cuda()`` and ``cpu()``
without a GPU, and the hub's own protocols: ``copy.copy``, ``copy.deepcopy`` and pickling. Its
constructors are tested in ``test_image_constructors.py``, its base and crops in ``test_image_core.py``."""

from __future__ import annotations

import copy
import gc
import pickle
import weakref
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuimage
from gpuimage import (
    CPU,
    DeviceError,
    GpuImage,
    ImageSpec,
    Layout,
    MissingBackendError,
    _lifetime,
    _runtime,
)
from gpuimage._runtime import HostRuntime
from gpuimage.strategies import crops, image_specs, images

FAKE = 0x7F00_0000_0000  # never dereferenced


class Buffer(np.ndarray[Any, Any]):
    """A weak-referenceable ndarray, to watch the memory owner die."""


def _host(shape: tuple[int, ...] = (3, 5, 2), readonly: bool = False) -> tuple[GpuImage, weakref.ref[Buffer]]:
    array = np.arange(np.prod(shape), dtype=np.int16).reshape(shape).view(Buffer)
    array.flags.writeable = not readonly
    return GpuImage.from_numpy(array, layout="HWC" if len(shape) == 3 else None), weakref.ref(array)


def _span(image: GpuImage) -> range:
    return range(image.ptr, image.ptr + image.nbytes)


# -- what returns the image itself -----------------------------------------------------------------


def test_copy_and_cpu_return_self_where_nothing_is_needed() -> None:
    image = GpuImage.from_numpy(np.zeros((2, 3), np.uint8))
    assert image.cpu() is image
    assert image.contiguous() is image
    assert image.layout is Layout.HWC
    assert image.device == CPU


@given(images(image_specs(device="cpu", dtypes=("uint8", "int16", "float32"))), st.data())
def test_to_layout_to_the_layout_an_image_has_returns_the_very_image(
    image: GpuImage, data: st.DataObject
) -> None:
    # like torch's contiguous() on a contiguous tensor, or .to() with the dtype it has: a no-op
    roi = image.crop(*data.draw(crops(image.spec)))
    assert roi.to_layout(roi.layout) is roi, "pitch and crop included: no copy"
    assert roi.to_layout(roi.layout.value) is roi


@given(images(image_specs(device="cpu", dtypes=("uint8", "int16", "float32"))), st.data())
def test_to_layout_to_another_layout_is_a_packed_new_allocation(image: GpuImage, data: st.DataObject) -> None:
    roi = image.crop(*data.draw(crops(image.spec)))
    other = Layout.CHW if roi.layout is Layout.HWC else Layout.HWC
    converted = roi.to_layout(other)
    assert converted is not roi
    assert converted.layout is other
    assert converted.is_contiguous
    assert not set(_span(converted)) & set(_span(image)), "new memory, apart from the source's"
    source = roi.as_numpy() if roi.layout is Layout.HWC else roi.as_numpy().transpose(1, 2, 0)
    result = converted.as_numpy() if other is Layout.HWC else converted.as_numpy().transpose(1, 2, 0)
    np.testing.assert_array_equal(result, source)


def test_a_pitched_crop_to_its_own_layout_is_the_crop_itself() -> None:
    image = GpuImage.empty(6, 8, 3, "uint8", device="cpu", row_alignment=64)
    roi = image.crop(1, 2, 5, 3)
    assert roi.to_layout("HWC") is roi
    assert not roi.is_contiguous, "the result keeps the parent's pitch"
    packed = roi.contiguous()
    assert packed is not roi
    assert (packed.is_contiguous, packed.row_pitch) == (True, 15)


# -- copy.copy, copy.deepcopy and pickle -----------------------------------------------------------


def test_deepcopy_copies_the_pixels_into_distinct_memory() -> None:
    # issue 11, defect 1: deepcopy kept the pointer and copied the owner, so writes reached the original
    image, _ = _host()
    copied = copy.deepcopy(image)
    assert type(copied) is GpuImage
    np.testing.assert_array_equal(copied.as_numpy(), image.as_numpy())
    assert (copied.shape, copied.dtype, copied.layout) == (image.shape, image.dtype, image.layout)
    assert not set(_span(copied)) & set(_span(image)), "the copy shares memory with the original"
    assert copied.owner is not image.owner
    copied.as_numpy()[0, 0, 0] = 1234
    assert image.as_numpy()[0, 0, 0] == 0, "a write to the copy reached the original"


def test_deepcopy_outlives_the_original() -> None:
    # issue 11, defect 1: the copy's pointer must not dangle once the original memory is freed
    image, alive = _host()
    expected, original = image.as_numpy().copy(), _span(image)
    copied = copy.deepcopy(image)
    assert copied.ptr not in original
    del image
    gc.collect()
    assert alive() is None, "the original memory is still alive: the test proves nothing"
    np.testing.assert_array_equal(copied.as_numpy(), expected)


def test_deepcopy_of_a_crop_and_of_read_only_memory() -> None:
    # issue 11, defect 1
    image, _ = _host((6, 7, 3))
    crop = image.crop(1, 2, 4, 3)
    copied = copy.deepcopy(crop)
    np.testing.assert_array_equal(copied.as_numpy(), crop.as_numpy())
    assert copied.is_contiguous
    assert copied.ptr not in _span(image)
    frozen, _ = _host(readonly=True)
    thawed = copy.deepcopy(frozen)
    np.testing.assert_array_equal(thawed.as_numpy(), frozen.as_numpy())
    assert not thawed.readonly, "a deep copy is new memory, writable like image.copy()"


def test_deepcopy_copies_an_image_once_per_container() -> None:
    # issue 11, defect 1: the memo keeps one copy for one image
    image, _ = _host()
    pair = copy.deepcopy([image, image])
    assert pair[0] is pair[1]
    assert pair[0].ptr != image.ptr


def test_copy_copy_is_the_image_itself_and_keeps_the_owner_alive() -> None:
    # issue 11, defect 1: a shallow copy shares memory and owner; the image is that already
    image, alive = _host()
    shallow = copy.copy(image)
    assert shallow is image
    del image
    gc.collect()
    assert alive() is not None
    assert int(shallow.as_numpy()[2, 4, 1]) == 29


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_of_a_host_image_copies_the_pixels_for_every_protocol(protocol: int) -> None:
    # issue 11, defect 1: a pickled image carried its pointer, and a copy of its owner, to wherever
    # it was loaded. Issue 15: device images pickle to CUDA IPC descriptions (tests/test_ipc.py);
    # host images pickle by value, packed (tests/test_host_pickle.py): never the pointer.
    host, _ = _host()
    for image in (host, host.crop(1, 1, 2, 2)):
        loaded = pickle.loads(pickle.dumps(image, protocol=protocol))
        np.testing.assert_array_equal(loaded.as_numpy(), image.as_numpy())
        assert loaded.row_pitch == image.width * image.channels * 2  # packed int16 rows
        assert not set(_span(loaded)) & set(_span(image)), "the pickle carried the pointer"
    loaded_dict = pickle.loads(pickle.dumps({"frames": [host]}, protocol=protocol))
    np.testing.assert_array_equal(loaded_dict["frames"][0].as_numpy(), host.as_numpy())


def test_image_spec_still_pickles() -> None:
    # issue 11, defect 1: only the image is refused; its description is plain data
    spec = ImageSpec.packed(height=4, width=6, channels=3, dtype="float32", row_alignment=256)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(spec, protocol=protocol)) == spec


# -- cuda() and cpu() without a GPU name the call made ---------------------------------------------


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime of a machine where nothing reaches a GPU, whatever this one has."""
    monkeypatch.setattr(_runtime, "_chosen", _runtime._chosen)  # put back after
    monkeypatch.setattr(_lifetime, "_recorder", list(_lifetime._recorder))
    gpuimage.set_runtime(HostRuntime())


@pytest.mark.usefixtures("no_gpu")
@pytest.mark.parametrize(("device", "call"), [(None, "image.cuda()"), ("cuda:1", "image.cuda('cuda:1')")])
def test_cuda_without_a_gpu_names_the_call_made(device: str | None, call: str) -> None:
    image = GpuImage.from_numpy(np.zeros((2, 3), np.uint8))
    with pytest.raises(MissingBackendError) as caught:
        image.cuda(device)
    message = str(caught.value)
    assert message.startswith(f"{call}: copying the image from cpu to cuda:")
    assert "needs a CUDA runtime, and none reaches a GPU here" in message
    assert "GpuImage.empty" not in message, "the user called cuda(), not empty()"


@pytest.mark.usefixtures("no_gpu")
def test_cpu_without_a_gpu_names_the_call_made() -> None:
    image = GpuImage.from_pointer(FAKE, ImageSpec(height=2, width=3))
    with pytest.raises(
        MissingBackendError, match=r"^image\.cpu\(\): copying a GPU image needs a CUDA runtime"
    ):
        image.cpu()


def test_cuda_to_a_host_device_is_refused_with_the_call_made() -> None:
    image = GpuImage.from_numpy(np.zeros((2, 3), np.uint8))
    with pytest.raises(DeviceError, match=r"^image\.cuda\('cpu'\): expected a CUDA device"):
        image.cuda("cpu")
