"""Pickling host images, frames and batches BY VALUE: a packed copy of the pixels travels.

Device memory is shared by a CUDA IPC description (``_ipc``); host memory has no handle another
process could open, so ``pickle.dumps`` of a host ``GpuImage``, ``GpuFrame`` or ``GpuBatch`` carries
the pixels themselves (``_ipc`` sends host objects here):

- The reduce tuple is ``(load_*, (class, facts, array))``: ``facts`` a tuple of plain values (sizes,
  dtype, layout, format, colour, channel order, read-only), ``array`` a packed ``numpy.ndarray``.
  NumPy pickles the array with protocol 5's ``PickleBuffer``: an ``out-of-band`` consumer such as
  Ray's object store takes the bytes into its shared memory without another copy, and hands them
  back without a copy too (read-only, as Ray's NumPy arrays are).
- Packed, whatever the source: a crop, a pitched image or a strided batch arrives as a new packed
  image (``row_pitch`` may differ from the source's); a frame arrives as one packed block
  (``frame.layout`` is ``frame_layout(format, width, height)``), even if its planes lay apart.
  A packed source is not copied here: pickle (or Ray) copies its bytes once.
- bfloat16 travels as uint16 (NumPy has no bfloat16), reinterpreted on arrival.
- The receiver checks the facts and the array before building anything (``InteropError``).
- An image arrives read-only where it was, or where its array arrives read-only (zero-copy from
  Ray's object store): ``copy()`` gives a writable one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from ._device import CPU
from ._dtypes import DTypeName, dtype_info
from ._errors import GpuImageError, InteropError
from ._formats import ChannelOrder, ColorMatrixLike, ColorRangeLike, ColorSpec, parse_pixel_format
from ._frame_layout import frame_layout
from ._image_batch_spec import parse_batch_layout
from ._interfaces import ArrayExport, host_view
from ._layout import parse_layout
from ._spec import ImageSpec

if TYPE_CHECKING:
    from ._frame import GpuFrame
    from ._image import GpuImage
    from ._image_batch import GpuBatch

__all__ = [
    "load_batch",
    "load_frame",
    "load_image",
    "reduce_host_batch",
    "reduce_host_frame",
    "reduce_host_image",
]

VERSION = 1
"""The version of the facts tuple; a receiver refuses another."""

Reduced = tuple[Callable[..., object], tuple[object, ...]]


def _carrier(dtype: DTypeName) -> DTypeName | None:
    """The dtype the array travels as: bfloat16 as uint16 (same size), others as themselves."""
    return "uint16" if dtype == "bfloat16" else None


def _order(order: ChannelOrder | None) -> str | None:
    return None if order is None else order.value


# -- the producer ------------------------------------------------------------------------------------


def reduce_host_image(image: GpuImage[Any, Any]) -> Reduced:
    """``pickle.dumps(image)`` of a host image: its pixels, packed (see the module)."""
    view = host_view(image.ptr, image.spec, image, readonly=image.readonly, as_dtype=_carrier(image.dtype))
    facts: tuple[object, ...] = (VERSION, image.height, image.width, image.channels, image.dtype)
    facts += (image.layout.value, _order(image.channel_order), image.readonly)
    return load_image, (type(image), facts, np.ascontiguousarray(view))


def reduce_host_batch(batch: GpuBatch) -> Reduced:
    """``pickle.dumps(batch)`` of a host batch: its items, packed one after the other."""
    typestr = dtype_info(_carrier(batch.dtype) or batch.dtype).cai_typestr
    interface = {
        "shape": batch.shape,
        "typestr": typestr,
        "data": (batch.ptr, batch.readonly),
        "strides": batch.strides,
        "version": 3,
    }
    array: npt.NDArray[Any] = np.ascontiguousarray(np.asarray(ArrayExport(interface, batch)))
    spec = batch.item_spec
    facts: tuple[object, ...] = (VERSION, batch.size, spec.height, spec.width, spec.channels, spec.dtype)
    facts += (batch.layout.value, _order(batch.channel_order), batch.readonly)
    return load_batch, (type(batch), facts, array)


def reduce_host_frame(frame: GpuFrame) -> Reduced:
    """``pickle.dumps(frame)`` of a host frame: one packed block of its planes."""
    packed = frame_layout(frame.format, frame.width, frame.height)
    planes = frame.planes
    layout = frame.layout
    if layout == packed:  # already one packed block: the bytes as they lie (pickle copies them)
        base = planes[0].ptr - packed.planes[0].offset
        spec = ImageSpec.packed(height=1, width=packed.nbytes, device=CPU)
        block = host_view(base, spec, frame, readonly=frame.readonly).reshape(-1)
    else:
        block = np.empty(packed.nbytes, np.uint8)
        for plane, place in zip(planes, packed.planes, strict=True):
            shape = (place.height, place.width, place.channels)
            size = place.height * place.width * place.channels * plane.spec.itemsize
            target = block[place.offset : place.offset + size].view(plane.dtype).reshape(shape)
            target[...] = plane.as_numpy().reshape(shape)
    colour = frame.colour
    names = None if colour is None else (colour.matrix.value, colour.range.value)
    facts = (VERSION, frame.format.value, frame.width, frame.height, names, frame.readonly)
    return load_frame, (type(frame), facts, block)


# -- the receiver ------------------------------------------------------------------------------------


def load_image(cls: type[GpuImage[Any, Any]], facts: object, array: object) -> GpuImage[Any, Any]:
    """``pickle.loads`` of a host image: a packed image over the array that arrived."""
    where = "pickle.loads(image)"
    height, width, channels, dtype, layout, order, readonly = _facts(facts, 8, where)[1:]
    try:
        spec = ImageSpec.packed(
            height=cast(int, height),
            width=cast(int, width),
            channels=cast(int, channels),
            dtype=cast("DTypeName", dtype),
            layout=parse_layout(cast(str, layout), where=where),
            device=CPU,
        )
    except GpuImageError as exc:
        raise _corrupt(where, f"facts={facts!r}", exc) from exc
    pixels = _checked_array(array, spec.dtype, spec.shape, where)
    image = cls.from_pointer(_address(pixels), spec, owner=pixels, readonly=_readonly(readonly, pixels))
    return image.with_channel_order(_channel_order(order, where))


def load_batch(cls: type[GpuBatch], facts: object, array: object) -> GpuBatch:
    """``pickle.loads`` of a host batch: a packed batch over the array that arrived."""
    where = "pickle.loads(batch)"
    size, height, width, channels, dtype, layout, order, readonly = _facts(facts, 9, where)[1:]
    try:
        item = parse_batch_layout(cast(str, layout), where=where).item
        spec = ImageSpec.packed(
            height=cast(int, height),
            width=cast(int, width),
            channels=cast(int, channels),
            dtype=cast("DTypeName", dtype),
            layout=item,
            device=CPU,
        )
        if type(size) is not int or size <= 0:
            raise InteropError(f"{where}: expected a positive int size, got size={size!r}.")
    except GpuImageError as exc:
        raise _corrupt(where, f"facts={facts!r}", exc) from exc
    pixels = _checked_array(array, spec.dtype, (size, *spec.shape), where)
    batch = cls.from_pointer(_address(pixels), spec, size, owner=pixels, readonly=_readonly(readonly, pixels))
    return batch.with_channel_order(_channel_order(order, where))


def load_frame(cls: type[GpuFrame], facts: object, array: object) -> GpuFrame:
    """``pickle.loads`` of a host frame: a packed frame over the block that arrived."""
    where = "pickle.loads(frame)"
    name, width, height, colour_names, readonly = _facts(facts, 6, where)[1:]
    try:
        fmt = parse_pixel_format(cast(str, name), where=where)
        layout = frame_layout(fmt, cast(int, width), cast(int, height))
        colour = None
        if colour_names is not None:
            matrix, range_ = cast("tuple[ColorMatrixLike, ColorRangeLike]", colour_names)
            colour = ColorSpec(matrix=matrix, range=range_)
    except (GpuImageError, TypeError, ValueError) as exc:
        raise _corrupt(where, f"facts={facts!r}", exc) from exc
    block = _checked_array(array, "uint8", (layout.nbytes,), where)
    return cls.from_pointer(
        _address(block),
        format=fmt,
        width=layout.width,
        height=layout.height,
        device=CPU,
        owner=block,
        nbytes=block.nbytes,
        colour=colour,
        readonly=_readonly(readonly, block),
    )


def _facts(facts: object, count: int, where: str) -> tuple[object, ...]:
    """The facts tuple, of this version and length."""
    if not isinstance(facts, tuple) or len(cast("tuple[object, ...]", facts)) != count:
        raise _corrupt(where, f"facts={facts!r}", None)
    found = cast("tuple[object, ...]", facts)
    if found[0] != VERSION:
        raise InteropError(
            f"{where}: expected a host pickle of version {VERSION}, got version={found[0]!r} (pickled by "
            "another gpuimage release). Unpickle it with the release that pickled it."
        )
    return found


def _checked_array(array: object, dtype: DTypeName, shape: tuple[int, ...], where: str) -> npt.NDArray[Any]:
    """The arrived array, checked: a C-contiguous NumPy array of ``shape`` in ``dtype``'s carrier."""
    expected = dtype_info(_carrier(dtype) or dtype).numpy
    assert expected is not None  # the carrier is a dtype NumPy has
    if not isinstance(array, np.ndarray):
        raise _corrupt(where, f"pixels of type {type(array).__name__}", None)
    pixels = cast("npt.NDArray[Any]", array)
    if pixels.dtype != expected or pixels.shape != shape or not pixels.flags.c_contiguous:
        got = f"an array of {pixels.dtype} {pixels.shape} (C-contiguous: {pixels.flags.c_contiguous})"
        raise _corrupt(where, f"{got} for {dtype} {shape}", None)
    return pixels


def _address(pixels: npt.NDArray[Any]) -> int:
    return int(pixels.__array_interface__["data"][0])


def _readonly(readonly: object, pixels: npt.NDArray[Any]) -> bool:
    return bool(readonly) or not pixels.flags.writeable


def _channel_order(order: object, where: str) -> ChannelOrder | None:
    if order is None:
        return None
    try:
        return ChannelOrder(cast(str, order))
    except ValueError as exc:
        raise _corrupt(where, f"channel_order={order!r}", exc) from exc


def _corrupt(where: str, got: str, cause: BaseException | None) -> InteropError:
    why = "" if cause is None else f" ({type(cause).__name__}: {cause})"
    return InteropError(
        f"{where}: expected a host image's pickle as gpuimage writes it, got {got}{why}. The pickle is "
        "corrupt, or was not made by pickle.dumps() of a gpuimage object."
    )
