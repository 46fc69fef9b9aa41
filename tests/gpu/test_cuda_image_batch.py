"""``GpuBatch`` on a GPU: zero-copy 4-D imports and views (torch, CuPy, CAI, DLPack, CV-CUDA), items
whose writes the 4-D views see, ``normalize_batch(..., out=batch)``, lifetime and stream ordering."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

pytest.importorskip("cupy")
pytest.importorskip("torch")

import cupy
import torch
from torch.utils.dlpack import from_dlpack as torch_from_dlpack

import gpuimage as gi
from gpuimage import GpuBatch, GpuImage

pytestmark = pytest.mark.cuda

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SLEEP_CYCLES = 100_000_000  # holds a side stream long enough that a missing wait reads stale data


def test_from_torch_is_zero_copy_and_items_write_through() -> None:
    tensor = torch.arange(4 * 3 * 8 * 10, dtype=torch.float32, device="cuda").reshape(4, 3, 8, 10)
    batch = GpuBatch.from_torch(tensor)
    assert (batch.ptr, batch.shape, batch.item_pitch) == (tensor.data_ptr(), (4, 3, 8, 10), 3 * 8 * 10 * 4)
    assert batch.strides == tuple(stride * 4 for stride in tensor.stride())
    view = batch.as_torch()
    assert batch.as_torch() is view
    assert view.data_ptr() == tensor.data_ptr()
    item = batch[2]
    assert item.ptr == tensor[2].data_ptr()
    item.as_torch()[1, 2, 3] = -5.0
    assert view[2, 1, 2, 3].item() == -5.0
    assert tensor[2, 1, 2, 3].item() == -5.0
    assert batch[-1].as_torch().data_ptr() == tensor[3].data_ptr()


def test_a_permuted_nhwc_tensor_is_an_nchw_batch_without_copying() -> None:
    base = torch.rand(3, 6, 7, 3, device="cuda")
    view = base.permute(0, 3, 1, 2)
    batch = GpuBatch.from_torch(view)
    assert batch.layout == "NCHW"
    assert batch.strides == tuple(stride * 4 for stride in view.stride())
    assert torch.equal(batch.as_torch(), view)
    nhwc = GpuBatch.from_torch(base, layout="NHWC")
    assert torch.equal(nhwc.as_torch(), base)
    assert nhwc.as_torch().data_ptr() == base.data_ptr()


def test_padded_items_keep_their_pitch_and_padding() -> None:
    storage = torch.full((4, 3, 10, 10), float("nan"), device="cuda")
    batch = GpuBatch.from_torch(storage[:, :, :8])
    assert batch.item_pitch == 3 * 10 * 10 * 4
    assert not batch.is_contiguous
    batch.as_torch().fill_(1.0)
    torch.cuda.synchronize()
    assert bool((storage[:, :, :8] == 1.0).all())
    assert bool(storage[:, :, 8:].isnan().all())


def test_from_cupy_and_as_cupy_share_memory() -> None:
    array = cupy.arange(2 * 5 * 6 * 3, dtype=cupy.uint8).reshape(2, 5, 6, 3)
    batch = GpuBatch.from_cupy(array, layout="NHWC")
    view = batch.as_cupy()
    assert view.data.ptr == array.data.ptr
    assert view.strides == array.strides
    assert bool(cupy.array_equal(view, array))
    batch[1].as_cupy()[0, 0, 0] = 255
    assert int(array[1, 0, 0, 0]) == 255


def test_dlpack_both_ways() -> None:
    tensor = torch.rand(2, 3, 4, 5, device="cuda")
    batch = GpuBatch.from_dlpack(tensor)
    assert batch.ptr == tensor.data_ptr()
    back = torch_from_dlpack(batch)
    assert back.data_ptr() == tensor.data_ptr()
    assert torch.equal(back, tensor)
    assert cupy.from_dlpack(batch).data.ptr == tensor.data_ptr()
    bf16 = torch.rand(2, 3, 4, 5, device="cuda").to(torch.bfloat16)
    assert torch.equal(torch_from_dlpack(GpuBatch.from_torch(bf16)), bf16)


def test_cuda_array_interface_both_ways() -> None:
    array = cupy.arange(3 * 3 * 4 * 4, dtype=cupy.float32).reshape(3, 3, 4, 4)
    batch = GpuBatch.from_cuda_array_interface(array)
    assert batch.ptr == array.data.ptr
    assert batch.device == gi.Device("cuda", 0)
    interface = batch.__cuda_array_interface__
    assert interface["shape"] == (3, 3, 4, 4)
    assert interface["strides"] == array.strides
    assert bool(cupy.array_equal(cupy.asarray(batch), array))


def test_empty_allocates_a_packed_device_batch() -> None:
    batch = GpuBatch.empty(8, 32, 32, 3)
    tensor = batch.as_torch()
    assert tensor.is_cuda
    assert tuple(tensor.shape) == (8, 3, 32, 32)
    assert tensor.is_contiguous()
    nhwc = GpuBatch.empty(2, 5, 7, 3, "uint8", layout="NHWC")
    assert nhwc.as_torch().is_contiguous()
    assert tuple(nhwc.as_torch().shape) == (2, 5, 7, 3)


def test_overlapping_items_are_refused() -> None:
    expanded = torch.zeros(1, 3, 4, 4, device="cuda").expand(2, 3, 4, 4)
    with pytest.raises(gi.PitchError, match="overlap"):
        GpuBatch.from_torch(expanded)
    with pytest.raises(gi.LayoutError, match="4-D"):
        GpuBatch.from_torch(torch.zeros(3, 4, 4, device="cuda"))


def _data_pointer(exported: object) -> int:
    """The address of what CV-CUDA's ``Tensor.cuda()`` returns (CAI, else DLPack through torch)."""
    interface = getattr(exported, "__cuda_array_interface__", None)
    if isinstance(interface, dict):
        return int(interface["data"][0])
    return int(torch_from_dlpack(exported).data_ptr())


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_cvcuda_as_tensor_is_zero_copy(layout: str) -> None:
    cvcuda = pytest.importorskip("cvcuda")
    batch = GpuBatch.empty(2, 16, 24, 3, "float32", layout=layout)  # type: ignore[arg-type]
    batch.as_torch().copy_(torch.rand(batch.shape, device="cuda"))
    torch.cuda.synchronize()  # CV-CUDA ignores the CAI stream
    tensor = cvcuda.as_tensor(batch, layout)
    assert tuple(tensor.shape) == batch.shape
    assert _data_pointer(tensor.cuda()) == batch.ptr, "cvcuda.as_tensor(batch) copied the batch"


def _frames() -> tuple[list[torch.Tensor], list[GpuImage]]:
    frames = [torch.randint(0, 256, (20, 24, 3), dtype=torch.uint8, device="cuda") for _ in range(3)]
    return frames, [GpuImage.from_torch(frame, layout="HWC") for frame in frames]


def _expected(images: list[GpuImage], index: int) -> torch.Tensor:
    return gi.normalize(images[index], MEAN, STD).as_torch()  # a CHW float32 image


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_normalize_batch_into_a_batch_matches_normalize(layout: str) -> None:
    _, images = _frames()
    batch = GpuBatch.empty(3, 20, 24, 3, layout=layout)  # type: ignore[arg-type]
    assert gi.normalize_batch(images, MEAN, STD, out=batch) is batch
    for index in range(3):
        got = batch[index].as_torch()
        got = got if layout == "NCHW" else got.permute(2, 0, 1)
        torch.testing.assert_close(got, _expected(images, index), rtol=0, atol=1e-6)


def test_normalize_batch_into_padded_items_leaves_the_padding() -> None:
    _, images = _frames()
    storage = torch.full((3, 3, 24, 24), float("nan"), device="cuda")
    batch = GpuBatch.from_torch(storage[:, :, :20])
    gi.normalize_batch(images, MEAN, STD, out=batch)
    torch.cuda.synchronize()
    for index in range(3):
        torch.testing.assert_close(storage[index, :, :20], _expected(images, index), rtol=0, atol=1e-6)
    assert bool(storage[:, :, 20:].isnan().all())


def test_normalize_batch_waits_for_the_batch_s_late_producer() -> None:
    _, images = _frames()
    storage = torch.zeros((3, 3, 20, 24), device="cuda")
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(SLEEP_CYCLES)
        storage.fill_(123.0)  # a late write: the batch's data is ready after it
        batch = GpuBatch.from_torch(storage)
    assert batch.stream == side.cuda_stream
    gi.normalize_batch(images, MEAN, STD, out=batch)  # must queue after the fill, not race it
    result = batch.as_torch()  # torch's current stream waits for the batch
    for index in range(3):
        torch.testing.assert_close(result[index], _expected(images, index), rtol=0, atol=1e-6)


def test_views_on_another_stream_wait_for_a_late_producer() -> None:
    storage = torch.zeros((2, 3, 64, 64), device="cuda")
    torch.cuda.synchronize()
    side, consumer = torch.cuda.Stream(), torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(SLEEP_CYCLES)
        storage.fill_(7.0)
        batch = GpuBatch.from_torch(storage)  # ready on the side stream
    expected = 7.0 * storage.numel()
    with torch.cuda.stream(consumer):
        total = batch.as_torch().sum()  # the consumer waits for the side stream, on the GPU
        from_item = batch[1].as_torch().sum()
        through_dlpack = torch_from_dlpack(batch).sum()
    consumer.synchronize()
    assert total.item() == expected
    assert from_item.item() == expected / 2
    assert through_dlpack.item() == expected


def test_a_cupy_consumer_waits_for_a_late_torch_producer() -> None:
    storage = torch.zeros((2, 3, 64, 64), device="cuda")
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(SLEEP_CYCLES)
        storage.fill_(3.0)
        batch = GpuBatch.from_torch(storage)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        total = batch.as_cupy(stream=stream).sum()
    stream.synchronize()
    assert float(total) == 3.0 * storage.numel()


def test_the_owner_lives_while_a_view_does() -> None:
    tensor = torch.zeros((2, 3, 8, 8), device="cuda")
    alive = weakref.ref(tensor)
    batch = GpuBatch.from_torch(tensor)
    views: list[Any] = [batch.as_cupy(), batch[1], torch_from_dlpack(batch)]
    del tensor, batch
    gc.collect()
    for index in range(len(views)):
        assert alive() is not None, f"the owner went while view {index} lives"
        views[index] = None
        gc.collect()
    torch.cuda.synchronize()
    gi.pending_releases()
    gc.collect()
    assert alive() is None
