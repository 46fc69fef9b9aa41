"""``normalize_batch``: many images and regions normalized into one NCHW array by one kernel launch.

The destination is a foreign array (torch, CuPy or, for host images, NumPy), read through its spoke's
``describe_out``; each item is one CHW slot of it. Planning is ``_plan``'s (``BatchItem``,
``batch_size``); ordering and execution are ``_conversions``' (``convert_batch_into``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

from ._affine import (
    Affine,
    ChannelValues,
    check_finite_map,
    finite_number,
    input_scale,
    normalize_affine,
    short_repr,
)
from ._batch_out import allocate_batch, parse_batch_out
from ._channel_order import batch_plan
from ._conversions import convert_batch_into, executor_for
from ._dtypes import DTypeLike, Float32, dtype_info, parse_dtype
from ._errors import DeviceError, InteropError, LayoutError, SpecError
from ._executor import Buffer
from ._exports import ImageExports
from ._formats import ChannelOrderLike
from ._frame_batch import normalize_frames_batch
from ._frame_convert import is_frame
from ._frame_replay import Call, prepare
from ._geometry import byte_extent, crop_offset
from ._image_batch import GpuBatch
from ._layout import Layout
from ._plan import BatchItem, batch_size, check_same, ranges_overlap
from ._sampling import ResizeMode
from ._spec import trusted_spec

if TYPE_CHECKING:
    import cupy
    import numpy.typing as npt
    import torch

    from ._frame import GpuFrame
    from ._image import GpuImage

__all__ = ["normalize_batch", "replay_call"]

Roi = tuple[int, int, int, int]


BatchT = TypeVar("BatchT", "torch.Tensor", "cupy.ndarray", "npt.NDArray[Any]")
"""The type of ``normalize_batch``'s array ``out=``: a torch tensor, a CuPy array or a NumPy array,
returned as it came (the API reference explains it under ``normalize_batch``)."""


@overload
def normalize_batch(
    images: Sequence[GpuImage[Any, Any] | GpuFrame],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    rois: Sequence[Roi | None] | None = None,
    size: tuple[int, int] | None = None,
    resize: ResizeMode | None = None,
    keep_aspect: bool = False,
    order: ChannelOrderLike | None = None,
    pad_value: float = 0.0,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    out: BatchT,
) -> BatchT: ...
@overload
def normalize_batch(
    images: Sequence[GpuImage[Any, Any] | GpuFrame],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    rois: Sequence[Roi | None] | None = None,
    size: tuple[int, int] | None = None,
    resize: ResizeMode | None = None,
    keep_aspect: bool = False,
    order: ChannelOrderLike | None = None,
    pad_value: float = 0.0,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    out: GpuBatch,
) -> GpuBatch: ...
@overload
def normalize_batch(
    images: Sequence[GpuImage[Any, Any] | GpuFrame],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    rois: Sequence[Roi | None] | None = None,
    size: tuple[int, int] | None = None,
    resize: ResizeMode | None = None,
    keep_aspect: bool = False,
    order: ChannelOrderLike | None = None,
    pad_value: float = 0.0,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    out: None = None,
    like: Literal["torch"] = "torch",
) -> torch.Tensor: ...
@overload
def normalize_batch(
    images: Sequence[GpuImage[Any, Any] | GpuFrame],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    rois: Sequence[Roi | None] | None = None,
    size: tuple[int, int] | None = None,
    resize: ResizeMode | None = None,
    keep_aspect: bool = False,
    order: ChannelOrderLike | None = None,
    pad_value: float = 0.0,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    out: None = None,
    like: Literal["cupy"],
) -> cupy.ndarray: ...
@overload
def normalize_batch(
    images: Sequence[GpuImage[Any, Any] | GpuFrame],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    rois: Sequence[Roi | None] | None = None,
    size: tuple[int, int] | None = None,
    resize: ResizeMode | None = None,
    keep_aspect: bool = False,
    order: ChannelOrderLike | None = None,
    pad_value: float = 0.0,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    out: None = None,
    like: Literal["numpy"],
) -> npt.NDArray[Any]: ...
def normalize_batch(
    images: Sequence[GpuImage[Any, Any] | GpuFrame],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    rois: Sequence[Roi | None] | None = None,
    size: tuple[int, int] | None = None,
    resize: ResizeMode | None = None,
    keep_aspect: bool = False,
    order: ChannelOrderLike | None = None,
    pad_value: float = 0.0,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    out: object = None,
    like: str = "torch",
) -> Any:
    """``normalize`` over many images, frames and regions, packed into one NCHW array by one launch.

    Parameters:
        images: images of one dtype, channel count and device; sizes and layouts may differ. Or
            ``GpuFrame``s (NV12, P010, ...) of one format and device: each region is converted to
            RGB (``order``), cropped, resized, normalized and laid out in the same launch.
        rois: one ``(x, y, width, height)`` per item (None: the whole item); bounds are checked.
        size: ``(height, width)`` of the batch; default: the largest region. Without ``resize``,
            regions are not scaled: an image's sits at the top left of its slot, the rest is filled
            with ``pad_value`` (in output units, after normalization); a frame's must be ``size``.
        resize: ``"bilinear"`` (OpenCV's ``INTER_LINEAR``, half-pixel centres) or ``"nearest"``
            (``INTER_NEAREST_EXACT``): each region is scaled to ``size`` (HWC images of 3 or 4
            channels, or frames). The exact definition is on the "Video frames" page.
        keep_aspect: with ``resize``, scale each region to fit ``size`` with its aspect ratio kept,
            centred, and fill the rest of its slot with ``pad_value`` (letterbox).
        order: the batch's channel order, "RGB", "BGR", "RGBA" or "BGRA": a frame's (default RGB);
            images are reordered to it from the one order they all record (as ``normalize`` does;
            4-channel images with ``resize`` only). A ``GpuBatch`` ``out`` recording another order
            than the batch's is refused.
        out: an NCHW torch tensor, CuPy array or (host images) NumPy array to write into, any strides;
            or a ``GpuBatch`` (NCHW or NHWC, any item pitch). ``BatchT`` in the signatures above is
            the type of an array ``out``: ``torch.Tensor``, ``cupy.ndarray`` or a NumPy array, and
            the call returns that same type (``out`` itself).
        like: the library of the new array when ``out`` is None: "torch", "cupy" or "numpy" (host).
        mean, std, dtype, scale, reverse_channels: as for ``normalize``.

    Returns:
        ``out``, or a new array. On a GPU the work is queued on the current stream of ``out``'s (or
        ``like``'s) library, after every image's data; each image records the read (an event,
        unless a later writer waits for that whole stream anyway). A ``GpuBatch`` ``out`` is written
        on its ready stream (else the executor's current stream), after its pending writes and
        recorded reads, and is ready there afterwards (``batch.writing``).
    """
    where = "normalize_batch()"
    if keep_aspect and resize is None:
        raise SpecError(
            f"{where}: expected resize='bilinear' or 'nearest' with keep_aspect=True, got resize=None."
        )
    if resize is not None or _has_frames(images):
        # a frame loop's call: replayed when its key was seen (_frame_replay); without out, into a
        # new array of the kind the first call made
        call = replay_call(
            images,
            mean,
            std,
            rois=rois,
            size=size,
            resize=resize,
            keep_aspect=keep_aspect,
            order=order,
            pad_value=pad_value,
            dtype=dtype,
            scale=scale,
            reverse_channels=reverse_channels,
            out=out,
            like=like,
        )
        if call is not None:
            if out is not None:
                if call.run():
                    return out
            else:
                made = call.run_new()
                if made is not None:
                    return made
        return normalize_frames_batch(
            _listed(images, "images", "a sequence of GpuImages or GpuFrames", where),
            mean,
            std,
            rois=None
            if rois is None
            else _listed(rois, "rois", "one (x, y, width, height) or None per item", where),
            size=size,
            resize=resize,
            keep_aspect=keep_aspect,
            pad_value=pad_value,
            dtype=dtype,
            scale=scale,
            reverse_channels=reverse_channels,
            order=order,
            out=out,
            like=like,
            where=where,
            replay=call,
        )
    images = cast("Sequence[GpuImage[Any, Any]]", images)
    pad_value = finite_number(pad_value, "pad_value", where)
    sources = _checked_images(images, where)
    regions = _regions(sources, rois, where)
    first = sources[0]
    reverse, swap_colour = batch_plan(sources, order, reverse_channels, out, where=where)
    if swap_colour:  # the batch kernel reverses all channels or none: (2, 1, 0, 3) needs the frame path
        raise LayoutError(
            f"{where}: expected resize= to swap red and blue of 4-channel images (alpha kept), got "
            f"order={order!r} for {first.channel_order} images without it. Reorder them first "
            f"(image.to_channel_order({order!r})), or pass resize= (HWC images, in one launch)."
        )
    target = parse_dtype(Float32 if dtype is None else dtype, where=where)
    batch_hw = batch_size([(item.height, item.width) for item in regions], size, where=where)
    factor = input_scale(first.dtype, scale, where=where)
    affine = normalize_affine(first.channels, mean, std, factor, reverse=reverse, where=where)
    check_finite_map(affine, first.dtype, target, origin="normalize", where=where)
    executor_for(first.device, where)  # no GPU library: say so before allocating anything
    if out is None:
        out = allocate_batch(like, len(regions), first.channels, batch_hw, target, first.device, where)
    batch = parse_batch_out(out, len(regions), first.channels, batch_hw, target, where)
    if batch.device != first.device:
        raise DeviceError(f"{where}: expected out on {first.device}, got {batch.device}.")
    extent = batch.item_pitch * (len(regions) - 1) + byte_extent(
        (first.channels, *batch_hw),
        (batch.geometry.channel_stride, batch.geometry.row_pitch, batch.geometry.pixel_stride),
        dtype_info(target).itemsize,
    )
    if any(ranges_overlap((image.ptr, image.nbytes), (batch.ptr, extent)) for image in sources):
        raise SpecError(f"{where}: out overlaps an input image; write into separate memory.")
    slot = Buffer(batch.ptr, trusted_spec(batch.geometry, target, Layout.CHW, batch.device), batch.array)
    if batch.device.kind != "cuda":
        convert_batch_into(sources, regions, slot, batch.item_pitch, affine, pad_value, 0, where=where)
    elif batch.spoke is not None:  # queued where out's library queues its own work: its current stream
        stream = batch.spoke.current_stream(batch.device.index)
        convert_batch_into(sources, regions, slot, batch.item_pitch, affine, pad_value, stream, where=where)
    else:
        _write_gpu_batch(cast(GpuBatch, out), sources, regions, slot, affine, pad_value, where)
    return out


def _write_gpu_batch(
    out: GpuBatch,
    sources: list[GpuImage[Any, Any]],
    regions: list[BatchItem],
    slot: Buffer,
    affine: Affine,
    pad_value: float,
    where: str,
) -> None:
    """Queue the batch conversion into a device ``GpuBatch`` on its ready stream (else the executor's
    current stream), after its pending write and recorded reads; afterwards it is ready there."""
    device = out.device
    stream, keep = out.stream, None
    if stream is None:
        stream, keep = executor_for(device, where).stream_for(device.index)
    with out.writing(stream if keep is None else keep):  # the stream object, where one keeps it alive
        convert_batch_into(sources, regions, slot, out.item_pitch, affine, pad_value, stream, where=where)


def replay_call(
    images: object,
    mean: object,
    std: object,
    *,
    rois: object,
    size: object,
    resize: object,
    keep_aspect: object,
    order: object,
    pad_value: object,
    dtype: object,
    scale: object,
    reverse_channels: object,
    out: object,
    like: object = "torch",
) -> Call | None:
    """``normalize_batch``'s arguments described for the replay table (``_frame_replay.prepare``);
    None where the call cannot be replayed."""
    flags, numbers = (keep_aspect, reverse_channels), (mean, std, pad_value, scale)
    return prepare(images, rois, out, size, flags, numbers, (resize, order, dtype), like)


def _has_frames(items: object) -> bool:
    """True when a sequence of items holds a frame (anything else goes on to be checked as images)."""
    return isinstance(items, list | tuple) and any(is_frame(item) for item in cast("Sequence[object]", items))


def _checked_images(images: Sequence[GpuImage[Any, Any]], where: str) -> list[GpuImage[Any, Any]]:
    """The images as a list: at least one, all GpuImages of one dtype, channel count and device."""
    sources = _listed(images, "images", "a sequence of GpuImages, for one image [image]", where)
    if not sources:
        raise SpecError(f"{where}: expected at least one image, got an empty sequence.")
    for image in sources:
        if not isinstance(cast(object, image), ImageExports):  # GpuImage's base: no import circle
            raise InteropError(
                f"{where}: expected GpuImage items, got {type(image).__name__}. Wrap arrays first: "
                "GpuImage.from_numpy(array, layout='HWC'), from_torch() or from_cupy()."
            )
    check_same([image.dtype for image in sources], "dtype", where=where)
    check_same([image.channels for image in sources], "channels", where=where)
    check_same([image.device for image in sources], "device", where=where)
    return sources


def _regions(
    images: list[GpuImage[Any, Any]], rois: Sequence[Roi | None] | None, where: str
) -> list[BatchItem]:
    """Where each image's region lies, bounds checked (no crop objects: a batch of 64 would spend
    more on building them than the GPU spends on the batch)."""
    boxes: list[Roi | None] = (
        [None] * len(images)
        if rois is None
        else _listed(rois, "rois", "one (x, y, width, height) tuple or None per image", where)
    )
    if len(boxes) != len(images):
        raise SpecError(f"{where}: expected one roi per image ({len(images)}), got {len(boxes)}.")
    items: list[BatchItem] = []
    for image, box in zip(images, boxes, strict=True):
        geometry = image.spec.geometry
        _, _, _, row_pitch, pixel_stride, channel_stride = geometry
        if box is None:
            items.append(
                BatchItem(image.ptr, row_pitch, pixel_stride, channel_stride, image.height, image.width)
            )
            continue
        if not isinstance(cast(object, box), tuple) or len(box) != 4:
            raise SpecError(f"{where}: expected each roi as (x, y, width, height), got {box!r}.")
        offset = crop_offset(geometry, *box, where=f"{where} roi {box}")
        items.append(BatchItem(image.ptr + offset, row_pitch, pixel_stride, channel_stride, box[3], box[2]))
    return items


def _listed(values: Iterable[Any], name: str, expected: str, where: str) -> list[Any]:
    """``values`` as a list, if it is a sequence (a GpuImage or an int is not)."""
    if type(values) is list or type(values) is tuple:  # the frame loop's case: nothing to check
        return list(cast("Iterable[Any]", values))
    # the message is built only when needed: repr of a batch of frames costs more than the batch
    if isinstance(values, str | bytes | ImageExports) or not isinstance(cast(object, values), Iterable):
        raise InteropError(f"{where}: expected {name} as {expected}, got {name}={short_repr(values)}.")
    try:
        return list(values)
    except TypeError as exc:  # iterable by type, not by value (a 0-d array)
        raise InteropError(
            f"{where}: expected {name} as {expected}, got {name}={short_repr(values)}."
        ) from exc
