"""Pure stride arithmetic: reading geometry off arrays, overlap checks, crops and bounds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuimage import BoundsError, DTypeName, ImageSpec, Layout, LayoutError, PitchError, StrideError
from gpuimage._geometry import (
    Geometry,
    check_geometry,
    check_within,
    crop_offset,
    geometry_from_strided,
    packed_geometry,
)

UINTS: dict[int, DTypeName] = {1: "uint8", 2: "uint16", 4: "uint32"}


def _overlaps(geometry: Geometry, itemsize: int) -> bool:
    """Brute force: do two elements share a byte?"""
    taken: set[int] = set()
    height, width, channels, row, pixel, channel = geometry
    for y, x, c in itertools.product(range(height), range(width), range(channels)):
        start = y * row + x * pixel + c * channel
        span = set(range(start, start + itemsize))
        if taken & span:
            return True
        taken |= span
    return False


@given(
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 3),
    st.sampled_from([1, 2, 4]),
    st.integers(1, 24),
    st.integers(1, 24),
    st.integers(1, 24),
)
def test_accepted_geometry_never_overlaps(
    height: int, width: int, channels: int, itemsize: int, row: int, pixel: int, channel: int
) -> None:
    geometry = Geometry(height, width, channels, row * itemsize, pixel * itemsize, channel * itemsize)
    try:
        check_geometry(geometry, itemsize)
    except PitchError:
        return
    assert not _overlaps(geometry, itemsize)


def test_permuted_torch_style_view_is_read_as_chw() -> None:
    # an HWC buffer (H=4, W=5, C=3, uint8) viewed as (C, H, W) by a permute
    layout, geometry = geometry_from_strided((3, 4, 5), (1, 15, 3), Layout.CHW, 1, where="t")
    assert layout is Layout.CHW
    assert geometry == Geometry(4, 5, 3, 15, 3, 1)


def test_two_d_arrays_are_single_channel() -> None:
    layout, geometry = geometry_from_strided((4, 6), (8, 1), None, 1, where="t")
    assert layout is Layout.HWC
    assert geometry == Geometry(4, 6, 1, 8, 1, 1)
    layout, geometry = geometry_from_strided((4, 6), (8, 1), Layout.CHW, 1, where="t")
    assert layout is Layout.CHW
    assert geometry.channels == 1


def test_size_one_dimensions_get_usable_strides() -> None:
    _, geometry = geometry_from_strided((1, 5, 3), (0, 3, 1), Layout.HWC, 1, where="t")
    assert geometry.row_pitch == 15


def test_three_d_without_layout_is_refused() -> None:
    with pytest.raises(LayoutError, match="never guesses"):
        geometry_from_strided((3, 4, 5), (20, 5, 1), None, 1, where="t")


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4, 5), ()])
def test_wrong_rank_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(LayoutError, match="2-D"):
        geometry_from_strided(shape, tuple(1 for _ in shape), Layout.HWC, 1, where="t")


def test_negative_and_broadcast_strides_are_refused() -> None:
    with pytest.raises(StrideError, match="negative"):
        geometry_from_strided((4, 5, 3), (-15, 3, 1), Layout.HWC, 1, where="t")
    with pytest.raises(PitchError, match="overlap"):
        geometry_from_strided((4, 5, 3), (0, 3, 1), Layout.HWC, 1, where="t")


def test_crop_offset_and_bounds() -> None:
    geometry = packed_geometry(Layout.HWC, 10, 20, 3, 2)
    assert crop_offset(geometry, 3, 2, 5, 4) == 2 * 120 + 3 * 6
    chw = packed_geometry(Layout.CHW, 10, 20, 3, 2)
    assert crop_offset(chw, 3, 2, 5, 4) == 2 * 40 + 3 * 2
    for rectangle in [(0, 0, 21, 1), (0, 0, 1, 11), (-1, 0, 1, 1), (0, 0, 0, 1), (19, 9, 2, 1)]:
        with pytest.raises(BoundsError):
            crop_offset(geometry, *rectangle)
    with pytest.raises(BoundsError, match="int"):
        crop_offset(geometry, 1.5, 0, 1, 1)  # type: ignore[arg-type]


def test_check_within() -> None:
    check_within(100, 50, 100, 50, where="t")
    with pytest.raises(BoundsError, match="outside"):
        check_within(100, 51, 100, 50, where="t")
    with pytest.raises(BoundsError):
        check_within(99, 1, 100, 50, where="t")


@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 4), st.sampled_from([Layout.HWC, Layout.CHW]))
def test_packed_geometry_matches_numpy_strides(
    height: int, width: int, channels: int, layout: Layout
) -> None:
    geometry = packed_geometry(layout, height, width, channels, 4)
    shape = (height, width, channels) if layout is Layout.HWC else (channels, height, width)
    strides = np.empty(shape, dtype=np.float32).strides
    _, read = geometry_from_strided(shape, strides, layout, 4, where="t")
    assert read == geometry


@given(
    st.sampled_from(range(3)),
    st.integers(2**63, 2**80).map(lambda value: value - value % 4),
    st.sampled_from([1, 2, 4]),
)
def test_strides_that_do_not_fit_int64_are_refused_on_size_1_dimensions(
    which: int, stride: int, itemsize: int
) -> None:
    # issue 11, defect 11: a stride >= 2**63 on a size-1 dimension moved nothing, so it was accepted
    strides = [itemsize, itemsize, itemsize]
    strides[which] = stride
    geometry = Geometry(1, 1, 1, *strides)
    names = ("row_pitch", "pixel_stride", "channel_stride")
    name = names[which]
    with pytest.raises(PitchError, match=f"expected {name} below 2\\*\\*63 bytes"):
        check_geometry(geometry, itemsize)
    row_pitch, pixel_stride, channel_stride = strides
    with pytest.raises(PitchError, match=f"{name} below 2\\*\\*63"):
        ImageSpec(
            height=1,
            width=1,
            dtype=UINTS[itemsize],
            row_pitch=row_pitch,
            pixel_stride=pixel_stride,
            channel_stride=channel_stride,
        )


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.sampled_from([1, 2, 4]))
def test_largest_int64_stride_on_a_size_1_dimension_is_accepted(
    width: int, channels: int, pad: int, itemsize: int
) -> None:
    # issue 11, defect 11: the bound is exactly int64 (2**63 - 1 rounded down to the item size)
    row_pitch = (2**63 - 1) // itemsize * itemsize
    geometry = Geometry(1, width, channels, row_pitch, channels * itemsize * pad, itemsize)
    check_geometry(geometry, itemsize)


def test_huge_size_1_strides_read_off_an_array_are_refused() -> None:
    # issue 11, defect 11: an array interface can carry any int as a stride
    with pytest.raises(PitchError, match="row_pitch below 2\\*\\*63"):
        geometry_from_strided((1, 4), (2**64, 1), None, 1, where="test")
