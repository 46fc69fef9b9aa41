"""Pixel formats of video frames as data, their plane arithmetic, and colour descriptions. Pure: no GPU.

A YUV frame has two or three planes (NV12: a luma plane, then one plane of interleaved U and V at
half the width and half the height); a packed format (GRAY, RGB, BGRA, ...) has one.
``format_info`` gives each format's facts and ``plane_shapes`` its planes' sizes in elements;
``_frame_layout`` places the planes in one allocation. ``ColorSpec`` says how YUV codes map to RGB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, NamedTuple, TypeAlias, TypeVar

from ._dtypes import DTypeName
from ._errors import SpecError

__all__ = [
    "FORMATS",
    "ChannelOrder",
    "ChannelOrderLike",
    "ColorMatrix",
    "ColorMatrixLike",
    "ColorRange",
    "ColorRangeLike",
    "ColorSpec",
    "FormatInfo",
    "PixelFormat",
    "PixelFormatLike",
    "PlaneInfo",
    "check_frame_size",
    "format_info",
    "parse_channel_order",
    "parse_pixel_format",
    "plane_shapes",
]


class PixelFormat(StrEnum):
    """How a frame's samples lie in memory: its planes, their subsampling and their element type.

    YUV (two or three planes): ``NV12`` (Y, then interleaved UV at half width and height: what NVDEC
    decodes 8-bit video to), ``NV21`` (NV12 with VU), ``I420`` (Y, U, V planes; U and V at half
    width and height), ``P010`` (NV12 with uint16 samples, 10 significant bits in the HIGH bits),
    ``P016`` (NV12 with 16-bit samples), ``NV16`` (Y, then UV at half width, full height: 4:2:2),
    ``YUV444`` (Y, U, V planes, all full size). Packed (one interleaved plane): ``GRAY``, ``RGB``,
    ``BGR``, ``RGBA``, ``BGRA``.
    """

    NV12 = "NV12"
    NV21 = "NV21"
    I420 = "I420"
    P010 = "P010"
    P016 = "P016"
    NV16 = "NV16"
    YUV444 = "YUV444"
    GRAY = "GRAY"
    RGB = "RGB"
    BGR = "BGR"
    RGBA = "RGBA"
    BGRA = "BGRA"


class ChannelOrder(StrEnum):
    """The order of an interleaved image's colour channels, or ``UNKNOWN`` where no one said."""

    RGB = "RGB"
    BGR = "BGR"
    RGBA = "RGBA"
    BGRA = "BGRA"
    UNKNOWN = "UNKNOWN"


class ColorMatrix(StrEnum):
    """The YCbCr matrix: ITU-R BT.601 (SD), BT.709 (HD) or BT.2020 (UHD, non-constant luminance)."""

    BT601 = "BT601"
    BT709 = "BT709"
    BT2020 = "BT2020"


class ColorRange(StrEnum):
    """``LIMITED`` (8-bit luma 16-235, chroma 16-240: "TV", "MPEG") or ``FULL`` (0-255: "PC", "JPEG")."""

    LIMITED = "LIMITED"
    FULL = "FULL"


PixelFormatLike: TypeAlias = (
    PixelFormat
    | Literal["NV12", "NV21", "I420", "P010", "P016", "NV16", "YUV444", "GRAY", "RGB", "BGR", "RGBA", "BGRA"]
)
"""What every ``format=`` parameter accepts: a ``PixelFormat`` or its name (any case)."""
ChannelOrderLike: TypeAlias = ChannelOrder | Literal["RGB", "BGR", "RGBA", "BGRA", "UNKNOWN"]
"""A ``ChannelOrder`` or its name (any case)."""
ColorMatrixLike: TypeAlias = ColorMatrix | Literal["BT601", "BT709", "BT2020", "BT.601", "BT.709", "BT.2020"]
"""A ``ColorMatrix`` or its name, with or without the dot (any case)."""
ColorRangeLike: TypeAlias = ColorRange | Literal["LIMITED", "FULL", "limited", "full"]
"""A ``ColorRange`` or its name (any case)."""

E = TypeVar("E", bound=StrEnum)


def _parse(kind: type[E], value: object, *, where: str, name: str) -> E:
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        try:
            return kind(value.upper().replace(".", ""))
        except ValueError:
            pass
    known = ", ".join(member.value for member in kind)
    raise SpecError(
        f"{where}: expected {name} one of {known} (or gpuimage.{kind.__name__}), got {name}={value!r}."
    )


def parse_pixel_format(value: object, *, where: str) -> PixelFormat:
    """Turn a ``PixelFormat`` or its name into a ``PixelFormat``; ``SpecError`` for anything else."""
    return _parse(PixelFormat, value, where=where, name="format")


def parse_channel_order(value: object, *, where: str) -> ChannelOrder:
    """Turn a ``ChannelOrder`` or its name into a ``ChannelOrder``; ``SpecError`` for anything else."""
    return _parse(ChannelOrder, value, where=where, name="order")


@dataclass(frozen=True, slots=True, init=False)
class ColorSpec:
    """How a frame's YUV codes map to R'G'B': the matrix and the range. Both are required.

    gpuimage never guesses them: a frame constructor takes them from the source where it says
    (a decoder's colour description) and requires ``colour=`` where it does not. HD video is
    usually ``ColorSpec(matrix="BT709", range="LIMITED")``; OpenCV's ``COLOR_YUV2RGB_NV12`` assumes
    BT.601, limited. Frozen, hashable and cheap (no pydantic): a frame loop may build one per frame.

    Raises:
        SpecError: a matrix or range that is not one of the names.
    """

    matrix: ColorMatrix
    range: ColorRange

    def __init__(self, *, matrix: ColorMatrixLike, range: ColorRangeLike) -> None:
        """Validate and build a colour description; strings are accepted in any case."""
        object.__setattr__(self, "matrix", _parse(ColorMatrix, matrix, where="ColorSpec", name="matrix"))
        object.__setattr__(self, "range", _parse(ColorRange, range, where="ColorSpec", name="range"))

    def __repr__(self) -> str:
        return f"ColorSpec(matrix={self.matrix.value!r}, range={self.range.value!r})"


class PlaneInfo(NamedTuple):
    """One plane of a format: what its channels hold and how it is subsampled against the frame.

    A plane of a ``width`` x ``height`` frame is ``width // subsample_x`` elements wide and
    ``height // subsample_y`` rows high; each element holds ``channels`` samples of ``itemsize``
    bytes (``dtype``).
    """

    components: tuple[str, ...]
    """What each channel holds, in memory order (``("Y",)``, ``("U", "V")``, ``("B", "G", "R")``)."""
    subsample_x: int
    subsample_y: int
    dtype: DTypeName
    itemsize: int

    @property
    def channels(self) -> int:
        """Samples per element (2 for NV12's interleaved UV plane)."""
        return len(self.components)


@dataclass(frozen=True, slots=True)
class FormatInfo:
    """The facts of one ``PixelFormat``.

    ``bit_depth`` significant bits per sample are stored in the HIGH bits of each element: a P010
    sample ``v`` (10 bits, 0..1023) is stored as ``v << 6``, so ``bit_shift`` is 6; the low bits
    are ignored. ``channel_order`` is set for the packed colour formats (None for YUV and GRAY).
    """

    format: PixelFormat
    planes: tuple[PlaneInfo, ...]
    bit_depth: int
    bit_shift: int
    is_yuv: bool
    channel_order: ChannelOrder | None

    @property
    def dtype(self) -> DTypeName:
        """The element type of every plane (``"uint8"``, or ``"uint16"`` for P010/P016)."""
        return self.planes[0].dtype

    @property
    def itemsize(self) -> int:
        """Bytes per sample."""
        return self.planes[0].itemsize

    @property
    def subsample_x(self) -> int:
        """The largest horizontal subsampling of any plane; the frame width must be a multiple of it."""
        return max(plane.subsample_x for plane in self.planes)

    @property
    def subsample_y(self) -> int:
        """The largest vertical subsampling of any plane; the frame height must be a multiple of it."""
        return max(plane.subsample_y for plane in self.planes)


def _info(fmt: PixelFormat, *planes: tuple[str, int, int], bits: int = 8) -> FormatInfo:
    dtype: DTypeName = "uint8" if bits == 8 else "uint16"
    itemsize = 1 if bits == 8 else 2
    infos = tuple(PlaneInfo(tuple(names), sx, sy, dtype, itemsize) for names, sx, sy in planes)
    order = ChannelOrder(fmt.value) if fmt.value in ChannelOrder.__members__ else None
    is_yuv = infos[0].components == ("Y",) and len(infos) > 1
    return FormatInfo(fmt, infos, bits, 8 * itemsize - bits, is_yuv, order)


_F = PixelFormat
FORMATS: Mapping[PixelFormat, FormatInfo] = MappingProxyType(
    {
        _F.NV12: _info(_F.NV12, ("Y", 1, 1), ("UV", 2, 2)),
        _F.NV21: _info(_F.NV21, ("Y", 1, 1), ("VU", 2, 2)),
        _F.I420: _info(_F.I420, ("Y", 1, 1), ("U", 2, 2), ("V", 2, 2)),
        _F.P010: _info(_F.P010, ("Y", 1, 1), ("UV", 2, 2), bits=10),
        _F.P016: _info(_F.P016, ("Y", 1, 1), ("UV", 2, 2), bits=16),
        _F.NV16: _info(_F.NV16, ("Y", 1, 1), ("UV", 2, 1)),
        _F.YUV444: _info(_F.YUV444, ("Y", 1, 1), ("U", 1, 1), ("V", 1, 1)),
        _F.GRAY: _info(_F.GRAY, ("Y", 1, 1)),
        _F.RGB: _info(_F.RGB, ("RGB", 1, 1)),
        _F.BGR: _info(_F.BGR, ("BGR", 1, 1)),
        _F.RGBA: _info(_F.RGBA, ("RGBA", 1, 1)),
        _F.BGRA: _info(_F.BGRA, ("BGRA", 1, 1)),
    }
)
"""Every format's facts (``tuple("UV")`` is ``("U", "V")``: one letter per channel)."""


def format_info(format: PixelFormatLike) -> FormatInfo:
    """The facts of ``format``: planes, subsampling, element type, significant bits, channel order."""
    return FORMATS[parse_pixel_format(format, where="format_info()")]


def check_frame_size(info: FormatInfo, width: int, height: int, where: str) -> None:
    """Raise ``SpecError`` unless the sizes are positive ints that the format's subsampling divides."""
    for name, size in (("width", width), ("height", height)):
        if type(size) is not int or size <= 0:
            raise SpecError(f"{where}: expected a positive int {name}, got {name}={size!r}.")
    for name, size, factor, way in (
        ("width", width, info.subsample_x, "horizontally"),
        ("height", height, info.subsample_y, "vertically"),
    ):
        if size % factor:
            wanted = "an even" if factor == 2 else f"a multiple of {factor} as"
            raise SpecError(
                f"{where}: expected {wanted} {name} for {info.format.value}, got {name}={size} (its "
                f"chroma is subsampled {factor}x {way}). Crop or pad the frame to {wanted} {name}."
            )


def plane_shapes(format: PixelFormatLike, width: int, height: int) -> tuple[tuple[int, int, int], ...]:
    """Each plane's ``(height, width, channels)`` for a ``width`` x ``height`` frame of ``format``.

    Raises:
        SpecError: an unknown format, sizes that are not positive ints, or an odd width (NV12, NV21,
            I420, P010, P016, NV16) or odd height (NV12, NV21, I420, P010, P016) where the format
            subsamples its chroma.
    """
    info = FORMATS[parse_pixel_format(format, where="plane_shapes()")]
    check_frame_size(info, width, height, "plane_shapes()")
    return tuple(
        (height // plane.subsample_y, width // plane.subsample_x, plane.channels) for plane in info.planes
    )
