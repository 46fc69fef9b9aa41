"""Frame conversions in torch operations (float32), on CPU or CUDA tensors: the GPU fallback where the
kernels (``_frame_kernels``) are unavailable, computing ``_sampling``'s definition.

Per call, the tap tables of every item (``_sampling.axis_plan``, on the host) and the recipe's
constants travel to the device in ONE copy. Per item: one gather per plane (advanced indexing of
the sampled rows and columns only), the colour conversion on that grid, two ``lerp``s (x, then y),
and ``addcmul`` of the normalization straight into the slot. No per-pixel Python, no full-frame
temporaries. The torch executor (``_torch_convert``) calls ``convert_frames`` with its operand view
and on its stream: this module does not import it, so there is no import circle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ._backends import missing_backend

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only where torch is absent
    raise missing_backend("torch") from exc

import numpy as np
import numpy.typing as npt

from ._colour import code_scales, ypbpr_to_rgb_matrix
from ._executor import Operand, slot_of
from ._formats import FORMATS
from ._sampling import (
    AxisPlan,
    FrameSource,
    Placement,
    SampleRecipe,
    axis_plan,
    check_frames,
    code_unit,
    place,
    yuv_colour,
)
from ._torch import from_numpy

__all__ = ["TensorView", "convert_frames"]

Tensor = torch.Tensor

TensorView = Callable[[Operand], torch.Tensor]
"""An operand as an HWC-ordered tensor over its memory (``_torch_convert.hwc_tensor``)."""

_WHERE = "convert_frames()"
_CHW = (2, 0, 1)
_TARGETS = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "uint8": torch.uint8,
}
_UINT16 = "uint16"


class _Tables:
    """The host side of the one upload: int64 indices and float32 weights/constants, by offset."""

    def __init__(self) -> None:
        self.ints: list[npt.NDArray[np.int64]] = []
        self.floats: list[npt.NDArray[np.float32]] = []
        self.int_count = 0
        self.float_count = 0

    def add_ints(self, values: npt.NDArray[Any]) -> tuple[int, int]:
        self.ints.append(values.astype(np.int64, copy=False))
        start, self.int_count = self.int_count, self.int_count + len(values)
        return start, len(values)

    def add_floats(self, values: npt.NDArray[Any]) -> tuple[int, int]:
        self.floats.append(np.asarray(values, dtype=np.float32))
        start, self.float_count = self.float_count, self.float_count + len(values)
        return start, len(values)

    def to_device(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(int64, float32) tensors on ``device``: one host-to-device copy for both (queued on the
        current stream; pageable memory is staged before the call returns, so the host arrays may go)."""
        ints = np.concatenate(self.ints) if self.ints else np.zeros(0, np.int64)
        floats = np.concatenate(self.floats) if self.floats else np.zeros(0, np.float32)
        both = from_numpy(np.concatenate([ints.view(np.uint8), floats.view(np.uint8)]))
        if device.type != "cpu":
            both = both.to(device, non_blocking=True)
        split = ints.size * 8
        return both[:split].view(torch.int64), both[split:].view(torch.float32)


class _Slice(NamedTuple):
    start: int
    length: int

    def of(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor[self.start : self.start + self.length]


class _Axis(NamedTuple):
    """One axis of one item: the frame indices it reads (luma, chroma) and its taps, as slices."""

    plan: AxisPlan
    reads: _Slice
    chroma: _Slice | None
    first: _Slice | None
    second: _Slice | None
    weight: _Slice | None


def _axis(tables: _Tables, plan: AxisPlan, offset: int, subsample: int, bilinear: bool) -> _Axis:
    reads = plan.reads + offset
    chroma = tables.add_ints(reads // subsample) if subsample > 1 else None
    gathers = not plan.split
    return _Axis(
        plan,
        _Slice(*tables.add_ints(reads)),
        None if chroma is None else _Slice(*chroma),
        _Slice(*tables.add_ints(plan.first)) if gathers else None,
        _Slice(*tables.add_ints(plan.second)) if gathers and bilinear else None,
        _Slice(*tables.add_floats(plan.weight)) if bilinear else None,
    )


def _codes(
    plane: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, dtype: str, shift: int
) -> torch.Tensor:
    """The plane's elements at ``(rows[i], cols[j])`` as float32 ``(R, K, c)``: one gather."""
    if dtype == _UINT16:  # torch has few uint16 kernels: gather the bits as int16, widen, mask
        codes = plane.view(torch.int16)[rows[:, None], cols].to(torch.int32).bitwise_and_(0xFFFF)
        if shift:
            codes = codes.bitwise_right_shift_(shift)
        return codes.to(torch.float32)
    return plane[rows[:, None], cols].to(torch.float32)


_Indices = tuple[torch.Tensor, torch.Tensor]
"""Frame indices along one axis: (for luma and packed planes, for chroma planes)."""


def _values(
    source: FrameSource, order: str, rows: _Indices, cols: _Indices, planes: list[Tensor]
) -> torch.Tensor:
    """Step 1 on the grid ``rows`` x ``cols`` ((luma, chroma) indices): ``(channels, R, K)`` float32."""
    info = FORMATS[source.format]
    values = torch.empty(
        (len(order), len(rows[0]), len(cols[0])), dtype=torch.float32, device=planes[0].device
    )
    if info.is_yuv:
        colour = yuv_colour(source)
        scales = code_scales(colour.range, info.bit_depth)
        samples: dict[str, torch.Tensor] = {}
        for index, (plane, plane_info) in enumerate(zip(planes, info.planes, strict=True)):
            codes = _codes(plane, rows[index > 0], cols[index > 0], plane_info.dtype, info.bit_shift)
            offset, scale = (
                (scales.luma_offset, scales.luma_scale)
                if index == 0
                else (scales.chroma_offset, scales.chroma_scale)
            )
            codes.sub_(offset).div_(scale)
            samples.update({name: codes[..., channel] for channel, name in enumerate(plane_info.components)})
        luma, pb, pr = samples["Y"], samples["U"], samples["V"]
        (_, _, r_pr), (_, g_pb, g_pr), (_, b_pb, _) = ypbpr_to_rgb_matrix(colour.matrix)
        torch.add(luma, pr, alpha=r_pr, out=values[order.index("R")])
        green = values[order.index("G")]
        torch.add(luma, pb, alpha=g_pb, out=green).add_(pr, alpha=g_pr)
        torch.add(luma, pb, alpha=b_pb, out=values[order.index("B")])
        values[:3].clamp_(0.0, 1.0)  # R, G and B are the first three of every output order
    else:
        dtype = source.planes[0].spec.dtype
        codes = _codes(planes[0], rows[0], cols[0], dtype, 0)
        components = info.planes[0].components
        for channel, name in enumerate(order):
            if name in components:
                values[channel].copy_(codes[..., components.index(name)])
            elif name != "A":  # GRAY: luma in every colour channel
                values[channel].copy_(codes[..., 0])
        unit = code_unit(dtype)
        if unit != 1.0:
            values.mul_(unit)
    if len(order) == 4 and "A" not in info.planes[0].components:
        values[3].fill_(1.0)
    return values


def _taps(
    values: torch.Tensor, dim: int, axis: _Axis, ints: torch.Tensor, floats: torch.Tensor
) -> torch.Tensor:
    """``values`` resampled along ``dim`` (1: y, 2: x) by ``axis``'s taps (step 3)."""
    length = len(axis.plan.first)
    if axis.weight is None:  # nearest
        return values if axis.first is None else values.index_select(dim, axis.first.of(ints))
    if axis.first is None or axis.second is None:
        first, second = values.narrow(dim, 0, length), values.narrow(dim, length, length)
    else:
        first, second = (
            values.index_select(dim, axis.first.of(ints)),
            values.index_select(dim, axis.second.of(ints)),
        )
    weight = axis.weight.of(floats)
    # in place: ``first`` is a gather of its own or a slice of a grid that is used no more
    return first.lerp_(second, weight if dim == 2 else weight[:, None])


def _viewed(views: dict[int, Tensor], plane: Operand, view: TensorView) -> Tensor:
    """``view(plane)``, made once per call: the sources keep every plane (and so its id) alive."""
    tensor = views.get(id(plane))
    if tensor is None:
        tensor = views[id(plane)] = view(plane)
    return tensor


def _pad(slot: torch.Tensor, placement: Placement, pad: torch.Tensor) -> None:
    """Write ``pad`` ((C, 1, 1), target dtype) into the slot ((C, H, W)) outside ``placement``."""
    x, y, width, height = placement
    _, slot_height, slot_width = slot.shape
    if (width, height) == (slot_width, slot_height):
        return
    for part in (
        slot[:, :y],
        slot[:, y + height :],
        slot[:, y : y + height, :x],
        slot[:, y : y + height, x + width :],
    ):
        if part.numel():
            part.copy_(pad.expand_as(part))


def _stored_pad(pad: Sequence[float], dtype: str) -> npt.NDArray[np.float32]:
    """The pad as float32 values that convert exactly to ``dtype`` (uint8: rounded and saturated)."""
    values = np.asarray(pad, dtype=np.float64)
    if dtype == "uint8":
        values = np.clip(np.nan_to_num(np.rint(values), nan=0.0), 0.0, 255.0)
    return values.astype(np.float32)


def convert_frames(
    sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe, view: TensorView
) -> None:
    """Write every item into its slot of ``target``, as ``_sampling`` defines it, in float32 torch
    operations queued on torch's current stream (the caller sets it)."""
    spec = target.spec
    channels = check_frames(sources, spec, recipe, _WHERE)
    bilinear = recipe.resize == "bilinear"
    tables = _Tables()
    constants = _Slice(*tables.add_floats(np.concatenate([recipe.factors, recipe.shifts])))
    pad_slice = _Slice(*tables.add_floats(_stored_pad(recipe.pad, spec.dtype)))
    items: list[tuple[Placement, _Axis, _Axis]] = []
    for source in sources:
        x, y, region_width, region_height = source.region
        placement = place(region_width, region_height, recipe.width, recipe.height, recipe.keep_aspect)
        chroma = FORMATS[source.format].planes[-1]
        items.append(
            (
                placement,
                _axis(
                    tables,
                    axis_plan(placement.width, region_width, recipe.resize),
                    x,
                    chroma.subsample_x,
                    bilinear,
                ),
                _axis(
                    tables,
                    axis_plan(placement.height, region_height, recipe.resize),
                    y,
                    chroma.subsample_y,
                    bilinear,
                ),
            )
        )
    slots = [view(slot_of(target, index, item_pitch)).permute(_CHW) for index in range(len(sources))]
    ints, floats = tables.to_device(slots[0].device)
    factors, shifts = constants.of(floats).view(2, channels, 1, 1).unbind(0)
    stored = _TARGETS[spec.dtype]
    pad = pad_slice.of(floats).view(channels, 1, 1).to(stored)
    views: dict[int, Tensor] = {}  # each plane viewed once per call (the regions of one frame share it)
    for source, slot, (placement, axis_x, axis_y) in zip(sources, slots, items, strict=True):
        _pad(slot, placement, pad)
        rows = (axis_y.reads.of(ints), (axis_y.chroma or axis_y.reads).of(ints))
        cols = (axis_x.reads.of(ints), (axis_x.chroma or axis_x.reads).of(ints))
        planes = [_viewed(views, plane, view) for plane in source.planes]
        values = _values(source, recipe.order.value, rows, cols, planes)
        resized = _taps(_taps(values, 2, axis_x, ints, floats), 1, axis_y, ints, floats)
        x, y, width, height = placement
        window = slot[:, y : y + height, x : x + width]
        if stored is torch.uint8:
            result = torch.addcmul(shifts, resized, factors).nan_to_num_(nan=0.0).round_().clamp_(0.0, 255.0)
            window.copy_(result)
        else:  # one rounding, float32 to the target's dtype, as the store
            torch.addcmul(shifts, resized, factors, out=window)
