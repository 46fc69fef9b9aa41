"""Host frames and batch targets for the frame-conversion tests (``_sampling`` and its executors),
shared by the CPU and GPU suites: random planes of every format, ``FrameSource``s over them, and
slots of a host batch (bfloat16 held as its uint16 bits)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gpuimage import GpuImage, ImageSpec
from gpuimage._executor import Buffer
from gpuimage._formats import FORMATS, ChannelOrder, ColorSpec, PixelFormat, plane_shapes
from gpuimage._sampling import FrameSource, ResizeMode, SampleRecipe

__all__ = [
    "YUV_FORMATS",
    "as_values",
    "assert_close",
    "host_batch",
    "random_planes",
    "recipe",
    "source_of",
]

Array = npt.NDArray[Any]
YUV_FORMATS = [f for f in PixelFormat if FORMATS[f].is_yuv]


def random_planes(
    rng: np.random.Generator, format: PixelFormat, width: int, height: int, dtype: str | None = None
) -> list[Array]:
    """Random HWC planes of a ``width`` x ``height`` frame (P010: random low bits too, which count
    for nothing); a packed or GRAY image of ``dtype`` (default the format's), floats in [-0.1, 1.1]."""
    info = FORMATS[format]
    planes: list[Array] = []
    for shape in plane_shapes(format, width, height):
        element = np.dtype(dtype or info.dtype)
        if element.kind == "f":
            planes.append(rng.uniform(-0.1, 1.1, shape).astype(element))
        else:
            planes.append(rng.integers(0, np.iinfo(element).max, shape, endpoint=True).astype(element))
    return planes


def source_of(
    planes: list[Array],
    format: PixelFormat,
    colour: ColorSpec | None = None,
    region: tuple[int, int, int, int] | None = None,
) -> FrameSource:
    """A ``FrameSource`` over host planes (views: the arrays must stay alive and unchanged)."""
    height, width = planes[0].shape[:2]
    if colour is None and FORMATS[format].is_yuv:
        colour = ColorSpec(matrix="BT601", range="LIMITED")
    images = tuple(GpuImage.from_numpy(plane, layout="HWC") for plane in planes)
    return FrameSource(format, images, colour, region or (0, 0, width, height))


def recipe(
    height: int,
    width: int,
    *,
    resize: ResizeMode = "bilinear",
    keep_aspect: bool = False,
    order: str = "RGB",
    factors: tuple[float, ...] | None = None,
    shifts: tuple[float, ...] | None = None,
    pad: float = 0.0,
) -> SampleRecipe:
    """A recipe with identity normalization unless given."""
    channels = len(order)
    return SampleRecipe(
        height,
        width,
        resize,
        keep_aspect,
        ChannelOrder(order),
        factors or (1.0,) * channels,
        shifts or (0.0,) * channels,
        (pad,) * channels,
    )


def host_batch(
    count: int, height: int, width: int, channels: int, dtype: Any, layout: Any = "CHW", spare: int = 0
) -> tuple[Array, Buffer, int]:
    """(array of the whole batch, NCHW or NHWC; slot 0 as a ``Buffer``; item pitch in bytes). Each
    slot is followed by ``spare`` bytes of padding (a pitched batch); the array starts filled with 77."""
    held = np.dtype(np.uint16) if dtype == "bfloat16" else np.dtype(dtype)
    shape = (channels, height, width) if layout == "CHW" else (height, width, channels)
    slot_bytes = int(np.prod(shape)) * held.itemsize + spare
    raw = np.full(count * slot_bytes, 77, np.uint8)
    batch = np.lib.stride_tricks.as_strided(
        raw.view(held), (count, *shape), (slot_bytes, *np.empty(shape, held).strides)
    )
    spec = ImageSpec(height=height, width=width, channels=channels, dtype=dtype, layout=layout, device="cpu")
    return batch, Buffer(raw.ctypes.data, spec, raw), slot_bytes


def as_values(batch: Array, dtype: str) -> Array:
    """Stored elements as float64 (bfloat16 from its bits)."""
    if dtype == "bfloat16":
        return (batch.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
    return batch.astype(np.float64)


def assert_close(want: Array, got: Array, dtype: str, sample: SampleRecipe) -> None:
    """Within what float32 arithmetic allows: an ulp of the output dtype, one unit of uint8."""
    reach = max(1.0, *(abs(f) + abs(s) for f, s in zip(sample.factors, sample.shifts, strict=True)))
    if dtype == "uint8":
        assert np.abs(want.astype(int) - got.astype(int)).max(initial=0) <= 1
        return
    relative = {"float32": 1e-6, "float16": 2.0**-10, "bfloat16": 2.0**-7}[dtype]
    np.testing.assert_allclose(
        as_values(got, dtype), as_values(want, dtype), rtol=relative, atol=4e-6 * reach
    )
