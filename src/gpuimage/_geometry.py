"""Pure stride, pitch, extent and bounds arithmetic. No GPU calls, no foreign libraries.

Every stride and pitch here is in BYTES. An image has three of them, whatever its layout:

- ``row_pitch``: from one row to the next (``y`` + 1),
- ``pixel_stride``: from one pixel to the next in a row (``x`` + 1),
- ``channel_stride``: from one channel to the next (``c`` + 1); for CHW this is the plane pitch.

A packed HWC image has ``(row_pitch, pixel_stride, channel_stride) = (W*C*s, C*s, s)``; a packed
CHW image has ``(W*s, s, H*W*s)``, for an item size ``s``. Permuted views (a CHW view of HWC memory)
and ROIs simply carry other values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from ._errors import BoundsError, LayoutError, PitchError, SpecError, StrideError
from ._layout import Layout

__all__ = [
    "MAX_EXTENT",
    "Geometry",
    "byte_extent",
    "check_geometry",
    "check_within",
    "crop_offset",
    "geometry_from_strided",
    "layout_shape",
    "layout_strides",
    "packed_geometry",
]

MAX_EXTENT = 2**63
"""Byte extents must stay below this: DLPack, torch and CUDA use signed 64-bit sizes."""


class Geometry(NamedTuple):
    """Sizes (in elements) and strides (in bytes) of one image, independent of layout order."""

    height: int
    width: int
    channels: int
    row_pitch: int
    pixel_stride: int
    channel_stride: int


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def packed_geometry(
    layout: Layout, height: int, width: int, channels: int, itemsize: int, *, row_alignment: int = 1
) -> Geometry:
    """The geometry of a packed image whose rows start every ``row_alignment`` bytes.

    ``row_alignment`` pads each row as ``cudaMallocPitch`` would (256 bytes, say); pitches are
    rounded up to a multiple of both it and the item size. For CHW, each plane holds ``height``
    padded rows.
    """
    if type(row_alignment) is not int or row_alignment <= 0:
        raise PitchError(
            f"row_alignment: expected a positive int of bytes, got row_alignment={row_alignment!r}."
        )
    row_alignment = math.lcm(row_alignment, itemsize)
    if layout is Layout.HWC:
        row_pitch = _round_up(width * channels * itemsize, row_alignment)
        return Geometry(height, width, channels, row_pitch, channels * itemsize, itemsize)
    row_pitch = _round_up(width * itemsize, row_alignment)
    return Geometry(height, width, channels, row_pitch, itemsize, row_pitch * height)


def layout_shape(layout: Layout, height: int, width: int, channels: int) -> tuple[int, int, int]:
    """The shape in layout order: ``(H, W, C)`` or ``(C, H, W)``."""
    return (height, width, channels) if layout is Layout.HWC else (channels, height, width)


def layout_strides(
    layout: Layout, row_pitch: int, pixel_stride: int, channel_stride: int
) -> tuple[int, int, int]:
    """The strides in bytes, in layout order: ``(row, pixel, channel)`` or ``(channel, row, pixel)``."""
    if layout is Layout.HWC:
        return (row_pitch, pixel_stride, channel_stride)
    return (channel_stride, row_pitch, pixel_stride)


def byte_extent(sizes: Sequence[int], strides: Sequence[int], itemsize: int) -> int:
    """Bytes from the first element to one past the last one (non-negative strides)."""
    return sum((size - 1) * stride for size, stride in zip(sizes, strides, strict=True)) + itemsize


_STRIDE_NAMES = ("row_pitch", "pixel_stride", "channel_stride")
_UNIT_NAMES = ("rows", "pixels", "channels")


def check_geometry(
    geometry: Geometry, itemsize: int, *, where: str = "ImageSpec", layout: Layout | None = None
) -> None:
    """Raise ``SpecError``/``PitchError`` unless the geometry describes distinct, addressable elements.

    Sizes must be positive; strides positive multiples of the item size below 2**63 (on every
    dimension, size 1 included); and, ignoring dimensions of size 1, each stride must step over
    everything the smaller strides span (so that no two elements share a byte). The extent must stay
    below 2**63 bytes. A stride off the item size is refused with its smallest valid value, which
    spans the dimensions it steps over in ``layout``'s order (when known).
    """
    if _is_plainly_valid(geometry, itemsize):
        return
    height, width, channels, *strides = geometry
    for name, size in (("height", height), ("width", width), ("channels", channels)):
        if type(size) is not int or size <= 0:
            raise SpecError(f"{where}: expected a positive int {name}, got {name}={size!r}.")
    for name, stride, size in zip(_STRIDE_NAMES, strides, (height, width, channels), strict=True):
        if stride == 0 and size > 1:
            smallest, spanned = _smallest_stride(name, geometry, itemsize, layout)
            raise PitchError(
                f"{where}: {name}=0 makes all {size} {_UNIT_NAMES[_STRIDE_NAMES.index(name)]} share one "
                "address (a broadcast or expanded view), so they would overlap. Make a copy in the "
                f"source library first; the smallest valid {name} here is {smallest} bytes (the "
                f"{spanned} it steps over)."
            )
        if type(stride) is not int or stride <= 0:
            raise PitchError(f"{where}: expected a positive int {name} in bytes, got {name}={stride!r}.")
        if stride >= MAX_EXTENT:
            # Even on a dimension of size 1 (where it moves nothing): DLPack, torch and NumPy store
            # strides as int64, so a view would overflow or wrap it.
            raise PitchError(
                f"{where}: expected {name} below 2**63 bytes (strides are int64 in DLPack, torch and "
                f"NumPy), got {name}={stride}. Use a {name} that fits int64; for a dimension of size 1 "
                "any multiple of the item size will do."
            )
        if stride % itemsize:
            smallest, spanned = _smallest_stride(name, geometry, itemsize, layout)
            raise PitchError(
                f"{where}: {name}={stride} bytes is not a multiple of the item size ({itemsize} bytes); "
                f"every element must start on an item boundary. Use a {name} of at least {smallest} bytes "
                f"(the smallest multiple of {itemsize} that is at least {stride} and spans the {spanned} "
                "it steps over)."
            )
    dims = sorted(
        (stride, size, index)
        for index, (size, stride) in enumerate(zip((height, width, channels), strides, strict=True))
        if size > 1
    )
    span = itemsize
    inner: list[str] = []
    for stride, size, index in dims:
        if stride < span:
            raise PitchError(
                f"{where}: {_STRIDE_NAMES[index]}={stride} bytes is smaller than the {span} bytes spanned by "
                f"the {' and '.join(inner) or 'element'} it steps over, so {_UNIT_NAMES[index]} would "
                f"overlap. Use a {_STRIDE_NAMES[index]} of at least {span} bytes."
            )
        span += (size - 1) * stride
        inner.append(f"{size} {_UNIT_NAMES[index]}")
    extent = byte_extent((height, width, channels), strides, itemsize)
    if extent >= MAX_EXTENT:
        raise SpecError(
            f"{where}: the image spans {extent} bytes, beyond the 2**63-byte limit of CUDA, DLPack and torch."
        )


# interleaved (HWC): a row steps over pixels and channels, a pixel over channels;
# planar (CHW): a row steps over pixels, a plane over rows and pixels
_STEPS_OVER: dict[bool, tuple[tuple[int, ...], ...]] = {True: ((1, 2), (2,), ()), False: ((1,), (), (0, 1))}
"""Interleaved or not -> for each stride (row, pixel, channel), the dimensions it steps over (0 rows,
1 pixels, 2 channels)."""


def _smallest_stride(name: str, geometry: Geometry, itemsize: int, layout: Layout | None) -> tuple[int, str]:
    """The smallest valid value of stride ``name``: a multiple of ``itemsize``, at least the given
    stride and the bytes of the dimensions it steps over in ``layout``'s order (unknown: planar
    where the channel stride is at least the pixel stride); and those dimensions, for people."""
    index = _STRIDE_NAMES.index(name)
    sizes, strides = geometry[:3], geometry[3:]
    pixel, channel = strides[1], strides[2]
    planar = type(pixel) is int and type(channel) is int and channel >= pixel
    if layout is not None:
        planar = layout is Layout.CHW
    inner = sorted(
        (strides[position], sizes[position], position)
        for position in _STEPS_OVER[not planar][index]
        if sizes[position] > 1 and type(strides[position]) is int and strides[position] > 0
    )
    span = itemsize + sum((size - 1) * stride for stride, size, _ in inner)
    named = " and ".join(f"{size} {_UNIT_NAMES[position]}" for _, size, position in inner)
    return _round_up(max(strides[index], span), itemsize), named or "element"


def _is_plainly_valid(geometry: Geometry, itemsize: int) -> bool:
    """Fast path for interleaved (HWC-like) and planar (CHW-like) memory with padded rows.

    Sufficient, not necessary: anything else (permuted views, odd strides) takes the general check.
    """
    height, width, channels, row_pitch, pixel_stride, channel_stride = geometry
    if not all(type(value) is int and value > 0 for value in geometry) or row_pitch % itemsize:
        return False
    if max(row_pitch, pixel_stride, channel_stride) >= MAX_EXTENT:
        return False  # a huge stride on a size-1 dimension leaves the extent small: see check_geometry
    if channel_stride == itemsize and pixel_stride == channels * itemsize:
        plane = row_pitch >= width * pixel_stride
        extent = (height - 1) * row_pitch + width * pixel_stride
    elif pixel_stride == itemsize and channel_stride % itemsize == 0:
        plane_bytes = (height - 1) * row_pitch + width * itemsize
        plane = row_pitch >= width * itemsize and channel_stride >= plane_bytes
        extent = (channels - 1) * channel_stride + plane_bytes
    else:
        return False
    return plane and extent < MAX_EXTENT


def geometry_from_strided(
    shape: Sequence[int],
    strides: Sequence[int],
    layout: Layout | None,
    itemsize: int,
    *,
    where: str,
) -> tuple[Layout, Geometry]:
    """Read an image's geometry off an array's shape and byte strides.

    A 2-D ``(H, W)`` array is a one-channel image, and takes ``layout`` (HWC when None). A 3-D array
    needs ``layout``: gpuimage never guesses whether ``(3, 480, 640)`` is CHW or a 3-row HWC image.
    Strides of dimensions of size 1 carry no information; unusable ones are replaced by packed
    values. The result is checked with ``check_geometry``.
    """
    if len(shape) != len(strides):
        raise StrideError(f"{where}: shape {tuple(shape)} and strides {tuple(strides)} differ in length.")
    if len(shape) == 2:
        layout = Layout.HWC if layout is None else layout
        height, width = shape
        row_pitch, pixel_stride = strides
        channels, channel_stride = 1, itemsize
        if layout is Layout.CHW:
            channel_stride = max(row_pitch * height, itemsize)
    elif len(shape) == 3:
        if layout is None:
            raise LayoutError(
                f"{where}: a 3-D array of shape {tuple(shape)} can be HWC or CHW; pass layout='HWC' or "
                "layout='CHW' (gpuimage never guesses a layout)."
            )
        if layout is Layout.HWC:
            height, width, channels = shape
            row_pitch, pixel_stride, channel_stride = strides
        else:
            channels, height, width = shape
            channel_stride, row_pitch, pixel_stride = strides
    else:
        raise LayoutError(
            f"{where}: expected a 2-D (H, W) or 3-D image array, got shape {tuple(shape)}. "
            "Batches and multi-plane formats are not single images; index one image first."
        )
    for name, stride in zip(_STRIDE_NAMES, (row_pitch, pixel_stride, channel_stride), strict=True):
        if stride < 0:
            raise StrideError(
                f"{where}: {name}={stride} is negative (a flipped view); no GPU image library can take "
                "negative strides. Make a copy in the source library first."
            )
    packed = packed_geometry(layout, height, width, channels, itemsize)
    geometry = Geometry(
        height,
        width,
        channels,
        _usable(row_pitch, height, packed.row_pitch, itemsize),
        _usable(pixel_stride, width, packed.pixel_stride, itemsize),
        _usable(channel_stride, channels, packed.channel_stride, itemsize),
    )
    check_geometry(geometry, itemsize, where=where, layout=layout)
    return layout, geometry


def _usable(stride: int, size: int, packed: int, itemsize: int) -> int:
    """Keep a stride unless its dimension has size 1 and the stride is not a positive item multiple."""
    if size == 1 and (stride <= 0 or stride % itemsize):
        return packed
    return stride


def crop_offset(geometry: Geometry, x: int, y: int, width: int, height: int, *, where: str = "crop()") -> int:
    """The byte offset of the crop's first element; raises ``BoundsError`` if it leaves the image."""
    for name, value in (("x", x), ("y", y), ("width", width), ("height", height)):
        if type(value) is not int:
            raise BoundsError(f"{where}: expected an int {name}, got {name}={value!r}.")
    if x < 0 or y < 0 or width <= 0 or height <= 0:
        raise BoundsError(
            f"{where}: expected x, y >= 0 and width, height > 0, "
            f"got x={x}, y={y}, width={width}, height={height}."
        )
    if x + width > geometry.width or y + height > geometry.height:
        raise BoundsError(
            f"{where}: the rectangle x={x}, y={y}, width={width}, height={height} reaches outside the "
            f"{geometry.width}x{geometry.height} image (x + width <= {geometry.width} and "
            f"y + height <= {geometry.height} are required)."
        )
    return y * geometry.row_pitch + x * geometry.pixel_stride


def check_within(start: int, extent: int, base: int, size: int, *, where: str) -> None:
    """Raise ``BoundsError`` unless ``[start, start + extent)`` lies inside ``[base, base + size)``."""
    if start < base or start + extent > base + size:
        raise BoundsError(
            f"{where}: the image spans bytes [{start:#x}, {start + extent:#x}) but its source allocation "
            f"is [{base:#x}, {base + size:#x}); the view would point outside the memory it came from."
        )
