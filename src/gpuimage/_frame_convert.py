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
from typing import TYPE_CHECKING, Any, Protocol, cast

from ._affine import ChannelValues, finite_number, normalize_affine
from ._conversions import executor_for
from ._dtypes import DTypeLike, DTypeName, Float32, parse_dtype
from ._errors import DeviceError, InteropError, LayoutError, SpecError
from ._executor import Operand
from ._exports import ImageExports
from ._formats import FORMATS, ChannelOrder, ColorSpec, PixelFormat, parse_channel_order
from ._layout import Layout, parse_layout
from ._ordering import begin_write, end_write, ready_stream
from ._sampling import FrameSource, ResizeMode, SampleRecipe
from ._spec import ImageSpec

if TYPE_CHECKING:
    from ._image import GpuImage

__all__ = [
    "FrameLike",
    "batch_sources",
    "convert_frames_into",
    "frame_recipe",
    "frame_to_image",
    "normalize_frame",
]

_OUTPUT_ORDERS = frozenset({ChannelOrder.RGB, ChannelOrder.BGR, ChannelOrder.RGBA, ChannelOrder.BGRA})
_OUTPUT_DTYPES: frozenset[DTypeName] = frozenset({"uint8", "float32", "float16", "bfloat16"})
_RESIZE_MODES = ("bilinear", "nearest")
_CODE_UNIT: dict[DTypeName, float] = {"uint8": 1.0 / 255.0, "uint16": 1.0 / 65535.0}
"""The value of one code of a packed image's integer dtype (``_sampling`` step 1); floats are 1."""


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


def _source_of(item: object, region: tuple[int, int, int, int] | None, where: str) -> FrameSource:
    """One item (a frame, or a packed HWC image) and its region, checked, as the executors see it."""
    if is_frame(item):
        frame = cast(FrameLike, item)
        info = FORMATS[frame.format]
        if info.is_yuv and frame.colour is None:
            raise SpecError(
                f"{where}: expected a frame whose colour description is known, got colour=None for a "
                f"{frame.format.value} frame (its matrix and range decide every colour). Say which: "
                "frame.with_colour(ColorSpec(matrix='BT709', range='LIMITED')) (HD video's usual one)."
            )
        planes: tuple[Operand, ...] = frame.planes
        width, height, pixel_format, colour = frame.width, frame.height, frame.format, frame.colour
    elif isinstance(item, ImageExports):
        image = cast("GpuImage[Any, Any]", item)
        if image.layout is not Layout.HWC:
            raise LayoutError(
                f"{where}: expected HWC images (or frames), got a {image.layout.value} image. "
                "Convert it first: image.to_layout('HWC')."
            )
        formats = {1: PixelFormat.GRAY, 3: PixelFormat.RGB, 4: PixelFormat.RGBA}
        if image.channels not in formats:
            raise SpecError(f"{where}: expected images of 1, 3 or 4 channels, got channels={image.channels}.")
        if image.dtype not in ("uint8", "uint16", "float32"):
            raise SpecError(f"{where}: expected uint8, uint16 or float32 images, got dtype={image.dtype}.")
        planes, width, height = (image,), image.width, image.height
        pixel_format, colour = formats[image.channels], None
    else:
        raise InteropError(
            f"{where}: expected GpuFrame or GpuImage items, got {type(item).__name__}. Wrap arrays first: "
            "GpuImage.from_torch(tensor, layout='HWC') or GpuFrame.from_planes(planes, format='NV12')."
        )
    if region is None:
        return FrameSource(pixel_format, planes, colour, (0, 0, width, height))
    if (
        not isinstance(cast(object, region), tuple)
        or len(region) != 4
        or any(type(v) is not int for v in region)
    ):
        raise SpecError(
            f"{where}: expected each roi as an (x, y, width, height) tuple of ints, got {region!r}."
        )
    x, y, region_width, region_height = region
    if (
        region_width <= 0
        or region_height <= 0
        or x < 0
        or y < 0
        or x + region_width > width
        or y + region_height > height
    ):
        raise SpecError(
            f"{where}: expected a non-empty roi inside the {width}x{height} source, got roi={region!r}. "
            "Clip it to the frame first."
        )
    return FrameSource(pixel_format, planes, colour, region)


def batch_sources(
    items: Sequence[object], rois: Sequence[tuple[int, int, int, int] | None] | None, where: str
) -> list[FrameSource]:
    """One ``FrameSource`` per item, all of one format, plane dtype and device (one launch needs it)."""
    if rois is not None and len(rois) != len(items):
        raise SpecError(f"{where}: expected one roi per item ({len(items)}), got {len(rois)}.")
    sources = [_source_of(item, None if rois is None else rois[i], where) for i, item in enumerate(items)]
    if not sources:
        raise SpecError(f"{where}: expected at least one frame or image, got an empty sequence.")
    first = sources[0]
    for source in sources[1:]:
        if source.format is not first.format or source.planes[0].spec.dtype != first.planes[0].spec.dtype:
            raise SpecError(
                f"{where}: expected items of one format and dtype (one launch reads them all), got "
                f"{first.format.value} {first.planes[0].spec.dtype} and {source.format.value} "
                f"{source.planes[0].spec.dtype}. Batch them in separate calls."
            )
        if source.planes[0].spec.device != first.planes[0].spec.device:
            raise DeviceError(
                f"{where}: expected items on one device, got {first.planes[0].spec.device} and "
                f"{source.planes[0].spec.device}."
            )
    return sources


def frame_recipe(
    source: FrameSource,
    *,
    size: tuple[int, int],
    resize: ResizeMode,
    keep_aspect: bool,
    order: ChannelOrder,
    mean: ChannelValues,
    std: ChannelValues,
    scale: float | None,
    pad_value: float,
    is_image: bool,
    where: str,
) -> SampleRecipe:
    """The recipe of ``(value * scale - mean) / std`` into ``size`` slots (value: ``_sampling`` step 1).

    ``scale`` is in the caller's units: for frames the value is in [0, 1] and the default is 1; for
    packed images it applies to the stored codes, as ``normalize`` does (default 1/255 for uint8).
    """
    if resize not in _RESIZE_MODES:
        raise SpecError(f"{where}: expected resize='bilinear' or 'nearest', got resize={resize!r}.")
    if type(keep_aspect) is not bool:
        raise SpecError(f"{where}: expected keep_aspect True or False, got keep_aspect={keep_aspect!r}.")
    if order not in _OUTPUT_ORDERS:
        raise SpecError(f"{where}: expected order 'RGB', 'BGR', 'RGBA' or 'BGRA', got order={order.value!r}.")
    channels = len(order.value)
    # a frame's value is in [0, 1] and scale applies to it; an image's scale applies to its codes
    unit = _CODE_UNIT.get(source.planes[0].spec.dtype, 1.0) if is_image else 1.0
    factor = (unit if scale is None else finite_number(scale, "scale", where)) / unit
    if factor == 0.0:
        raise SpecError(f"{where}: expected a non-zero scale, got scale={scale!r}.")
    affine = normalize_affine(channels, mean, std, factor, reverse=False, where=where)
    pad = finite_number(pad_value, "pad_value", where)
    return SampleRecipe(
        size[0], size[1], resize, keep_aspect, order, affine.scale, affine.offset, (pad,) * channels
    )


def convert_frames_into(
    sources: Sequence[FrameSource],
    target: Operand,
    item_pitch: int,
    recipe: SampleRecipe,
    stream: int,
    *,
    where: str,
) -> None:
    """Queue the conversion on ``stream`` after every plane's data, and record the reads on the planes.
    The caller orders the target (a new image is ready on ``stream``; ``out=`` is written there)."""
    planes = [cast("GpuImage[Any, Any]", plane) for source in sources for plane in source.planes]
    executor = executor_for(planes[0].device, where)
    if not planes[0].device.is_cuda:
        executor.convert_frames(sources, target, item_pitch, recipe, 0)
        return
    with type(planes[0]).reading_all(planes, stream):
        executor.convert_frames(sources, target, item_pitch, recipe, stream)


def _single(
    frame: FrameLike,
    recipe: SampleRecipe,
    dtype: DTypeName,
    layout: Layout,
    out: GpuImage[Any, Any] | None,
    where: str,
) -> GpuImage[Any, Any]:
    """One frame converted whole into a new image (ready on the frame's stream) or into ``out``."""
    source = _source_of(frame, None, where)
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
    """The packed result of converting ``frame`` whole (one per call: cheap next to the launch)."""
    device = frame.planes[0].device
    return ImageSpec.packed(
        height=frame.height,
        width=frame.width,
        channels=channels,
        dtype=dtype,
        layout=layout,
        device="cpu" if not device.is_cuda else device.index,
    )


def _check_out(
    out: object, frame: FrameLike, channels: int, dtype: DTypeName, layout: Layout, where: str
) -> None:
    if not isinstance(out, ImageExports):
        raise InteropError(f"{where}: expected out to be a GpuImage or None, got {type(out).__name__}.")
    image = cast("GpuImage[Any, Any]", out)
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
    if target not in _OUTPUT_DTYPES:
        raise SpecError(f"{where}: expected dtype uint8, float32, float16 or bfloat16, got dtype={target}.")
    channel_order = _order(order, where)
    source = _source_of(frame, None, where)
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
    return _single(frame, recipe, target, target_layout, None, where)


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
    if target not in _OUTPUT_DTYPES:
        raise SpecError(f"{where}: expected dtype float32, float16, bfloat16 or uint8, got dtype={target}.")
    channel_order = _order(order, where)
    source = _source_of(frame, None, where)
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
    return _single(frame, recipe, target, Layout.CHW, out, where)
