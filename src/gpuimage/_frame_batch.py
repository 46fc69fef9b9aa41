"""``normalize_batch`` over frames, or with ``resize=``: colour conversion, crop, resize, letterbox,
normalization and layout of many regions into one batch, in one executor call (one kernel launch
per 32 items on a GPU). ``_batch.normalize_batch`` hands these calls here; ``_sampling`` defines
the result and ``_frame_convert`` builds the executor's inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from ._affine import ChannelValues
from ._batch_out import NewOut, allocate_batch, parse_batch_out
from ._channel_order import batch_plan, check_out_order
from ._conversions import executor_for
from ._dtypes import DTypeLike, Float32, dtype_info, parse_dtype
from ._errors import DeviceError, SpecError
from ._executor import Buffer
from ._formats import ChannelOrder, ChannelOrderLike, parse_channel_order
from ._frame_convert import batch_sources, convert_frames_into, is_frame
from ._frame_recipe import frame_recipe
from ._geometry import byte_extent
from ._image_batch import GpuBatch
from ._layout import Layout
from ._plan import batch_size, ranges_overlap
from ._sampling import OUTPUT_DTYPES, FrameSource, ResizeMode
from ._spec import trusted_spec

if TYPE_CHECKING:
    from ._frame_replay import Call
    from ._image import GpuImage

__all__ = ["normalize_frames_batch"]

_IMAGE_ORDERS = {
    (3, False): ChannelOrder.RGB,
    (3, True): ChannelOrder.BGR,
    (4, False): ChannelOrder.RGBA,
    (4, True): ChannelOrder.BGRA,
}
"""The order an image batch writes, for images read as RGB(A) (``_frame_convert``): red and blue
swapped or not."""


def _output_order(
    items: Sequence[object],
    channels: int,
    order: ChannelOrderLike | None,
    reverse_channels: bool,
    out: object,
    where: str,
) -> ChannelOrder:
    """The batch's channel order, relative to the source's: a frame's ``order`` (default RGB); an
    image's own channels, read in reverse with ``reverse_channels``, or reordered from their recorded
    order to ``order``. A ``GpuBatch`` ``out`` recording another order is refused."""
    if is_frame(items[0]):
        if reverse_channels:
            raise SpecError(
                f"{where}: expected order='BGR' for frames, got reverse_channels={reverse_channels!r}."
            )
        written = parse_channel_order("RGB" if order is None else order, where=where)
        check_out_order(out, None if written is ChannelOrder.UNKNOWN else written, where=where)
        return written
    if type(reverse_channels) is not bool:
        raise SpecError(f"{where}: expected reverse_channels True or False, got {reverse_channels!r}.")
    if channels == 4 and reverse_channels:  # (3, 2, 1, 0) is no channel order: BGRA would keep alpha last
        raise SpecError(
            f"{where}: expected reverse_channels=False for 4-channel images with resize=, got True "
            "(normalize reads them as (3, 2, 1, 0)). Record their order and pass order= instead "
            "(image.with_channel_order('BGRA'), order='RGBA': alpha stays last), or batch them "
            "without resize=."
        )
    if channels not in (3, 4):
        raise SpecError(
            f"{where}: expected 3- or 4-channel images for resize=, got channels={channels}. Resize "
            "gray images as 3-channel ones, or batch them without resize= (regions are then not scaled)."
        )
    images = cast("Sequence[GpuImage[Any, Any]]", items)
    reverse, swap_colour = batch_plan(images, order, reverse_channels, out, where=where)
    return _IMAGE_ORDERS[channels, reverse or swap_colour]


def _slot_size(
    sources: list[FrameSource], size: tuple[int, int] | None, resize: ResizeMode | None, where: str
) -> tuple[int, int]:
    """``(height, width)`` of every slot: ``size``; without ``resize``, every region must be it."""
    if resize is None:
        regions = [(source.region[3], source.region[2]) for source in sources]
        slot = batch_size(regions, size, where=where)
        if any(region != slot for region in regions):
            raise SpecError(
                f"{where}: expected every frame region to be {slot[0]}x{slot[1]} (height x width) without "
                f"resize=, got {sorted(set(regions))}. Pass resize='bilinear' (or 'nearest') to scale "
                "them to size=(height, width)."
            )
        return slot
    if size is None:
        raise SpecError(f"{where}: expected size=(height, width) with resize={resize!r}, got size=None.")
    return _checked_size(size, where)


def _checked_size(size: object, where: str) -> tuple[int, int]:
    if (
        not isinstance(size, tuple)
        or len(cast("tuple[object, ...]", size)) != 2
        or any(type(side) is not int or side <= 0 for side in cast("tuple[object, ...]", size))
    ):
        raise SpecError(
            f"{where}: expected size as a (height, width) tuple of positive ints, got size={size!r}."
        )
    return cast("tuple[int, int]", size)


def normalize_frames_batch(
    items: Sequence[object],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    rois: Sequence[tuple[int, int, int, int] | None] | None,
    size: tuple[int, int] | None,
    resize: ResizeMode | None,
    keep_aspect: bool,
    pad_value: float,
    dtype: DTypeLike | None,
    scale: float | None,
    reverse_channels: bool,
    order: ChannelOrderLike | None,
    out: object,
    like: str,
    where: str,
    replay: Call | None = None,
) -> Any:
    """``normalize_batch`` of frames (or of images with ``resize=``): see its docstring."""
    sources = batch_sources(list(items), None if rois is None else list(rois), where)
    first = sources[0]
    device = first.planes[0].spec.device
    order_out = _output_order(items, first.planes[0].spec.channels, order, reverse_channels, out, where)
    channels = len(order_out.value)
    slot_hw = _slot_size(sources, size, resize, where)
    target = parse_dtype(Float32 if dtype is None else dtype, where=where)
    if target not in OUTPUT_DTYPES:
        raise SpecError(f"{where}: expected dtype float32, float16, bfloat16 or uint8, got dtype={target}.")
    recipe = frame_recipe(
        first,
        size=slot_hw,
        resize="nearest" if resize is None else resize,
        keep_aspect=keep_aspect,
        order=order_out,
        mean=mean,
        std=std,
        scale=scale,
        pad_value=pad_value,
        is_image=not is_frame(items[0]),
        where=where,
    )
    executor = executor_for(device, where)  # no GPU library: say so before allocating anything
    new_out = None
    if out is None:
        new_out = NewOut(like, len(sources), channels, slot_hw, target, device)
        out = allocate_batch(*new_out, where)
    batch = parse_batch_out(out, len(sources), channels, slot_hw, target, where)
    if batch.device != device:
        raise DeviceError(f"{where}: expected out on {device}, got {batch.device}.")
    geometry = batch.geometry
    extent = batch.item_pitch * (len(sources) - 1) + byte_extent(
        (channels, *slot_hw),
        (geometry.channel_stride, geometry.row_pitch, geometry.pixel_stride),
        dtype_info(target).itemsize,
    )
    unique = {id(plane): plane for source in sources for plane in source.planes}  # regions share planes
    planes = [cast("GpuImage[Any, Any]", plane) for plane in unique.values()]
    if any(ranges_overlap((plane.ptr, plane.nbytes), (batch.ptr, extent)) for plane in planes):
        raise SpecError(f"{where}: out overlaps an input; write into separate memory.")
    slot = Buffer(batch.ptr, trusted_spec(geometry, target, Layout.CHW, batch.device), batch.array)
    if not device.is_cuda:
        convert_frames_into(sources, slot, batch.item_pitch, recipe, 0, where=where, planes=planes)
    elif batch.spoke is not None:  # queued where out's library queues its own work: its current stream
        stream = batch.spoke.current_stream(device.index)
        convert_frames_into(sources, slot, batch.item_pitch, recipe, stream, where=where, planes=planes)
        if replay is not None:  # checked and queued: the next call of this kind only launches
            replay.remember(executor, sources, slot, batch.item_pitch, recipe, extent, new_out)
    else:  # a GpuBatch: on its ready stream (else the executor's), after its pending uses
        gpu_batch = cast(GpuBatch, out)
        ready, keep = gpu_batch.stream, None
        stream, keep = executor.stream_for(device.index) if ready is None else (ready, None)
        with gpu_batch.writing(stream if keep is None else keep):
            convert_frames_into(sources, slot, batch.item_pitch, recipe, stream, where=where, planes=planes)
    return out
