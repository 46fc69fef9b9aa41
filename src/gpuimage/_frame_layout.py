"""Where a frame's planes lie in one allocation: the plane arithmetic of NVDEC, NvBufSurface and
``cudaMallocPitch`` frames, validated as strictly as ``ImageSpec``. Pure: no GPU, no foreign library.

Sizes are in elements; offsets, pitches and extents in BYTES, counted from the frame's pointer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple, cast

from ._dtypes import DTypeName
from ._errors import BoundsError, PitchError, SpecError
from ._formats import FORMATS, FormatInfo, PixelFormat, PixelFormatLike, check_frame_size, parse_pixel_format
from ._geometry import MAX_EXTENT

__all__ = ["FrameLayout", "PlaneLayout", "frame_layout"]


class PlaneLayout(NamedTuple):
    """Where one plane lies: ``offset`` and ``row_pitch`` in bytes, sizes in elements."""

    offset: int
    """Bytes from the frame's pointer to the plane's first element."""
    row_pitch: int
    """Bytes from one row of the plane to the next."""
    height: int
    width: int
    channels: int
    dtype: DTypeName

    @property
    def nbytes(self) -> int:
        """Bytes from the plane's first element to one past its last (the last row has no padding)."""
        return (self.height - 1) * self.row_pitch + self.width * self.channels * _ITEMSIZE[self.dtype]


class FrameLayout(NamedTuple):
    """A frame's planes in one allocation, and ``nbytes``, the extent from the pointer to the end."""

    format: PixelFormat
    width: int
    height: int
    planes: tuple[PlaneLayout, ...]
    nbytes: int
    """Bytes from the frame's pointer to one past the last byte of any plane (the least it needs)."""


_ITEMSIZE: dict[str, int] = {"uint8": 1, "uint16": 2}


def frame_layout(
    format: PixelFormatLike,
    width: int,
    height: int,
    *,
    pitch: int | Sequence[int] | None = None,
    plane_offsets: Sequence[int] | None = None,
    aligned_height: int | None = None,
    row_alignment: int = 1,
) -> FrameLayout:
    """Where each plane of a frame lies in one allocation, as NVDEC, NvBufSurface and ``cudaMallocPitch`` do.

    Parameters:
        format: the pixel format.
        width, height: the frame's size in pixels (even where the format subsamples, see
            ``plane_shapes``).
        pitch: bytes per row. One int is the first plane's pitch; the other planes take the pitch
            that one pitched allocation of all rows gives them: the same for planes with rows as
            long as the first plane's (NV12's UV, YUV444's U and V), half of it for I420's U and V.
            A sequence gives every plane's pitch. None: packed rows rounded up to ``row_alignment``.
        plane_offsets: each plane's byte offset from the pointer. None: the planes follow each other,
            plane 0 at 0 and each next one after ``aligned_height`` rows of luma (NV12's UV at
            ``pitch * aligned_height``; I420's V at ``pitch * aligned_height + pitch / 2 *
            aligned_height / 2``).
        aligned_height: the luma rows allocated per plane (the decoder's surface height, at least
            ``height``; even where the format subsamples vertically). None: ``height``.
        row_alignment: with ``pitch=None``, the multiple of bytes each luma row is padded to.

    Returns:
        The format, the sizes, one ``PlaneLayout`` per plane and the extent ``nbytes``.

    Raises:
        SpecError: an unknown format, bad sizes (see ``plane_shapes``), a bad ``aligned_height``,
            ``aligned_height`` together with ``plane_offsets``, a wrong number of pitches or offsets,
            planes that overlap, or an extent of 2**63 bytes or more.
        PitchError: a pitch that is not a positive int, not a multiple of the element size, or
            shorter than the plane's row; one pitch that does not divide evenly into a plane's; a
            bad ``row_alignment``, or one given together with ``pitch``.
        BoundsError: a negative plane offset.
    """
    key = _exact_key(format, width, height, pitch, plane_offsets, aligned_height, row_alignment)
    known = None if key is None else _layouts.get(key)
    if known is not None:  # a decoder loop wraps every frame with the same arguments
        return known
    where = "frame_layout()"
    info = FORMATS[parse_pixel_format(format, where=where)]
    check_frame_size(info, width, height, where)
    shapes = [(height // p.subsample_y, width // p.subsample_x, p.channels) for p in info.planes]
    row_bytes = [w * c * info.itemsize for _, w, c in shapes]
    pitches = _pitches(info, row_bytes, pitch, row_alignment, where)
    offsets = _offsets(info, pitches, plane_offsets, aligned_height, height, where)
    planes = tuple(
        PlaneLayout(offset, row_pitch, h, w, c, info.dtype)
        for offset, row_pitch, (h, w, c) in zip(offsets, pitches, shapes, strict=True)
    )
    spans = sorted((plane.offset, plane.offset + plane.nbytes, index) for index, plane in enumerate(planes))
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            low, high = sorted((first, second))
            raise SpecError(
                f"{where}: expected planes that do not overlap, got plane {low} at bytes "
                f"[{offsets[low]}, {offsets[low] + planes[low].nbytes}) and plane {high} at "
                f"[{offsets[high]}, {offsets[high] + planes[high].nbytes}) of a {info.format.value} frame. "
                "Give offsets at least a plane's extent apart (see FrameLayout.planes[i].nbytes)."
            )
    nbytes = max(end for _, end, _ in spans)
    if nbytes >= MAX_EXTENT:
        raise SpecError(
            f"{where}: expected a frame below 2**63 bytes (CUDA, DLPack and torch sizes are int64), "
            f"got nbytes={nbytes}. Check the pitch and the offsets."
        )
    layout = FrameLayout(info.format, width, height, planes, nbytes)
    if key is not None:
        if len(_layouts) >= _LAYOUTS_KEPT:
            _layouts.clear()
        _layouts[key] = layout
    return layout


_LAYOUTS_KEPT = 256
_layouts: dict[tuple[object, ...], FrameLayout] = {}
"""Checked layouts by their exactly typed arguments (a layout is an immutable value)."""


def _exact_key(
    format: object,
    width: object,
    height: object,
    pitch: object,
    plane_offsets: object,
    aligned_height: object,
    row_alignment: object,
) -> tuple[object, ...] | None:
    """``frame_layout``'s arguments as a key where each is exactly what the checks accept (an int, not
    a bool or a float that hashes alike; a sequence of ints as a tuple); None: check them in full."""
    if type(format) is not str and type(format) is not PixelFormat:
        return None
    sizes = (width, height, row_alignment)
    if {*map(type, sizes)} != _INT or (aligned_height is not None and type(aligned_height) is not int):
        return None
    given: list[object] = []
    for value in (pitch, plane_offsets):
        if value is None or type(value) is int:
            given.append(value)
        elif type(value) is tuple or type(value) is list:
            values = cast("Sequence[object]", value)
            if not {*map(type, values)} <= _INT:
                return None
            given.append(("sequence", *values))  # not an int pitch: a sequence of one is per plane
        else:
            return None
    return (format, *sizes, aligned_height, *given)


_INT = {int}


def _pitches(
    info: FormatInfo,
    row_bytes: list[int],
    pitch: int | Sequence[int] | None,
    row_alignment: int,
    where: str,
) -> list[int]:
    """Every plane's pitch (bytes), validated: at least its row, a multiple of the element size."""
    if type(row_alignment) is not int or row_alignment <= 0:
        raise PitchError(
            f"{where}: expected a positive int row_alignment in bytes, got row_alignment={row_alignment!r}."
        )
    if pitch is None:
        multiple = math.lcm(row_alignment, info.itemsize)
        pitch = -(-row_bytes[0] // multiple) * multiple
    elif row_alignment != 1:
        raise PitchError(
            f"{where}: expected pitch or row_alignment, got both (pitch={pitch!r}, "
            f"row_alignment={row_alignment}). row_alignment only pads a pitch left as None: drop one."
        )
    pitches: list[int]
    if isinstance(pitch, Sequence):
        pitches = list(pitch)
        if len(pitches) != len(row_bytes):
            raise SpecError(
                f"{where}: expected {len(row_bytes)} pitches (one per {info.format.value} plane), got "
                f"pitch={pitch!r}. Pass one int for the first plane, or one per plane."
            )
    else:
        _check_pitch(pitch, row_bytes[0], info.itemsize, "pitch", where)
        pitches = []
        for plane_bytes in row_bytes:
            if (pitch * plane_bytes) % row_bytes[0]:
                raise PitchError(
                    f"{where}: expected a pitch that halves into whole {info.format.value} chroma "
                    f"pitches, got pitch={pitch}. Pass one pitch per plane (pitch=(luma, u, v))."
                )
            pitches.append(pitch * plane_bytes // row_bytes[0])
    for index, (plane_pitch, plane_bytes) in enumerate(zip(pitches, row_bytes, strict=True)):
        _check_pitch(plane_pitch, plane_bytes, info.itemsize, f"pitch[{index}]", where)
    return pitches


def _check_pitch(pitch: object, row_bytes: int, itemsize: int, name: str, where: str) -> None:
    if type(pitch) is not int or pitch <= 0 or pitch >= MAX_EXTENT:
        raise PitchError(
            f"{where}: expected {name} to be a positive int of bytes below 2**63, got {name}={pitch!r}."
        )
    if pitch % itemsize:
        raise PitchError(
            f"{where}: expected {name} to be a multiple of the {itemsize}-byte element, got {name}={pitch} "
            "(every row must start on an element boundary). Round it up to a multiple."
        )
    if pitch < row_bytes:
        raise PitchError(
            f"{where}: expected {name} of at least the {row_bytes} bytes of a row, got {name}={pitch} "
            "(rows would overlap). Pass the pitch the producer reports, in bytes, not elements."
        )


def _offsets(
    info: FormatInfo,
    pitches: list[int],
    plane_offsets: Sequence[int] | None,
    aligned_height: int | None,
    height: int,
    where: str,
) -> list[int]:
    """Every plane's offset (bytes): given, or the planes one after another at ``aligned_height``."""
    if plane_offsets is not None:
        if aligned_height is not None:
            raise SpecError(
                f"{where}: expected plane_offsets or aligned_height, got both (aligned_height="
                f"{aligned_height!r}). aligned_height only places planes whose offsets are not given."
            )
        offsets = list(plane_offsets)
        if len(offsets) != len(pitches):
            raise SpecError(
                f"{where}: expected {len(pitches)} plane_offsets (one per {info.format.value} plane), "
                f"got plane_offsets={plane_offsets!r}."
            )
        for index, offset in enumerate(offsets):
            if type(offset) is not int:
                raise SpecError(f"{where}: expected int byte offsets, got plane_offsets[{index}]={offset!r}.")
            if offset < 0:
                raise BoundsError(
                    f"{where}: expected non-negative plane offsets, got plane_offsets[{index}]={offset} "
                    "(before the frame's pointer). Pass the pointer of the lowest plane as the frame's."
                )
        return offsets
    rows = height if aligned_height is None else aligned_height
    if type(rows) is not int or rows < height:
        raise SpecError(
            f"{where}: expected an int aligned_height of at least height={height}, got "
            f"aligned_height={aligned_height!r}. Pass the rows the producer allocates per plane."
        )
    if rows % info.subsample_y:
        raise SpecError(
            f"{where}: expected an even aligned_height for {info.format.value} (its chroma has half the "
            f"rows), got aligned_height={rows}. Pass plane_offsets for this layout."
        )
    offsets = [0]
    for plane, plane_pitch in zip(info.planes[:-1], pitches[:-1], strict=True):
        offsets.append(offsets[-1] + plane_pitch * (rows // plane.subsample_y))
    return offsets
