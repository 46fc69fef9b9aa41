"""The frame kernel's parameters, packed on the host (pure): ``_frame_kernels.cu`` takes ONE
parameter by value, ``Params``: the call's ``Shared`` values (target pointer and strides, colour matrix
folded with the code scales, per-channel map, padding) and up to ``MAX_ITEMS`` ``Item`` records (plane
pointers and pitches, region, placement, resize ratios). ``_frame_plan`` checks and packs them."""

from __future__ import annotations

import functools
import struct
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ._colour import code_scales, ypbpr_to_rgb_matrix
from ._errors import DeviceError, DTypeError, PitchError, SpecError, StrideError
from ._formats import FORMATS, ChannelOrder, ColorSpec, FormatInfo
from ._sampling import code_unit, place, yuv_colour

if TYPE_CHECKING:
    from ._device import Device
    from ._dtypes import DTypeName
    from ._sampling import FrameSource, SampleRecipe
    from ._spec import ImageSpec

__all__ = [
    "BLOCK",
    "CAPACITIES",
    "ITEM",
    "MAX_ITEMS",
    "PARAMS_BYTES",
    "SHARED",
    "FrameVariant",
    "defines",
    "frame_variant",
    "grid_for",
    "Setup",
    "item_values",
    "params_bytes",
    "pixels_per_thread",
    "setup_for",
    "with_capacity",
]

MAX_ITEMS = 32
"""Items per launch: their parameters (112 bytes each) and the shared ones fit CUDA's 4 KiB."""
CAPACITIES = (1, 8, MAX_ITEMS)
"""The item counts the kernel is compiled for: a launch takes the smallest that holds its items, as
the driver copies the whole parameter block at every launch (on an H200, an empty kernel's launch
took 5.6 us with 16 bytes of parameters and 6.3 us with 3744, queued 3000 times)."""
BLOCK = (32, 8, 1)
"""32 consecutive output pixels of 8 rows per block: a warp writes 32 consecutive elements per channel."""
MAX_SIDE = 2**31 - 1
"""Frame and slot sides are C ints in the kernel."""

# The kernel's one parameter, `Params` in _frame_kernels.cu: `Shared`, then MAX_ITEMS `Item`s (see there).
# Every field lies at its natural alignment, so these formats without padding are the C layout.
SHARED = struct.Struct("<Q4q9f3ff4f4f4f4i3i")
ITEM = struct.Struct("<3Q3q2q2d8i")
PARAMS_BYTES = SHARED.size + MAX_ITEMS * ITEM.size
"""The largest parameter block (``params_bytes(MAX_ITEMS)``)."""

_KIND_PACKED, _KIND_SEMI_PLANAR, _KIND_PLANAR = 0, 1, 2
_RESIZE = {"identity": 0, "nearest": 1, "bilinear": 2}
_TARGETS = {"float32": (0, 4), "float16": (1, 2), "bfloat16": (2, 2), "uint8": (3, 1)}
"""Output dtypes: (the kernel's DST code, item size)."""
_SOURCES: dict[str, tuple[str, str]] = {
    "uint8": ("unsigned char", "(float)(x)"),
    "uint16": ("unsigned short", "(float)(x)"),
    "float16": ("unsigned short", "half_to_float(x)"),
    "bfloat16": ("unsigned short", "bfloat_to_float(x)"),
    "float32": ("float", "(x)"),
    "float64": ("double", "(float)(x)"),
}
"""Sample dtypes: (C storage type, its value as a float). YUV frames are uint8 or uint16."""


class FrameVariant(NamedTuple):
    """What one compilation of the kernel is specialised for (the ``#define`` values)."""

    source_kind: int
    """0: one packed plane (GRAY, RGB, ...); 1: Y and interleaved chroma (NV12, ...); 2: Y, U, V."""
    source_dtype: DTypeName
    source_shift: int
    """Bits a stored sample is shifted right by to give its code (P010: 6)."""
    chroma_shift_x: int
    chroma_shift_y: int
    resize: int
    """0: identity (every region as large as its placement), 1: nearest, 2: bilinear."""
    target_dtype: DTypeName
    channels: int
    capacity: int = MAX_ITEMS
    """Items its ``Params`` holds (one of ``CAPACITIES``): ``with_capacity``."""


def params_bytes(capacity: int) -> int:
    """The size of the kernel's ``Params`` for ``capacity`` items."""
    return SHARED.size + capacity * ITEM.size


@functools.cache
def with_capacity(variant: FrameVariant, items: int) -> FrameVariant:
    """``variant`` compiled for the smallest of ``CAPACITIES`` that holds ``items`` (1 to MAX_ITEMS)."""
    return variant._replace(capacity=next(capacity for capacity in CAPACITIES if capacity >= items))


def frame_variant(
    info: FormatInfo,
    source_dtype: DTypeName,
    resize: str,
    identity: bool,
    target_dtype: DTypeName,
    channels: int,
) -> FrameVariant:
    """The variant for a source format and dtype, the resize mode (``identity``: no item is resized,
    which both modes compute as a plain read), the output dtype and channel count."""
    mode = _RESIZE["identity" if identity else resize]
    if not info.is_yuv:
        return FrameVariant(_KIND_PACKED, source_dtype, 0, 0, 0, mode, target_dtype, channels)
    chroma = info.planes[1]
    kind = _KIND_SEMI_PLANAR if len(info.planes) == 2 else _KIND_PLANAR
    shift_x, shift_y = chroma.subsample_x.bit_length() - 1, chroma.subsample_y.bit_length() - 1
    return FrameVariant(kind, source_dtype, info.bit_shift, shift_x, shift_y, mode, target_dtype, channels)


def defines(variant: FrameVariant) -> str:
    """The ``#define`` lines that specialise ``_frame_kernels.cu`` for ``variant``."""
    lines = {
        "SRC_KIND": variant.source_kind,
        "SRC_T": _SOURCES[variant.source_dtype][0],
        "LOAD(x)": _SOURCES[variant.source_dtype][1],
        "SRC_SHIFT": variant.source_shift,
        "CHROMA_SHIFT_X": variant.chroma_shift_x,
        "CHROMA_SHIFT_Y": variant.chroma_shift_y,
        "RESIZE": variant.resize,
        "DST": _TARGETS[variant.target_dtype][0],
        "CHANNELS": variant.channels,
        "PIXELS": pixels_per_thread(variant),
        "MAX_ITEMS": variant.capacity,
        "ITEM_BYTES": ITEM.size,
        "PARAMS_BYTES": params_bytes(variant.capacity),
    }
    return "".join(f"#define {name} {value}\n" for name, value in lines.items())


IDENTITY_PIXELS = 4  # per thread without interpolation, BLOCK[0] apart: their loads fly together


def pixels_per_thread(variant: FrameVariant) -> int:
    """How many output pixels of a row one thread of ``variant`` computes."""
    return IDENTITY_PIXELS if variant.resize == _RESIZE["identity"] else 1


def grid_for(out_width: int, out_height: int, items: int, pixels: int = 1) -> tuple[int, int, int]:
    """The grid of one launch: blocks across the slot's width (``pixels`` a thread) and height, one z
    per item."""
    return -(-out_width // (BLOCK[0] * pixels)), -(-out_height // BLOCK[1]), items


class Setup(NamedTuple):
    """What every call with one format, source dtype, colour, target spec, item pitch and recipe shares."""

    info: FormatInfo
    source_dtype: str
    variants: tuple[FrameVariant, FrameVariant]  # for calls whose items are all unresized; the others
    shared: tuple[float | int, ...]  # Shared's values between dst and count
    itemsize: int  # the output's item size: the target pointer must be a multiple of it


_setups: dict[tuple[object, ...], tuple[ImageSpec, Setup]] = {}
_SETUPS_LIMIT = 256
_WHERE = "convert_frames()"


def _colour_values(info: FormatInfo, colour: ColorSpec, colours: str) -> tuple[float, ...]:
    """The YUV part of ``Shared``: the matrix folded with the code scales (rows: the output's colour
    channels; columns: the codes in the order read) and the code offsets (float64, stored as float32)."""
    read = info.planes[1].components if len(info.planes) == 2 else ("U", "V")
    components = ("Y", *read)  # NV21 reads V first: its columns are swapped, not its kernel
    scales = code_scales(colour.range, info.bit_depth)
    rows = ypbpr_to_rgb_matrix(colour.matrix)
    column = {"Y": 0, "U": 1, "V": 2}
    scale = {"Y": scales.luma_scale, "U": scales.chroma_scale, "V": scales.chroma_scale}
    offset = {"Y": scales.luma_offset, "U": scales.chroma_offset, "V": scales.chroma_offset}
    matrix = [rows["RGB".index(name)][column[part]] / scale[part] for name in colours for part in components]
    return (*matrix, *(offset[part] for part in components))


def _picks(info: FormatInfo, order: str) -> list[int]:
    """Packed sources: the stored channel of each output channel (GRAY's one channel for every colour;
    -1, a value of 1, for an alpha the source does not have), padded to 4."""
    stored = info.planes[0].components
    chosen = [
        (stored.index(name) if name in stored else -1)
        if name == "A"
        else (0 if stored == ("Y",) else stored.index(name))
        for name in order
    ]
    return [*chosen, 0, 0, 0, 0][:4]


def _setup(source: FrameSource, target_spec: ImageSpec, item_pitch: int, recipe: SampleRecipe) -> Setup:
    """The call's shared parameters (``check_frames`` passed; cached by the caller)."""
    info = FORMATS[source.format]
    source_dtype, target_dtype = source.planes[0].spec.dtype, target_spec.dtype
    order = ChannelOrder(recipe.order).value  # check_frames passed: RGB, BGR, RGBA or BGRA
    channels = len(order)
    if target_spec.width > MAX_SIDE or target_spec.height > 65535 * BLOCK[1]:
        raise SpecError(
            f"{_WHERE}: expected a slot of at most {65535 * BLOCK[1]} rows and {MAX_SIDE} columns, got "
            f"height={target_spec.height}, width={target_spec.width}. Convert into smaller slots."
        )
    _, itemsize = _TARGETS[target_dtype]
    if item_pitch % itemsize:
        raise PitchError(
            f"{_WHERE}: expected an item pitch that is a multiple of the {itemsize}-byte {target_dtype} "
            f"element, got item_pitch={item_pitch}. Pass the batch's pitch in bytes."
        )
    if source_dtype not in _SOURCES:
        raise DTypeError(
            f"{_WHERE}: expected {info.format.value} samples of uint8, uint16 or a float dtype, got "
            f"dtype={source_dtype}. Convert the image with astype() first."
        )
    if info.is_yuv:
        colour = yuv_colour(source)
        yuv = _colour_values(info, colour, order.replace("A", ""))
        unit, picks = 0.0, [0, 0, 0, 0]
    else:
        yuv, unit, picks = (0.0,) * 12, code_unit(source_dtype), _picks(info, order)
    with np.errstate(over="ignore"):  # beyond float32's range: inf, as float32 arithmetic gives
        padded = [
            [float(np.float32(value)) for value in (*values, 0.0, 0.0, 0.0)[:4]]
            for values in (recipe.factors, recipe.shifts, recipe.pad)
        ]
    geometry = target_spec.geometry
    shared = (
        geometry.row_pitch,
        geometry.pixel_stride,
        geometry.channel_stride,
        item_pitch,
        *yuv,
        unit,
        *padded[0],
        *padded[1],
        *padded[2],
        *picks,
        target_spec.width,
        target_spec.height,
    )
    variants = (
        frame_variant(info, source_dtype, recipe.resize, True, target_dtype, channels),
        frame_variant(info, source_dtype, recipe.resize, False, target_dtype, channels),
    )
    return Setup(info, source_dtype, variants, shared, itemsize)


class _Planes(NamedTuple):
    """What the kernel needs of one frame geometry's plane specs, checked once per geometry."""

    pitches: tuple[int, int, int]
    pixel_stride: int
    channel_stride: int
    itemsize: int


_planes: dict[tuple[object, ...], tuple[tuple[ImageSpec, ...], _Planes]] = {}
_placements = functools.lru_cache(maxsize=4096)(place)  # a frame loop asks for the same boxes often


def _check_planes(specs: tuple[ImageSpec, ...], info: FormatInfo, dtype: str, device: Device) -> _Planes:
    """Check a frame's plane specs for the kernel (``check_frames`` passed: number and shapes)."""
    width, height = specs[0].width, specs[0].height
    for index, (spec, plane_info) in enumerate(zip(specs, info.planes, strict=True)):
        if spec.device != device:
            raise DeviceError(
                f"{_WHERE}: expected every plane on the target's {device}, got plane {index} on "
                f"{spec.device}. Move the frame to the target's device first."
            )
        if spec.dtype != dtype:
            raise SpecError(
                f"{_WHERE}: expected {info.format.value} plane {index} of {dtype} as the first item's, got "
                f"{spec.dtype}. Convert items of one dtype per call."
            )
        if not info.is_yuv:
            continue
        if spec.pixel_stride != spec.channels * spec.itemsize or spec.channel_stride != spec.itemsize:
            raise StrideError(
                f"{_WHERE}: expected {info.format.value} plane {index} with packed pixels, got pixel "
                f"stride {spec.pixel_stride} and channel stride {spec.channel_stride} bytes. Copy "
                "the plane with contiguous() first."
            )
        # the kernel reads chroma at (y >> shift, x >> shift) for every pixel of the frame
        need_width = (width - 1) // plane_info.subsample_x + 1
        need_height = (height - 1) // plane_info.subsample_y + 1
        if spec.width < need_width or spec.height < need_height:
            raise SpecError(
                f"{_WHERE}: expected {info.format.value} plane {index} of at least {need_width}x"
                f"{need_height} for a {width}x{height} frame, got {spec.width}x{spec.height}. Pass "
                "a frame of even sizes."
            )
    if width > MAX_SIDE or height > MAX_SIDE:
        raise SpecError(
            f"{_WHERE}: expected frames of at most {MAX_SIDE} pixels a side, got {width}x{height}."
        )
    rows = [spec.row_pitch for spec in specs] + [0, 0]
    return _Planes(
        (rows[0], rows[1], rows[2]), specs[0].pixel_stride, specs[0].channel_stride, specs[0].itemsize
    )


def item_values(
    source: FrameSource, setup: Setup, first: FrameSource, recipe: SampleRecipe, device: Device
) -> tuple[tuple[float | int, ...], bool]:
    """One item's ``Item`` values, and whether it is read unresized. A frame loop's items share a
    few plane geometries: their checks run once per geometry (specs are shared per description)."""
    if source.format is not first.format or (
        source.colour is not first.colour and source.colour != first.colour
    ):
        raise SpecError(
            f"{_WHERE}: expected every item of one call in one format and colour, got {source.format} "
            f"({source.colour}) after {first.format} ({first.colour}). Convert them in separate calls."
        )
    planes = source.planes
    specs = tuple([plane.spec for plane in planes])
    key = (*[id(spec) for spec in specs], setup.source_dtype, id(device))
    entry = _planes.get(key)
    if entry is not None and entry[0] == specs:  # identical specs: no pydantic comparison
        facts = entry[1]
    else:
        facts = _check_planes(specs, setup.info, setup.source_dtype, device)
        if len(_planes) >= _SETUPS_LIMIT:
            _planes.clear()
        _planes[key] = (specs, facts)
    pointers = [plane.ptr for plane in planes]
    if facts.itemsize > 1:
        for index, ptr in enumerate(pointers):
            if ptr % facts.itemsize:
                raise SpecError(
                    f"{_WHERE}: expected {setup.info.format.value} plane {index} at an address aligned to "
                    f"its {facts.itemsize}-byte element, got ptr={ptr:#x}. Copy the plane to aligned memory."
                )
    x, y, region_width, region_height = source.region
    placement = _placements(region_width, region_height, recipe.width, recipe.height, recipe.keep_aspect)
    values = (
        *(*pointers, 0, 0)[:3],
        *facts.pitches,
        facts.pixel_stride,
        facts.channel_stride,
        region_width / placement.width,  # the ratios in float64, as the reference divides them
        region_height / placement.height,
        x,
        y,
        region_width,
        region_height,
        *placement,
    )
    return values, region_width == placement.width and region_height == placement.height


def setup_for(first: FrameSource, target_spec: ImageSpec, item_pitch: int, recipe: SampleRecipe) -> Setup:
    """The shared parameters of a call whose first item is ``first`` (``check_frames`` passed), cached."""
    dtype = first.planes[0].spec.dtype if first.planes else None
    key = (first.format, dtype, first.colour, id(target_spec), item_pitch, recipe)
    entry = _setups.get(key)
    if entry is not None and entry[0] is target_spec:
        return entry[1]
    setup = _setup(first, target_spec, item_pitch, recipe)
    if len(_setups) >= _SETUPS_LIMIT:
        _setups.clear()
    _setups[key] = (target_spec, setup)
    return setup
