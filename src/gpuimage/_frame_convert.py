"""Frame conversions: a ``GpuFrame`` (or regions of frames and images) through ONE executor call into
a ``GpuImage`` or a model's input batch, as ``_sampling`` defines (colour, crop, resize, letterbox,
normalization, layout).

This module checks the arguments, builds the ``FrameSource``s and the ``SampleRecipe``, allocates
and orders the work; the executor (``_conversions.executor_for``) computes. It names no library, and
reads frames by their attributes (``format``, ``planes``, ``colour``, ``width``, ``height``), so the
frame module can import it lazily without an import circle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from ._affine import ChannelValues
from ._conversions import executor_for, packed_spec
from ._dtypes import DTypeLike, DTypeName, Float32, parse_dtype
from ._errors import DeviceError, InteropError, LayoutError, ReadOnlyError, SpecError
from ._executor import Operand
from ._exports import ImageExports
from ._formats import FORMATS, ChannelOrder, ColorSpec, PixelFormat, parse_channel_order
from ._frame_recipe import frame_recipe
from ._layout import Layout, parse_layout
from ._ordering import begin_write, end_write, ready_stream
from ._plan import ranges_overlap
from ._sampling import OUTPUT_DTYPES, FrameSource, SampleRecipe
from ._spec import ImageSpec

if TYPE_CHECKING:
    from ._image import GpuImage

__all__ = [
    "FrameLike",
    "batch_sources",
    "convert_frames_into",
    "frame_to_image",
    "normalize_frame",
]


class FrameLike(Protocol):
    """What this module reads of a ``GpuFrame``."""

    @property
    def format(self) -> PixelFormat: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def colour(self) -> ColorSpec | None: ...
    @property
    def planes(self) -> tuple[GpuImage[Any, Any], ...]: ...


def is_frame(item: object) -> bool:
    """True for a ``GpuFrame`` (read by its attributes: the frame module imports this one)."""
    return not isinstance(item, ImageExports) and hasattr(item, "planes") and hasattr(item, "colour")


class _Whole(NamedTuple):
    """An item as a whole, checked once per call however many regions of it a batch reads."""

    format: PixelFormat
    planes: tuple[Operand, ...]
    colour: ColorSpec | None
    width: int
    height: int


_IMAGE_FORMATS = {1: PixelFormat.GRAY, 3: PixelFormat.RGB, 4: PixelFormat.RGBA}


def _whole(item: object, where: str) -> _Whole:
    """A frame, or a packed HWC image, checked as a source of a frame conversion."""
    if is_frame(item):
        frame = cast(FrameLike, item)
        if frame.colour is None and FORMATS[frame.format].is_yuv:
            raise SpecError(
                f"{where}: expected a frame whose colour description is known, got colour=None for a "
                f"{frame.format.value} frame (its matrix and range decide every colour). Say which: "
                "frame.with_colour(ColorSpec(matrix='BT709', range='LIMITED')) (HD video's usual one)."
            )
        return _Whole(frame.format, frame.planes, frame.colour, frame.width, frame.height)
    if isinstance(item, ImageExports):
        image = cast("GpuImage[Any, Any]", item)
        if image.layout is not Layout.HWC:
            raise LayoutError(
                f"{where}: expected HWC images (or frames), got a {image.layout.value} image. "
                "Convert it first: image.to_layout('HWC')."
            )
        if image.channels not in _IMAGE_FORMATS:
            raise SpecError(f"{where}: expected images of 1, 3 or 4 channels, got channels={image.channels}.")
        if image.dtype not in ("uint8", "uint16", "float32"):
            raise SpecError(f"{where}: expected uint8, uint16 or float32 images, got dtype={image.dtype}.")
        return _Whole(_IMAGE_FORMATS[image.channels], (image,), None, image.width, image.height)
    raise InteropError(
        f"{where}: expected GpuFrame or GpuImage items, got {type(item).__name__}. Wrap arrays first: "
        "GpuImage.from_torch(tensor, layout='HWC') or GpuFrame.from_planes(planes, format='NV12')."
    )


def _source_of(whole: _Whole, region: object, where: str) -> FrameSource:
    """``whole``'s region (None: all of it), bounds checked."""
    width, height = whole.width, whole.height
    if region is None:
        return FrameSource(whole.format, whole.planes, whole.colour, (0, 0, width, height))
    if type(region) is not tuple or len(cast("tuple[object, ...]", region)) != 4:
        raise SpecError(
            f"{where}: expected each roi as an (x, y, width, height) tuple of ints, got {region!r}."
        )
    box = cast("tuple[int, int, int, int]", region)  # a 4-tuple: its items are checked next
    x, y, region_width, region_height = box
    if not (type(x) is int and type(y) is int and type(region_width) is int and type(region_height) is int):
        raise SpecError(
            f"{where}: expected each roi as an (x, y, width, height) tuple of ints, got {region!r}."
        )
    if not (region_width > 0 and region_height > 0 and x >= 0 and y >= 0) or (
        x + region_width > width or y + region_height > height
    ):
        raise SpecError(
            f"{where}: expected a non-empty roi inside the {width}x{height} source, got roi={region!r}. "
            "Clip it to the frame first."
        )
    return FrameSource(whole.format, whole.planes, whole.colour, box)


def batch_sources(
    items: Sequence[object], rois: Sequence[tuple[int, int, int, int] | None] | None, where: str
) -> list[FrameSource]:
    """One ``FrameSource`` per item, all of one format, plane dtype and device (one launch needs it).
    An item given many times (regions of one frame) is checked once."""
    if rois is not None and len(rois) != len(items):
        raise SpecError(f"{where}: expected one roi per item ({len(items)}), got {len(rois)}.")
    if not items:
        raise SpecError(f"{where}: expected at least one frame or image, got an empty sequence.")
    wholes: dict[int, _Whole] = {}
    first: _Whole | None = None
    sources: list[FrameSource] = []
    for index, item in enumerate(items):
        whole = wholes.get(id(item))
        if whole is None:
            whole = wholes[id(item)] = _whole(item, where)
            if first is None:
                first = whole
            else:
                _check_alike(first, whole, where)
        sources.append(_source_of(whole, None if rois is None else rois[index], where))
    return sources


def _check_alike(first: _Whole, other: _Whole, where: str) -> None:
    """Refuse items that one launch cannot read together."""
    spec, other_spec = first.planes[0].spec, other.planes[0].spec
    if other.format is not first.format or other_spec.dtype != spec.dtype:
        raise SpecError(
            f"{where}: expected items of one format and dtype (one launch reads them all), got "
            f"{first.format.value} {spec.dtype} and {other.format.value} {other_spec.dtype}. "
            "Batch them in separate calls."
        )
    if other_spec.device != spec.device:
        raise DeviceError(
            f"{where}: expected items on one device, got {spec.device} and {other_spec.device}."
        )
    if other.colour != first.colour:
        raise SpecError(
            f"{where}: expected items of one colour description (one launch converts them alike), got "
            f"{first.colour} and {other.colour}. Batch frames of different colours in separate calls."
        )


def convert_frames_into(
    sources: Sequence[FrameSource],
    target: Operand,
    item_pitch: int,
    recipe: SampleRecipe,
    stream: int,
    *,
    where: str,
    planes: list[GpuImage[Any, Any]] | None = None,
) -> None:
    """Queue the conversion on ``stream`` after every plane's data, and record the reads on the planes
    (``planes``: the sources' distinct planes, where the caller has them already). The caller orders
    the target (a new image is ready on ``stream``; ``out=`` is written there)."""
    if planes is None:  # regions of one frame share its planes
        unique = {id(plane): plane for source in sources for plane in source.planes}
        planes = [cast("GpuImage[Any, Any]", plane) for plane in unique.values()]
    distinct: list[GpuImage[Any, Any]] = planes
    executor = executor_for(distinct[0].device, where)
    if not distinct[0].device.is_cuda:
        executor.convert_frames(sources, target, item_pitch, recipe, 0)
        return
    with type(distinct[0]).reading_all(distinct, stream):
        executor.convert_frames(sources, target, item_pitch, recipe, stream)


def _single(
    frame: FrameLike,
    source: FrameSource,
    recipe: SampleRecipe,
    dtype: DTypeName,
    layout: Layout,
    out: GpuImage[Any, Any] | None,
    where: str,
) -> GpuImage[Any, Any]:
    """One frame (``source``: all of it) converted into a new image (ready on the frame's stream) or
    into ``out``."""
    first = frame.planes[0]
    device = first.device
    executor = executor_for(device, where)
    channels = len(recipe.order.value)
    stream, keep = 0, None
    if device.is_cuda:
        # queued on the stream the frame's data is ready on (no cross-stream wait), else the executor's
        ready, keep = ready_stream(first)
        stream, keep = executor.stream_for(device.index) if ready is None else (ready, keep)
    if out is not None:
        _check_out(out, frame, channels, dtype, layout, where)
        target = out
    else:
        allocate = type(first)._allocated  # pyright: ignore[reportPrivateUsage]
        target = allocate(_spec(frame, channels, dtype, layout), 1, stream if device.is_cuda else None, keep)
    if not device.is_cuda:
        convert_frames_into([source], target, 0, recipe, 0, where=where)
        return target
    begin_write(target, stream, keep)
    try:
        convert_frames_into([source], target, 0, recipe, stream, where=where)
    finally:  # even a failed launch may have queued work: later users wait for the stream
        end_write(target, stream, keep)
    return target


def _spec(frame: FrameLike, channels: int, dtype: DTypeName, layout: Layout) -> ImageSpec:
    """The packed result of converting ``frame`` whole (made once per geometry: a frame loop asks
    for the same one every call, and pydantic would cost more than the launch)."""
    device = frame.planes[0].device
    index = device.index if device.is_cuda else -1
    return packed_spec(frame.height, frame.width, channels, dtype, layout, index, 1)


def _check_out(
    out: object, frame: FrameLike, channels: int, dtype: DTypeName, layout: Layout, where: str
) -> None:
    if not isinstance(out, ImageExports):
        raise InteropError(f"{where}: expected out to be a GpuImage or None, got {type(out).__name__}.")
    image = cast("GpuImage[Any, Any]", out)
    if image.readonly:
        raise ReadOnlyError(f"{where}: expected a writable out, got a read-only image (its source said so).")
    if any(ranges_overlap((image.ptr, image.nbytes), (plane.ptr, plane.nbytes)) for plane in frame.planes):
        raise SpecError(f"{where}: out overlaps the frame's planes; write into separate memory.")
    wanted = (frame.height, frame.width, channels, dtype, layout, frame.planes[0].device)
    found = (image.height, image.width, image.channels, image.dtype, image.layout, image.device)
    if found != wanted:
        raise SpecError(
            f"{where}: expected out of (height, width, channels, dtype, layout, device) = {wanted}, "
            f"got {found}."
        )


def _order(order: object, where: str) -> ChannelOrder:
    return parse_channel_order(order, where=where)


def frame_to_image(frame: FrameLike, *, layout: object, dtype: object, order: object) -> GpuImage[Any, Any]:
    """``GpuFrame.to_image``: the whole frame as R'G'B' (``_sampling``'s value; uint8: ``rint(255 v)``)."""
    where = "GpuFrame.to_image()"
    target_layout = parse_layout(layout, where=where)
    target = parse_dtype(cast(DTypeLike, dtype), where=where)
    if target not in OUTPUT_DTYPES:
        raise SpecError(f"{where}: expected dtype uint8, float32, float16 or bfloat16, got dtype={target}.")
    channel_order = _order(order, where)
    source = _source_of(_whole(frame, where), None, where)
    factor = 255.0 if target == "uint8" else 1.0
    recipe = frame_recipe(
        source,
        size=(frame.height, frame.width),
        resize="nearest",
        keep_aspect=False,
        order=channel_order,
        mean=0.0,
        std=1.0 / factor,
        scale=None,
        pad_value=0.0,
        is_image=False,
        where=where,
    )
    return _single(frame, source, recipe, target, target_layout, None, where)


def normalize_frame(
    frame: FrameLike,
    mean: ChannelValues,
    std: ChannelValues,
    *,
    dtype: DTypeLike | None,
    scale: float | None,
    order: object,
    out: GpuImage[Any, Any] | None,
) -> GpuImage[Any, Any]:
    """``normalize`` of a frame: colour conversion, ``(v * scale - mean) / std`` and CHW in one launch."""
    where = "normalize()"
    target = parse_dtype(Float32 if dtype is None else dtype, where=where)
    if target not in OUTPUT_DTYPES:
        raise SpecError(f"{where}: expected dtype float32, float16, bfloat16 or uint8, got dtype={target}.")
    channel_order = _order(order, where)
    source = _source_of(_whole(frame, where), None, where)
    recipe = frame_recipe(
        source,
        size=(frame.height, frame.width),
        resize="nearest",
        keep_aspect=False,
        order=channel_order,
        mean=mean,
        std=std,
        scale=scale,
        pad_value=0.0,
        is_image=False,
        where=where,
    )
    return _single(frame, source, recipe, target, Layout.CHW, out, where)
