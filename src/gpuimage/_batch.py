"""``normalize_batch``: many images and regions normalized into one NCHW array by one kernel launch.

The destination is a foreign array (torch, CuPy or, for host images, NumPy), read through its spoke's
``describe_out``; each item is one CHW slot of it. Planning is ``_plan``'s (``BatchItem``,
``batch_size``); ordering and execution are ``_conversions``' (``convert_batch_into``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar, cast, overload

from ._affine import ChannelValues, check_finite_map, finite_number, input_scale, normalize_affine, short_repr
from ._conversions import convert_batch_into, executor_for
from ._device import Device
from ._dtypes import DTypeLike, DTypeName, Float32, dtype_info, parse_dtype
from ._errors import DeviceError, InteropError, PitchError, SpecError
from ._executor import Buffer
from ._exports import ImageExports
from ._geometry import Geometry, byte_extent, check_geometry, crop_offset
from ._layout import Layout
from ._plan import BatchItem, batch_size, check_same, ranges_overlap
from ._spec import trusted_spec
from ._spokes import Spoke, spoke_of

if TYPE_CHECKING:
    import cupy
    import numpy.typing as npt
    import torch

    from ._image import GpuImage

__all__ = ["normalize_batch"]

Roi = tuple[int, int, int, int]


class _BatchOut(NamedTuple):
    """An NCHW destination as the executors see it: base pointer, item pitch and one item's geometry;
    and the spoke of its library."""

    array: Any
    ptr: int
    item_pitch: int
    geometry: Geometry
    dtype: DTypeName
    device: Device
    spoke: Spoke


def _parse_batch_out(
    out: object, count: int, channels: int, size: tuple[int, int], dtype: DTypeName, where: str
) -> _BatchOut:
    spoke = spoke_of(out)
    if spoke is None:
        raise SpecError(
            f"{where}: expected out to be a torch.Tensor, cupy.ndarray or numpy.ndarray, got "
            f"{type(out).__module__}.{type(out).__qualname__}."
        )
    ptr, shape, strides, found, device = spoke.describe_out(out, where=where)
    expected = (count, channels, *size)
    if tuple(shape) != expected:
        raise SpecError(f"{where}: expected out of shape (N, C, H, W) = {expected}, got {tuple(shape)}.")
    if found != dtype:
        raise SpecError(f"{where}: expected out of dtype {dtype}, got {found}.")
    itemsize = dtype_info(dtype).itemsize
    item_pitch, channel_stride, row_pitch, pixel_stride = strides
    if ptr % itemsize or item_pitch % itemsize:
        raise PitchError(
            f"{where}: out's pointer {ptr:#x} and item stride {item_pitch} bytes must be multiples of the "
            f"item size ({itemsize} bytes)."
        )
    geometry = Geometry(size[0], size[1], channels, row_pitch, pixel_stride, channel_stride)
    check_geometry(geometry, itemsize, where=where)
    extent = byte_extent((channels, *size), (channel_stride, row_pitch, pixel_stride), itemsize)
    if count > 1 and item_pitch < extent:
        raise SpecError(f"{where}: the items of out overlap (item stride {item_pitch} bytes < {extent}).")
    return _BatchOut(out, ptr, item_pitch, geometry, dtype, device, spoke)


def _allocate_batch(
    like: str, count: int, channels: int, size: tuple[int, int], dtype: DTypeName, device: Device, where: str
) -> object:
    shape = (count, channels, *size)
    if like == "torch":
        from . import _torch

        return _torch.empty(shape, dtype, device)
    if like == "cupy":
        if not device.is_cuda:
            raise DeviceError(
                f"{where}: expected like='numpy' or 'torch' for host images, got like='cupy' (CuPy arrays "
                "live on a GPU). Batch host images into NumPy or torch, or move them with image.cuda()."
            )
        from . import _cupy

        return _cupy.empty(shape, dtype, device, where=where)
    if like == "numpy" and not device.is_cuda:
        from . import _numpy

        return _numpy.empty(shape, dtype)
    raise SpecError(f"{where}: expected like='torch', 'cupy' or (host images) 'numpy', got like={like!r}.")


BatchT = TypeVar("BatchT", "torch.Tensor", "cupy.ndarray", "npt.NDArray[Any]")


@overload
def normalize_batch(
    images: Sequence[GpuImage[Any, Any]],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    rois: Sequence[Roi | None] | None = None,
    size: tuple[int, int] | None = None,
    pad_value: float = 0.0,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    out: BatchT,
) -> BatchT: ...
@overload
def normalize_batch(
    images: Sequence[GpuImage[Any, Any]],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    rois: Sequence[Roi | None] | None = None,
    size: tuple[int, int] | None = None,
    pad_value: float = 0.0,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    out: None = None,
    like: Literal["torch"] = "torch",
) -> torch.Tensor: ...
@overload
def normalize_batch(
    images: Sequence[GpuImage[Any, Any]],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    rois: Sequence[Roi | None] | None = None,
    size: tuple[int, int] | None = None,
    pad_value: float = 0.0,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    out: None = None,
    like: Literal["cupy"],
) -> cupy.ndarray: ...
@overload
def normalize_batch(
    images: Sequence[GpuImage[Any, Any]],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    rois: Sequence[Roi | None] | None = None,
    size: tuple[int, int] | None = None,
    pad_value: float = 0.0,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    out: None = None,
    like: Literal["numpy"],
) -> npt.NDArray[Any]: ...
def normalize_batch(
    images: Sequence[GpuImage[Any, Any]],
    mean: ChannelValues,
    std: ChannelValues,
    *,
    rois: Sequence[Roi | None] | None = None,
    size: tuple[int, int] | None = None,
    pad_value: float = 0.0,
    dtype: DTypeLike | None = None,
    scale: float | None = None,
    reverse_channels: bool = False,
    out: object = None,
    like: str = "torch",
) -> Any:
    """``normalize`` over many images and regions, packed into one NCHW array by a single kernel.

    Parameters:
        images: images of one dtype, channel count and device; sizes and layouts may differ.
        rois: one ``(x, y, width, height)`` per image (None: the whole image); bounds are checked.
        size: ``(height, width)`` of the batch; default: the largest region. Regions are not resized:
            each sits at the top left of its slot, the rest is filled with ``pad_value`` (in output
            units, after normalization).
        out: an NCHW torch tensor, CuPy array or (host images) NumPy array to write into, any strides.
        like: the library of the new array when ``out`` is None: "torch", "cupy" or "numpy" (host).
        mean, std, dtype, scale, reverse_channels: as for ``normalize``.

    Returns:
        ``out``, or a new array. On a GPU the work is queued on the current stream of ``out``'s (or
        ``like``'s) library, after every image's data; each image records the read.
    """
    where = "normalize_batch()"
    pad_value = finite_number(pad_value, "pad_value", where)
    sources = _checked_images(images, where)
    regions = _regions(sources, rois, where)
    first = sources[0]
    target = parse_dtype(Float32 if dtype is None else dtype, where=where)
    batch_hw = batch_size([(item.height, item.width) for item in regions], size, where=where)
    factor = input_scale(first.dtype, scale, where=where)
    affine = normalize_affine(first.channels, mean, std, factor, reverse=reverse_channels, where=where)
    check_finite_map(affine, first.dtype, target, origin="normalize", where=where)
    executor_for(first.device, where)  # no GPU library: say so before allocating anything
    if out is None:
        out = _allocate_batch(like, len(regions), first.channels, batch_hw, target, first.device, where)
    batch = _parse_batch_out(out, len(regions), first.channels, batch_hw, target, where)
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
    # queued where out's library queues its own work: on its current stream
    stream = batch.spoke.current_stream(batch.device.index) if batch.device.kind == "cuda" else 0
    convert_batch_into(sources, regions, slot, batch.item_pitch, affine, pad_value, stream, where=where)
    return out


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
    message = f"{where}: expected {name} as {expected}, got {name}={short_repr(values)}."
    if isinstance(values, str | bytes | ImageExports) or not isinstance(cast(object, values), Iterable):
        raise InteropError(message)
    try:
        return list(values)
    except TypeError as exc:  # iterable by type, not by value (a 0-d array)
        raise InteropError(message) from exc
