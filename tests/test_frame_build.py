"""``_frame_build``: how frame constructors read planes, and
how the planes' ready streams become the frame's one (with a recording runtime for device frames)."""

from __future__ import annotations

import numpy as np
import pytest

from fake_runtime import Runtime, runtime
from gpuimage import GpuFrame, GpuImage, ImageSpec, LayoutError, SpecError

__all__ = ["runtime"]  # the fixture

FAKE = 0x7F00_0000_0000


def test_a_one_channel_chw_plane_is_read_as_hwc() -> None:
    y = GpuImage.from_numpy(np.zeros((4, 8), np.uint8), layout="CHW")
    frame = GpuFrame.from_planes([y, np.zeros((2, 8), np.uint8)], format="NV12")
    assert frame.planes[0].layout == "HWC"
    assert frame.planes[0].ptr == y.ptr


def test_a_multi_channel_chw_plane_is_refused() -> None:
    uv = GpuImage.from_numpy(np.zeros((2, 2, 4), np.uint8), layout="CHW")
    with pytest.raises(LayoutError, match="expected interleaved"):
        GpuFrame.from_planes([np.zeros((4, 8), np.uint8), uv], format="NV12")


def _device_plane(offset: int, height: int, width: int, channels: int, stream: object = None) -> GpuImage:
    spec = ImageSpec(height=height, width=width, channels=channels, device="cuda:0")
    return GpuImage.from_pointer(FAKE + offset, spec, stream=stream, owner=object())


def test_planes_ready_on_one_stream_make_a_frame_ready_there(runtime: Runtime) -> None:
    frame = GpuFrame.from_planes(
        [_device_plane(0, 4, 8, 1, 7), _device_plane(4096, 2, 4, 2, 7)], format="NV12"
    )
    assert frame.stream == 7
    frame.planes[1].record_write(8)
    assert frame.stream == 8, "the planes share one ready state"
    assert frame.planes[0].stream == 8


def test_one_pending_plane_makes_the_frame_ready_on_its_stream(runtime: Runtime) -> None:
    frame = GpuFrame.from_planes([_device_plane(0, 4, 8, 1), _device_plane(4096, 2, 4, 2, 7)], format="NV12")
    assert frame.stream == 7
    assert frame.planes[0].stream == 7


def test_planes_pending_on_two_streams_are_refused(runtime: Runtime) -> None:
    planes = [_device_plane(0, 4, 8, 1, 7), _device_plane(4096, 2, 4, 2, 9)]
    with pytest.raises(SpecError, match=r"expected planes ready on one stream.*Pass stream="):
        GpuFrame.from_planes(planes, format="NV12")


def test_planes_with_writes_recorded_on_one_stream_make_a_frame(runtime: Runtime) -> None:
    # review finding: two events recorded on one stream were refused as "streams 0x7 and 0x7"
    luma, chroma = _device_plane(0, 4, 8, 1, 7), _device_plane(4096, 2, 4, 2, 7)
    luma.record_write(7)
    chroma.record_write(7)
    frame = GpuFrame.from_planes([luma, chroma], format="NV12")
    assert frame.stream == 7
    frame.planes[1].record_write(8)
    assert frame.planes[0].stream == 8, "the planes share one ready state"


def test_stream_given_orders_each_plane_onto_it(runtime: Runtime) -> None:
    planes = [_device_plane(0, 4, 8, 1, 7), _device_plane(4096, 2, 4, 2, 9)]
    frame = GpuFrame.from_planes(planes, format="NV12", stream=5)
    assert frame.stream == 5
    assert (7, 5, 0) in runtime.waits, "each plane's producer before stream 5"
    assert (9, 5, 0) in runtime.waits


def test_overlap_is_checked_by_byte_ranges_on_device_planes(runtime: Runtime) -> None:
    with pytest.raises(SpecError, match="planes\\[0\\] at bytes"):
        GpuFrame.from_planes([_device_plane(0, 4, 8, 1), _device_plane(16, 2, 4, 2)], format="NV12")
