"""``_image_batch_io``: the 4-D views and exports of a ``GpuBatch`` (torch, CuPy, NumPy, CAI, DLPack) on
host batches and on fake device pointers (CuPy headers need no GPU); DLPack import through torch."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np
import pytest

import gpuimage
from fake_runtime import Runtime, runtime
from gpuimage import GpuBatch, ImageSpec
from gpuimage._image_batch_io import BatchHeader, consume_dlpack, cuda_interface, host_interface, torch_view

__all__ = ["runtime"]

FAKE = 0x7F0000000000
DEVICE_SPEC = ImageSpec(height=2, width=3, channels=3, dtype="float32", layout="CHW", device="cuda:0")


def _device_batch(**kwargs: Any) -> GpuBatch:
    return GpuBatch.from_pointer(FAKE, DEVICE_SPEC, 4, item_pitch=256, **kwargs)


def _host(n: int = 3) -> np.ndarray:
    return np.arange(n * 3 * 4 * 5, dtype=np.float32).reshape(n, 3, 4, 5)


def test_the_cai_of_a_device_batch_is_4d_v3() -> None:
    interface = _device_batch(stream=0).__cuda_array_interface__
    assert interface == {
        "shape": (4, 3, 2, 3),
        "typestr": "<f4",
        "data": (FAKE, False),
        "strides": (256, 24, 12, 4),
        "version": 3,
        "stream": 1,  # the legacy default stream, as CAI spells it
    }
    assert _device_batch().__cuda_array_interface__["stream"] is None
    assert _device_batch(readonly=True).__cuda_array_interface__["data"] == (FAKE, True)


def test_the_cai_round_trips_through_from_cuda_array_interface() -> None:
    batch = _device_batch(stream=9)
    again = GpuBatch.from_cuda_array_interface(batch)
    assert (again.ptr, again.shape, again.strides, again.stream) == (FAKE, batch.shape, batch.strides, 9)
    assert again.owner is batch
    nhwc = GpuBatch.from_cuda_array_interface(batch, layout="NHWC")  # the same numbers, read as NHWC
    assert (nhwc.height, nhwc.width, nhwc.channels) == (3, 2, 3)


def test_a_host_batch_has_no_cai() -> None:
    batch = GpuBatch.from_numpy(_host())
    assert not hasattr(batch, "__cuda_array_interface__")
    with pytest.raises(gpuimage.HostMemoryError, match="host memory"):
        batch.__cuda_array_interface__  # noqa: B018


def test_bfloat16_has_no_typestr() -> None:
    spec = ImageSpec(height=2, width=2, channels=1, dtype="bfloat16", device="cuda:0")
    batch = GpuBatch.from_pointer(FAKE, spec, 2)
    with pytest.raises(gpuimage.DTypeError, match="bfloat16"):
        batch.__cuda_array_interface__  # noqa: B018


def test_header_interfaces() -> None:
    header = BatchHeader(FAKE, (2, 1, 1, 1), (8, 4, 4, 4), "float32", gpuimage.Device("cuda", 0), 12)
    assert cuda_interface(header, stream=5, readonly=False)["stream"] == 5
    assert host_interface(header, readonly=True)["data"] == (FAKE, True)
    assert host_interface(header, readonly=False, as_dtype="int32")["typestr"] == "<i4"


def test_as_cupy_is_a_header_over_the_batch() -> None:
    pytest.importorskip("cupy")
    view = _device_batch().as_cupy()
    assert view.shape == (4, 3, 2, 3)
    assert view.strides == (256, 24, 12, 4)
    assert view.data.ptr == FAKE
    assert _device_batch().as_cupy() is not view  # per batch
    batch = _device_batch()
    assert batch.as_cupy() is batch.as_cupy()  # cached


def test_as_cupy_refuses_host_bfloat16_and_read_only() -> None:
    pytest.importorskip("cupy")
    with pytest.raises(gpuimage.DeviceError, match="host memory"):
        GpuBatch.from_numpy(_host()).as_cupy()
    spec = ImageSpec(height=2, width=2, channels=1, dtype="bfloat16", device="cuda:0")
    with pytest.raises(gpuimage.DTypeError, match="bfloat16"):
        GpuBatch.from_pointer(FAKE, spec, 2).as_cupy()
    with pytest.raises(gpuimage.ReadOnlyError, match="read-only"):
        _device_batch(readonly=True).as_cupy()


def test_as_cupy_orders_its_consumer(runtime: Runtime) -> None:
    pytest.importorskip("cupy")
    batch = _device_batch(stream=5, owner=object())
    batch.as_cupy(stream=8)
    assert runtime.waits == [(5, 8, 0)]


def test_as_numpy_and_as_torch_on_the_host_share_memory() -> None:
    torch = pytest.importorskip("torch")
    array = _host()
    batch = GpuBatch.from_numpy(array)
    view = batch.as_numpy()
    assert view.ctypes.data == array.ctypes.data
    assert batch.as_numpy() is view
    tensor = batch.as_torch()
    assert tensor.data_ptr() == array.ctypes.data
    assert tuple(tensor.stride()) == (60, 20, 5, 1)
    tensor[2, 1, 3, 4] = -1.0
    assert array[2, 1, 3, 4] == -1.0
    assert torch.equal(tensor, torch.from_numpy(array))


def test_a_host_bfloat16_batch_is_viewed_by_torch() -> None:
    torch = pytest.importorskip("torch")
    storage = torch.arange(24, dtype=torch.float32).to(torch.bfloat16).reshape(2, 3, 2, 2)
    header = BatchHeader(storage.data_ptr(), (2, 3, 2, 2), (24, 8, 4, 2), "bfloat16", gpuimage.CPU, 48)
    view = torch_view(header, storage)
    assert view.dtype == torch.bfloat16
    assert torch.equal(view, storage)


def test_torch_without_a_gpu_says_so() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this torch sees a GPU")
    with pytest.raises(gpuimage.MissingBackendError, match="CUDA build of torch"):
        _device_batch().as_torch()


def test_as_numpy_of_a_device_batch_is_refused() -> None:
    with pytest.raises(gpuimage.DeviceError, match="host batch"):
        _device_batch().as_numpy()
    with pytest.raises(gpuimage.DeviceError, match="host batch"):
        np.asarray(_device_batch())


def test_numpy_asarray_of_a_host_batch() -> None:
    array = _host()
    batch = GpuBatch.from_numpy(array)
    assert np.asarray(batch).ctypes.data == array.ctypes.data
    assert np.array(batch, copy=True).ctypes.data != array.ctypes.data
    assert np.asarray(batch, dtype=np.float64).dtype == np.float64
    with pytest.raises(gpuimage.ExportError, match="copies"):
        np.asarray(batch, dtype=np.float64, copy=False)


def test_read_only_host_batch_gives_a_read_only_numpy_view_and_no_torch_view() -> None:
    array = _host()
    array.flags.writeable = False
    batch = GpuBatch.from_numpy(array)
    assert not batch.as_numpy().flags.writeable
    with pytest.raises(gpuimage.ReadOnlyError, match="read-only"):
        batch.as_torch()


def test_dlpack_round_trip_on_the_host() -> None:
    torch = pytest.importorskip("torch")
    array = _host()
    batch = GpuBatch.from_numpy(array)
    assert batch.__dlpack_device__() == (1, 0)
    tensor = torch.from_dlpack(batch)
    assert tensor.data_ptr() == array.ctypes.data
    assert tuple(tensor.shape) == array.shape
    assert np.from_dlpack(batch).ctypes.data == array.ctypes.data
    capsule = batch.__dlpack__(max_version=(1, 0))
    assert "dltensor_versioned" in repr(capsule)
    assert "dltensor_versioned" not in repr(batch.__dlpack__())


def test_dlpack_keeps_the_owner_alive() -> None:
    torch = pytest.importorskip("torch")

    class Owner:
        pass

    owner = Owner()
    alive = weakref.ref(owner)
    memory = np.zeros((2, 3, 4, 5), np.float32)
    spec = ImageSpec(height=4, width=5, channels=3, dtype="float32", layout="CHW", device="cpu")
    batch = GpuBatch.from_pointer(memory.ctypes.data, spec, 2, owner=owner)
    tensor = torch.from_dlpack(batch)
    del owner, batch
    gc.collect()
    assert alive() is not None
    del tensor
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stream": 0}, "expected stream None, -1, 1, 2"),
        ({"stream": -2}, "expected stream None, -1, 1, 2"),
        ({"stream": 1.0}, "expected stream None, -1, 1, 2"),
        ({"dl_device": (1, 0)}, "a batch exports its own memory only"),
        ({"dl_device": "cpu"}, "dl_device to be a pair of ints"),
        ({"max_version": 1}, "max_version to be a pair of ints"),
        ({"copy": True}, "copy=True"),
    ],
)
def test_dlpack_refusals_on_a_device_batch(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(gpuimage.ExportError, match=message):
        _device_batch().__dlpack__(**kwargs)


def test_dlpack_refusals_on_a_host_batch() -> None:
    with pytest.raises(gpuimage.ExportError, match="a host batch has no stream"):
        GpuBatch.from_numpy(_host()).__dlpack__(stream=1)
    array = _host()
    array.flags.writeable = False
    with pytest.raises(gpuimage.ExportError, match="read-only"):
        GpuBatch.from_numpy(array).__dlpack__(max_version=(1, 0))


class _Producer:
    """A DLPack producer of no library gpuimage knows (JAX, CV-CUDA...): NumPy underneath."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __dlpack__(self, **kwargs: Any) -> object:
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)


def test_from_dlpack_of_another_producer_goes_through_torch() -> None:
    pytest.importorskip("torch")
    array = _host()
    batch = GpuBatch.from_dlpack(_Producer(array))
    assert batch.ptr == array.ctypes.data
    assert batch.shape == array.shape
    assert GpuBatch.from_dlpack(batch) is batch
    with pytest.raises(gpuimage.LayoutError, match="NCHW batch"):
        GpuBatch.from_dlpack(batch, layout="NHWC")
    assert GpuBatch.from_dlpack(array).ptr == array.ctypes.data  # a NumPy array: its own spoke


def test_consume_dlpack_translates_refusals() -> None:
    pytest.importorskip("torch")
    with pytest.raises(gpuimage.InteropError, match="that torch can consume"):
        consume_dlpack(object(), where="test()")
