"""``_frame_recipe``: a caller's constants as the recipe every executor follows, and its cache."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gpuimage import GpuImage, SpecError
from gpuimage._formats import ChannelOrder, PixelFormat
from gpuimage._frame_convert import batch_sources
from gpuimage._frame_recipe import frame_recipe

COMMON: dict[str, Any] = {
    "size": (2, 2),
    "resize": "bilinear",
    "keep_aspect": False,
    "order": ChannelOrder.RGB,
    "mean": 0.5,
    "std": 0.25,
    "pad_value": 0.0,
    "where": "test",
}


def test_an_image_source_keeps_normalizes_scale_on_codes() -> None:
    image = GpuImage.from_numpy(np.zeros((4, 4, 3), np.uint8), layout="HWC")
    (source,) = batch_sources([image], None, "test")
    assert source.format is PixelFormat.RGB
    assert source.colour is None
    # (code / 255 - 0.5) / 0.25 in both: the executor's value of a uint8 code is code / 255
    as_image = frame_recipe(source, scale=None, is_image=True, **COMMON)
    assert as_image.factors == pytest.approx((4.0,) * 3)
    explicit = frame_recipe(source, scale=1 / 255, is_image=True, **COMMON)
    assert explicit.factors == pytest.approx((4.0,) * 3)
    as_frame = frame_recipe(source, scale=None, is_image=False, **COMMON)
    assert as_frame.factors == (4.0,) * 3


def test_the_same_constants_give_the_same_recipe_object() -> None:
    image = GpuImage.from_numpy(np.zeros((4, 4, 3), np.uint8), layout="HWC")
    (source,) = batch_sources([image], None, "test")
    first = frame_recipe(source, scale=None, is_image=True, **COMMON)
    assert frame_recipe(source, scale=None, is_image=True, **COMMON) is first
    other = frame_recipe(source, scale=None, is_image=True, **{**COMMON, "mean": [0.5, 0.5, 0.5]})
    assert other == first  # a list is a key too, and means the same
    array_mean = frame_recipe(source, scale=None, is_image=True, **{**COMMON, "mean": np.full(3, 0.5)})
    assert array_mean == first  # not a cache key: parsed every call


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"resize": "cubic"}, "resize='bilinear' or 'nearest'"),
        ({"keep_aspect": 1}, "keep_aspect True or False"),
        ({"order": ChannelOrder.UNKNOWN}, "order 'RGB', 'BGR', 'RGBA' or 'BGRA'"),
        ({"std": 0.0}, "std"),
        ({"pad_value": float("nan")}, "pad_value"),
    ],
)
def test_refusals(change: dict[str, Any], message: str) -> None:
    image = GpuImage.from_numpy(np.zeros((4, 4, 3), np.uint8), layout="HWC")
    (source,) = batch_sources([image], None, "test")
    with pytest.raises(SpecError, match=message):
        frame_recipe(source, scale=None, is_image=True, **{**COMMON, **change})
    with pytest.raises(SpecError, match="non-zero scale"):
        frame_recipe(source, scale=0.0, is_image=True, **COMMON)
    assert PixelFormat.RGB is source.format


def test_the_cache_does_not_skip_checks() -> None:
    # review findings: unhashable arguments raised TypeError; a cached True let keep_aspect=1 through
    image = GpuImage.from_numpy(np.zeros((4, 4, 3), np.uint8), layout="HWC")
    (source,) = batch_sources([image], None, "test")
    frame_recipe(source, scale=None, is_image=True, **{**COMMON, "keep_aspect": True})
    with pytest.raises(SpecError, match="keep_aspect True or False"):
        frame_recipe(source, scale=None, is_image=True, **{**COMMON, "keep_aspect": 1})
    with pytest.raises(SpecError, match="resize='bilinear' or 'nearest'"):
        frame_recipe(source, scale=None, is_image=True, **{**COMMON, "resize": ["bilinear"]})
