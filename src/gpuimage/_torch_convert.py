"""The torch executor of conversions, for GPUs where CuPy is missing: plain torch operations.

Slower than the kernels (several passes instead of one; see docs), but the same formula: accumulator
dtype, multiply then add, round half to even, saturate, NaN to 0. Tensors come in logical HWC order.
"""

from __future__ import annotations

import torch

from ._convert import Affine, Mode, accumulator, integer_range, mode
from ._dtypes import DTypeName

__all__ = ["convert", "fill"]

_ACCUMULATORS = {"float32": torch.float32, "float64": torch.float64}


def _store(values: torch.Tensor, dtype: DTypeName, target: torch.dtype) -> torch.Tensor:
    if dtype == "bfloat16":
        return values.to(torch.float32).to(torch.bfloat16)  # through float32, as the kernels do
    if dtype == "bool":
        return values != 0
    if values.dtype == target or target.is_floating_point:
        return values.to(target)
    low, high = integer_range(dtype)
    rounded = torch.nan_to_num(values.round(), nan=0.0)
    above, below = rounded >= float(high), rounded <= float(low)
    inside = torch.where(above | below, torch.zeros_like(rounded), rounded).to(torch.int64)
    limits = torch.full_like(inside, high), torch.full_like(inside, low)
    return torch.where(above, limits[0], torch.where(below, limits[1], inside)).to(target)


def convert(
    source: torch.Tensor,
    target: torch.Tensor,
    source_dtype: DTypeName,
    target_dtype: DTypeName,
    affine: Affine,
) -> None:
    """Write ``affine(source)`` into ``target`` (both HWC-ordered tensors of the same shape)."""
    if affine.reverse:
        source = source.flip(-1)
    path = mode(source_dtype, target_dtype, affine)
    if path is Mode.COPY:
        target.copy_(source)
        return
    if path is Mode.INTEGER:
        wide_int = source.to(torch.int64)
        result = wide_int != 0 if target_dtype == "bool" else wide_int.clamp(*integer_range(target_dtype))
        target.copy_(result)
        return
    wide = _ACCUMULATORS[accumulator(source_dtype, target_dtype)]
    values = source.to(wide)
    if not affine.is_identity:
        scale = torch.tensor(affine.scale, dtype=wide, device=source.device)
        offset = torch.tensor(affine.offset, dtype=wide, device=source.device)
        values = values * scale + offset  # two kernels: each operation rounded once, as elsewhere
    target.copy_(_store(values, target_dtype, target.dtype))


def fill(target: torch.Tensor, value: float, source_dtype: DTypeName, target_dtype: DTypeName) -> None:
    """Set every element of ``target`` to ``value``, stored like a converted element."""
    wide = _ACCUMULATORS[accumulator(source_dtype, target_dtype)]
    target.copy_(_store(torch.tensor(value, dtype=wide, device=target.device), target_dtype, target.dtype))
