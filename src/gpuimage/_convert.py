"""Pure planning for conversions: per-channel affine maps, kernel variants, alignment, batch tables.

No GPU calls and no foreign imports: everything here is arithmetic on specs, pointers and numbers,
tested by hypothesis on CPU. The executors (``_kernels`` on CuPy, ``_torch_convert``, and
``_host_convert`` on NumPy) all follow the plans made here, so they compute the same values.

Every conversion is one formula per element: ``out[c] = in[source_channel(c)] * scale[c] + offset[c]``,
computed in the accumulator type (float32, or float64 where either side is a 32- or 64-bit integer or
float64), as a multiplication and an addition each rounded once (no fused multiply-add, so NumPy
reproduces it bit for bit). Integer targets round half to even and saturate, NaN becoming 0; bool
targets are ``x != 0`` (NaN is True, as in NumPy). When the
map is the identity the arithmetic is skipped: a same-dtype copy moves bits, an integer-to-integer
cast saturates exactly in 64-bit integers.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Literal, NamedTuple, cast

from ._dtypes import DTYPES, DTypeName

if TYPE_CHECKING:
    from ._conversions import ChannelValues
from ._errors import BoundsError, DTypeError, SpecError
from ._geometry import Geometry

__all__ = [
    "Affine",
    "BatchItem",
    "Mode",
    "RunKind",
    "Variant",
    "accumulator",
    "batch_size",
    "check_same",
    "denormalize_affine",
    "finite_number",
    "identity_affine",
    "input_scale",
    "integer_range",
    "is_integral",
    "mode",
    "normalize_affine",
    "plan_single",
    "plan_variant",
    "ranges_overlap",
    "run_kind",
    "scaled_affine",
]

Accumulator = Literal["float32", "float64"]

_WIDE = frozenset({"float64", "int32", "uint32", "int64"})  # values float32 cannot hold exactly
_INTEGRAL = frozenset({"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64"})
MAX_VECTOR = 16
"""Widest load or store a kernel thread issues, in bytes (one 128-bit access)."""
THREAD_BYTES = 64
"""Bytes (read plus written) one kernel thread aims to move; see ``_pixels_per_thread``."""


class Affine(NamedTuple):
    """Per output channel ``scale`` and ``offset``; ``reverse`` reads channel ``C-1-c`` for channel c."""

    scale: tuple[float, ...]
    offset: tuple[float, ...]
    reverse: bool

    @property
    def is_identity(self) -> bool:
        """True when no arithmetic is needed (channels may still be reversed)."""
        return all(value == 1.0 for value in self.scale) and all(value == 0.0 for value in self.offset)


class Mode(IntEnum):
    """How a kernel turns a source element into a target element (compiled in as ``MODE``)."""

    COPY = 0  # same dtype, identity map: the bits move unchanged
    INTEGER = 1  # integers to integers, identity map: exact 64-bit saturation
    FLOAT = 2  # everything else: through the accumulator


class RunKind(IntEnum):
    """How one thread's pixels lie in memory (compiled in as ``SRC_KIND``/``DST_KIND``)."""

    GENERIC = 0  # any strides: one element at a time
    INTERLEAVED = 1  # pixels * channels consecutive elements (packed HWC rows)
    PLANAR = 2  # per channel, pixels consecutive elements (CHW planes)


def is_integral(dtype: DTypeName) -> bool:
    """True for bool and the integer dtypes."""
    return dtype in _INTEGRAL


def integer_range(dtype: DTypeName) -> tuple[int, int]:
    """The smallest and largest value of an integral dtype (bool: 0 and 1)."""
    if dtype == "bool":
        return 0, 1
    bits = DTYPES[dtype].itemsize * 8
    if dtype.startswith("u"):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def accumulator(source: DTypeName, target: DTypeName) -> Accumulator:
    """The float type the arithmetic runs in: float64 where float32 would lose either side's values."""
    return "float64" if source in _WIDE or target in _WIDE else "float32"


def mode(source: DTypeName, target: DTypeName, affine: Affine) -> Mode:
    """Which of the three element paths a conversion takes."""
    if affine.is_identity and source == target:
        return Mode.COPY
    if affine.is_identity and is_integral(source) and is_integral(target):
        return Mode.INTEGER
    return Mode.FLOAT


# -- affine maps ------------------------------------------------------------------------------------


def finite_number(value: object, name: str, where: str) -> float:
    """``value`` as a float, if it is a finite real number (NumPy scalars too; bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise SpecError(f"{where}: expected a finite number for {name}, got {name}={value!r}.")
    return float(value)


def _per_channel(values: ChannelValues, channels: int, name: str, where: str) -> tuple[float, ...]:
    """One finite value per channel: a single number (or a 1-sequence) applies to every channel."""
    # a sequence, a NumPy array, or one number (NumPy scalars included)
    items = [values] if isinstance(values, numbers.Real) else list(cast("Iterable[object]", values))
    if len(items) not in (1, channels):
        raise SpecError(
            f"{where}: expected 1 or {channels} values for {name} (one per channel), got {len(items)}."
        )
    parsed = tuple(finite_number(item, name, where) for item in items)
    return parsed * channels if len(parsed) == 1 else parsed


def identity_affine(channels: int, *, reverse: bool = False) -> Affine:
    """The map that changes nothing but (optionally) the channel order."""
    return Affine((1.0,) * channels, (0.0,) * channels, reverse)


def scaled_affine(channels: int, scale: float, offset: float, *, where: str) -> Affine:
    """``astype``'s map: the same ``x * scale + offset`` for every channel."""
    factor, shift = finite_number(scale, "scale", where), finite_number(offset, "offset", where)
    return Affine((factor,) * channels, (shift,) * channels, False)


def input_scale(dtype: DTypeName, scale: float | None, *, where: str) -> float:
    """The factor that brings raw values to the units of ``mean`` and ``std``: ``scale`` when given,
    else 1/255 for uint8 and 1/65535 for uint16 (torchvision's [0, 1] convention), else 1."""
    if scale is not None:
        value = finite_number(scale, "scale", where)
        if value == 0.0:
            raise SpecError(f"{where}: expected a non-zero scale, got scale={scale!r}.")
        return value
    if dtype in ("uint8", "uint16"):
        return 1.0 / integer_range(dtype)[1]
    return 1.0


def _check_shared_beyond_four(affine: Affine, where: str) -> Affine:
    """Kernels carry four per-channel maps; wider images take one map for every channel. And the
    map's factors must be finite (a std of 1e-320 would make every value inf or NaN)."""
    if not all(math.isfinite(value) for value in (*affine.scale, *affine.offset)):
        raise SpecError(
            f"{where}: mean, std and scale give a non-finite map (scale={affine.scale}, "
            f"offset={affine.offset}); std is too small or mean too large."
        )
    if len(affine.scale) > 4 and len(set(zip(affine.scale, affine.offset, strict=True))) > 1:
        raise SpecError(
            f"{where}: per-channel mean and std are supported for 1 to 4 channels, got "
            f"{len(affine.scale)} channels with different values; pass one mean and one std."
        )
    return affine


def _mean_and_std(
    channels: int, mean: ChannelValues, std: ChannelValues, where: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """One finite mean and one finite, non-zero std per channel."""
    means = _per_channel(mean, channels, "mean", where)
    stds = _per_channel(std, channels, "std", where)
    if any(value == 0.0 for value in stds):
        raise SpecError(f"{where}: expected a non-zero std for every channel, got std={stds}.")
    return means, stds


def normalize_affine(
    channels: int,
    mean: ChannelValues,
    std: ChannelValues,
    scale: float,
    *,
    reverse: bool,
    where: str,
) -> Affine:
    """``(x * scale - mean[c]) / std[c]`` as one multiply-add; ``mean`` and ``std`` are in the output's
    channel order (the model's, RGB when ``reverse`` turns BGR input around)."""
    means, stds = _mean_and_std(channels, mean, std, where)
    # The factors are computed in float64 once; executors round them to the accumulator type.
    factors = tuple(scale / deviation for deviation in stds)
    shifts = tuple(-average / deviation for average, deviation in zip(means, stds, strict=True))
    return _check_shared_beyond_four(Affine(factors, shifts, reverse), where)


def denormalize_affine(
    channels: int,
    mean: ChannelValues,
    std: ChannelValues,
    scale: float,
    *,
    reverse: bool,
    where: str,
) -> Affine:
    """The inverse of ``normalize_affine``: ``(x * std + mean) / scale``; ``mean`` and ``std`` are in the
    input's channel order, so ``reverse=True`` undoes ``normalize(..., reverse_channels=True)``."""
    means, stds = _mean_and_std(channels, mean, std, where)
    source = [channels - 1 - channel if reverse else channel for channel in range(channels)]
    factors = tuple(stds[index] / scale for index in source)
    shifts = tuple(means[index] / scale for index in source)
    return _check_shared_beyond_four(Affine(factors, shifts, reverse), where)


# -- kernel variants ---------------------------------------------------------------------------------


def run_kind(geometry: Geometry, itemsize: int) -> RunKind:
    """Whether a row's pixels are packed interleaved, packed per plane, or neither."""
    if geometry.pixel_stride == geometry.channels * itemsize and (
        geometry.channels == 1 or geometry.channel_stride == itemsize
    ):
        return RunKind.INTERLEAVED
    if geometry.pixel_stride == itemsize:
        return RunKind.PLANAR
    return RunKind.GENERIC


def _pixels_per_thread(source_itemsize: int, target_itemsize: int, channels: int) -> int:
    """Pixels one thread moves: the most (a power of two, up to 32) whose bytes read plus written
    stay within ``THREAD_BYTES``. Measured on an H100, smaller runs keep more loads in flight across
    threads than fewer, longer ones (a 4K float32 copy ran at 2.9 TB/s with 24 bytes a thread and
    1.4 TB/s with 384)."""
    per_pixel = channels * (source_itemsize + target_itemsize)
    pixels = 1
    while pixels < 32 and 2 * pixels * per_pixel <= THREAD_BYTES:
        pixels *= 2
    return pixels


def _vector_bytes(kind: RunKind, run_bytes: int, addresses: Sequence[int]) -> int:
    """The widest access (a power of two up to 16 bytes) that every run of every row starts aligned
    to: it divides each base pointer and pitch in ``addresses`` and the run's length in bytes."""
    if kind is RunKind.GENERIC:
        return 1
    common = math.gcd(run_bytes, *addresses)
    width = MAX_VECTOR
    while common % width:
        width //= 2
    return width


class Variant(NamedTuple):
    """Everything a conversion kernel is specialised on; one compiled kernel per distinct value."""

    source_dtype: DTypeName
    target_dtype: DTypeName
    channels: int
    pixels: int  # per thread
    source_kind: RunKind
    target_kind: RunKind
    source_vector: int  # bytes per load in the vectorised path
    target_vector: int  # bytes per store in the vectorised path
    mode: Mode
    arithmetic: bool  # False: the identity map, skip the multiply-add
    reverse: bool
    accumulator: Accumulator


def _addresses(ptr: int, geometry: Geometry, kind: RunKind) -> list[int]:
    addresses = [ptr, geometry.row_pitch]
    if kind is RunKind.PLANAR:
        addresses.append(geometry.channel_stride)
    return addresses


def plan_variant(
    source_dtype: DTypeName,
    target_dtype: DTypeName,
    sources: Sequence[tuple[int, Geometry]],
    target: tuple[int, Geometry],
    affine: Affine,
    *,
    item_pitch: int = 0,
) -> Variant:
    """The kernel for converting every ``(ptr, geometry)`` in ``sources`` into ``target``'s layout.

    With several sources (a batch), their run kind must agree to be vectorised, and the access width
    is the one they all allow; the target stands for every item's destination, ``item_pitch`` bytes
    apart.
    """
    source_size, target_size = DTYPES[source_dtype].itemsize, DTYPES[target_dtype].itemsize
    channels = target[1].channels
    pixels = _pixels_per_thread(source_size, target_size, channels)
    kinds = {run_kind(geometry, source_size) for _, geometry in sources}
    source_kind = kinds.pop() if len(kinds) == 1 else RunKind.GENERIC
    target_kind = run_kind(target[1], target_size)

    def run_bytes(kind: RunKind, itemsize: int) -> int:
        return pixels * itemsize * (channels if kind is RunKind.INTERLEAVED else 1)

    source_addresses = [
        value for ptr, geometry in sources for value in _addresses(ptr, geometry, source_kind)
    ]
    return Variant(
        source_dtype,
        target_dtype,
        channels,
        pixels,
        source_kind,
        target_kind,
        _vector_bytes(source_kind, run_bytes(source_kind, source_size), source_addresses),
        _vector_bytes(
            target_kind,
            run_bytes(target_kind, target_size),
            [*_addresses(*target, target_kind), item_pitch],
        ),
        mode(source_dtype, target_dtype, affine),
        not affine.is_identity,
        affine.reverse,
        accumulator(source_dtype, target_dtype),
    )


@functools.lru_cache(maxsize=512)
def plan_single(
    source_dtype: DTypeName,
    target_dtype: DTypeName,
    source: tuple[int, Geometry],
    target: tuple[int, Geometry],
    affine: Affine,
) -> Variant:
    """``plan_variant`` for one image, memoized (a conversion's hot path): pass pointers modulo
    ``MAX_VECTOR``, all that the access widths depend on."""
    return plan_variant(source_dtype, target_dtype, [source], target, affine)


def ranges_overlap(first: tuple[int, int], second: tuple[int, int]) -> bool:
    """True when the byte ranges ``(start, length)`` share a byte."""
    return first[0] < second[0] + second[1] and second[0] < first[0] + first[1]


# -- batches -----------------------------------------------------------------------------------------


class BatchItem(NamedTuple):
    """One image of a batch as the kernel reads it: region pointer, byte strides, region size."""

    ptr: int
    row_pitch: int
    pixel_stride: int
    channel_stride: int
    height: int
    width: int


def batch_size(
    regions: Sequence[tuple[int, int]], size: tuple[int, int] | None, *, where: str
) -> tuple[int, int]:
    """The (height, width) of a batch: ``size`` when given (every region must fit), else the
    largest region's height and width."""
    if not regions:
        raise SpecError(f"{where}: expected at least one image, got an empty sequence.")
    tallest = max(height for height, _ in regions)
    widest = max(width for _, width in regions)
    if size is None:
        return tallest, widest
    if (
        not isinstance(cast(object, size), tuple)
        or len(size) != 2
        or not all(type(value) is int and value > 0 for value in size)
    ):
        raise SpecError(f"{where}: expected size=(height, width) of positive ints, got size={size!r}.")
    if tallest > size[0] or widest > size[1]:
        raise BoundsError(
            f"{where}: a region of {tallest}x{widest} (height x width) does not fit size={size}; "
            "crop smaller regions or pass a larger size (resizing is not done here)."
        )
    return size


def check_same(values: Sequence[object], name: str, *, where: str) -> None:
    """Raise when the images of a batch disagree on ``name`` (dtype or channels)."""
    if len(set(values)) > 1:
        error = DTypeError if name == "dtype" else SpecError
        raise error(
            f"{where}: every image of a batch needs the same {name}, got {sorted(map(str, set(values)))}."
        )
