"""Affine maps (``_affine``): normalize's and denormalize's maps invert each other, bad mean and std
are refused, and the finiteness of a conversion's map is checked in the accumulator the arithmetic
runs in, so no call returns inf or NaN for finite input because a factor overflowed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuimage as gi
from gpuimage import DTypeName, GpuImage, SpecError
from gpuimage._affine import Affine, check_finite_map, denormalize_affine, normalize_affine
from gpuimage._dtypes import accumulator, integer_range
from gpuimage._host_convert import convert_arrays

BOUNDED: list[DTypeName] = ["bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float16"]


def _image(dtype: DTypeName = "uint8") -> GpuImage[Any, Any]:
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 14  # 0 .. 238
    return GpuImage.from_numpy(pixels, layout="HWC").astype(dtype)


def test_a_std_too_small_for_float32_is_refused_naming_std() -> None:
    # issue 11, defect 9: 1/(255 * 1e-42) is finite in float64 but not in float32: every value was NaN
    expected = r"normalize\(\): expected x \* scale/std .* in float32 .* scale/std=3\.922e\+39"
    with pytest.raises(SpecError, match=expected):
        gi.normalize(_image(), 0.5, 1e-42)


def test_a_std_too_large_for_float32_is_refused_by_denormalize() -> None:
    # issue 11, defect 9: std / scale = 1e37 * 255 overflows float32
    with pytest.raises(SpecError, match=r"denormalize\(\): expected std/scale and mean/scale finite in"):
        gi.denormalize(_image("float32"), 0.5, 1e37)


def test_astype_checks_its_scale_in_its_own_accumulator() -> None:
    # issue 11, defect 9: uint8 -> float32 runs in float32 (refused); uint8 -> float64 in float64 (fine)
    with pytest.raises(SpecError, match=r"astype\(\): expected x \* scale \+ offset finite in float32"):
        _image().astype(gi.Float32, scale=1e300)
    wide = _image().astype(gi.Float64, scale=1e300).as_numpy()
    assert np.array_equal(wide, _image().as_numpy().astype(np.float64) * 1e300)


@given(
    dtype=st.sampled_from(["uint8", "int8", "uint16", "int16", "float16"]),
    mean=st.floats(-1e39, 1e39),
    std=st.one_of(st.floats(5e-324, 1e-30), st.floats(1e-30, 1e3)),
)
def test_normalize_of_a_bounded_source_is_finite_or_refused(
    dtype: DTypeName, mean: float, std: float
) -> None:
    # issue 11, defect 9: no finite image and finite, accepted arguments give inf or NaN
    try:
        result = gi.normalize(_image(dtype), mean, std).as_numpy()
    except SpecError as exc:
        refusal = str(exc)
    else:
        assert np.isfinite(result).all()
        return
    assert "std" in refusal


@given(
    source=st.sampled_from(BOUNDED),
    scale=st.one_of(st.floats(-1e40, 1e40), st.floats(-1e310, 1e310, allow_infinity=False)),
    offset=st.one_of(st.floats(-1e39, 1e39), st.sampled_from([0.0, 3.4e38, -3.4e38])),
)
def test_the_check_refuses_exactly_the_maps_that_overflow_the_accumulator(
    source: DTypeName, scale: float, offset: float
) -> None:
    # issue 11, defect 9: the check agrees with the NumPy executor run on the source's extreme values
    target: DTypeName = accumulator(source, "float32")  # a target that holds every accumulator value
    affine = Affine((scale,), (offset,), False)
    low, high = (-65504.0, 65504.0) if source == "float16" else integer_range(source)
    extremes = np.array([[[low]], [[high]]], dtype=np.float16 if source == "float16" else source)
    converted = np.empty(extremes.shape, target)
    convert_arrays(extremes, converted, source, target, affine)
    try:
        check_finite_map(affine, source, target, origin="astype", where="test")
    except SpecError:
        assert not np.isfinite(converted).all()
    else:
        assert np.isfinite(converted).all()


@given(
    st.lists(st.floats(-2, 2), min_size=3, max_size=3),
    st.lists(st.floats(0.05, 3), min_size=3, max_size=3),
    st.booleans(),
)
def test_denormalize_undoes_normalize(mean: list[float], std: list[float], reverse: bool) -> None:
    forward = normalize_affine(3, mean, std, 1 / 255, reverse=reverse, where="t")
    backward = denormalize_affine(3, mean, std, 1 / 255, reverse=reverse, where="t")
    for value in (0.0, 17.0, 255.0):
        for channel in range(3):
            # output channel c of the round trip reads input channel c again
            middle = 2 - channel if reverse else channel
            normalized = value * forward.scale[middle] + forward.offset[middle]
            assert math.isclose(
                normalized * backward.scale[channel] + backward.offset[channel], value, abs_tol=1e-9
            )


@pytest.mark.parametrize(
    ("mean", "std", "channels", "message"),
    [
        ((0.5, 0.5), 0.25, 3, "expected 1 or 3 values for mean"),
        (0.5, (0.25, 0.0, 0.25), 3, "non-zero std"),
        (math.nan, 0.25, 3, "finite number for mean"),
        (0.5, True, 3, "finite number for std"),
        ((0.1, 0.2, 0.3, 0.4, 0.5), 0.25, 5, "1 to 4 channels"),
    ],
)
def test_bad_normalization_parameters_are_refused(mean: Any, std: Any, channels: int, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        normalize_affine(channels, mean, std, 1 / 255, reverse=False, where="normalize()")
