"""The torch executor of conversions, for GPUs where CuPy is missing: plain torch operations.

Slower than the kernels (several passes instead of one; see docs), but the same formula: accumulator
dtype, multiply then add, round half to even, saturate, NaN to 0. Tensors come in logical HWC order.
torch implements few operations for uint16 and uint32, so those travel as the signed integers of the
same size (their bits) and are widened to int64 by masking.
"""

from __future__ import annotations

import torch

from ._convert import Affine, Mode, accumulator, integer_range, mode
from ._dtypes import DTypeName

__all__ = ["convert", "fill"]

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


def convert(
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


def fill(target: torch.Tensor, value: float, source_dtype: DTypeName, target_dtype: DTypeName) -> None:
    """Set every element of ``target`` to ``value``, stored like a converted element."""
    wide = _ACCUMULATORS[accumulator(source_dtype, target_dtype)]
    _write(target, target_dtype, _store(torch.tensor(value, dtype=wide, device=target.device), target_dtype))
