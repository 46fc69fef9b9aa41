"""The NumPy executor of conversions: host images, and the reference the GPU kernels are tested against.

``EXECUTOR`` takes operands (``_executor``); ``convert_arrays`` and ``fill_arrays`` do the arithmetic
on arrays in logical HWC order (any strides). bfloat16 travels as its uint16 bits, since NumPy has no
bfloat16. The arithmetic follows ``_plan`` exactly: accumulator dtype, one rounding per operation.
Work is done when a call returns: host executors take no stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from . import _numpy
from ._dtypes import DTypeName, accumulator, integer_range
from ._executor import Operand, convert_each
from ._host_frames import ArrayIO
from ._host_frames import convert_frames as _convert_frames
from ._layout import Layout
from ._plan import Mode, mode

if TYPE_CHECKING:
    from ._affine import Affine
    from ._plan import BatchItem
    from ._sampling import FrameSource, SampleRecipe

__all__ = ["EXECUTOR", "HostExecutor", "convert_arrays", "fill_arrays", "from_accumulator", "to_accumulator"]

Array = npt.NDArray[Any]


def to_accumulator(values: Array, dtype: DTypeName, wide: np.dtype[Any]) -> Array:
    """Element values in the accumulator dtype ``wide`` (float32 or float64)."""
    if dtype == "bfloat16":
        return (values.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(wide)
    return values.astype(wide)


def _to_bfloat16_bits(values: Array) -> Array:
    bits = values.astype(np.float32).view(np.uint32)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    quiet = (bits >> np.uint32(16)) | np.uint32(0x40)
    return np.where(nan, quiet, rounded).astype(np.uint16)


def _saturate(values: Array, dtype: DTypeName) -> Array:
    """Round half to even, clamp to the dtype's range, NaN to 0: the kernels' ``saturate_float``."""
    low, high = integer_range(dtype)
    storage = np.dtype(dtype)
    with np.errstate(invalid="ignore"):
        rounded = np.rint(values)
        nan = np.isnan(rounded)
        above = rounded >= float(high)
        below = rounded <= float(low)
        inside = np.where(nan | above | below, 0, rounded).astype(storage)
    result: Array = np.where(above, storage.type(high), np.where(below, storage.type(low), inside))
    return result.astype(storage)


def from_accumulator(values: Array, dtype: DTypeName) -> Array:
    """Accumulator values stored as ``dtype`` (bfloat16: its uint16 bits)."""
    if dtype == "bfloat16":
        return _to_bfloat16_bits(values)  # from float64 through float32, as the kernels do
    if dtype == "bool":
        nonzero: Array = values != 0
        return nonzero
    if dtype in ("float16", "float32", "float64"):
        return values.astype(dtype)
    return _saturate(values, dtype)


def convert_arrays(
    source: Array, target: Array, source_dtype: DTypeName, target_dtype: DTypeName, affine: Affine
) -> None:
    """Write ``affine(source)`` into ``target`` (both HWC-ordered arrays of the same shape)."""
    if affine.reverse:
        source = source[..., ::-1]
    path = mode(source_dtype, target_dtype, affine)
    if path is Mode.COPY:
        np.copyto(target, source)
        return
    if path is Mode.INTEGER:
        wide_int = source.astype(np.int64)
        if target_dtype == "bool":
            np.copyto(target, wide_int != 0)
        else:
            np.copyto(target, np.clip(wide_int, *integer_range(target_dtype)).astype(target.dtype))
        return
    wide = np.dtype(accumulator(source_dtype, target_dtype))
    # Overflow to infinity, NaN arithmetic and saturation are the defined results here, not warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        values = to_accumulator(source, source_dtype, wide)
        if not affine.is_identity:
            # two operations, each rounded in the accumulator dtype (the kernels run without FMA)
            values = values * np.asarray(affine.scale, dtype=wide) + np.asarray(affine.offset, dtype=wide)
        np.copyto(target, from_accumulator(values, target_dtype))


def fill_arrays(target: Array, value: float, source_dtype: DTypeName, target_dtype: DTypeName) -> None:
    """Set every element of ``target`` to ``value`` (in the accumulator, then stored like the rest)."""
    wide = np.dtype(accumulator(source_dtype, target_dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        target[...] = from_accumulator(np.asarray(value, dtype=wide), target_dtype)


_CHW_AS_HWC = (1, 2, 0)


def hwc_array(operand: Operand) -> Array:
    """A NumPy view of a host operand in HWC order (bfloat16 as its uint16 bits)."""
    spec = operand.spec
    carrier: DTypeName | None = "uint16" if spec.dtype == "bfloat16" else None
    array = _numpy.view(operand.ptr, spec, operand.owner, readonly=operand.readonly, as_dtype=carrier)
    return array.transpose(_CHW_AS_HWC) if spec.layout is Layout.CHW else array


class HostExecutor:
    """NumPy over host memory: done when a call returns."""

    __slots__ = ()
    name = "numpy"

    def stream_for(self, device: int, /) -> tuple[int, object]:
        return 0, None

    def convert(self, source: Operand, target: Operand, affine: Affine, stream: int, /) -> None:
        convert_arrays(hwc_array(source), hwc_array(target), source.spec.dtype, target.spec.dtype, affine)

    def convert_replay(self, source: Operand, target: Operand, affine: Affine, /) -> None:
        return None  # host images: the work itself is the cost

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
        convert_each(
            sources,
            regions,
            target,
            item_pitch,
            affine,
            pad,
            hwc=hwc_array,
            fill=fill_arrays,
            convert=convert_arrays,
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
        _convert_frames(sources, target, item_pitch, recipe, _ARRAY_IO)

    def frames_replay(
        self, sources: Sequence[FrameSource], target: Operand, item_pitch: int, recipe: SampleRecipe, /
    ) -> None:
        return None  # nothing cheaper than convert_frames: its cost is the work itself


_ARRAY_IO: Final = ArrayIO(hwc_array, to_accumulator, from_accumulator)
EXECUTOR: Final = HostExecutor()
