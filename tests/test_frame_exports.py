"""``_frame_exports``: a frame's whole-block views and protocols (the ``(1.5 H, W)`` view decoders
export), their refusal where the planes form no block, ``as_gpumat``'s refusal, and the frame's
stream calls, with a recording runtime for device frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fake_runtime import Runtime, runtime
from gpuimage import GpuFrame, LayoutError, frame_layout
from gpuimage._frame_exports import block_rows

__all__ = ["runtime"]  # the fixture

FAKE = 0x7F00_0000_0000


def _device_frame(stream: object = 7, **arguments: Any) -> GpuFrame:
    return GpuFrame.from_pointer(
        FAKE, format="NV12", width=8, height=4, device="cuda:0", owner=object(), stream=stream, **arguments
    )


def test_host_views_are_the_2d_block_and_cached() -> None:
    frame = GpuFrame.empty(8, 4, format="NV12", device="cpu")
    whole = frame.as_numpy()
    assert whole.shape == (6, 8)
    assert whole.ctypes.data == frame.planes[0].ptr
    assert frame.as_numpy() is whole
    torch = pytest.importorskip("torch")
    tensor = frame.as_torch()
    assert tensor.shape == (6, 8)
    assert tensor.data_ptr() == frame.planes[0].ptr
    assert tensor.dtype == torch.uint8
    assert frame.as_torch() is tensor


def test_a_packed_frame_exports_its_plane() -> None:
    frame = GpuFrame.empty(8, 4, format="RGB", device="cpu")
    assert frame.as_numpy().shape == (4, 8, 3)


def test_device_views_order_the_consumer_after_the_frame(runtime: Runtime) -> None:
    frame = _device_frame(stream=7)
    array = frame.as_cupy(stream=9)
    assert array.shape == (6, 8)
    assert array.strides == (8, 1)
    assert runtime.waits == [(7, 9, 0)]
    assert frame.as_cupy(stream=9) is array
    frame.planes[1].record_write(8)  # a write through a plane view: the block waits for it too
    frame.as_cupy(stream=9)
    assert runtime.waits[-1] == (8, 9, 0)


def test_cuda_array_interface_is_the_2d_block(runtime: Runtime) -> None:
    frame = _device_frame(stream=7, pitch=16)
    interface = frame.__cuda_array_interface__
    assert interface["shape"] == (6, 8)
    assert interface["strides"] == (16, 1)
    assert interface["data"] == (FAKE, False)
    assert interface["stream"] == 7
    assert interface["typestr"] == "|u1"


def test_dlpack_exports_the_block(runtime: Runtime) -> None:
    frame = GpuFrame.from_dlpack(np.arange(48, dtype=np.uint8).reshape(6, 8), format="NV12")
    assert frame.__dlpack_device__() == (1, 0)
    back = np.from_dlpack(frame)
    assert back.shape == (6, 8, 1)
    assert back[5, 7, 0] == 47
    again = GpuFrame.from_dlpack(frame, format="NV12")  # the capsule reads back as the frame
    assert again.planes[1].ptr == frame.planes[1].ptr
    device = _device_frame(stream=7)
    assert device.__dlpack_device__() == (2, 0)


@pytest.mark.parametrize(
    "export", ["as_numpy", "as_torch", "as_cupy", "__dlpack__", "__cuda_array_interface__"]
)
def test_planes_imported_apart_have_no_whole_view(export: str) -> None:
    frame = GpuFrame.from_planes([np.zeros((4, 8), np.uint8), np.zeros((2, 8), np.uint8)], format="NV12")
    with pytest.raises(
        LayoutError, match=r"imported one by one \(layout=None\)\. Use the planes: frame\.planes"
    ):
        getattr(frame, export)()


def test_a_frame_without_a_block_has_no_cuda_array_interface_for_hasattr(runtime: Runtime) -> None:
    planes = [GpuFrame.empty(8, 4, format="NV12", device="cuda:0").planes[i] for i in (0, 1)]
    frame = GpuFrame.from_planes(planes, format="NV12")
    assert not hasattr(frame, "__cuda_array_interface__")
    assert hasattr(_device_frame(), "__cuda_array_interface__")


def test_as_gpumat_is_refused_with_the_reason() -> None:
    frame = GpuFrame.empty(8, 4, format="NV12", device="cpu")
    with pytest.raises(LayoutError) as caught:
        frame.as_gpumat()  # type: ignore[attr-defined]
    assert str(caught.value) == (
        "as_gpumat(): a GpuFrame has no GpuMat (a GpuMat holds one interleaved image), got a frame of "
        "format=NV12 with 2 plane(s). Use frame.planes[i].as_gpumat() or frame.to_image()."
    )


def test_record_write_records_once_per_allocation(runtime: Runtime) -> None:
    frame = _device_frame(stream=7)
    frame.record_write(8)
    assert runtime.recorded == [(8, 0)]
    assert frame.stream == 8
    assert all(plane.stream == 8 for plane in frame.planes)
    frame.synchronize()
    assert frame.stream is None
    assert runtime.syncs == [(8, 0)]


@pytest.mark.parametrize(
    ("fmt", "arguments", "rows"),
    [
        ("NV12", {}, 6),
        ("NV12", {"pitch": 16}, 6),  # padded rows, one pitch: still the (1.5 H, W) block
        ("P010", {"row_alignment": 64}, 6),
        ("I420", {}, 6),  # packed: U and V are half rows, two to a row
        ("NV16", {}, 8),
        ("YUV444", {"pitch": 32}, 12),
        ("I420", {"pitch": 16}, None),  # padded I420: chroma rows of half the pitch tile no block
        ("NV12", {"aligned_height": 6}, None),  # rows between the planes
        ("NV12", {"plane_offsets": (64, 0)}, None),  # chroma first
        ("NV12", {"pitch": (8, 16)}, None),  # two pitches
    ],
)
def test_block_rows_finds_the_block_decoders_export(
    fmt: str, arguments: dict[str, object], rows: int | None
) -> None:
    assert block_rows(frame_layout(fmt, 8, 4, **arguments)) == rows  # type: ignore[arg-type]
