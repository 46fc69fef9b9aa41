"""Transfers (``_ops.transfer``) through the recording fake runtime, whose "device" memory is host memory:
every element arrives, the copy is packed with the source's layout and dtype, it is queued on the
runtime's current stream after the source's pending write, and the reads and writes are recorded;
without a GPU runtime a transfer says what to install."""

from __future__ import annotations

from typing import Any, get_args

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuimage
from fake_runtime import Runtime, runtime
from gpuimage import (
    CPU,
    Device,
    DTypeName,
    GpuImage,
    ImageSpec,
    Layout,
    MissingBackendError,
    _lifetime,
    _runtime,
)
from gpuimage._interfaces import host_view
from gpuimage._ops import transfer
from gpuimage._runtime import HostRuntime, Memory
from gpuimage.strategies import fill_pattern, image_specs, images

__all__ = ["runtime"]  # the fixture

PLAIN_DTYPES: tuple[DTypeName, ...] = tuple(name for name in get_args(DTypeName) if name != "bfloat16")


def _values(image: GpuImage[Any, Any]) -> Any:
    """The elements of an image whose memory is host memory (bfloat16 as its bits), as NumPy sees them."""
    carrier: DTypeName | None = "uint16" if image.dtype == "bfloat16" else None
    return host_view(image.ptr, image.spec, image.owner, readonly=True, as_dtype=carrier)


def _device_image(runtime: Runtime, values: Any, spec: ImageSpec, *, stream: int) -> GpuImage[Any, Any]:
    """A "device" image over ``values`` (host memory the fake runtime treats as device memory)."""
    return GpuImage.from_pointer(values.ctypes.data, spec, owner=values, stream=stream)


def test_host_to_device_copies_into_packed_memory_on_the_current_stream(runtime: Runtime) -> None:
    runtime.current = 3
    pixels = np.arange(4 * 7 * 3, dtype=np.uint16).reshape(4, 7, 3)
    host = GpuImage.from_numpy(pixels[:, 2:6], layout="HWC")  # pitched
    device = transfer(host, Device("cuda", 1))
    assert device.device == Device("cuda", 1)
    assert (device.layout, device.dtype, device.shape) == (host.layout, host.dtype, host.shape)
    assert device.is_contiguous, "a transfer makes a packed copy"
    assert runtime.allocations == [(device.spec.nbytes, Device("cuda", 1), 2, None)]
    assert runtime.copies == [(host.ptr, device.ptr, 3, 1)]
    assert runtime.waits == [], "host memory has nothing pending"
    assert device.stream == 3, "the copy is the device image's pending write"
    assert np.array_equal(_values(device), pixels[:, 2:6])


def test_device_to_host_waits_for_the_pending_write_and_records_the_read(runtime: Runtime) -> None:
    runtime.current = 3
    values = np.arange(2 * 3 * 6, dtype=np.float32)
    spec = ImageSpec(
        height=3,
        width=4,
        channels=2,
        dtype="float32",
        layout="CHW",
        row_pitch=24,
        channel_stride=72,
        device=2,
    )  # planes of 3 rows of 6 elements, the first 4 used
    source = _device_image(runtime, values, spec, stream=7)
    host = transfer(source, CPU)
    assert host.device == CPU
    assert host.layout is Layout.CHW
    assert host.is_contiguous
    assert runtime.copies == [(source.ptr, host.ptr, 3, 2)], "on the GPU side's current stream"
    assert runtime.waits == [(7, 3, 2)], "after the write that produced the data"
    assert runtime.recorded == [(3, 2)], "the read, for whoever writes the source next"
    assert host.stream is None, "host memory: the copy has completed"
    assert np.array_equal(_values(host), values.reshape(2, 3, 6)[:, :, :4])


def test_device_to_device_copies_on_the_targets_stream(runtime: Runtime) -> None:
    runtime.current = 4
    values = np.arange(2 * 2 * 3, dtype=np.int8)
    spec = ImageSpec.packed(height=2, width=2, channels=3, dtype="int8", device=0)
    source = _device_image(runtime, values, spec, stream=4)
    copy = transfer(source, Device("cuda", 1))
    assert runtime.copies == [(source.ptr, copy.ptr, 4, 1)], "queued on the target GPU's stream"
    assert runtime.waits == [], "the source was written on that stream: nothing to order"
    assert np.array_equal(_values(copy), values.reshape(2, 2, 3))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(st.data())
def test_any_host_image_goes_there_and_back(runtime: Runtime, data: st.DataObject) -> None:
    # the fake's copy is a NumPy assignment, which has no bfloat16: the GPU suite copies that one
    specs = image_specs(dtypes=PLAIN_DTYPES, max_side=9, max_padding_items=3)
    image: GpuImage[Any, Any] = data.draw(images(specs))
    ordinal = data.draw(st.integers(0, 3))
    runtime.current = data.draw(st.integers(0, 2**40))
    there = transfer(image, Device("cuda", ordinal))
    back = transfer(there, CPU)
    for copy in (there, back):
        assert (copy.layout, copy.dtype, copy.shape) == (image.layout, image.dtype, image.shape)
        assert copy.is_contiguous
    assert runtime.copies[-2:] == [
        (image.ptr, there.ptr, runtime.current, ordinal),
        (there.ptr, back.ptr, runtime.current, ordinal),
    ]
    assert np.array_equal(_values(back), _values(image))


def test_bfloat16_images_travel_as_they_are(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    copies: list[tuple[int, int]] = []

    def copy_bits(source: Memory, target: Memory, stream: int, device: int, /) -> None:
        copies.append((source.ptr, target.ptr))  # the fake's own copy has no bfloat16 (NumPy has none)
        views = [
            host_view(each.ptr, each.spec, each.owner, readonly=False, as_dtype="uint16")
            for each in (source, target)
        ]
        views[1][...] = views[0]

    monkeypatch.setattr(runtime, "copy", copy_bits)
    image = GpuImage.empty(3, 5, 2, "bfloat16", layout="CHW", device="cpu", row_alignment=64)
    fill_pattern(image, seed=4)
    there = transfer(image, Device("cuda", 0))
    assert (there.dtype, there.layout, there.spec.row_pitch) == ("bfloat16", Layout.CHW, 10)
    assert copies == [(image.ptr, there.ptr)]
    assert np.array_equal(_values(there), _values(image))


def test_without_a_gpu_runtime_a_transfer_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runtime, "_chosen", _runtime._chosen)  # put back after
    monkeypatch.setattr(_lifetime, "_recorder", list(_lifetime._recorder))
    gpuimage.set_runtime(HostRuntime())
    host = GpuImage.from_numpy(np.zeros((2, 2), np.uint8))
    with pytest.raises(MissingBackendError, match=r"needs a CUDA runtime, and none reaches a GPU here"):
        transfer(host, Device("cuda", 0))
    values = np.zeros(4, np.uint8)
    described = GpuImage.from_pointer(values.ctypes.data, ImageSpec.packed(height=2, width=2), owner=values)
    with pytest.raises(MissingBackendError, match=r"^copying a GPU image needs a CUDA runtime"):
        transfer(described, CPU)
