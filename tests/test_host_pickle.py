"""Host images, frames and batches pickle BY VALUE (``_host_pickle``): a packed copy of the pixels
with the spec, format, colour and channel order; protocol 5 carries the pixels out of band (as Ray's
object store takes them); corrupt pickles are refused; a ``spawn`` child gets the same values."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gpuimage import (
    BatchLayout,
    ChannelOrder,
    ColorSpec,
    GpuBatch,
    GpuFrame,
    GpuImage,
    InteropError,
    Layout,
    PixelFormat,
    frame_layout,
)
from gpuimage import _host_pickle as host_pickle

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
BT709 = ColorSpec(matrix="BT709", range="LIMITED")


def _values(shape: tuple[int, ...], dtype: Any = np.uint8, seed: int = 0) -> npt.NDArray[Any]:
    return np.random.default_rng(seed).integers(0, 250, shape).astype(dtype)


def _span(ptr: int, nbytes: int) -> set[int]:
    return set(range(ptr, ptr + nbytes))


def _pitched(height: int = 5, width: int = 6, channels: int = 3) -> GpuImage:
    """A crop of a pitched image: rows 256 bytes apart, not packed."""
    image = GpuImage.empty(height + 2, width + 3, channels, device="cpu", row_alignment=256)
    image.as_numpy()[...] = _values(image.shape)
    return image.crop(2, 1, width, height)


def _planes(frame: GpuFrame) -> list[npt.NDArray[Any]]:
    return [plane.as_numpy().copy() for plane in frame.planes]


# -- images -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_pitched_crop_arrives_packed_with_its_values_and_channel_order(protocol: int) -> None:
    crop = _pitched().with_channel_order("BGR")
    assert crop.row_pitch == 256
    loaded = pickle.loads(pickle.dumps(crop, protocol=protocol))
    assert type(loaded) is GpuImage
    assert (loaded.shape, loaded.dtype, loaded.layout) == (crop.shape, crop.dtype, crop.layout)
    assert loaded.row_pitch == 6 * 3  # packed: the pitch is the receiver's, not the source's
    assert loaded.is_contiguous
    assert loaded.channel_order is ChannelOrder.BGR
    assert loaded.device == crop.device
    np.testing.assert_array_equal(loaded.as_numpy(), crop.as_numpy())
    assert not loaded.readonly, "a plain pickle arrives writable"
    assert not _span(loaded.ptr, loaded.nbytes) & _span(crop.ptr, crop.nbytes), "a copy, not the memory"
    loaded.as_numpy()[0, 0, 0] = 251
    assert crop.as_numpy()[0, 0, 0] != 251


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint16, np.float64, np.bool_])
def test_chw_images_of_each_dtype_round_trip(dtype: Any) -> None:
    array = _values((3, 4, 5), dtype)
    image = GpuImage.from_numpy(array, layout="CHW")
    loaded = pickle.loads(pickle.dumps(image, protocol=5))
    assert (loaded.layout, loaded.dtype, loaded.shape) == (Layout.CHW, image.dtype, (3, 4, 5))
    np.testing.assert_array_equal(loaded.as_numpy(), array)


def test_bfloat16_travels_as_its_bits() -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.randn(2, 3, 4).to(torch.bfloat16)
    image = GpuImage.from_torch(tensor[:, 1:, :], layout="CHW")  # strided: rows of a larger plane
    loaded = pickle.loads(pickle.dumps(image))
    assert (loaded.dtype, loaded.shape, loaded.is_contiguous) == ("bfloat16", (2, 2, 4), True)
    assert torch.equal(loaded.as_torch().view(torch.int16), tensor[:, 1:, :].contiguous().view(torch.int16))


def test_a_read_only_image_arrives_read_only() -> None:
    array = _values((4, 4))
    array.flags.writeable = False
    loaded = pickle.loads(pickle.dumps(GpuImage.from_numpy(array)))
    assert loaded.readonly
    np.testing.assert_array_equal(loaded.as_numpy()[..., 0], array)


def test_protocol_5_carries_the_pixels_out_of_band_once() -> None:
    """What Ray's object store does: the pixels are one buffer beside a small pickle, and the image
    built from the (read-only, shared) buffer is a view of it, read-only."""
    crop = _pitched(64, 48)
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(crop, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1
    assert buffers[0].raw().nbytes == 64 * 48 * 3
    assert len(data) < 1024, "the in-band part holds the facts, not the pixels"
    shared = [memoryview(bytes(buffer.raw())) for buffer in buffers]  # read-only, as Ray's are
    loaded = pickle.loads(data, buffers=shared)
    assert loaded.readonly
    np.testing.assert_array_equal(loaded.as_numpy(), crop.as_numpy())
    address = np.frombuffer(shared[0], np.uint8).__array_interface__["data"][0]
    assert loaded.ptr == address, "the image is the buffer itself: no copy on arrival"


def test_a_packed_image_is_pickled_without_a_copy_of_its_own() -> None:
    image = GpuImage.from_numpy(_values((4, 6, 3)), layout="HWC")
    buffers: list[pickle.PickleBuffer] = []
    pickle.dumps(image, protocol=5, buffer_callback=buffers.append)
    view = np.frombuffer(buffers[0].raw(), np.uint8)
    assert view.__array_interface__["data"][0] == image.ptr


# -- frames -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["NV12", "I420", "P010", "YUV444", "RGB"])
def test_a_frame_arrives_as_one_packed_block(fmt: PixelFormat) -> None:
    colour = None if fmt == "RGB" else BT709
    frame = GpuFrame.empty(8, 4, format=fmt, colour=colour, device="cpu", row_alignment=64)
    for index, plane in enumerate(frame.planes):
        plane.as_numpy()[...] = _values(plane.shape, plane.as_numpy().dtype, seed=index) << (
            6 if fmt == "P010" else 0
        )
    loaded = pickle.loads(pickle.dumps(frame))
    assert type(loaded) is GpuFrame
    assert (loaded.format, loaded.width, loaded.height, loaded.colour) == (
        frame.format,
        8,
        4,
        colour,
    )
    assert loaded.layout == frame_layout(fmt, 8, 4)  # packed, whatever the source's pitch
    for got, want in zip(_planes(loaded), _planes(frame), strict=True):
        np.testing.assert_array_equal(got, want)
    assert not loaded.readonly


def test_a_frame_of_separate_planes_arrives_in_one_block() -> None:
    y, uv = _values((4, 8), seed=1), _values((2, 8), seed=2)
    frame = GpuFrame.from_planes([y, uv], format="NV12")
    assert frame.layout is None
    loaded = pickle.loads(pickle.dumps(frame, protocol=2))
    assert loaded.layout == frame_layout("NV12", 8, 4)
    assert loaded.colour is None
    np.testing.assert_array_equal(loaded.as_numpy(), np.concatenate([y, uv]))


def test_a_packed_frame_goes_out_of_band_as_its_own_bytes() -> None:
    frame = GpuFrame.empty(8, 4, format="NV12", device="cpu")
    frame.as_numpy()[...] = _values(frame.as_numpy().shape)
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(frame, protocol=5, buffer_callback=buffers.append)
    assert [buffer.raw().nbytes for buffer in buffers] == [8 * 4 * 3 // 2]
    assert np.frombuffer(buffers[0].raw(), np.uint8).__array_interface__["data"][0] == frame.planes[0].ptr
    loaded = pickle.loads(data, buffers=[memoryview(bytes(buffers[0].raw()))])
    assert loaded.readonly
    np.testing.assert_array_equal(loaded.as_numpy(), frame.as_numpy())


# -- batches ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_a_strided_batch_arrives_packed(layout: BatchLayout) -> None:
    whole = _values((5, 3, 4, 4), np.float32)
    batch = GpuBatch.from_numpy(whole[::2], layout=layout)  # every other item: item_pitch is two items
    assert not batch.is_contiguous
    batch = batch.with_channel_order("RGB") if layout == "NHWC" and batch.channels == 3 else batch
    loaded = pickle.loads(pickle.dumps(batch))
    assert type(loaded) is GpuBatch
    assert (loaded.shape, loaded.layout, loaded.dtype) == (batch.shape, BatchLayout(layout), "float32")
    assert loaded.is_contiguous
    assert loaded.channel_order == batch.channel_order
    np.testing.assert_array_equal(loaded.as_numpy(), whole[::2])


def test_a_bfloat16_batch_round_trips() -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.randn(2, 3, 4, 5).to(torch.bfloat16)
    loaded = pickle.loads(pickle.dumps(GpuBatch.from_torch(tensor)))
    assert loaded.dtype == "bfloat16"
    assert torch.equal(loaded.as_torch().view(torch.int16), tensor.view(torch.int16))


def test_a_batch_keeps_its_channel_order() -> None:
    batch = GpuBatch.from_numpy(_values((2, 4, 4, 3)), layout="NHWC").with_channel_order("BGR")
    assert pickle.loads(pickle.dumps(batch)).channel_order is ChannelOrder.BGR


# -- corrupt pickles ---------------------------------------------------------------------------------

IMAGE_FACTS = (host_pickle.VERSION, 2, 3, 1, "uint8", "HWC", None, False)


@pytest.mark.parametrize(
    ("load", "facts", "array", "match"),
    [
        (host_pickle.load_image, (99, *IMAGE_FACTS[1:]), np.zeros((2, 3, 1), np.uint8), "version=99"),
        (host_pickle.load_image, IMAGE_FACTS[:-1], np.zeros((2, 3, 1), np.uint8), "facts="),
        (host_pickle.load_image, IMAGE_FACTS, np.zeros((2, 4, 1), np.uint8), r"\(2, 4, 1\)"),
        (host_pickle.load_image, IMAGE_FACTS, np.zeros((2, 3, 1), np.int16), "int16"),
        (host_pickle.load_image, IMAGE_FACTS, np.zeros((1, 3, 2), np.uint8).transpose(2, 1, 0), "C-contig"),
        (host_pickle.load_image, IMAGE_FACTS, b"\0" * 6, "bytes"),
        (host_pickle.load_image, (*IMAGE_FACTS[:6], "XYZ", False), np.zeros((2, 3, 1), np.uint8), "XYZ"),
        (host_pickle.load_image, (1, -2, 3, 1, "uint8", "HWC", None, False), np.zeros(6, np.uint8), "-2"),
        (host_pickle.load_image, (1, 2, 3, 1, "uint8", "WHC", None, False), np.zeros(6, np.uint8), "WHC"),
        (host_pickle.load_batch, (1, 0, 2, 3, 1, "uint8", "NHWC", None, False), np.zeros(6), "size=0"),
        (host_pickle.load_frame, (1, "NV13", 8, 4, None, False), np.zeros(48, np.uint8), "NV13"),
        (host_pickle.load_frame, (1, "NV12", 8, 4, ("BT709",), False), np.zeros(48, np.uint8), "BT709"),
        (host_pickle.load_frame, (1, "NV12", 8, 4, None, False), np.zeros(47, np.uint8), r"\(47,\)"),
    ],
    ids=lambda value: "" if not isinstance(value, str) else value[:12],
)
def test_corrupt_pickles_are_refused(load: Any, facts: object, array: object, match: str) -> None:
    cls = {host_pickle.load_image: GpuImage, host_pickle.load_batch: GpuBatch}.get(load, GpuFrame)
    with pytest.raises(InteropError, match=match) as raised:
        load(cls, facts, array)
    assert "corrupt" in str(raised.value) or "release" in str(raised.value)


# -- across a process boundary ------------------------------------------------------------------------


def _describe(items: list[Any]) -> list[tuple[str, bool, list[npt.NDArray[Any]]]]:
    """Run in a spawn child: what arrived, as plain values (type, read-only, pixel arrays)."""
    described = []
    for item in items:
        parts = _planes(item) if isinstance(item, GpuFrame) else [np.array(item.as_numpy())]
        described.append((type(item).__name__, item.readonly, parts))
    return described


def test_a_spawn_child_receives_every_kind_with_its_values() -> None:
    frame = GpuFrame.empty(8, 4, format="NV12", colour=BT709, device="cpu")
    frame.as_numpy()[...] = _values(frame.as_numpy().shape, seed=3)
    batch = GpuBatch.from_numpy(_values((3, 2, 4, 4), np.float32, seed=4)[::2])
    items: list[Any] = [_pitched(), frame, batch]
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        described = pool.submit(_describe, items).result(timeout=120)
        echoed = pool.submit(_echo, items).result(timeout=120)
    assert [name for name, _, _ in described] == ["GpuImage", "GpuFrame", "GpuBatch"]
    assert not any(readonly for _, readonly, _ in described)
    np.testing.assert_array_equal(described[0][2][0], items[0].as_numpy())
    for got, want in zip(described[1][2], _planes(frame), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(described[2][2][0], batch.as_numpy())
    assert echoed[1].colour == BT709  # and back again: the child pickled what it had received
    np.testing.assert_array_equal(echoed[2].as_numpy(), batch.as_numpy())


def _echo(items: list[Any]) -> list[Any]:
    return items
