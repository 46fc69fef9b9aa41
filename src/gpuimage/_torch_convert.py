"""The torch executor of conversions, for GPUs where CuPy is missing: plain torch operations.

Slower than the kernels (several passes instead of one; see docs), but the same formula: accumulator
dtype, multiply then add, round half to even, saturate, NaN to 0. ``EXECUTOR`` takes operands
(``_executor``) and queues on the stream it is given; ``convert_tensors`` and ``fill_tensors`` do the
arithmetic on tensors in logical HWC order. torch implements few operations for uint16 and uint32,
so those travel as the signed integers of the same size (their bits) and are widened to int64 by
masking.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ._backends import missing_backend

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only where torch is absent
    raise missing_backend("torch") from exc

from . import _torch
from ._dtypes import DTypeName, accumulator, integer_range
from ._executor import Operand, convert_each
from ._layout import Layout
from ._plan import Mode, mode
from ._torch_frames import convert_frames as _convert_frames
from ._torch_runtime import stream_context

if TYPE_CHECKING:
    from ._affine import Affine
    from ._plan import BatchItem
    from ._sampling import FrameSource, SampleRecipe

__all__ = ["EXECUTOR", "TorchExecutor", "convert_tensors", "fill_tensors", "reaches_gpu"]

_ACCUMULATORS = {"float32": torch.float32, "float64": torch.float64}
_CARRIERS: dict[str, tuple[torch.dtype, int]] = {
    "uint16": (torch.int16, 0xFFFF),
    "uint32": (torch.int32, 0xFFFFFFFF),
}


def _bits(tensor: torch.Tensor, dtype: DTypeName) -> torch.Tensor:
    """The tensor as a dtype torch can flip and copy (uint16/uint32 as int16/int32 bits)."""
    carrier = _CARRIERS.get(dtype)
    return tensor if carrier is None else tensor.view(carrier[0])


def _values(tensor: torch.Tensor, dtype: DTypeName, wide: torch.dtype) -> torch.Tensor:
    """Element values as ``wide`` (int64 or a float accumulator)."""
    carrier = _CARRIERS.get(dtype)
    if carrier is not None:
        return (tensor.to(torch.int64) & carrier[1]).to(wide)
    return tensor.to(wide)


def _store(values: torch.Tensor, dtype: DTypeName) -> torch.Tensor:
    """Accumulator values as ``dtype`` (uint16/uint32 as int64, written through their carriers)."""
    if dtype == "bfloat16":
        return values.to(torch.float32).to(torch.bfloat16)  # through float32, as the kernels do
    if dtype == "bool":
        return values != 0
    if dtype in ("float16", "float32", "float64"):
        return values.to(getattr(torch, dtype))
    low, high = integer_range(dtype)
    rounded = torch.nan_to_num(values.round(), nan=0.0)
    above, below = rounded >= float(high), rounded <= float(low)
    inside = torch.where(above | below, torch.zeros_like(rounded), rounded).to(torch.int64)
    limits = torch.full_like(inside, high), torch.full_like(inside, low)
    return torch.where(above, limits[0], torch.where(below, limits[1], inside))


def _write(target: torch.Tensor, dtype: DTypeName, result: torch.Tensor) -> None:
    # int64 into an int16/int32 carrier keeps the low bits: the unsigned value, already in range
    _bits(target, dtype).copy_(result)


def convert_tensors(
    source: torch.Tensor,
    target: torch.Tensor,
    source_dtype: DTypeName,
    target_dtype: DTypeName,
    affine: Affine,
) -> None:
    """Write ``affine(source)`` into ``target`` (both HWC-ordered tensors of the same shape)."""
    source = _bits(source, source_dtype)
    if affine.reverse:
        source = source.flip(-1)
    path = mode(source_dtype, target_dtype, affine)
    if path is Mode.COPY:
        _bits(target, target_dtype).copy_(source)
        return
    if path is Mode.INTEGER:
        wide_int = _values(source, source_dtype, torch.int64)
        result = wide_int != 0 if target_dtype == "bool" else wide_int.clamp(*integer_range(target_dtype))
        _write(target, target_dtype, result)
        return
    wide = _ACCUMULATORS[accumulator(source_dtype, target_dtype)]
    values = _values(source, source_dtype, wide)
    if not affine.is_identity:
        scale = torch.tensor(affine.scale, dtype=wide, device=source.device)
        offset = torch.tensor(affine.offset, dtype=wide, device=source.device)
        values = values * scale + offset  # two kernels: each operation rounded once, as elsewhere
    _write(target, target_dtype, _store(values, target_dtype))


def fill_tensors(
    target: torch.Tensor, value: float, source_dtype: DTypeName, target_dtype: DTypeName
) -> None:
    """Set every element of ``target`` to ``value``, stored like a converted element."""
    wide = _ACCUMULATORS[accumulator(source_dtype, target_dtype)]
    _write(target, target_dtype, _store(torch.tensor(value, dtype=wide, device=target.device), target_dtype))


_CHW_AS_HWC = (1, 2, 0)


def hwc_tensor(operand: Operand) -> torch.Tensor:
    """A torch view of an operand in HWC order."""
    spec = operand.spec
    tensor = _torch.view(operand.ptr, spec, operand.owner)
    return tensor.permute(_CHW_AS_HWC) if spec.layout is Layout.CHW else tensor


def _on_stream(stream: int, operand: Operand) -> contextlib.AbstractContextManager[None]:
    """torch's current device and stream set to the operand's device and ``stream`` (host: nothing)."""
    device = operand.spec.device
    return stream_context(stream, device.index) if device.is_cuda else contextlib.nullcontext()


def reaches_gpu() -> bool:
    """True when this torch build has CUDA and sees a GPU."""
    return _torch.cuda_available()


class TorchExecutor:
    """torch operations, queued on the stream given (several kernels per conversion)."""

    __slots__ = ()
    name = "torch"

    def stream_for(self, device: int, /) -> tuple[int, object]:
        return _torch.current_stream(device), None  # torch never destroys its own streams

    def convert(self, source: Operand, target: Operand, affine: Affine, stream: int, /) -> None:
        with _on_stream(stream, source):
            convert_tensors(
                hwc_tensor(source), hwc_tensor(target), source.spec.dtype, target.spec.dtype, affine
            )

    def convert_replay(self, source: Operand, target: Operand, affine: Affine, /) -> None:
        return None  # nothing cheaper than convert: its cost is torch's operations

    def convert_batch(
        self,
        sources: Sequence[Operand],
        regions: Sequence[BatchItem],
        target: Operand,
        item_pitch: int,
        affine: Affine,
        pad: float,
        stream: int,
        /,
    ) -> None:
        with _on_stream(stream, target):
            convert_each(
                sources,
                regions,
                target,
                item_pitch,
                affine,
                pad,
                hwc=hwc_tensor,
                fill=fill_tensors,
                convert=convert_tensors,
            )

    def convert_frames(
        self,
        sources: Sequence[FrameSource],
        target: Operand,
        item_pitch: int,
        recipe: SampleRecipe,
        stream: int,
        /,
    ) -> None:
        with _on_stream(stream, target):
            _convert_frames(sources, target, item_pitch, recipe, hwc_tensor)

    def frames_replay(
        self, sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe, /
    ) -> None:
        return None  # nothing cheaper than convert_frames: its cost is the work itself


EXECUTOR: Final = TorchExecutor()
