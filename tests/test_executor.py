"""The executor interface (``_executor``): a ``GpuImage`` and a ``Buffer`` are ``Operand``s, and a batch's
regions (``region_of``) and slots (``slot_of``) are operands over the right memory, with the source's
owner and read-only flag; the three executors implement ``Executor``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typing_extensions import get_protocol_members

from gpuimage import DTypeName, GpuImage, ImageSpec, Layout
from gpuimage._executor import Buffer, Executor, Operand, region_of, slot_of
from gpuimage._host_convert import EXECUTOR as HOST_EXECUTOR
from gpuimage._interfaces import host_view
from gpuimage._plan import BatchItem
from gpuimage.strategies import crops, image_specs, images


def _operand(operand: Operand) -> Operand:
    """Statically checks that its argument is an ``Operand`` (mypy and pyright do)."""
    return operand


def _values(operand: Operand) -> Any:
    """A read-only NumPy view of a host operand (bfloat16 as its bits)."""
    carrier: DTypeName | None = "uint16" if operand.spec.dtype == "bfloat16" else None
    return host_view(operand.ptr, operand.spec, operand.owner, readonly=True, as_dtype=carrier)


def test_an_image_and_a_buffer_are_operands() -> None:
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    image = _operand(GpuImage.from_numpy(pixels, layout="HWC"))
    buffer = _operand(Buffer(image.ptr, image.spec, image.owner))
    assert set(get_protocol_members(Operand)) == {"ptr", "spec", "owner", "readonly"}
    for operand in (image, buffer):
        assert all(hasattr(operand, name) for name in get_protocol_members(Operand))
        assert np.array_equal(_values(operand), pixels)


def test_a_buffer_is_writable_unless_told() -> None:
    spec = ImageSpec.packed(height=1, width=1, device="cpu")
    assert Buffer(0x1000, spec, None).readonly is False
    assert Buffer(0x1000, spec, None, readonly=True).readonly is True


def _region(image: GpuImage[Any, Any], box: tuple[int, int, int, int]) -> BatchItem:
    """The batch item of ``box`` (x, y, width, height) of ``image``, as ``_batch`` builds it."""
    x, y, width, height = box
    offset = y * image.spec.row_pitch + x * image.spec.pixel_stride
    spec = image.spec
    return BatchItem(
        image.ptr + offset, spec.row_pitch, spec.pixel_stride, spec.channel_stride, height, width
    )


@given(st.data())
def test_a_region_is_the_crop_it_covers(data: st.DataObject) -> None:
    image: GpuImage[Any, Any] = data.draw(images(image_specs(max_side=12)))
    box = data.draw(crops(image.spec))
    region = region_of(image, _region(image, box))
    x, y, width, height = box
    spec = region.spec
    assert region.ptr == image.crop(x, y, width, height).ptr
    assert (spec.height, spec.width, spec.channels) == (height, width, image.channels)
    assert (spec.dtype, spec.layout, spec.device) == (image.dtype, image.layout, image.device)
    assert spec.geometry[3:] == image.spec.geometry[3:], "the source's strides"
    assert region.owner is image.owner
    assert region.readonly is image.readonly
    assert np.array_equal(_values(region), _values(image.crop(x, y, width, height)))


def test_a_region_of_a_read_only_source_is_read_only() -> None:
    pixels = np.arange(4 * 5 * 2, dtype=np.int16).reshape(2, 4, 5)
    pixels.flags.writeable = False
    image = GpuImage.from_numpy(pixels, layout="CHW")
    region = region_of(image, _region(image, (1, 1, 3, 2)))
    assert region.readonly is True
    assert region.spec.layout is Layout.CHW
    assert np.array_equal(_values(region), pixels[:, 1:3, 1:4])


def test_regions_of_one_description_share_a_spec() -> None:
    image = GpuImage.from_numpy(np.zeros((6, 6, 3), np.uint8), layout="HWC")
    first = region_of(image, _region(image, (0, 0, 2, 2)))
    second = region_of(image, _region(image, (3, 3, 2, 2)))
    assert first.spec is second.spec, "shared per description: plans and memos find it by identity"


@pytest.mark.parametrize("index", [0, 1, 3])
def test_a_slot_is_index_item_pitches_after_slot_zero(index: int) -> None:
    batch = np.zeros((4, 3, 2, 5), np.float32)  # N, C, H, W
    first = GpuImage.from_numpy(batch[0], layout="CHW")
    item_pitch = batch.strides[0]
    slot = slot_of(first, index, item_pitch)
    assert slot.ptr == first.ptr + index * item_pitch == batch[index].ctypes.data
    assert slot.spec is first.spec
    assert slot.owner is first.owner
    assert slot.readonly is False
    host_view(slot.ptr, slot.spec, slot.owner, readonly=False)[...] = index + 1
    assert (batch[index] == index + 1).all()
    assert (np.delete(batch, index, axis=0) == 0).all(), "no other slot written"


@pytest.mark.parametrize(
    ("module", "name"),
    [("_host_convert", "numpy"), ("_torch_convert", "torch"), ("_kernel_convert", "kernels")],
)
def test_every_executor_implements_the_interface(module: str, name: str) -> None:
    found = pytest.importorskip(f"gpuimage.{module}")
    executor: Executor = found.EXECUTOR
    members = get_protocol_members(Executor)
    assert members == {
        "name",
        "stream_for",
        "convert",
        "convert_replay",
        "convert_batch",
        "convert_frames",
        "frames_replay",
    }
    assert all(callable(getattr(executor, member)) for member in members - {"name"})
    assert executor.name == name


def test_the_host_executor_queues_on_no_stream() -> None:
    assert HOST_EXECUTOR.stream_for(0) == (0, None), "done when a call returns"


def test_only_the_kernels_replay_calls() -> None:
    """torch and NumPy have nothing cheaper than their own convert and convert_frames: they offer
    no replay."""
    none: Any = None
    host: Executor = HOST_EXECUTOR
    assert host.frames_replay([], none, 0, none) is None
    assert host.convert_replay(none, none, none) is None
    torch_convert = pytest.importorskip("gpuimage._torch_convert")
    assert torch_convert.EXECUTOR.frames_replay([], None, 0, None) is None
    assert torch_convert.EXECUTOR.convert_replay(None, None, None) is None
