"""The torch frame executor (``_torch_frames`` through ``_torch_convert.EXECUTOR``) on CPU tensors,
against the NumPy reference: random frames of every format, regions, sizes, both resize modes,
letterbox, every output dtype and layout, within float32's tolerance (one unit for uint8)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frame_cases import assert_close, host_batch, random_planes, recipe, source_of
from gpuimage import BoundsError, DTypeError
from gpuimage._executor import Executor
from gpuimage._formats import FORMATS, ColorMatrix, ColorRange, ColorSpec, PixelFormat
from gpuimage._host_convert import EXECUTOR as HOST
from gpuimage._sampling import FrameSource, ResizeMode, SampleRecipe

torch = pytest.importorskip("torch")
from gpuimage._torch_convert import EXECUTOR as TORCH_EXECUTOR  # noqa: E402

Array = npt.NDArray[Any]


def both(sources: list[FrameSource], sample: SampleRecipe, dtype: str, layout: str) -> tuple[Array, Array]:
    """(NumPy's batch, torch's batch) of the same call, each into a fresh pitched host batch."""
    results = []
    for executor in (HOST, TORCH_EXECUTOR):
        channels = len(sample.order.value)
        batch, target, pitch = host_batch(
            len(sources), sample.height, sample.width, channels, dtype, layout, 16
        )
        executor.convert_frames(sources, target, pitch, sample, 0)
        results.append(np.array(batch))
    return results[0], results[1]


def test_the_torch_executor_has_convert_frames() -> None:
    executor: Executor = TORCH_EXECUTOR  # mypy and pyright check the protocol here
    assert callable(executor.convert_frames)


@st.composite
def frame_calls(draw: st.DrawFn) -> tuple[list[FrameSource], SampleRecipe, str, str]:
    format = draw(st.sampled_from(list(PixelFormat)))
    info = FORMATS[format]
    width = draw(st.integers(1, 12)) * info.subsample_x
    height = draw(st.integers(1, 10)) * info.subsample_y
    dtype = None if info.is_yuv else draw(st.sampled_from(["uint8", "uint16", "float32", "float16"]))
    planes = random_planes(
        np.random.default_rng(draw(st.integers(0, 2**32 - 1))), format, width, height, dtype
    )
    matrix, colour_range = draw(st.sampled_from(list(ColorMatrix))), draw(st.sampled_from(list(ColorRange)))
    colour = ColorSpec(matrix=matrix, range=colour_range)
    sources = []
    for _ in range(draw(st.integers(1, 3))):
        x, y = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        region = (x, y, draw(st.integers(1, width - x)), draw(st.integers(1, height - y)))
        sources.append(source_of(planes, format, colour if info.is_yuv else None, region))
    order = draw(st.sampled_from(["RGB", "BGR", "RGBA", "BGRA"]))
    target = draw(st.sampled_from(["float32", "float16", "bfloat16", "uint8"]))
    channels = len(order)
    unit = 255.0 if target == "uint8" else 1.0
    factors = tuple(draw(st.floats(-3, 3)) * unit for _ in range(channels))
    shifts = tuple(draw(st.floats(-1, 1)) * unit for _ in range(channels))
    sample = recipe(
        draw(st.integers(1, 20)),
        draw(st.integers(1, 20)),
        resize=draw(st.sampled_from(["bilinear", "nearest"])),
        keep_aspect=draw(st.booleans()),
        order=order,
        factors=factors,
        shifts=shifts,
        pad=draw(st.floats(-2, 2)) * unit,
    )
    return sources, sample, target, draw(st.sampled_from(["CHW", "HWC"]))


@given(call=frame_calls())
@settings(max_examples=150, deadline=None)
def test_torch_computes_what_numpy_computes(call: tuple[list[FrameSource], SampleRecipe, str, str]) -> None:
    sources, sample, dtype, layout = call
    want, got = both(sources, sample, dtype, layout)
    assert_close(want, got, dtype, sample)


@pytest.mark.parametrize("format", list(PixelFormat))
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_every_format_up_and_down(format: PixelFormat, mode: ResizeMode) -> None:
    planes = random_planes(
        np.random.default_rng(9), format, 24, 16, None if FORMATS[format].is_yuv else "uint8"
    )
    sources = [source_of(planes, format, region=r) for r in [(0, 0, 24, 16), (3, 5, 4, 3), (1, 1, 1, 1)]]
    for size in [(7, 9), (40, 33)]:
        sample = recipe(
            *size, resize=mode, keep_aspect=True, factors=(2.0, 3.0, 4.0), shifts=(-1.0, 0, 1), pad=5
        )
        want, got = both(sources, sample, "float32", "CHW")
        assert_close(want, got, "float32", sample)


def test_torch_refuses_what_numpy_refuses_before_any_write() -> None:
    image = [np.zeros((4, 4, 3), np.uint8)]
    batch, target, pitch = host_batch(1, 2, 2, 3, "float32")
    outside = source_of(image, PixelFormat.RGB, region=(3, 3, 2, 2))
    with pytest.raises(BoundsError, match="inside the 4x4 frame"):
        TORCH_EXECUTOR.convert_frames([outside], target, pitch, recipe(2, 2), 0)
    _, wide, wide_pitch = host_batch(1, 2, 2, 3, "float64")
    with pytest.raises(DTypeError, match="dtype=float64"):
        TORCH_EXECUTOR.convert_frames([source_of(image, PixelFormat.RGB)], wide, wide_pitch, recipe(2, 2), 0)
    assert np.all(batch.view(np.uint8) == 77)


def test_uint8_outputs_round_half_to_even_and_saturate_as_numpy_does() -> None:
    image = [np.array([[[0.5, 1.5, 2.5], [2.7, -3.0, 300.0]]], np.float32)]
    sample = recipe(1, 2, resize="nearest")
    want, got = both([source_of(image, PixelFormat.RGB)], sample, "uint8", "HWC")
    assert got.tolist() == want.tolist() == [[[[0, 2, 2], [3, 0, 255]]]]


def test_regions_of_one_frame_share_its_planes() -> None:
    planes = random_planes(np.random.default_rng(10), PixelFormat.NV12, 12, 8)
    whole = source_of(planes, PixelFormat.NV12)
    sources = [whole, whole._replace(region=(1, 1, 5, 3)), whole._replace(region=(6, 2, 6, 6))]
    sample = recipe(4, 4, keep_aspect=True)
    want, got = both(sources, sample, "float32", "HWC")
    assert_close(want, got, "float32", sample)
