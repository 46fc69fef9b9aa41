"""The NumPy reference of frame conversions (``_sampling``'s definition, in float64): the executor
that host frames use, and the definition the torch and kernel executors are tested against.

Per item: the per-axis ``axis_plan``s of ``_sampling`` name the rows and columns to read; their
values (step 1) are computed on that grid only (fancy indexing, no per-pixel loop), interpolated
separably (x, then y: the formula of step 3 in its order), normalized and stored into the slot.
The NumPy executor (``_host_convert``) calls ``convert_frames`` with its array helpers (``ArrayIO``):
this module does not import it, so there is no import circle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ._colour import code_scales, ypbpr_to_rgb_matrix
from ._dtypes import DTypeName
from ._executor import Operand, slot_of
from ._formats import FORMATS, FormatInfo
from ._sampling import (
    AxisPlan,
    FrameSource,
    SampleRecipe,
    axis_plan,
    check_frames,
    code_unit,
    place,
    yuv_colour,
)

__all__ = ["ArrayIO", "convert_frames", "frame_values"]

Array = npt.NDArray[Any]
_WHERE = "convert_frames()"


class ArrayIO(NamedTuple):
    """The NumPy executor's array helpers (``_host_convert``'s, bfloat16 travelling as its bits)."""

    view: Callable[[Operand], Array]
    """A host operand as an HWC-ordered array (``hwc_array``)."""
    load: Callable[[Array, DTypeName, np.dtype[Any]], Array]
    """Stored elements as values of a float dtype (``to_accumulator``)."""
    store: Callable[[Array, DTypeName], Array]
    """float64 values as elements of a dtype: rounded, saturated (``from_accumulator``)."""


def _gather(plane: Array, rows: Array, cols: Array) -> Array:
    """``plane[rows[i], cols[j]]`` as an ``(R, K, c)`` array (two 1-D takes: faster than ``np.ix_``)."""
    return plane.take(rows, axis=0).take(cols, axis=1)


def _yuv_values(
    source: FrameSource, info: FormatInfo, rows: Array, cols: Array, io: ArrayIO
) -> dict[str, Array]:
    """R, G, B of the frame's pixels ``(rows[i], cols[j])``: ``_colour.yuv_to_rgb``'s steps 1-5 in
    float64, clipped to [0, 1], in its order of operations."""
    samples: dict[str, Array] = {}
    for plane, plane_info in zip(source.planes, info.planes, strict=True):
        codes = _gather(io.view(plane), rows // plane_info.subsample_y, cols // plane_info.subsample_x)
        if info.bit_shift:
            codes = codes >> info.bit_shift
        for channel, component in enumerate(plane_info.components):
            samples[component] = codes[..., channel].astype(np.float64)
    colour = yuv_colour(source)
    scales = code_scales(colour.range, info.bit_depth)
    luma = (samples["Y"] - scales.luma_offset) / scales.luma_scale
    pb = (samples["U"] - scales.chroma_offset) / scales.chroma_scale
    pr = (samples["V"] - scales.chroma_offset) / scales.chroma_scale
    (_, _, r_pr), (_, g_pb, g_pr), (_, b_pb, _) = ypbpr_to_rgb_matrix(colour.matrix)
    return {
        "R": np.clip(luma + r_pr * pr, 0.0, 1.0),
        "G": np.clip(luma + g_pb * pb + g_pr * pr, 0.0, 1.0),
        "B": np.clip(luma + b_pb * pb, 0.0, 1.0),
    }


def _packed_values(
    source: FrameSource, info: FormatInfo, rows: Array, cols: Array, io: ArrayIO
) -> dict[str, Array]:
    """Each component of a packed or GRAY image at ``(rows[i], cols[j])``: code times its unit."""
    plane = source.planes[0]
    dtype = plane.spec.dtype
    codes = io.load(_gather(io.view(plane), rows, cols), dtype, np.dtype(np.float64))
    unit = code_unit(dtype)
    if unit != 1.0:
        codes = codes * unit
    components = info.planes[0].components
    if components == ("Y",):
        return {"R": codes[..., 0], "G": codes[..., 0], "B": codes[..., 0]}
    return {name: codes[..., channel] for channel, name in enumerate(components)}


def frame_values(source: FrameSource, order: str, rows: Array, cols: Array, io: ArrayIO) -> Array:
    """Step 1 at the frame pixels ``(rows[i], cols[j])``: a ``(channels, len(rows), len(cols))``
    float64 array in ``order`` (alpha: the source's, else 1)."""
    info = FORMATS[source.format]
    values = (_yuv_values if info.is_yuv else _packed_values)(source, info, rows, cols, io)
    ones = None
    channels: list[Array] = []
    for name in order:
        if name in values:
            channels.append(values[name])
        else:  # alpha of a source without one
            ones = np.ones((len(rows), len(cols))) if ones is None else ones
            channels.append(ones)
    return np.stack(channels)


def _lerp(first: Array, second: Array, weight: Array) -> Array:
    result: Array = (1.0 - weight) * first + weight * second
    return result


def _taps(values: Array, axis: int, plan: AxisPlan, second: bool) -> Array:
    """The first (or second) tap of every output index along ``axis`` (1: y, 2: x): a slice where
    the plan is split (no copy), else a gather."""
    length = len(plan.first)
    if plan.split:
        start = length if second and len(plan.reads) > length else 0
        return values[:, start : start + length] if axis == 1 else values[:, :, start : start + length]
    return np.take(values, plan.second if second else plan.first, axis=axis)


def _item(source: FrameSource, recipe: SampleRecipe, width: int, height: int, io: ArrayIO) -> Array:
    """Steps 1-3 for one item: its ``(channels, height, width)`` resized values, float64."""
    x, y, region_width, region_height = source.region
    plan_x = axis_plan(width, region_width, recipe.resize)
    plan_y = axis_plan(height, region_height, recipe.resize)
    grid = frame_values(source, recipe.order.value, plan_y.reads + y, plan_x.reads + x, io)
    if recipe.resize == "nearest":
        return _taps(_taps(grid, 2, plan_x, False), 1, plan_y, False)
    rows = _lerp(_taps(grid, 2, plan_x, False), _taps(grid, 2, plan_x, True), plan_x.weight)
    return _lerp(_taps(rows, 1, plan_y, False), _taps(rows, 1, plan_y, True), plan_y.weight[:, None])


def convert_frames(
    sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe, io: ArrayIO
) -> None:
    """Write every item into its slot of ``target`` (host memory), as ``_sampling`` defines it."""
    spec = target.spec
    check_frames(sources, spec, recipe, _WHERE)
    dtype = spec.dtype
    factors = np.asarray(recipe.factors, dtype=np.float64)[:, None, None]
    shifts = np.asarray(recipe.shifts, dtype=np.float64)[:, None, None]
    pad = io.store(np.asarray(recipe.pad, dtype=np.float64), dtype)
    # Overflow to infinity and NaN saturation are defined results (step 5), not warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        for index, source in enumerate(sources):
            slot = io.view(slot_of(target, index, item_pitch))
            placement = place(
                source.region[2], source.region[3], recipe.width, recipe.height, recipe.keep_aspect
            )
            if (placement.width, placement.height) != (recipe.width, recipe.height):
                slot[...] = pad
            values = _item(source, recipe, placement.width, placement.height, io) * factors + shifts
            window = slot[
                placement.y : placement.y + placement.height, placement.x : placement.x + placement.width
            ]
            window[...] = io.store(values, dtype).transpose(1, 2, 0)
