"""``GpuFrame`` (``_frame``) on the host: the constructors, the attributes, colour, lifetime, and
the refusals of each constructor. NumPy planes stand in for device memory (the same code paths);
``tests/gpu/test_cuda_frame.py`` runs torch and CuPy planes on a device."""

from __future__ import annotations

import copy
import gc
import pickle
import weakref
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest

import gpuimage
from gpuimage import (
    BoundsError,
    ColorSpec,
    DeviceError,
    DTypeError,
    GpuFrame,
    GpuImage,
    ImageSpec,
    InteropError,
    PitchError,
    PixelFormat,
    PixelFormatLike,
    SpecError,
    _frame_convert,
)

BT709 = ColorSpec(matrix="BT709", range="LIMITED")


def _nv12(height: int = 4, width: int = 6) -> npt.NDArray[np.uint8]:
    return np.arange(height * 3 // 2 * width, dtype=np.uint8).reshape(height * 3 // 2, width)


class Owner:
    """A stand-in for a decoder's surface: memory that lives as long as this object."""

    def __init__(self, nbytes: int) -> None:
        self.memory = np.zeros(nbytes, np.uint8)
        self.ptr = int(self.memory.ctypes.data)


# -- from_planes ------------------------------------------------------------------------------------


def test_from_planes_reads_a_decoders_2d_uv_plane_as_two_channels() -> None:
    whole = _nv12()
    frame = GpuFrame.from_planes([whole[:4], whole[4:]], format="NV12", colour=BT709)
    y, uv = frame.planes
    assert (frame.format, frame.width, frame.height, frame.colour) == (PixelFormat.NV12, 6, 4, BT709)
    assert (y.shape, uv.shape) == ((4, 6, 1), (2, 3, 2))
    assert np.shares_memory(uv.as_numpy(), whole)
    assert uv.as_numpy()[1, 2].tolist() == [whole[5, 4], whole[5, 5]]  # U, V of chroma sample (1, 2)
    assert frame.layout is None, "planes imported one by one are not known to share an allocation"
    assert frame.nbytes == y.nbytes + uv.nbytes
    assert frame.device == gpuimage.CPU
    assert frame.stream is None
    assert not frame.readonly


def test_from_planes_takes_3d_planes_gpuimages_and_each_format() -> None:  # format names in any case
    y = np.zeros((4, 8), np.uint16)
    uv = np.zeros((2, 4, 2), np.uint16)
    p010 = GpuFrame.from_planes([GpuImage.from_numpy(y), uv], format="P010")
    assert [plane.shape for plane in p010.planes] == [(4, 8, 1), (2, 4, 2)]
    assert p010.planes[0].dtype == "uint16"
    i420 = GpuFrame.from_planes(
        [np.zeros((4, 8), np.uint8), np.zeros((2, 4), np.uint8), np.zeros((2, 4), np.uint8)], format="I420"
    )
    assert [plane.shape for plane in i420.planes] == [(4, 8, 1), (2, 4, 1), (2, 4, 1)]
    nv16 = GpuFrame.from_planes(
        [np.zeros((4, 8), np.uint8), np.zeros((4, 8), np.uint8)], format=cast(Any, "nv16")
    )  # names in any case
    assert nv16.planes[1].shape == (4, 4, 2)
    rgb = GpuFrame.from_planes([np.zeros((4, 8, 3), np.uint8)], format="RGB")
    assert (rgb.width, rgb.height, rgb.planes[0].shape) == (8, 4, (4, 8, 3))
    packed = GpuFrame.from_planes([np.zeros((4, 24), np.uint8)], format="BGR")  # (H, W*C) reads as (H, W, C)
    assert (packed.width, packed.planes[0].shape) == (8, (4, 8, 3))


def test_a_gpuimage_plane_is_kept_as_it_is() -> None:
    whole = _nv12()
    y = GpuImage.from_numpy(whole[:4])
    uv = GpuImage.from_numpy(whole[4:].reshape(2, 3, 2), layout="HWC")
    frame = GpuFrame.from_planes([y, uv], format="NV12")
    assert frame.planes[0] is y
    assert frame.planes[1].ptr == uv.ptr


@pytest.mark.parametrize(
    ("planes", "error", "message"),
    [
        ([np.zeros((4, 6), np.uint8)], SpecError, "expected 2 planes for NV12 (Y, UV), got 1"),
        (
            [np.zeros((4, 6), np.uint8), np.zeros((2, 4), np.uint8)],
            SpecError,
            "expected planes[1] of shape (2, 3, 2) or (2, 6)",
        ),
        ([np.zeros((4, 6), np.uint8), np.zeros((4, 6), np.uint8)], SpecError, "got shape=(4, 6, 1)"),
        (
            [np.zeros((4, 6), np.uint16), np.zeros((2, 6), np.uint16)],
            DTypeError,
            "expected uint8 planes for NV12",
        ),
        ([np.zeros((4, 5), np.uint8), np.zeros((2, 5), np.uint8)], SpecError, "expected an even width"),
        ([np.zeros((3, 6), np.uint8), np.zeros((1, 6), np.uint8)], SpecError, "expected an even height"),
        (
            [np.zeros((4, 6), np.uint8), np.zeros((2, 12), np.uint8)[:, ::2]],
            SpecError,
            "samples of each planes[1] pixel to be adjacent",
        ),
        ([np.zeros((4, 6), np.uint8), "uv"], InteropError, "expected each plane to be a GpuImage"),
        (np.zeros((6, 6), np.uint8), InteropError, "expected a sequence of 2 planes"),
        ("YUV", InteropError, "expected a sequence of 2 planes"),
    ],
    ids=[
        "count",
        "uv-size",
        "uv-full-size",
        "dtype",
        "odd-width",
        "odd-height",
        "strided-uv",
        "not-array",
        "array",
        "string",
    ],
)
def test_from_planes_refuses(planes: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        GpuFrame.from_planes(planes, format="NV12")
    assert message in str(caught.value)
    assert str(caught.value).startswith("GpuFrame.from_planes()")


def test_from_planes_refuses_overlapping_planes() -> None:
    whole = _nv12()
    with pytest.raises(SpecError, match="do not overlap in memory"):
        GpuFrame.from_planes([whole[:4], whole[:2]], format="NV12")  # UV read out of the luma rows


def test_from_planes_refuses_planes_on_two_devices() -> None:
    device_plane = GpuImage.from_pointer(
        0x7F00_0000_0000, ImageSpec(height=2, width=3, channels=2, device="cuda:0")
    )
    with pytest.raises(DeviceError, match="expected every plane on one device"):
        GpuFrame.from_planes([np.zeros((4, 6), np.uint8), device_plane], format="NV12")


@pytest.mark.parametrize(
    ("colour", "fmt", "error", "message"),
    [
        ("BT709", "NV12", InteropError, "expected colour to be a gpuimage.ColorSpec or None"),
        (BT709, "RGB", SpecError, "expected colour=None for format=RGB"),
    ],
)
def test_colour_must_be_a_colour_spec_of_a_yuv_frame(
    colour: Any, fmt: PixelFormatLike, error: type[Exception], message: str
) -> None:
    planes = (
        [np.zeros((4, 6, 3), np.uint8)]
        if fmt == "RGB"
        else [np.zeros((4, 6), np.uint8), np.zeros((2, 6), np.uint8)]
    )
    with pytest.raises(error, match=message.replace("(", r"\(")):
        GpuFrame.from_planes(planes, format=fmt, colour=colour)


def test_an_unknown_format_is_refused_with_the_known_ones() -> None:
    with pytest.raises(SpecError, match="expected format one of NV12, NV21"):
        GpuFrame.empty(4, 4, format="YUY2", device="cpu")  # type: ignore[arg-type]


def test_with_colour_shares_the_planes() -> None:
    frame = GpuFrame.empty(8, 4, format="NV12", device="cpu")
    described = frame.with_colour(BT709)
    assert described.colour == BT709
    assert frame.colour is None
    assert described.planes is frame.planes
    assert described.layout is frame.layout
    assert described.with_colour(None).colour is None
    with pytest.raises(InteropError):
        frame.with_colour("BT709")  # type: ignore[arg-type]


# -- from_dlpack --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "rows", "dtype", "chroma"),
    [
        ("NV12", 6, np.uint8, [(2, 4, 2)]),
        ("NV21", 6, np.uint8, [(2, 4, 2)]),
        ("P010", 6, np.uint16, [(2, 4, 2)]),
        ("P016", 6, np.uint16, [(2, 4, 2)]),
        ("I420", 6, np.uint8, [(2, 4, 1), (2, 4, 1)]),
        ("NV16", 8, np.uint8, [(4, 4, 2)]),
        ("YUV444", 12, np.uint8, [(4, 8, 1), (4, 8, 1)]),
    ],
)
def test_from_dlpack_splits_one_tensor_into_the_planes(
    fmt: PixelFormatLike, rows: int, dtype: Any, chroma: list[tuple[int, int, int]]
) -> None:
    tensor = np.arange(rows * 8, dtype=dtype).reshape(rows, 8)
    frame = GpuFrame.from_dlpack(tensor, format=fmt)
    assert (frame.width, frame.height) == (8, 4)
    assert [plane.shape for plane in frame.planes] == [(4, 8, 1), *chroma]
    flat = tensor.reshape(-1)
    offset = 0
    for plane in frame.planes:  # the planes follow each other, packed, through the tensor's memory
        values = plane.as_numpy()
        assert values.reshape(-1).tolist() == flat[offset : offset + values.size].tolist()
        offset += values.size
    assert offset == flat.size
    assert frame.layout is not None
    assert frame.layout.nbytes == tensor.nbytes
    whole = frame.as_numpy()
    assert whole.shape == (rows, 8)
    assert np.shares_memory(whole, tensor)


def test_from_dlpack_keeps_the_pitch_of_a_padded_tensor() -> None:
    padded = np.zeros((6, 16), np.uint8)
    padded[4:, :8] = 7
    frame = GpuFrame.from_dlpack(padded[:, :8], format="NV12")
    assert [plane.row_pitch for plane in frame.planes] == [16, 16]
    assert (frame.planes[1].as_numpy() == 7).all()
    assert frame.as_numpy().strides == (16, 1)


@pytest.mark.parametrize(
    ("tensor", "fmt", "error", "message"),
    [
        (
            np.zeros((7, 8), np.uint8),
            "NV12",
            SpecError,
            "expected a tensor of 1.5 x H rows for NV12, got rows=7",
        ),
        (np.zeros((6, 7), np.uint8), "NV12", SpecError, "expected an even width"),
        (np.zeros((6, 8), np.uint16), "NV12", DTypeError, "expected a uint8 tensor for NV12"),
        (np.zeros((6, 8, 2), np.uint8), "NV12", SpecError, "one 2-D (rows, W) tensor"),
        (np.zeros((6, 16), np.uint8)[:, :8], "I420", PitchError, "expected a packed tensor"),
        (np.zeros((6, 16), np.uint8)[:, ::2], "NV12", SpecError, "elements of each row adjacent"),
        (np.zeros((8, 8), np.uint8), "YUV444", SpecError, "tensor of 3 x H rows for YUV444"),
    ],
    ids=["rows", "odd-width", "dtype", "3d", "padded-i420", "strided", "yuv444-rows"],
)
def test_from_dlpack_refuses(tensor: Any, fmt: PixelFormatLike, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        GpuFrame.from_dlpack(tensor, format=fmt)
    assert message in str(caught.value)
    assert str(caught.value).startswith("GpuFrame.from_dlpack()")


def test_from_dlpack_of_a_packed_format_takes_its_one_plane() -> None:
    frame = GpuFrame.from_dlpack(np.zeros((4, 8, 3), np.uint8), format="RGB")
    assert frame.planes[0].shape == (4, 8, 3)
    assert frame.as_numpy().shape == (4, 8, 3)


# -- from_pointer -------------------------------------------------------------------------------


def test_from_pointer_places_the_chroma_after_aligned_height_rows() -> None:
    owner = Owner(4096)
    frame = GpuFrame.from_pointer(
        owner.ptr,
        format="NV12",
        width=8,
        height=4,
        pitch=32,
        aligned_height=6,
        device="cpu",
        owner=owner,
        nbytes=4096,
    )
    y, uv = frame.planes
    assert (y.ptr, uv.ptr) == (owner.ptr, owner.ptr + 32 * 6)
    assert (y.row_pitch, uv.row_pitch, uv.shape) == (32, 32, (2, 4, 2))
    assert frame.layout is not None
    assert frame.layout.nbytes == 32 * 6 + 32 + 8
    owner.memory[32 * 6 + 32 + 2] = 99  # chroma row 1, sample 1, U
    assert uv.as_numpy()[1, 1, 0] == 99
    with pytest.raises(gpuimage.LayoutError, match="do not tile one"):
        frame.as_numpy()  # rows 4..5 between the planes are not the frame's: no (rows, W) block


def test_from_pointer_takes_plane_offsets_and_per_plane_pitches() -> None:
    owner = Owner(4096)
    frame = GpuFrame.from_pointer(
        owner.ptr,
        format="I420",
        width=8,
        height=4,
        pitch=(16, 8, 8),
        plane_offsets=(0, 1024, 2048),
        device="cpu",
        owner=owner,
    )
    assert [plane.ptr - owner.ptr for plane in frame.planes] == [0, 1024, 2048]
    assert [plane.row_pitch for plane in frame.planes] == [16, 8, 8]


def test_from_pointer_of_a_packed_block_exports_it() -> None:
    owner = Owner(48)
    frame = GpuFrame.from_pointer(
        owner.ptr, format="NV12", width=8, height=4, device="cpu", owner=owner, nbytes=48
    )
    whole = frame.as_numpy()
    assert whole.shape == (6, 8)
    assert whole.ctypes.data == owner.ptr


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"nbytes": 47}, BoundsError, "expected the frame inside the 47-byte allocation"),
        ({"nbytes": 0}, SpecError, "expected nbytes to be a positive int"),
        ({"nbytes": 48.0}, SpecError, "expected nbytes to be a positive int"),
        ({"ptr": 0}, SpecError, "expected a non-NULL pointer"),
        ({"ptr": 2**64 - 16}, SpecError, "past the 64-bit address space"),
        ({"pitch": 7}, PitchError, "expected pitch of at least the 8 bytes"),
        ({"plane_offsets": (0, -32)}, BoundsError, "expected non-negative plane offsets"),
        ({"plane_offsets": (0, 16)}, SpecError, "expected planes that do not overlap"),
        ({"aligned_height": 3}, SpecError, "aligned_height"),
        ({"width": 7}, SpecError, "expected an even width"),
        ({"device": "tpu"}, DeviceError, "expected a device such as 0"),
        ({"readonly": 1}, SpecError, "expected readonly to be True or False"),
    ],
    ids=[
        "past-nbytes",
        "zero-nbytes",
        "float-nbytes",
        "null",
        "wraps",
        "pitch",
        "negative-offset",
        "overlap",
        "aligned-height",
        "odd-width",
        "device",
        "readonly",
    ],
)
def test_from_pointer_refuses(arguments: dict[str, Any], error: type[Exception], message: str) -> None:
    owner = Owner(48)
    given: dict[str, Any] = {
        "ptr": owner.ptr,
        "format": "NV12",
        "width": 8,
        "height": 4,
        "device": "cpu",
        "owner": owner,
        "nbytes": 48,
    }
    given.update(arguments)
    ptr = given.pop("ptr")
    with pytest.raises(error) as caught:
        GpuFrame.from_pointer(ptr, **given)
    assert message in str(caught.value)


def test_from_pointer_refuses_a_pointer_or_offset_off_the_element_size() -> None:
    owner = Owner(256)
    with pytest.raises(SpecError, match="not aligned to the item size"):
        GpuFrame.from_pointer(owner.ptr + 1, format="P010", width=8, height=4, device="cpu", owner=owner)
    with pytest.raises(SpecError, match="expected plane offsets aligned to the 2-byte element"):
        GpuFrame.from_pointer(
            owner.ptr, format="P010", width=8, height=4, plane_offsets=(0, 65), device="cpu", owner=owner
        )


def test_a_readonly_pointer_gives_readonly_planes() -> None:
    owner = Owner(48)
    frame = GpuFrame.from_pointer(
        owner.ptr, format="NV12", width=8, height=4, device="cpu", owner=owner, readonly=True
    )
    assert frame.readonly
    assert all(plane.readonly for plane in frame.planes)
    assert not frame.as_numpy().flags.writeable


# -- empty --------------------------------------------------------------------------------------


def test_empty_allocates_one_block_with_aligned_rows() -> None:
    frame = GpuFrame.empty(8, 4, format="P010", device="cpu", row_alignment=64)
    assert [plane.row_pitch for plane in frame.planes] == [64, 64]
    assert frame.planes[0].ptr % 64 == 0
    assert frame.planes[1].ptr - frame.planes[0].ptr == 64 * 4
    frame.planes[1].as_numpy()[...] = 512
    assert (frame.as_numpy()[4:, :8] == 512).all()
    packed = GpuFrame.empty(8, 4, format="NV12", device="cpu")
    assert packed.as_numpy().shape == (6, 8)
    assert packed.nbytes == 48


def test_empty_refuses_bad_sizes() -> None:
    with pytest.raises(SpecError, match="expected an even height"):
        GpuFrame.empty(8, 5, format="I420", device="cpu")
    with pytest.raises(PitchError, match="row_alignment"):
        GpuFrame.empty(8, 4, format="NV12", device="cpu", row_alignment=0)


# -- lifetime, conversion, the rest ---------------------------------------------------------------


def test_the_owner_lives_until_the_frame_and_every_plane_are_gone() -> None:
    owner = Owner(48)
    gone = weakref.ref(owner)
    frame = GpuFrame.from_pointer(owner.ptr, format="NV12", width=8, height=4, device="cpu", owner=owner)
    whole = frame.as_numpy()
    uv = frame.planes[1]
    del owner, frame
    gc.collect()
    assert gone() is not None, "a plane view keeps the owner"
    del uv
    gc.collect()
    assert gone() is not None, "the whole-frame view keeps the owner"
    del whole
    gc.collect()
    assert gone() is None


def test_from_dlpack_keeps_the_producer_alive() -> None:
    tensor = _nv12()
    gone = weakref.ref(tensor.base if tensor.base is not None else tensor)
    frame = GpuFrame.from_dlpack(tensor, format="NV12")
    y = frame.planes[0]
    del tensor, frame
    gc.collect()
    assert gone() is not None
    assert y.as_numpy()[0, 1, 0] == 1
    del y
    gc.collect()
    assert gone() is None


def test_to_image_hands_the_frame_to_the_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, dict[str, object]]] = []

    def record(frame: object, **arguments: object) -> SimpleNamespace:
        calls.append((frame, arguments))
        return SimpleNamespace(converted=True)

    monkeypatch.setattr(_frame_convert, "frame_to_image", record)
    frame = GpuFrame.empty(8, 4, format="NV12", device="cpu", colour=BT709)
    bgr = cast(Any, frame.to_image(layout="CHW", dtype="float32", order="BGR"))
    rgb = cast(Any, frame.to_image())
    assert bgr.converted
    assert rgb.converted
    assert (bgr._channel_order, rgb._channel_order) == ("BGR", "RGB")  # the order written is recorded
    assert calls == [
        (frame, {"layout": "CHW", "dtype": "float32", "order": "BGR"}),
        (frame, {"layout": "HWC", "dtype": "uint8", "order": "RGB"}),
    ]


def test_to_image_refuses_an_unknown_colour() -> None:
    frame = GpuFrame.empty(8, 4, format="NV12", device="cpu")
    with pytest.raises(SpecError, match=r"with_colour\(ColorSpec"):
        frame.to_image()


def test_a_frame_is_not_built_directly_its_pickle_copies_and_copies_are_itself() -> None:
    with pytest.raises(TypeError, match=r"GpuFrame\.from_planes"):
        GpuFrame()
    frame = GpuFrame.empty(8, 4, format="NV12", device="cpu")
    assert copy.copy(frame) is frame
    # host frames pickle by value (tests/test_host_pickle.py); device frames to CUDA IPC descriptions
    assert pickle.loads(pickle.dumps(frame)).planes[1].spec == frame.planes[1].spec
    assert not isinstance(frame, GpuImage)


def test_repr_says_format_size_colour_and_planes() -> None:
    frame = GpuFrame.empty(8, 4, format="NV12", device="cpu", colour=BT709)
    text = repr(frame)
    assert text.startswith(
        "GpuFrame(NV12 8x4, cpu, colour=BT709 LIMITED, planes=[4x8x1 pitch 8, 2x4x2 pitch 8]"
    )
    assert "one allocation" in text
    apart = GpuFrame.from_planes([np.zeros((4, 8), np.uint8), np.zeros((2, 8), np.uint8)], format="NV12")
    assert "colour=unknown" in repr(apart)
    assert "planes apart" in repr(apart)
