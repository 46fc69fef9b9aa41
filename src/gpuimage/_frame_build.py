"""How ``GpuFrame``'s constructors read their sources: planes are ``GpuImage``s built by the hub's own
constructors (``_import``, ``_wrap``), so they order streams and keep owners as images do. No GPU calls.
Offsets, pitches and extents in BYTES; sizes in elements."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from ._device import Device, parse_device
from ._errors import BoundsError, DeviceError, DTypeError, InteropError, LayoutError, PitchError, SpecError
from ._exports import ImageExports
from ._formats import FORMATS, ColorSpec, FormatInfo, PixelFormat, check_frame_size, parse_pixel_format
from ._frame_exports import block_rows
from ._frame_layout import FrameLayout, frame_layout
from ._geometry import Geometry
from ._image import GpuImage
from ._layout import Layout
from ._lifetime import Lifetime
from ._source import check_pointer
from ._spec import ImageSpec, trusted_spec
from ._spokes import spoke_of
from ._streams import ReadyState, stream_handle, stream_keep

__all__ = [
    "FrameParts",
    "frame_at_pointer",
    "frame_of_planes",
    "frame_of_tensor",
    "frame_over",
    "parse_frame_format",
]

Image = GpuImage[Any, Any]


class FrameParts(NamedTuple):
    """What a frame is made of, checked: ``GpuFrame._make``'s arguments after the colour."""

    format: PixelFormat
    size: tuple[int, int]
    """``(width, height)`` in pixels."""
    planes: tuple[Image, ...]
    layout: FrameLayout | None
    block: Image | None
    """The ``(rows, W, 1)`` image of the whole frame's block, or the one plane of a packed format."""


def parse_frame_format(format: object, colour: object, *, where: str) -> FormatInfo:
    """The format's facts, once ``format`` and ``colour`` are checked (see ``check_colour``)."""
    info = FORMATS[parse_pixel_format(format, where=where)]
    check_colour(colour, info.format, info.is_yuv, where=where)
    return info


def frame_of_planes(sources: object, info: FormatInfo, stream: object, *, where: str) -> FrameParts:
    """``GpuFrame.from_planes``: each source imported, fitted to its plane's shape, checked together."""
    if isinstance(sources, str | bytes) or not isinstance(sources, Sequence):
        raise InteropError(
            f"{where}: expected a sequence of {len(info.planes)} planes, got {type(sources).__name__}. "
            "Pass [y, uv] for NV12; for one (1.5 H, W) tensor use GpuFrame.from_dlpack()."
        )
    listed = cast("Sequence[object]", sources)
    if len(listed) != len(info.planes):
        names = ", ".join("".join(plane.components) for plane in info.planes)
        raise SpecError(
            f"{where}: expected {len(info.planes)} planes for {info.format.value} ({names}), got "
            f"{len(listed)}. For one (rows, W) tensor of the whole frame use GpuFrame.from_dlpack()."
        )
    images = [import_plane(source, stream, where=f"{where} planes[{i}]") for i, source in enumerate(listed)]
    width, height = frame_size(images[0], info, where=where)
    shapes = [(height // p.subsample_y, width // p.subsample_x, p.channels) for p in info.planes]
    fitted = [
        fit_plane(image, shape, info, i, where=where)
        for i, (image, shape) in enumerate(zip(images, shapes, strict=True))
    ]
    check_devices(fitted, where=where)
    check_disjoint(fitted, where=where)
    planes = share_ready(fitted, frame_ready(fitted, stream is not None, where=where))
    # planes imported one by one are not known to share an allocation: no layout, no block
    return FrameParts(info.format, (width, height), planes, None, planes[0] if len(planes) == 1 else None)


def frame_of_tensor(obj: object, info: FormatInfo, stream: object, *, where: str) -> FrameParts:
    """``GpuFrame.from_dlpack``: one ``(rows, W)`` tensor of a whole multi-plane frame, split."""
    given = _image_or_none(obj)
    located = None if given is None else _located(given)
    image = GpuImage._import("dlpack", obj, Layout.HWC, None, stream, where, located)  # pyright: ignore[reportPrivateUsage]
    layout = dlpack_layout(image, info, where=where)
    return FrameParts(info.format, (layout.width, layout.height), planes_over(image, layout), layout, image)


def frame_at_pointer(
    ptr: object,
    layout: FrameLayout,
    device: object,
    owner: object,
    nbytes: object,
    stream: object,
    readonly: object,
    *,
    where: str,
) -> FrameParts:
    """``GpuFrame.from_pointer``: ``layout`` at ``ptr``, inside ``nbytes`` when known, kept by ``owner``."""
    info = FORMATS[layout.format]
    place = parse_device(device, where=where)
    if nbytes is not None:
        if type(nbytes) is not int or nbytes <= 0:
            raise SpecError(f"{where}: expected nbytes to be a positive int of bytes, got nbytes={nbytes!r}.")
        if layout.nbytes > nbytes:
            raise BoundsError(
                f"{where}: expected the frame inside the {nbytes}-byte allocation, got a "
                f"{info.format.value} layout of {layout.nbytes} bytes (its planes would reach past the end). "
                "Check pitch, aligned_height and plane_offsets against what the producer reports."
            )
    checked = check_pointer(ptr, info.itemsize, extent=layout.nbytes, where=where)
    for index, plane in enumerate(layout.planes):
        if plane.offset % info.itemsize:
            raise SpecError(
                f"{where}: expected plane offsets aligned to the {info.itemsize}-byte element, got "
                f"plane_offsets[{index}]={plane.offset}. Pass the producer's offsets in bytes."
            )
    if readonly is not True and readonly is not False:
        raise SpecError(f"{where}: expected readonly to be True or False, got readonly={readonly!r}.")
    handle = stream_handle(stream, where=where)
    count = layout.nbytes // info.itemsize  # the family's image: the frame's whole extent, (1, n, 1)
    geometry = Geometry(1, count, 1, count * info.itemsize, info.itemsize, info.itemsize)
    spec = trusted_spec(geometry, info.dtype, Layout.HWC, place)
    base = GpuImage._family(checked, spec, owner, handle, readonly, stream_keep(stream), located=False)  # pyright: ignore[reportPrivateUsage]
    return frame_over(base, layout)


def frame_over(base: Image, layout: FrameLayout) -> FrameParts:
    """The frame of ``layout`` over ``base``'s memory (``base.ptr`` is the frame's pointer)."""
    planes = planes_over(base, layout)
    rows = block_rows(layout)
    block = planes[0] if len(planes) == 1 else None if rows is None else block_image(base, layout, rows)
    return FrameParts(layout.format, (layout.width, layout.height), planes, layout, block)


def import_plane(obj: object, stream: object, *, where: str) -> Image:
    """One plane source read as an image, without copying: a ``GpuImage`` as it is (through DLPack
    when ``stream`` is given, so that stream waits for its data), else the spoke of its library
    (torch, CuPy, NumPy, OpenCV), else DLPack, else the CUDA Array Interface."""
    image = _image_or_none(obj)
    if image is not None:
        if stream is None:
            return image
        return GpuImage._import("dlpack", image, Layout.HWC, None, stream, where, _located(image))  # pyright: ignore[reportPrivateUsage]
    found = spoke_of(obj)
    if found is not None:
        return GpuImage._import(found.name, obj, Layout.HWC, None, stream, where)  # pyright: ignore[reportPrivateUsage]
    if hasattr(obj, "__dlpack__") or type(obj).__name__ == "PyCapsule":
        return GpuImage._import("dlpack", obj, Layout.HWC, None, stream, where)  # pyright: ignore[reportPrivateUsage]
    if hasattr(obj, "__cuda_array_interface__"):
        return GpuImage.from_cuda_array_interface(obj, layout=Layout.HWC, stream=stream)
    raise InteropError(
        f"{where}: expected each plane to be a GpuImage, a torch tensor, a CuPy or NumPy array, or an object "
        f"with __dlpack__ or __cuda_array_interface__, got {type(obj).__name__}. Wrap it with a "
        "GpuImage.from_* constructor first."
    )


def fit_plane(
    image: Image, expected: tuple[int, int, int], info: FormatInfo, index: int, *, where: str
) -> Image:
    """``image`` as plane ``index`` of shape ``expected`` ``(h, w, c)``: as it is, or a 2-D ``(h, w*c)``
    source (a decoder's UV plane) read as ``c`` channels when each pixel's elements are adjacent."""
    name = f"planes[{index}]"
    if image.dtype != info.dtype:
        raise DTypeError(
            f"{where}: expected {info.dtype} planes for {info.format.value}, got {name}.dtype={image.dtype}. "
            f"Pass the decoder's planes as they are ({info.dtype})."
        )
    spec = image.spec
    height, width, channels = expected
    if spec.layout is not Layout.HWC:
        if spec.channels != 1:
            raise LayoutError(
                f"{where}: expected interleaved (HWC) planes, got {name} with layout=CHW and "
                f"{spec.channels} channels. Pass the plane's (h, w, c) or (h, w*c) array."
            )
        spec = trusted_spec(spec.geometry, spec.dtype, Layout.HWC, spec.device)  # one channel: same memory
    if (spec.height, spec.width, spec.channels) == expected:
        return image if spec is image.spec else _view(image, 0, spec)
    itemsize = spec.itemsize
    if spec.channels == 1 and channels > 1 and (spec.height, spec.width) == (height, width * channels):
        if spec.pixel_stride != itemsize:
            raise SpecError(
                f"{where}: expected the {channels} samples of each {name} pixel to be adjacent in memory to "
                f"read its ({height}, {width * channels}) array as ({height}, {width}, {channels}), got an "
                f"element stride of {spec.pixel_stride} bytes ({itemsize} needed). Pass the plane's own "
                "memory, not a strided view."
            )
        geometry = Geometry(height, width, channels, spec.row_pitch, channels * itemsize, itemsize)
        return _view(image, 0, trusted_spec(geometry, spec.dtype, Layout.HWC, spec.device))
    wanted = f"({height}, {width}, {channels})" + (
        f" or ({height}, {width * channels})" if channels > 1 else ""
    )
    raise SpecError(
        f"{where}: expected {name} of shape {wanted} for a {info.format.value} frame of plane 0's size, got "
        f"shape=({spec.height}, {spec.width}, {spec.channels}). Pass the format's planes in order "
        f"({', '.join(''.join(plane.components) for plane in info.planes)})."
    )


def frame_size(image: Image, info: FormatInfo, *, where: str) -> tuple[int, int]:
    """The frame's ``(width, height)``, read off plane 0 (``(H, W, c)``, or ``(H, W*c)`` for packed)."""
    channels = info.planes[0].channels
    width = image.width
    if image.channels == 1 and channels > 1:
        if width % channels:
            raise SpecError(
                f"{where}: expected plane 0 of {info.format.value} as (H, W, {channels}) or "
                f"(H, W*{channels}), got shape=({image.height}, {width}, 1) ({width} is not a multiple "
                f"of {channels})."
            )
        width //= channels
    check_frame_size(info, width, image.height, where)
    return width, image.height


def check_devices(planes: Sequence[Image], *, where: str) -> Device:
    """The planes' one device; ``DeviceError`` when they are on more than one."""
    device = planes[0].device
    for index, plane in enumerate(planes):
        if plane.device != device:
            raise DeviceError(
                f"{where}: expected every plane on one device, got planes[0] on {device} and planes[{index}] "
                f"on {plane.device}. Move the planes to one device first."
            )
    return device


def check_disjoint(planes: Sequence[Image], *, where: str) -> None:
    """Raise ``SpecError`` when two planes' byte ranges ``[ptr, ptr + nbytes)`` overlap."""
    spans = sorted((plane.ptr, plane.ptr + plane.nbytes, index) for index, plane in enumerate(planes))
    for (start, end, first), (next_start, next_end, second) in itertools.pairwise(spans):
        if next_start < end:
            (a, a_start, a_end), (b, b_start, b_end) = sorted(
                ((first, start, end), (second, next_start, next_end))
            )
            raise SpecError(
                f"{where}: expected planes that do not overlap in memory, got planes[{a}] at bytes "
                f"[{a_start:#x}, {a_end:#x}) and planes[{b}] at [{b_start:#x}, {b_end:#x}). Pass each "
                "plane's own view (the same array twice is not two planes)."
            )


def frame_ready(planes: Sequence[Image], stream_given: bool, *, where: str) -> ReadyState:
    """The one ready state the frame's planes will share: theirs if shared, else the pending write's."""
    states = list({id(state): state for state in (plane._ready for plane in planes)}.values())  # pyright: ignore[reportPrivateUsage]
    if len(states) == 1:
        return states[0]
    pending = [state for state in states if state.stream is not None]
    first = pending[0] if pending else None
    for state in pending[1:]:
        if first is not None and state.stream != first.stream:
            hint = "" if stream_given else " Pass stream= (the stream on which every plane is ready), or"
            raise SpecError(
                f"{where}: expected planes ready on one stream, got writes pending on streams "
                f"{first.stream:#x} and {cast(int, state.stream):#x}.{hint} synchronize() the planes first."
            )
    if first is not None and any(state.event is not first.event for state in pending):
        first.event = None  # one stream, several recorded writes: waiting on the stream covers them all
    shared = states[0] if first is None else first  # the planes that already have it stay as they are
    for state in states:
        if state is not shared:
            shared.reads.update(state.reads)  # the next writer waits for every plane's reads
    return shared


def share_ready(planes: Sequence[Image], ready: ReadyState) -> tuple[Image, ...]:
    """The planes as views that share ``ready`` (a write recorded on one is seen by all)."""
    return tuple(
        plane if plane._ready is ready else _view(plane, 0, plane.spec, ready)  # pyright: ignore[reportPrivateUsage]
        for plane in planes
    )


def planes_over(base: Image, layout: FrameLayout) -> tuple[Image, ...]:
    """Views of ``layout``'s planes over ``base``'s memory (``base.ptr`` is the frame's pointer); they
    share ``base``'s owner and ready state. ``base`` must span the layout's extent."""
    specs = _plane_specs.get((layout, base.device))
    if specs is None:
        if len(_plane_specs) >= _CACHE_LIMIT:
            _plane_specs.clear()
        specs = _plane_specs[(layout, base.device)] = _specs_of(layout, base.device)
    return tuple(_view(base, plane.offset, spec) for plane, spec in zip(layout.planes, specs, strict=True))


def _specs_of(layout: FrameLayout, device: Device) -> tuple[ImageSpec, ...]:
    specs: list[ImageSpec] = []
    for plane in layout.planes:
        itemsize = 2 if plane.dtype == "uint16" else 1
        geometry = Geometry(
            plane.height, plane.width, plane.channels, plane.row_pitch, plane.channels * itemsize, itemsize
        )
        specs.append(trusted_spec(geometry, plane.dtype, Layout.HWC, device))
    return tuple(specs)


# A frame loop wraps one geometry again and again: its layout and plane specs are derived once (only
# values that passed every check are stored; the caches are bounded).
_CACHE_LIMIT = 256
_plane_specs: dict[tuple[FrameLayout, Device], tuple[ImageSpec, ...]] = {}
_tensor_layouts: dict[tuple[object, ...], FrameLayout] = {}


def block_image(base: Image, layout: FrameLayout, rows: int) -> Image:
    """The ``(rows, W, 1)`` image of the block (see ``block_rows``) over ``base``'s memory."""
    first = layout.planes[0]
    itemsize = 2 if first.dtype == "uint16" else 1
    width = first.width * first.channels
    geometry = Geometry(rows, width, 1, first.row_pitch, itemsize, itemsize)
    spec = trusted_spec(geometry, first.dtype, Layout.HWC, base.device)
    return _view(base, first.offset, spec)


def dlpack_layout(image: Image, info: FormatInfo, *, where: str) -> FrameLayout:
    """The layout of a whole frame exported as one 2-D ``(rows, W)`` tensor (NV12: ``(1.5 H, W)``)."""
    spec = image.spec
    key = (info.format, spec.height, spec.width, spec.channels, spec.dtype, spec.row_pitch, spec.pixel_stride)
    layout = _tensor_layouts.get(key)
    if layout is None:
        if len(_tensor_layouts) >= _CACHE_LIMIT:
            _tensor_layouts.clear()
        layout = _tensor_layouts[key] = _checked_tensor_layout(image, info, where=where)
    return layout


def _checked_tensor_layout(image: Image, info: FormatInfo, *, where: str) -> FrameLayout:
    fmt = info.format.value
    if image.channels != 1:
        raise SpecError(
            f"{where}: expected the whole {fmt} frame as one 2-D (rows, W) tensor, got shape="
            f"({image.height}, {image.width}, {image.channels}). Pass its planes to GpuFrame.from_planes()."
        )
    if image.dtype != info.dtype:
        raise DTypeError(f"{where}: expected a {info.dtype} tensor for {fmt}, got dtype={image.dtype}.")
    itemsize = info.itemsize
    if image.spec.pixel_stride != itemsize:
        raise SpecError(
            f"{where}: expected the elements of each row adjacent in memory, got an element stride of "
            f"{image.spec.pixel_stride} bytes ({itemsize} needed). Pass the decoder's tensor as it is."
        )
    # quarter rows of the tensor per luma row: NV12 4 + 2 (its UV rows: half as many, as long)
    quarters = sum(4 * plane.channels // (plane.subsample_x * plane.subsample_y) for plane in info.planes)
    if (4 * image.height) % quarters:
        raise SpecError(
            f"{where}: expected a tensor of {quarters / 4:g} x H rows for {fmt}, got rows={image.height} "
            f"(not {quarters / 4:g} times a whole number). Pass the decoder's whole frame tensor."
        )
    width, height, pitch = image.width, 4 * image.height // quarters, image.row_pitch
    check_frame_size(info, width, height, where)
    row = width * itemsize
    if pitch != row and any(
        plane.channels * itemsize * width // plane.subsample_x != row for plane in info.planes
    ):
        raise PitchError(
            f"{where}: expected a packed tensor (row pitch {row} bytes) for {fmt}, whose chroma rows are "
            f"half rows two to a tensor row, got a row pitch of {pitch} bytes (the half rows would reach "
            "into the padding). Pass the planes to GpuFrame.from_planes(), or a packed copy."
        )
    layout = frame_layout(info.format, width, height, pitch=pitch)
    if layout.nbytes != image.nbytes:  # the formats' arithmetic guarantees it; never point past the tensor
        raise SpecError(f"{where}: the {fmt} layout spans {layout.nbytes} bytes, the tensor {image.nbytes}.")
    return layout


def check_colour(colour: object, fmt: PixelFormat, is_yuv: bool, *, where: str) -> None:
    """Raise unless ``colour`` is a ``ColorSpec`` or None, and None for formats without YUV codes."""
    if colour is not None and not isinstance(colour, ColorSpec):
        raise InteropError(
            f"{where}: expected colour to be a gpuimage.ColorSpec or None (unknown), got colour={colour!r}. "
            "Pass ColorSpec(matrix='BT709', range='LIMITED') or the source's description."
        )
    if colour is not None and not is_yuv:
        raise SpecError(
            f"{where}: expected colour=None for format={fmt.value} (its samples are not YUV codes, so no "
            f"matrix or range applies), got colour={colour!r}. Drop colour=."
        )


def _image_or_none(obj: object) -> Image | None:
    # ImageExports, not generic, is only ever a GpuImage: no Unknown type arguments for pyright
    return cast(Image, obj) if isinstance(obj, ImageExports) else None


def _located(image: Image) -> bool:
    """Whether the library that made ``image`` reported its device (kept through a re-import)."""
    return image._life.located  # pyright: ignore[reportPrivateUsage]


def _view(base: Image, offset: int, spec: ImageSpec, ready: ReadyState | None = None) -> Image:
    """A view of ``spec`` at ``base.ptr + offset`` sharing ``base``'s owner (and ready state)."""
    life: Lifetime = base._life  # pyright: ignore[reportPrivateUsage]
    state = base._ready if ready is None else ready  # pyright: ignore[reportPrivateUsage]
    return GpuImage._wrap(base.ptr + offset, spec, life, state, base.readonly)  # pyright: ignore[reportPrivateUsage]
