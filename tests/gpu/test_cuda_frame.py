"""``GpuFrame`` on a GPU: torch and CuPy planes, the ``(1.5 H, W)`` tensor decoders export, frames
allocated here and written by torch, lifetime (the memory stays until the frame and every plane view
are gone), and the ready stream. CV-CUDA's ``nvcv.as_image`` and PyNvVideoCodec imports are tested
with the frame conversions (``test_cuda_frame_convert.py``)."""

from __future__ import annotations

import gc
import weakref

import pytest

pytest.importorskip("cupy")
pytest.importorskip("torch")

import cupy
import torch
from torch.utils.dlpack import from_dlpack as torch_from_dlpack

from gpuimage import ColorSpec, GpuFrame, GpuImage, LayoutError, pending_releases

from ._support import churn

pytestmark = pytest.mark.cuda

_H, _W = 36, 64  # NV12: a (54, 64) tensor
_SPIN = 200_000_000  # torch.cuda._sleep cycles: about 0.1 s, so an unordered reader runs first


def _pattern(rows: int, width: int, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    values = torch.arange(rows * width, device="cuda", dtype=torch.int64) % 251
    return values.reshape(rows, width).to(dtype)


class CaiPlane:
    """A plane as PyNvVideoCodec gives it: only ``__cuda_array_interface__`` (it keeps ``array``)."""

    def __init__(self, array: cupy.ndarray) -> None:
        self.array = array
        self.__cuda_array_interface__ = array.__cuda_array_interface__


def test_torch_planes_are_wrapped_without_copying() -> None:
    whole = _pattern(_H * 3 // 2, _W)
    frame = GpuFrame.from_planes([whole[:_H], whole[_H:]], format="NV12")
    y, uv = frame.planes
    assert (y.ptr, uv.ptr) == (whole.data_ptr(), whole[_H:].data_ptr())
    assert uv.shape == (_H // 2, _W // 2, 2)
    assert torch.equal(uv.as_torch().reshape(_H // 2, _W), whole[_H:])
    uv.as_torch()[0, 0, 1] = 250  # V of the first chroma sample, through the plane view
    assert int(whole[_H, 1]) == 250
    assert frame.device.index == 0
    assert frame.layout is None


def test_cupy_and_cai_planes() -> None:
    y = cupy.arange(_H * _W, dtype=cupy.uint8).reshape(_H, _W)
    uv = cupy.zeros((_H // 2, _W // 2, 2), dtype=cupy.uint8)
    frame = GpuFrame.from_planes(
        [y, CaiPlane(uv)], format="NV12", colour=ColorSpec(matrix="BT709", range="FULL")
    )
    assert frame.planes[0].ptr == y.data.ptr
    assert frame.planes[1].ptr == uv.data.ptr
    assert cupy.array_equal(frame.planes[0].as_cupy()[..., 0], y)


def test_from_dlpack_splits_the_decoders_tensor_and_exports_it_again() -> None:
    whole = _pattern(_H * 3 // 2, _W)
    frame = GpuFrame.from_dlpack(whole, format="NV12")
    y, uv = frame.planes
    assert y.ptr == whole.data_ptr()
    assert uv.ptr == whole.data_ptr() + _H * _W
    assert torch.equal(y.as_torch()[..., 0], whole[:_H])
    assert torch.equal(uv.as_torch().reshape(_H // 2, _W), whole[_H:])
    block = frame.as_torch()
    assert block.shape == (_H * 3 // 2, _W)
    assert block.data_ptr() == whole.data_ptr()
    assert frame.as_cupy().shape == (_H * 3 // 2, _W)
    assert torch_from_dlpack(frame).shape == (_H * 3 // 2, _W, 1)
    assert cupy.asarray(frame).shape == (_H * 3 // 2, _W)  # through __cuda_array_interface__


def test_from_dlpack_of_a_p010_tensor() -> None:
    whole = _pattern(_H * 3 // 2, _W, torch.int32).to(torch.uint16)
    frame = GpuFrame.from_dlpack(whole, format="P010")
    assert [plane.dtype for plane in frame.planes] == ["uint16", "uint16"]
    assert frame.planes[1].ptr == whole.data_ptr() + _H * _W * 2


def test_empty_planes_written_by_torch_are_read_back() -> None:
    frame = GpuFrame.empty(_W, _H, format="NV12", row_alignment=256)
    y, uv = frame.planes
    assert y.row_pitch == 256
    assert uv.ptr == y.ptr + 256 * _H
    y.as_torch().fill_(16)
    uv.as_torch()[..., 0].fill_(90)
    uv.as_torch()[..., 1].fill_(240)
    block = frame.as_torch()
    assert block.shape == (_H * 3 // 2, _W)
    assert block.stride() == (256, 1)
    assert int(block[:_H].min()) == 16
    assert int(block[_H:, 0::2].max()) == 90
    assert int(block[_H:, 1::2].min()) == 240


def test_from_pointer_over_a_tensor() -> None:
    memory = _pattern(1, 4096)
    frame = GpuFrame.from_pointer(
        memory.data_ptr(),
        format="NV12",
        width=32,
        height=16,
        pitch=64,
        device="cuda:0",
        owner=memory,
        nbytes=4096,
    )
    chroma = memory.view(-1)[1024:1536].reshape(8, 64)[:, :32]  # 8 rows of 16 UV pairs, pitch 64
    assert torch.equal(frame.planes[1].as_torch().reshape(8, 32), chroma)
    with pytest.raises(LayoutError):
        GpuFrame.from_pointer(
            memory.data_ptr(),
            format="NV12",
            width=32,
            height=16,
            pitch=64,
            aligned_height=20,
            device=0,
            owner=memory,
        ).as_torch()


def test_the_memory_lives_until_the_frame_and_every_plane_view_are_gone() -> None:
    expected = _pattern(_H * 3 // 2, _W)[_H:].clone()
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    whole = _pattern(_H * 3 // 2, _W)
    frame = GpuFrame.from_planes([whole[:_H], whole[_H:]], format="NV12")
    uv = frame.planes[1]
    del whole, frame
    gc.collect()
    kept = churn(_H * _W * 3 // 2)  # memory freed too early would be handed out and overwritten here
    assert torch.equal(uv.as_torch().reshape(_H // 2, _W), expected)
    del kept
    gc.collect()
    assert torch.cuda.memory_allocated() > start, "the plane view keeps its memory"
    del uv
    gc.collect()
    torch.cuda.synchronize()
    pending_releases()
    assert torch.cuda.memory_allocated() == start


def test_an_owner_is_released_only_after_the_frame_and_its_planes() -> None:
    class Surface:
        def __init__(self) -> None:
            self.memory = torch.zeros(4096, dtype=torch.uint8, device="cuda")

    surface = Surface()
    gone = weakref.ref(surface)
    frame = GpuFrame.from_pointer(
        surface.memory.data_ptr(), format="NV12", width=32, height=16, device=0, owner=surface
    )
    block = frame.as_torch()
    y = frame.planes[0]
    del surface, frame
    gc.collect()
    assert gone() is not None
    del block
    gc.collect()
    assert gone() is not None
    del y
    gc.collect()
    torch.cuda.synchronize()  # the views' streams are done: the deferred release can happen
    pending_releases()
    assert gone() is None


def test_a_write_on_another_stream_is_waited_for() -> None:
    frame = GpuFrame.empty(_W, _H, format="NV12")
    frame.as_torch().zero_()
    torch.cuda.synchronize()
    writer = torch.cuda.Stream()
    with torch.cuda.stream(writer):
        torch.cuda._sleep(_SPIN)
        frame.planes[1].as_torch(stream=writer).fill_(77)
    frame.record_write(writer)
    assert frame.stream == writer.cuda_stream
    assert frame.planes[0].stream == writer.cuda_stream
    uv = frame.planes[1].as_torch()  # the current (default) stream waits for the write, on the GPU
    assert bool((uv == 77).all())


def test_from_planes_and_from_dlpack_are_ready_on_the_given_stream() -> None:
    stream = torch.cuda.Stream()
    whole = _pattern(_H * 3 // 2, _W)
    planes = GpuFrame.from_planes([whole[:_H], whole[_H:]], format="NV12", stream=stream)
    assert planes.stream == stream.cuda_stream
    tensor = GpuFrame.from_dlpack(whole, format="NV12", stream=stream)
    assert tensor.stream == stream.cuda_stream
    assert tensor.planes[1].stream == stream.cuda_stream
    images = [GpuImage.from_torch(whole[:_H]), GpuImage.from_torch(whole[_H:])]
    again = GpuFrame.from_planes(images, format="NV12", stream=stream)
    assert again.stream == stream.cuda_stream
    torch.cuda.synchronize()
