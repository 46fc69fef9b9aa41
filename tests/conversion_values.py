"""Element values for conversion tests, shared by the CPU and GPU suites: half plain numbers, half
arbitrary bit patterns (NaN, infinities, subnormals and extremes), bfloat16 held as its uint16 bits."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gpuimage import DTypeName

__all__ = ["random_values", "storage"]


def storage(dtype: DTypeName) -> np.dtype[Any]:
    """How NumPy holds the dtype (bfloat16 as its uint16 bits)."""
    return np.dtype(np.uint16) if dtype == "bfloat16" else np.dtype(dtype)


def random_values(rng: np.random.Generator, dtype: DTypeName, shape: tuple[int, ...]) -> npt.NDArray[Any]:
    """Values of ``dtype`` (bfloat16 as bits) of ``shape``."""
    held = storage(dtype)
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    bits = rng.integers(0, 256, (*shape, held.itemsize), dtype=np.uint8).view(held).reshape(shape)
    if held.kind == "f" or dtype == "bfloat16":
        plain = (rng.standard_normal(shape) * 300).astype(np.float32)
        plain_bits = (
            (plain.view(np.uint32) >> 16).astype(np.uint16) if dtype == "bfloat16" else plain.astype(held)
        )
        return np.where(rng.random(shape) < 0.5, plain_bits, bits)
    return bits
