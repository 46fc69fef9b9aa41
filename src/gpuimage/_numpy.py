"""NumPy spoke: host images, for staging and for machines without a GPU."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import numpy.typing as npt

from ._device import CPU, Device
from ._dtypes import DTypeName, parse_dtype
from ._errors import DeviceError, DTypeError, InteropError, OutOfMemoryError, ReadOnlyError
from ._interfaces import host_view
from ._layout import Layout
from ._source import Imported, spec_from_strided
from ._spec import ImageSpec
from ._spokes import OutArray, Spoke

__all__ = ["allocate", "empty", "parse", "strided_parts", "view"]


def _refuse_masked(array: object, where: str) -> None:
    """Masked arrays are ndarrays whose mask an image cannot carry: refuse rather than drop it."""
    if isinstance(array, np.ma.MaskedArray):
        raise InteropError(
            f"{where}: expected a plain numpy.ndarray, got a numpy.ma.MaskedArray (an image has no "
            "mask, so it would be lost). Pass array.filled(fill_value) to replace masked elements, "
            "or array.data to use the values under the mask as they are."
        )


def parse(array: object, *, layout: Layout | None, where: str) -> Imported:
    """Wrap a NumPy array (2-D, or 3-D with a layout) as a host image, without copying."""
    if not isinstance(array, np.ndarray):
        raise InteropError(f"{where}: expected a numpy.ndarray, got {type(array).__name__}.")
    ndarray = cast("npt.NDArray[np.generic]", array)
    _refuse_masked(ndarray, where)
    dtype = parse_dtype(ndarray.dtype, where=where)
    ptr = int(ndarray.__array_interface__["data"][0])
    spec = spec_from_strided(ptr, ndarray.shape, ndarray.strides, dtype, layout, CPU, where=where)
    return Imported(ptr, spec, ndarray, None, not ndarray.flags.writeable)


def view(
    ptr: int, spec: ImageSpec, owner: object, *, readonly: bool, as_dtype: DTypeName | None = None
) -> npt.NDArray[Any]:
    """A NumPy array over a host image (same pointer, same byte strides) that keeps ``owner`` alive."""
    if spec.device.is_cuda:
        raise DeviceError(
            f"as_numpy(): the image is on {spec.device}; NumPy only sees host memory. Call image.cpu() "
            "for a host copy, or use as_cupy()/as_torch() for a device view."
        )
    if spec.dtype == "bfloat16" and as_dtype is None:
        raise DTypeError("as_numpy(): NumPy has no bfloat16. Use as_torch() (a CPU tensor) instead.")
    return host_view(ptr, spec, owner, readonly=readonly, as_dtype=as_dtype)


def allocate(nbytes: int, alignment: int) -> tuple[int, npt.NDArray[np.uint8]]:
    """Host bytes whose first byte is aligned to ``alignment``; returns (pointer, owner)."""
    try:
        buffer = np.empty(nbytes + alignment, dtype=np.uint8)
    except MemoryError as exc:  # NumPy's own class would escape gpuimage's tree
        raise OutOfMemoryError(
            f"allocating {nbytes} bytes of host memory (aligned to {alignment}): expected the system to "
            f"give them, got MemoryError: {exc}. Ask for a smaller image, row_alignment or batch."
        ) from exc
    base = int(buffer.__array_interface__["data"][0])
    offset = (-base) % alignment
    return base + offset, buffer


def strided_parts(array: object) -> tuple[int, tuple[int, ...], tuple[int, ...], DTypeName, Device]:
    """(pointer, shape, byte strides, dtype, device) of a writable NumPy array of an image dtype."""
    if not isinstance(array, np.ndarray):
        raise InteropError(f"expected a numpy.ndarray, got {type(array).__name__}.")
    ndarray = cast("npt.NDArray[np.generic]", array)
    _refuse_masked(ndarray, "out")  # results written under a mask would stay hidden by it
    if not ndarray.flags.writeable:
        raise ReadOnlyError("out: the NumPy array is read-only.")
    dtype = parse_dtype(ndarray.dtype, where="out")
    ptr = int(ndarray.__array_interface__["data"][0])
    return ptr, tuple(ndarray.shape), tuple(ndarray.strides), dtype, CPU


def empty(shape: tuple[int, ...], dtype: DTypeName) -> npt.NDArray[Any]:
    """A new packed host array (NumPy has no bfloat16: ``DTypeError``)."""
    if dtype == "bfloat16":
        raise DTypeError("NumPy has no bfloat16 dtype; use like='torch'.")
    return np.empty(shape, dtype=np.dtype(dtype))


def _parse(
    obj: object, /, *, layout: Layout | None, device: Device | None, stream: int | None, where: str
) -> Imported:
    return parse(obj, layout=layout, where=where)  # host memory: no device, no stream


def _view(ptr: int, spec: ImageSpec, owner: object, /) -> object:
    return view(ptr, spec, owner, readonly=False)


def _describe_out(out: object, /, *, where: str) -> OutArray:
    return OutArray(*strided_parts(out))


SPOKE = Spoke(name="numpy", parse=_parse, view=_view, describe_out=_describe_out)
