"""Pixel formats as data, their plane shapes, and the colour and channel-order descriptions."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuimage
from gpuimage import (
    ChannelOrder,
    ColorMatrix,
    ColorRange,
    ColorSpec,
    PixelFormat,
    SpecError,
    format_info,
    plane_shapes,
)
from gpuimage._formats import parse_channel_order, parse_pixel_format


def untyped(value: object) -> Any:
    """``value`` typed as Any: a spelling the static types do not list, accepted at run time."""
    return value


# Written from the formats' definitions (NVIDIA Video Codec SDK, FFmpeg pix_fmt, fourcc.org), not
# from the module: planes as (components, horizontal, vertical subsampling); dtype; significant bits.
EXPECTED: dict[str, tuple[tuple[tuple[str, int, int], ...], str, int]] = {
    "NV12": ((("Y", 1, 1), ("UV", 2, 2)), "uint8", 8),
    "NV21": ((("Y", 1, 1), ("VU", 2, 2)), "uint8", 8),
    "I420": ((("Y", 1, 1), ("U", 2, 2), ("V", 2, 2)), "uint8", 8),
    "P010": ((("Y", 1, 1), ("UV", 2, 2)), "uint16", 10),
    "P016": ((("Y", 1, 1), ("UV", 2, 2)), "uint16", 16),
    "NV16": ((("Y", 1, 1), ("UV", 2, 1)), "uint8", 8),
    "YUV444": ((("Y", 1, 1), ("U", 1, 1), ("V", 1, 1)), "uint8", 8),
    "GRAY": ((("Y", 1, 1),), "uint8", 8),
    "RGB": ((("RGB", 1, 1),), "uint8", 8),
    "BGR": ((("BGR", 1, 1),), "uint8", 8),
    "RGBA": ((("RGBA", 1, 1),), "uint8", 8),
    "BGRA": ((("BGRA", 1, 1),), "uint8", 8),
}
YUV = {"NV12", "NV21", "I420", "P010", "P016", "NV16", "YUV444"}


def test_every_format_is_in_the_table() -> None:
    assert {member.value for member in PixelFormat} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_format_facts(name: str) -> None:
    planes, dtype, bits = EXPECTED[name]
    info = format_info(name)  # type: ignore[arg-type]  # every name of the table
    assert info.format is PixelFormat(name)
    assert [(p.components, p.subsample_x, p.subsample_y) for p in info.planes] == [
        (tuple(components), sx, sy) for components, sx, sy in planes
    ]
    assert [p.channels for p in info.planes] == [len(components) for components, _, _ in planes]
    assert {p.dtype for p in info.planes} == {dtype}
    assert {p.itemsize for p in info.planes} == {1 if dtype == "uint8" else 2}
    assert (info.dtype, info.itemsize, info.bit_depth) == (dtype, 1 if dtype == "uint8" else 2, bits)
    assert info.bit_shift == (6 if name == "P010" else 0)  # P010's 10 bits sit in the high bits
    assert info.is_yuv == (name in YUV)
    expected_order = ChannelOrder(name) if name in {"RGB", "BGR", "RGBA", "BGRA"} else None
    assert info.channel_order is expected_order


def _expected_shapes(name: str, width: int, height: int) -> list[tuple[int, int, int]]:
    planes, _, _ = EXPECTED[name]
    return [(height // sy, width // sx, len(components)) for components, sx, sy in planes]


@given(st.sampled_from(sorted(EXPECTED)), st.integers(1, 64), st.integers(1, 64))
def test_plane_shapes_and_odd_sizes(name: str, width: int, height: int) -> None:
    planes, _, _ = EXPECTED[name]
    odd_width = width % max(sx for _, sx, _ in planes) != 0
    odd_height = height % max(sy for _, _, sy in planes) != 0
    if not (odd_width or odd_height):
        shapes = plane_shapes(name, width, height)  # type: ignore[arg-type]
        assert list(shapes) == _expected_shapes(name, width, height)
        samples = sum(h * w * c for h, w, c in shapes)
        per_pixel = {"NV12": 1.5, "NV21": 1.5, "I420": 1.5, "P010": 1.5, "P016": 1.5, "NV16": 2, "YUV444": 3}
        channels = {"GRAY": 1, "RGB": 3, "BGR": 3, "RGBA": 4, "BGRA": 4}
        assert samples == per_pixel.get(name, channels.get(name, 0)) * width * height
        return
    with pytest.raises(SpecError) as caught:
        plane_shapes(name, width, height)  # type: ignore[arg-type]
    wrong = "width" if odd_width else "height"
    assert f"plane_shapes(): expected an even {wrong} for {name}, got {wrong}=" in str(caught.value)
    assert f"Crop or pad the frame to an even {wrong}." in str(caught.value)


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (0, 2, "expected a positive int width, got width=0"),
        (2, -2, "expected a positive int height, got height=-2"),
        (2.0, 2, "got width=2.0"),
        (True, 2, "got width=True"),
        ("2", 2, "got width='2'"),
    ],
)
def test_plane_shapes_refuses_sizes(width: Any, height: Any, message: str) -> None:
    with pytest.raises(SpecError, match=r"^plane_shapes\(\): ") as caught:
        plane_shapes("NV12", width, height)
    assert message in str(caught.value)


def test_names_parse_in_any_case() -> None:
    assert parse_pixel_format("nv12", where="t") is PixelFormat.NV12
    assert parse_pixel_format(PixelFormat.P010, where="t") is PixelFormat.P010
    assert parse_channel_order("bgr", where="t") is ChannelOrder.BGR
    assert format_info("yuv444").format is PixelFormat.YUV444  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["YUYV", "", 12, None, ChannelOrder.RGB.value + "X"])
def test_unknown_formats_are_refused(value: object) -> None:
    with pytest.raises(SpecError) as caught:
        parse_pixel_format(value, where="format_info()")
    assert str(caught.value).startswith("format_info(): expected format one of NV12, NV21, I420, P010")
    assert f"got format={value!r}." in str(caught.value)


def test_an_order_is_not_a_format_unless_it_is_one() -> None:
    assert parse_pixel_format(ChannelOrder.BGR, where="t") is PixelFormat.BGR  # a str enum of that name
    with pytest.raises(SpecError, match="got order='ARGB'"):
        parse_channel_order("ARGB", where="t")


def test_colour_spec_takes_names_and_members() -> None:
    spec = ColorSpec(matrix=untyped("bt.709"), range="limited")
    assert spec == ColorSpec(matrix=ColorMatrix.BT709, range=ColorRange.LIMITED)
    assert spec.matrix is ColorMatrix.BT709
    assert spec.range is ColorRange.LIMITED
    assert ColorSpec(matrix="BT2020", range="FULL").matrix is ColorMatrix.BT2020
    assert repr(spec) == "ColorSpec(matrix='BT709', range='LIMITED')"
    assert (
        len({spec, ColorSpec(matrix="BT709", range="LIMITED"), ColorSpec(matrix="BT601", range="FULL")}) == 2
    )


def test_colour_spec_has_no_default_and_is_frozen() -> None:
    with pytest.raises(TypeError):
        ColorSpec()  # type: ignore[call-arg]  # gpuimage never guesses a frame's colours
    with pytest.raises(TypeError):
        ColorSpec("BT709", "LIMITED")  # type: ignore[call-arg]  # keywords only: which is which?
    spec = ColorSpec(matrix="BT601", range="FULL")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.matrix = ColorMatrix.BT709  # type: ignore[misc]


@pytest.mark.parametrize(
    ("matrix", "colour_range", "message"),
    [
        (
            "BT.2100",
            "LIMITED",
            "ColorSpec: expected matrix one of BT601, BT709, BT2020 (or "
            "gpuimage.ColorMatrix), got matrix='BT.2100'.",
        ),
        (
            "BT709",
            "TV",
            "ColorSpec: expected range one of LIMITED, FULL (or gpuimage.ColorRange), got range='TV'.",
        ),
        (709, "FULL", "got matrix=709."),
        ("BT709", None, "got range=None."),
    ],
)
def test_colour_spec_refuses_unknown_values(matrix: Any, colour_range: Any, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        ColorSpec(matrix=matrix, range=colour_range)
    assert message in str(caught.value)


def test_the_new_names_are_exported() -> None:
    names = {
        "PixelFormat",
        "PixelFormatLike",
        "ChannelOrder",
        "ChannelOrderLike",
        "ColorMatrix",
        "ColorMatrixLike",
        "ColorRange",
        "ColorRangeLike",
        "ColorSpec",
        "FormatInfo",
        "PlaneInfo",
        "FrameLayout",
        "PlaneLayout",
        "format_info",
        "frame_layout",
        "plane_shapes",
    }
    assert names <= set(gpuimage.__all__)
    assert all(hasattr(gpuimage, name) for name in names)
