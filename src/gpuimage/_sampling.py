"""What a frame conversion computes: colour conversion, crop, resize, letterbox and normalization of
many regions into one batch, as one recipe every executor reproduces. Pure: no GPU, no foreign library.

The definition, for item ``i`` (``FrameSource`` ``i`` into slot ``i`` of the target):

1. **Value.** Each source pixel ``(x, y)`` of the whole frame has a value ``v[c]`` per output channel
   ``c``, in ``[0, 1]`` units:

   - YUV formats: ``_colour.yuv_to_rgb``'s steps 1-5 in float (no rounding to 8 bits), clipped to
     ``[0, 1]``; chroma is read at ``(y // subsample_y, x // subsample_x)`` of the whole frame (so a
     region at an odd offset reads the chroma sample its pixels share, as a crop of the converted
     frame would).
   - Packed RGB, BGR, RGBA, BGRA: the stored code times ``1 / 255`` (uint8), ``1 / 65535`` (uint16),
     or the stored value (floats), reordered to the output order.
   - GRAY: the luma code scaled the same way, in every colour channel.
   - An output alpha channel (``order`` RGBA or BGRA) is the source's alpha where it has one, else 1.

2. **Crop.** Only the region ``(x, y, width, height)`` is read: interpolation taps are clamped to
   the region, never to the frame (the region behaves as a frame of its own).

3. **Resize** of the region to ``Placement.width`` x ``Placement.height``, per axis (``taps``):

   - ``"bilinear"``: OpenCV's ``INTER_LINEAR`` with half-pixel centres: ``s = (d + 0.5) *
     (in_len / out_len) - 0.5``, ``i0 = floor(s)``, ``f = s - i0``; ``i0 < 0`` gives ``(0, f=0)``;
     ``i0 >= in_len - 1`` gives ``(in_len - 1, f=0)``; ``i1 = min(i0 + 1, in_len - 1)``. The value
     is ``(1-fy)((1-fx) v[y0,x0] + fx v[y0,x1]) + fy((1-fx) v[y1,x0] + fx v[y1,x1])`` on the values of
     step 1 (interpolated after colour conversion, as ``cvtColor`` then ``resize`` does).
   - ``"nearest"``: OpenCV's ``INTER_NEAREST_EXACT`` (torch's ``"nearest-exact"``): ``i =
     min(floor((d + 0.5) * (in_len / out_len)), in_len - 1)``.

   Both in float64, in exactly these operations (``tap_table`` is the vectorised ``taps``). Where a
   nearest centre falls exactly on a pixel boundary (``(2d + 1) * in_len`` a multiple of ``2 *
   out_len``), OpenCV's 16-bit fixed point takes either pixel, depending on the sizes; elsewhere
   it picks the same pixel.

   The same size in and out is the identity for both modes.

4. **Letterbox** (``place``): with ``keep_aspect`` the region is scaled by ``s = min(out_w / w,
   out_h / h)`` to ``max(1, round(w * s))`` x ``max(1, round(h * s))`` (at most the slot) and centred
   (offsets ``(out_w - pw) // 2``, ``(out_h - ph) // 2``); without it, it fills the slot. Slot pixels
   outside the placement get ``pad``, already in output units.

5. **Normalization and store.** ``out[c] = value[c] * factors[c] + shifts[c]``, computed in float32
   by executors (the NumPy reference computes in float64; compare within the tolerances of the
   tests). Float outputs round to the output dtype (nearest even). Integer outputs (uint8 only) store
   ``rint`` (half to even) saturated to ``[0, 255]``. Layout CHW or HWC, in the target's pitches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from ._errors import BoundsError, DTypeError, SpecError
from ._formats import FORMATS, ChannelOrder

if TYPE_CHECKING:
    from ._executor import Operand
    from ._formats import ColorSpec, PixelFormat
    from ._spec import ImageSpec

__all__ = [
    "OUTPUT_DTYPES",
    "AxisPlan",
    "FrameSource",
    "Placement",
    "ResizeMode",
    "SampleRecipe",
    "axis_plan",
    "check_frames",
    "code_unit",
    "place",
    "tap_table",
    "taps",
]

Array = npt.NDArray[Any]

ResizeMode = Literal["bilinear", "nearest"]


class FrameSource(NamedTuple):
    """One item's source as executors see it: a frame's planes (or one packed image) and a region."""

    format: PixelFormat
    """The source's pixel format: a YUV one, GRAY, or a packed RGB/BGR/RGBA/BGRA image."""
    planes: tuple[Operand, ...]
    """One operand per plane of ``format``: pointer, HWC spec with the plane's own pitch, owner.
    A plane's height and width are the frame's divided by its subsampling (NV12's UV plane is
    ``(H/2, W/2, 2)``)."""
    colour: ColorSpec | None
    """Matrix and range of a YUV frame; None for the other formats."""
    region: tuple[int, int, int, int]
    """``(x, y, width, height)`` read, in pixels of the whole frame (luma pixels); inside it."""


class SampleRecipe(NamedTuple):
    """What every item of one call becomes (the same for all items)."""

    height: int
    """The output slot's height in pixels."""
    width: int
    """The output slot's width in pixels."""
    resize: ResizeMode
    keep_aspect: bool
    order: ChannelOrder
    """The output channel order: RGB, BGR (3 channels), RGBA or BGRA (4)."""
    factors: tuple[float, ...]
    """Per output channel: ``out = value * factor + shift`` (``len == channels``)."""
    shifts: tuple[float, ...]
    pad: tuple[float, ...]
    """Per output channel, in output units: what slot pixels outside the placement get."""


class Placement(NamedTuple):
    """Where an item's resized region lies in its slot, in output pixels."""

    x: int
    y: int
    width: int
    height: int


def place(
    region_width: int, region_height: int, out_width: int, out_height: int, keep_aspect: bool
) -> Placement:
    """The letterbox of step 4: the whole slot, or the region scaled to fit it, centred."""
    if region_width <= 0 or region_height <= 0 or out_width <= 0 or out_height <= 0:
        raise SpecError(
            f"place(): expected positive sizes, got region {region_width}x{region_height} and slot "
            f"{out_width}x{out_height}."
        )
    if not keep_aspect:
        return Placement(0, 0, out_width, out_height)
    scale = min(out_width / region_width, out_height / region_height)
    width = min(out_width, max(1, round(region_width * scale)))
    height = min(out_height, max(1, round(region_height * scale)))
    return Placement((out_width - width) // 2, (out_height - height) // 2, width, height)


def taps(out_index: int, out_len: int, in_len: int, mode: ResizeMode) -> tuple[int, int, float]:
    """The two source indices and the weight of the second along one axis (step 3), in float64."""
    ratio = in_len / out_len
    if mode == "nearest":
        index = min(math.floor((out_index + 0.5) * ratio), in_len - 1)
        return index, index, 0.0
    position = (out_index + 0.5) * ratio - 0.5
    first = math.floor(position)
    weight = position - first
    if first < 0:
        first, weight = 0, 0.0
    if first >= in_len - 1:
        first, weight = in_len - 1, 0.0
    return first, min(first + 1, in_len - 1), weight


def tap_table(out_len: int, in_len: int, mode: ResizeMode) -> tuple[Array, Array, Array]:
    """``taps`` of every output index along one axis: ``(first, second, weight)`` arrays (int64,
    int64, float64) of length ``out_len``, equal to ``taps`` element by element (the same float64
    operations, vectorised)."""
    ratio = in_len / out_len
    centre = (np.arange(out_len, dtype=np.float64) + 0.5) * ratio
    if mode == "nearest":
        index = np.minimum(np.floor(centre).astype(np.int64), in_len - 1)
        return index, index.copy(), np.zeros(out_len)
    position = centre - 0.5
    first = np.floor(position).astype(np.int64)
    weight = position - first
    outside = (first < 0) | (first >= in_len - 1)
    first = np.clip(first, 0, in_len - 1)
    weight[outside] = 0.0
    return first, np.minimum(first + 1, in_len - 1), weight


class AxisPlan(NamedTuple):
    """How an executor reads one axis of a region: the indices it samples, then the taps into them.

    Output index ``d`` is ``(1 - weight[d]) * g[first[d]] + weight[d] * g[second[d]]`` where ``g`` is
    the colour-converted values at region-relative indices ``reads``. With ``split``, ``first`` is
    ``0..n-1`` and ``second`` is ``n..2n-1`` (or ``first`` again): slices, no gather needed.
    """

    reads: Array
    """Region-relative source indices to sample (int64), at most ``min(in_len, 2 * out_len)``."""
    first: Array
    second: Array
    weight: Array
    """float64; all zero for ``"nearest"``."""
    split: bool


@functools.lru_cache(maxsize=1024)
def axis_plan(out_len: int, in_len: int, mode: ResizeMode) -> AxisPlan:
    """The cheapest reads of ``tap_table``'s taps (cached; the arrays are read-only): the whole
    region where it is at most twice the output (upscales), else only the taps (downscales)."""
    first, second, weight = tap_table(out_len, in_len, mode)
    positions = np.arange(out_len, dtype=np.int64)
    if mode == "nearest":
        if in_len < out_len:
            plan = AxisPlan(np.arange(in_len, dtype=np.int64), first, first, weight, False)
        else:
            plan = AxisPlan(first, positions, positions, weight, True)
    elif in_len <= 2 * out_len:
        plan = AxisPlan(np.arange(in_len, dtype=np.int64), first, second, weight, False)
    else:
        plan = AxisPlan(np.concatenate([first, second]), positions, positions + out_len, weight, True)
    for array in (plan.reads, plan.first, plan.second, plan.weight):
        array.flags.writeable = False
    return plan


OUTPUT_DTYPES = frozenset({"float32", "float16", "bfloat16", "uint8"})
"""The dtypes ``convert_frames`` writes (step 5)."""
_CODE_UNITS = {"uint8": 1.0 / 255.0, "uint16": 1.0 / 65535.0, "float16": 1.0, "bfloat16": 1.0}
_CODE_UNITS.update({"float32": 1.0, "float64": 1.0})


def code_unit(dtype: str) -> float:
    """The value of one stored code of a packed or GRAY source (step 1): 1/255, 1/65535, floats 1."""
    return _CODE_UNITS[dtype]


def check_frames(sources: Sequence[FrameSource], target: ImageSpec, recipe: SampleRecipe, where: str) -> int:
    """Refuse what no executor can compute; return the output channel count. Cheap: a frame loop
    calls it per call (``_frame_convert`` has checked the user's arguments already)."""
    order = recipe.order
    if order is ChannelOrder.UNKNOWN or order not in ChannelOrder.__members__.values():
        raise SpecError(f"{where}: expected order RGB, BGR, RGBA or BGRA, got order={order!r}.")
    channels = len(order.value)
    if target.dtype not in OUTPUT_DTYPES:
        raise DTypeError(
            f"{where}: expected a float32, float16, bfloat16 or uint8 target, got dtype={target.dtype}."
        )
    wanted, found = (recipe.height, recipe.width, channels), (target.height, target.width, target.channels)
    if found != wanted or recipe.resize not in (
        "bilinear",
        "nearest",
    ):
        raise SpecError(
            f"{where}: expected a {recipe.height}x{recipe.width} slot of {channels} channels and resize "
            f"'bilinear' or 'nearest', got (height, width, channels)={found} and resize={recipe.resize!r}."
        )
    if not len(recipe.factors) == len(recipe.shifts) == len(recipe.pad) == channels:
        raise SpecError(
            f"{where}: expected {channels} factors, shifts and pads (one per output channel), got "
            f"{len(recipe.factors)}, {len(recipe.shifts)} and {len(recipe.pad)}."
        )
    for source in sources:
        # a frame loop's sources share a few plane descriptions (specs are interned): each checked once
        specs = tuple([plane.spec for plane in source.planes])
        key = (source.format, source.colour is None, *[id(spec) for spec in specs])
        known = _checked.get(key)
        if known is None or known != specs:
            _check_source(source, where)
            if len(_checked) >= 256:
                _checked.clear()
            _checked[key] = specs
        else:
            _check_region(source, where)
    return channels


_checked: dict[tuple[object, ...], tuple[ImageSpec, ...]] = {}
"""Plane descriptions whose sources passed ``_check_source`` (held, so their ids stay theirs)."""


def yuv_colour(source: FrameSource) -> ColorSpec:
    """A YUV source's colour description (``check_frames`` refused a YUV source without one)."""
    if source.colour is None:
        raise SpecError(
            f"convert_frames(): expected the colour description of a {source.format.value} frame."
        )
    return source.colour


def _check_source(source: FrameSource, where: str) -> None:
    info = FORMATS[source.format]
    if len(source.planes) != len(info.planes):
        raise SpecError(
            f"{where}: expected {len(info.planes)} planes for {info.format.value}, got {len(source.planes)}."
        )
    first = source.planes[0].spec
    if info.is_yuv:
        if source.colour is None:
            raise SpecError(
                f"{where}: expected the colour description of a {info.format.value} frame, got None."
            )
        for index, (plane, plane_info) in enumerate(zip(source.planes, info.planes, strict=True)):
            spec = plane.spec
            shape = (first.height // plane_info.subsample_y, first.width // plane_info.subsample_x)
            if spec.dtype != plane_info.dtype or (spec.height, spec.width, spec.channels) != (
                *shape,
                plane_info.channels,
            ):
                raise SpecError(
                    f"{where}: expected plane {index} of {info.format.value} to be {plane_info.dtype} of "
                    f"(height, width, channels)={(*shape, plane_info.channels)}, got {spec.dtype} "
                    f"{(spec.height, spec.width, spec.channels)}."
                )
    elif first.dtype not in _CODE_UNITS or first.channels != info.planes[0].channels:
        raise DTypeError(
            f"{where}: expected a {info.format.value} image of {info.planes[0].channels} channels of "
            f"uint8, uint16 or a float dtype, got {first.channels} channels of {first.dtype}."
        )
    _check_region(source, where)


def _check_region(source: FrameSource, where: str) -> None:
    first = source.planes[0].spec
    x, y, width, height = source.region
    if width <= 0 or height <= 0 or x < 0 or y < 0 or x + width > first.width or y + height > first.height:
        raise BoundsError(
            f"{where}: expected a non-empty region inside the {first.width}x{first.height} frame, got "
            f"region={source.region}. Clip it to the frame."
        )
