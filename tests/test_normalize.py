"""``normalize`` and ``denormalize`` (``_normalize``) on host images: values against the textbook formula
computed in NumPy, per-channel constants, one value broadcast to every channel, the default scales,
reversed channels, ``out=`` written and returned, and bad constants or destinations refused with the
error class they promise."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpuimage as gi
from gpuimage import (
    CHW,
    HWC,
    GpuImage,
    InteropError,
    Layout,
    LayoutError,
    ReadOnlyError,
    SpecError,
    denormalize,
    normalize,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _pixels(height: int = 4, width: int = 5, channels: int = 3, dtype: Any = np.uint8) -> npt.NDArray[Any]:
    count = height * width * channels
    return ((np.arange(count) * 37 + 11) % 251).astype(dtype).reshape(height, width, channels)


def _untyped(value: object) -> Any:
    """``value`` as an untyped caller passes it (the checkers would refuse it)."""
    return value


def _reference(
    pixels: npt.NDArray[Any], mean: Any, std: Any, scale: float, *, reverse: bool = False
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(x * scale - mean[c]) / std[c]`` in float64, channels first (the documented formula), and the
    size of its terms (what float32's rounding errors scale with)."""
    values = (pixels[..., ::-1] if reverse else pixels).astype(np.float64)
    means, stds = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    result = (values * scale - means) / stds
    terms = np.abs(values * scale / stds) + np.abs(means / stds)
    return result.transpose(2, 0, 1), terms.transpose(2, 0, 1)


def _close(
    result: GpuImage[Any, Any], expected: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
) -> None:
    """float32 results within a few float32 roundings of the float64 formula: each of the factor, the
    offset, the product and the sum is rounded once."""
    values, terms = expected
    error = np.abs(result.as_numpy().astype(np.float64) - values)
    bound = 4 * np.finfo(np.float32).eps * terms + np.finfo(np.float32).tiny
    assert (error <= bound).all(), f"largest error {error.max()} (bound there {bound[np.argmax(error)]})"


def test_normalize_is_the_formula_per_channel_in_chw() -> None:
    pixels = _pixels()
    result = normalize(GpuImage.from_numpy(pixels, layout="HWC"), MEAN, STD)
    assert (result.layout, result.dtype, result.shape) == (Layout.CHW, "float32", (3, 4, 5))
    assert result.is_contiguous
    assert result.device == gi.CPU
    _close(result, _reference(pixels, MEAN, STD, 1 / 255))


@given(
    st.integers(1, 4),
    st.sampled_from([np.uint8, np.uint16, np.int16, np.float32]),
    st.sampled_from([Layout.HWC, Layout.CHW]),
    st.data(),
)
def test_any_source_layout_dtype_and_constants(
    channels: int, dtype: Any, layout: Layout, data: st.DataObject
) -> None:
    pixels = _pixels(3, 4, channels, dtype)
    values = st.floats(-2.0, 2.0, allow_nan=False)
    mean = data.draw(st.lists(values, min_size=channels, max_size=channels))
    std = data.draw(st.lists(st.floats(0.05, 4.0), min_size=channels, max_size=channels))
    stored = pixels if layout is Layout.HWC else np.ascontiguousarray(pixels.transpose(2, 0, 1))
    image = GpuImage.from_numpy(stored, layout=layout)
    scale = {np.uint8: 1 / 255, np.uint16: 1 / 65535}.get(dtype, 1.0)
    _close(normalize(image, mean, std), _reference(pixels, mean, std, scale))


def test_each_channel_gets_its_own_constants() -> None:
    pixels = np.full((2, 2, 3), 255, np.uint8)
    result = normalize(
        GpuImage.from_numpy(pixels, layout="HWC"), (0.0, 0.5, 1.0), (1.0, 0.5, 0.25)
    ).as_numpy()
    assert result[0].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert result[1].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    assert result[2].tolist() == [[0.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize(("mean", "std"), [(0.5, 0.25), ((0.5,), (0.25,)), (np.float32(0.5), np.array(0.25))])
def test_one_value_applies_to_every_channel(mean: Any, std: Any) -> None:
    image = GpuImage.from_numpy(_pixels(), layout="HWC")
    broadcast = normalize(image, mean, std).as_numpy()
    spelled = normalize(image, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).as_numpy()
    assert np.array_equal(broadcast, spelled)


def test_arrays_and_sequences_give_the_same_result() -> None:
    image = GpuImage.from_numpy(_pixels(), layout="HWC")
    std32 = np.asarray(STD, dtype=np.float32)
    from_arrays = normalize(image, np.asarray(MEAN), std32).as_numpy()
    from_lists = normalize(image, list(MEAN), std32.tolist()).as_numpy()
    assert np.array_equal(from_arrays, from_lists)


@pytest.mark.parametrize(
    ("dtype", "scale"), [(np.uint8, 1 / 255), (np.uint16, 1 / 65535), (np.int16, 1.0), (np.float32, 1.0)]
)
def test_the_default_scale_follows_the_input_dtype(dtype: Any, scale: float) -> None:
    pixels = _pixels(dtype=dtype)
    image = GpuImage.from_numpy(pixels, layout="HWC")
    _close(normalize(image, 0.0, 1.0), _reference(pixels, 0.0, 1.0, scale))
    _close(normalize(image, 0.0, 1.0, scale=0.5), _reference(pixels, 0.0, 1.0, 0.5))


def test_reversed_channels_read_bgr_as_rgb() -> None:
    pixels = _pixels()
    result = normalize(GpuImage.from_numpy(pixels, layout="HWC"), MEAN, STD, reverse_channels=True)
    _close(result, _reference(pixels, MEAN, STD, 1 / 255, reverse=True))


@pytest.mark.parametrize(
    ("dtype", "name"), [(gi.Float16, "float16"), ("float64", "float64"), (gi.BFloat16, "bfloat16")]
)
def test_the_result_dtype_is_the_one_asked(dtype: Any, name: str) -> None:
    result = normalize(GpuImage.from_numpy(_pixels(), layout="HWC"), MEAN, STD, dtype=dtype)
    assert result.dtype == name
    assert result.layout is Layout.CHW


# -- out= ------------------------------------------------------------------------------------------


def test_out_is_written_and_returned_leaving_its_padding() -> None:
    pixels = _pixels()
    memory = np.full((3, 4, 8), -7.0, np.float32)  # rows of 8, 5 used
    out = GpuImage.from_numpy(memory[:, :, :5], layout="CHW").expect(CHW)
    result = normalize(GpuImage.from_numpy(pixels, layout="HWC"), MEAN, STD, out=out)
    assert result is out
    _close(GpuImage.from_numpy(memory[:, :, :5], layout="CHW"), _reference(pixels, MEAN, STD, 1 / 255))
    assert (memory[:, :, 5:] == -7.0).all(), "the padding is not written"


def test_denormalize_writes_out_too() -> None:
    pixels = _pixels()
    planar = normalize(GpuImage.from_numpy(pixels, layout="HWC"), MEAN, STD)
    memory = np.zeros((4, 5, 3), np.uint8)
    out = GpuImage.from_numpy(memory, layout="HWC").expect(HWC)
    assert denormalize(planar, MEAN, STD, out=out) is out
    assert np.array_equal(memory, pixels)


@pytest.mark.parametrize(
    ("make_out", "error", "message"),
    [
        (lambda: np.zeros((3, 4, 5), np.float32), InteropError, "GpuImage"),
        (lambda: GpuImage.from_numpy(np.zeros((4, 5, 3), np.float32), layout="HWC"), LayoutError, "CHW"),
        (lambda: GpuImage.from_numpy(np.zeros((3, 4, 4), np.float32), layout="CHW"), SpecError, "4"),
        (
            lambda: GpuImage.from_numpy(np.zeros((3, 4, 5), np.float16), layout="CHW"),
            SpecError,
            "out.dtype=float16",
        ),
        (
            lambda: GpuImage.from_numpy(_read_only(np.zeros((3, 4, 5), np.float32)), layout="CHW"),
            ReadOnlyError,
            "read-only",
        ),
    ],
    ids=["not an image", "HWC", "other size", "other dtype", "read-only"],
)
def test_a_destination_that_cannot_take_the_result_is_refused(
    make_out: Any, error: type[Exception], message: str
) -> None:
    image = GpuImage.from_numpy(_pixels(), layout="HWC")
    with pytest.raises(error, match=message):
        normalize(image, MEAN, STD, out=make_out())


def _read_only(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mean", "std", "message"),
    [
        ((0.1, 0.2), 1.0, r"expected 1 or 3 values for mean \(one per channel\), got 2"),
        (0.0, (1.0, 1.0, 1.0, 1.0), r"expected 1 or 3 values for std \(one per channel\), got 4"),
        (0.0, 0.0, r"expected a non-zero std for every channel, got std=\(0\.0, 0\.0, 0\.0\)"),
        (0.0, (1.0, 0.0, 1.0), r"expected a non-zero std for every channel"),
        (float("nan"), 1.0, r"expected a finite number for mean, got mean=nan"),
        (0.0, float("inf"), r"expected a finite number for std, got std=inf"),
        ("0.5", 1.0, r"expected mean as one number or one per channel \(3\), got mean='0.5' \(str\)"),
        (True, 1.0, r"expected a finite number for mean, got mean=True \(bool\)"),
        (None, 1.0, r"expected mean as one number or one per channel"),
        (0.0, 1e-300, r"expected x \* scale/std \+ -mean/std finite in float32 .* Pass a larger std"),
    ],
    ids=[
        "short mean",
        "long std",
        "zero std",
        "one zero std",
        "nan",
        "inf",
        "text",
        "bool",
        "none",
        "overflow",
    ],
)
def test_bad_constants_are_spec_errors(mean: Any, std: Any, message: str) -> None:
    image = GpuImage.from_numpy(_pixels(), layout="HWC")
    with pytest.raises(SpecError, match=rf"^normalize\(\): {message}"):
        normalize(image, mean, std)


def test_a_reverse_flag_must_be_a_bool() -> None:
    image = GpuImage.from_numpy(_pixels(), layout="HWC")
    with pytest.raises(SpecError, match=r"^normalize\(\): expected reverse_channels=True or False, got"):
        normalize(image, MEAN, STD, reverse_channels=_untyped("yes"))


def test_a_zero_scale_is_refused() -> None:
    image = GpuImage.from_numpy(_pixels(), layout="HWC")
    with pytest.raises(SpecError, match=r"^normalize\(\): expected a non-zero scale, got scale=0.0"):
        normalize(image, MEAN, STD, scale=0.0)


def test_only_images_are_normalized() -> None:
    with pytest.raises(InteropError, match=r"^normalize\(\): expected a GpuImage, got ndarray"):
        normalize(_untyped(_pixels()), MEAN, STD)
    with pytest.raises(InteropError, match=r"^denormalize\(\): expected a GpuImage, got list"):
        denormalize(_untyped([1, 2]), MEAN, STD)


def test_denormalize_refuses_bad_constants_naming_itself() -> None:
    planar = normalize(GpuImage.from_numpy(_pixels(), layout="HWC"), MEAN, STD)
    with pytest.raises(SpecError, match=r"^denormalize\(\): expected a non-zero std"):
        denormalize(planar, MEAN, 0.0)
    with pytest.raises(SpecError, match=r"^denormalize\(\): expected 1 or 3 values for mean"):
        denormalize(planar, (0.1, 0.2), STD)


# -- denormalize -----------------------------------------------------------------------------------


@given(
    st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3),
    st.lists(st.floats(0.01, 10.0), min_size=3, max_size=3),
    st.booleans(),
)
def test_denormalize_undoes_normalize(mean: list[float], std: list[float], reverse: bool) -> None:
    pixels = _pixels(6, 7)
    image = GpuImage.from_numpy(pixels, layout="HWC")
    planar = normalize(image, mean, std, reverse_channels=reverse)
    back = denormalize(planar, mean, std, reverse_channels=reverse)
    assert (back.layout, back.dtype) == (Layout.HWC, "uint8")
    assert np.array_equal(back.as_numpy(), pixels)


def test_denormalize_rounds_half_to_even_and_saturates() -> None:
    values = np.array([2.5, 3.5, -0.5, -3.0, 254.5, 300.0, 0.49, np.nan], np.float32).reshape(1, 1, 8)
    image = GpuImage.from_numpy(values.reshape(8, 1, 1), layout="CHW")  # 8 channels of one pixel
    result = denormalize(image, 0.0, 1.0, scale=1.0).as_numpy()
    assert result.reshape(8).tolist() == [2, 4, 0, 0, 254, 255, 0, 0]


def test_denormalize_is_x_times_std_plus_mean_over_scale_per_channel() -> None:
    planar = np.stack([np.full((2, 2), value, np.float32) for value in (0.0, 1.0, -1.0)])
    image = GpuImage.from_numpy(planar, layout="CHW")
    result = denormalize(image, (0.5, 0.25, 0.75), (0.1, 0.2, 0.25), dtype="float32").as_numpy()
    expected = [0.0 * 0.1 + 0.5, 1.0 * 0.2 + 0.25, -1.0 * 0.25 + 0.75]  # a float32 result: scale 1
    np.testing.assert_allclose(result[0, 0], expected, rtol=1e-6)


# -- the constants' cache --------------------------------------------------------------------------


def test_the_same_constants_give_the_same_result_from_the_cache() -> None:
    image = GpuImage.from_numpy(_pixels(), layout="HWC")
    first = normalize(image, list(MEAN), list(STD)).as_numpy()
    again = normalize(image, list(MEAN), list(STD)).as_numpy()
    other = normalize(image, list(MEAN), [value * 2 for value in STD]).as_numpy()
    assert np.array_equal(first, again)
    np.testing.assert_allclose(other, first / 2, rtol=1e-6)


# issue 12: found by the per-module tests; scale is a cache key only when a plain number
def test_a_bool_scale_is_refused_whatever_came_before() -> None:
    image = GpuImage.from_numpy(_pixels(), layout="HWC")
    normalize(image, 0.5, 0.25, scale=1)
    with pytest.raises(SpecError, match=r"expected a finite number for scale, got scale=True"):
        normalize(image, 0.5, 0.25, scale=True)


# issue 12: found by the per-module tests; scale is a cache key only when a plain number
def test_a_zero_d_array_scale_is_taken_like_a_float() -> None:
    image = GpuImage.from_numpy(_pixels(), layout="HWC")
    expected = normalize(image, 0.5, 0.25, scale=0.5).as_numpy()
    assert np.array_equal(normalize(image, 0.5, 0.25, scale=_untyped(np.array(0.5))).as_numpy(), expected)


# issue 12: found by the per-module tests; scale is a cache key only when a plain number
def test_a_list_scale_is_a_spec_error() -> None:
    image = GpuImage.from_numpy(_pixels(), layout="HWC")
    with pytest.raises(SpecError, match=r"expected a finite number for scale"):
        normalize(image, 0.5, 0.25, scale=_untyped([0.5]))
