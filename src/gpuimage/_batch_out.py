"""Where a batch conversion writes: an NCHW foreign array (torch, CuPy, NumPy) read through its
spoke's ``describe_out``, or a ``GpuBatch``; and new batches when the caller gives none. Shared by
``normalize_batch`` over images (``_batch``) and over frames (``_frame_batch``)."""

from __future__ import annotations

from typing import Any, NamedTuple

from ._device import Device
from ._dtypes import DTypeName, dtype_info
from ._errors import DeviceError, PitchError, ReadOnlyError, SpecError
from ._geometry import Geometry, byte_extent, check_geometry
from ._image_batch import GpuBatch
from ._spokes import Spoke, spoke_of

__all__ = ["BatchOut", "NewOut", "allocate_batch", "parse_batch_out"]


class BatchOut(NamedTuple):
    """An NCHW destination as the executors see it: base pointer, item pitch and one item's geometry;
    and the spoke of its library."""

    array: Any
    ptr: int
    item_pitch: int
    geometry: Geometry
    dtype: DTypeName
    device: Device
    spoke: Spoke | None
    """None for a ``GpuBatch``, which orders its own writes."""


def parse_batch_out(
    out: object, count: int, channels: int, size: tuple[int, int], dtype: DTypeName, where: str
) -> BatchOut:
    if isinstance(out, GpuBatch):
        return gpu_batch_out(out, count, channels, size, dtype, where)
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
    return BatchOut(out, ptr, item_pitch, geometry, dtype, device, spoke)


def gpu_batch_out(
    out: GpuBatch, count: int, channels: int, size: tuple[int, int], dtype: DTypeName, where: str
) -> BatchOut:
    """A ``GpuBatch`` destination: NCHW or NHWC (the executors take any item strides), any item pitch."""
    if out.readonly:
        raise ReadOnlyError(f"{where}: expected a writable out, got a read-only GpuBatch.")
    expected = (count, channels, *size)
    if (out.size, out.channels, out.height, out.width) != expected:
        raise SpecError(
            f"{where}: expected out of (N, C, H, W) = {expected}, got a GpuBatch of "
            f"{(out.size, out.channels, out.height, out.width)}."
        )
    if out.dtype != dtype:
        raise SpecError(f"{where}: expected out of dtype {dtype}, got {out.dtype}.")
    return BatchOut(out, out.ptr, out.item_pitch, out.item_spec.geometry, dtype, out.device, None)


class NewOut(NamedTuple):
    """``allocate_batch``'s arguments for a call without ``out``: a new array of one geometry."""

    like: str
    items: int
    channels: int
    size: tuple[int, int]
    dtype: DTypeName
    device: Device


def allocate_batch(
    like: str, count: int, channels: int, size: tuple[int, int], dtype: DTypeName, device: Device, where: str
) -> object:
    """A new packed ``(count, channels, *size)`` array of ``like``'s library (``NewOut``'s fields)."""
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
