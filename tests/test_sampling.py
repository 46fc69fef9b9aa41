"""``_sampling``: the taps of both resize modes (scalar and vectorised), the executors' read plans,
the letterbox, and the refusals every frame executor shares (``check_frames``)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from frame_cases import recipe
from gpuimage import BoundsError, DTypeError, GpuImageError, ImageSpec, SpecError
from gpuimage._executor import Buffer
from gpuimage._formats import ChannelOrder, ColorSpec, PixelFormat
from gpuimage._sampling import (
    FrameSource,
    Placement,
    axis_plan,
    check_frames,
    code_unit,
    place,
    tap_table,
    taps,
)

SIZES = st.integers(1, 70)
MODES = st.sampled_from(["bilinear", "nearest"])


@given(out_len=SIZES, in_len=SIZES, mode=MODES)
def test_tap_table_is_taps_element_by_element(out_len: int, in_len: int, mode: str) -> None:
    first, second, weight = tap_table(out_len, in_len, mode)  # type: ignore[arg-type]
    expected = [taps(d, out_len, in_len, mode) for d in range(out_len)]  # type: ignore[arg-type]
    assert first.tolist() == [e[0] for e in expected]
    assert second.tolist() == [e[1] for e in expected]
    assert weight.tolist() == [e[2] for e in expected]  # the same float64 operations: bit for bit


@given(out_len=SIZES, in_len=SIZES)
def test_bilinear_taps_follow_the_half_pixel_formula(out_len: int, in_len: int) -> None:
    for d in range(out_len):
        first, second, weight = taps(d, out_len, in_len, "bilinear")
        exact = Fraction(2 * d + 1, 2) * Fraction(in_len, out_len) - Fraction(1, 2)
        if exact < 0:
            assert (first, second, weight) == (0, min(1, in_len - 1), 0.0)
        elif exact >= in_len - 1:
            assert (first, second, weight) == (in_len - 1, in_len - 1, 0.0)
        else:  # continuous: off by one index only where the weight is ~0 or ~1
            assert first + weight == pytest.approx(float(exact), abs=1e-12)
            assert second == first + 1


@given(out_len=SIZES, in_len=SIZES)
def test_nearest_taps_pick_the_pixel_under_the_centre(out_len: int, in_len: int) -> None:
    for d in range(out_len):
        first, second, weight = taps(d, out_len, in_len, "nearest")
        assert first == second
        assert weight == 0.0
        exact = Fraction(2 * d + 1, 2 * out_len) * in_len
        if exact.denominator != 1:  # off a pixel boundary: exactly the pixel it falls in
            assert first == min(math.floor(exact), in_len - 1)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [1, 2, 7, 224])
def test_the_same_size_is_the_identity(mode: str, size: int) -> None:
    first, _second, weight = tap_table(size, size, mode)  # type: ignore[arg-type]
    assert first.tolist() == list(range(size))
    assert not weight.any()


@given(out_len=SIZES, in_len=SIZES, mode=MODES)
def test_axis_plans_read_few_indices_and_reproduce_the_taps(out_len: int, in_len: int, mode: str) -> None:
    plan = axis_plan(out_len, in_len, mode)  # pyright: ignore[reportArgumentType]
    first, second, weight = tap_table(out_len, in_len, mode)  # type: ignore[arg-type]
    assert plan.reads[plan.first].tolist() == first.tolist()
    if mode == "bilinear":
        assert plan.reads[plan.second].tolist() == second.tolist()
    assert plan.weight.tolist() == weight.tolist()
    assert len(plan.reads) <= min(in_len, 2 * out_len) or len(plan.reads) <= out_len
    assert plan.reads.min() >= 0
    assert plan.reads.max() < in_len
    if plan.split:
        assert plan.first.tolist() == list(range(out_len))
    with pytest.raises(ValueError, match="read-only"):
        plan.first[0] = 1  # cached: nobody may change it


@pytest.mark.parametrize(
    ("region", "slot", "keep", "expected"),
    [
        ((100, 50), (224, 224), False, Placement(0, 0, 224, 224)),
        ((100, 50), (224, 224), True, Placement(0, 56, 224, 112)),
        ((50, 100), (224, 224), True, Placement(56, 0, 112, 224)),
        ((1, 1000), (10, 10), True, Placement(4, 0, 1, 10)),  # at least one pixel wide
        ((7, 7), (5, 3), True, Placement(1, 0, 3, 3)),
    ],
)
def test_place_letterboxes_and_centres(
    region: tuple[int, int], slot: tuple[int, int], keep: bool, expected: Placement
) -> None:
    assert place(*region, *slot, keep) == expected


def test_place_refuses_empty_sizes() -> None:
    with pytest.raises(SpecError, match="expected positive sizes"):
        place(0, 5, 10, 10, True)


def test_code_units() -> None:
    assert code_unit("uint8") == 1 / 255
    assert code_unit("uint16") == 1 / 65535
    assert code_unit("float32") == 1.0


# -- check_frames: the refusals every executor shares (specs only: no memory is touched) ----------


def _plane(height: int, width: int, channels: int, dtype: Any = "uint8") -> Buffer:
    spec = ImageSpec(height=height, width=width, channels=channels, dtype=dtype, device="cpu")
    return Buffer(0x1000, spec, None)


NV12 = FrameSource(
    PixelFormat.NV12,
    (_plane(4, 6, 1), _plane(2, 3, 2)),
    ColorSpec(matrix="BT709", range="FULL"),
    (0, 0, 6, 4),
)
RGB = FrameSource(PixelFormat.RGB, (_plane(4, 6, 3, "float32"),), None, (1, 1, 2, 2))
SLOT = ImageSpec(height=3, width=5, channels=3, dtype="float32", layout="CHW", device="cpu")


@pytest.mark.parametrize(
    ("sources", "target", "bad_recipe", "error", "match"),
    [
        ([NV12], SLOT, recipe(3, 5)._replace(order=ChannelOrder.UNKNOWN), SpecError, "expected order RGB"),
        (
            [NV12],
            ImageSpec(height=3, width=5, channels=3, dtype="float64", layout="CHW", device="cpu"),
            recipe(3, 5),
            DTypeError,
            "dtype=float64",
        ),
        ([NV12], SLOT, recipe(3, 6), SpecError, r"a 3x6 slot of 3 channels"),
        ([NV12], SLOT, recipe(3, 5, order="RGBA"), SpecError, "slot of 4 channels"),
        ([NV12], SLOT, recipe(3, 5)._replace(resize=cast(Any, "cubic")), SpecError, "resize='cubic'"),
        ([NV12], SLOT, recipe(3, 5)._replace(pad=(0.0,)), SpecError, "got 3, 3 and 1"),
        ([NV12._replace(planes=NV12.planes[:1])], SLOT, recipe(3, 5), SpecError, "expected 2 planes"),
        ([NV12._replace(colour=None)], SLOT, recipe(3, 5), SpecError, "colour description"),
        (
            [NV12._replace(planes=(NV12.planes[0], _plane(4, 3, 2)))],
            SLOT,
            recipe(3, 5),
            SpecError,
            r"plane 1 of NV12 to be uint8 of \(height, width, channels\)=\(2, 3, 2\)",
        ),
        (
            [NV12._replace(planes=(_plane(4, 6, 1, "uint16"), _plane(2, 3, 2, "uint16")))],
            SLOT,
            recipe(3, 5),
            SpecError,
            "got uint16",
        ),
        ([RGB._replace(planes=(_plane(4, 6, 3, "int16"),))], SLOT, recipe(3, 5), DTypeError, "of int16"),
        ([RGB._replace(planes=(_plane(4, 6, 4),))], SLOT, recipe(3, 5), DTypeError, "got 4 channels"),
        ([RGB._replace(region=(5, 0, 2, 2))], SLOT, recipe(3, 5), BoundsError, r"region=\(5, 0, 2, 2\)"),
        ([RGB._replace(region=(0, 0, 0, 2))], SLOT, recipe(3, 5), BoundsError, "non-empty region"),
        ([NV12._replace(region=(0, -1, 2, 2))], SLOT, recipe(3, 5), BoundsError, "inside the 6x4 frame"),
    ],
    ids=[
        "unknown-order",
        "float64-target",
        "slot-size",
        "slot-channels",
        "resize-mode",
        "pad-count",
        "plane-count",
        "no-colour",
        "chroma-shape",
        "plane-dtype",
        "packed-int16",
        "packed-channels",
        "region-outside",
        "region-empty",
        "region-negative",
    ],
)
def test_check_frames_refuses(
    sources: list[FrameSource], target: ImageSpec, bad_recipe: object, error: type[GpuImageError], match: str
) -> None:
    with pytest.raises(error, match=match):
        check_frames(sources, target, bad_recipe, "convert_frames()")  # type: ignore[arg-type]


def test_check_frames_accepts_and_counts_channels() -> None:
    assert check_frames([NV12, RGB], SLOT, recipe(3, 5), "convert_frames()") == 3
    four = ImageSpec(height=3, width=5, channels=4, dtype="uint8", device="cpu")
    assert check_frames([NV12], four, recipe(3, 5, order="BGRA"), "convert_frames()") == 4
    assert np.array_equal(tap_table(3, 3, "nearest")[0], [0, 1, 2])
