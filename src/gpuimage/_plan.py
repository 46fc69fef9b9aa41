"""Pure planning for conversions: element paths, kernel variants, access widths, batch sizes.

No GPU calls and no foreign imports: everything here is arithmetic on geometries, pointers and
numbers, tested by hypothesis on CPU (``tests/test_plan.py``). The executors (``_kernel_convert`` over
``_kernels``, ``_torch_convert`` and ``_host_convert``) all follow the paths chosen here, so they compute
the same values; the maps they apply are built in ``_affine``, the dtype facts live in ``_dtypes``.

Every conversion is one formula per element: ``out[c] = in[source_channel(c)] * scale[c] + offset[c]``
(the per-channel map, an ``Affine``), computed in the accumulator type (float32, or float64 where
either side is a 32- or 64-bit integer or float64), as a multiplication and an addition each rounded
once (no fused multiply-add, so NumPy reproduces it bit for bit). Integer targets round half to even
and saturate, NaN becoming 0; bool targets are ``x != 0`` (NaN is True, as in NumPy). When the map is
the identity the arithmetic is skipped: a same-dtype copy moves bits, an integer-to-integer cast
saturates exactly in 64-bit integers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple, cast

from ._affine import Affine
from ._dtypes import DTYPES, Accumulator, DTypeName, accumulator, is_integral
from ._errors import BoundsError, DTypeError, SpecError
from ._geometry import Geometry

__all__ = [
    "MAX_VECTOR",
    "THREAD_BYTES",
    "BatchItem",
    "Mode",
    "RunKind",
    "Variant",
    "batch_size",
    "check_same",
    "mode",
    "plan_variant",
    "ranges_overlap",
    "run_kind",
]

MAX_VECTOR = 16
"""Widest load or store a kernel thread issues, in bytes (one 128-bit access)."""
THREAD_BYTES = 64
"""Bytes (read plus written) one kernel thread aims to move; see ``_pixels_per_thread``."""


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


def mode(source: DTypeName, target: DTypeName, affine: Affine) -> Mode:
    """Which of the three element paths a conversion takes."""
    if affine.is_identity and source == target:
        return Mode.COPY
    if affine.is_identity and is_integral(source) and is_integral(target):
        return Mode.INTEGER
    return Mode.FLOAT


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
    apart. Only the pointers' residues modulo ``MAX_VECTOR`` matter (a cache may key on those).
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


def ranges_overlap(first: tuple[int, int], second: tuple[int, int]) -> bool:
    """True when the non-empty byte ranges ``(start, length)`` share a byte."""
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
