"""What a spoke hands to the hub: a pointer, a checked spec, and what keeps the memory alive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ._device import Device
from ._dtypes import DTypeName, dtype_info
from ._errors import SpecError
from ._geometry import check_within, geometry_from_strided
from ._layout import Layout
from ._spec import ImageSpec, trusted_spec

__all__ = ["Imported", "spec_from_strided"]


class Imported(NamedTuple):
    """An image read off a foreign object, before the hub wraps it.

    ``owner`` is whatever must stay alive for ``ptr`` to stay valid (the foreign object itself, or a
    DLPack capsule's manager); ``stream`` is a raw ``cudaStream_t`` handle or None.
    """

    ptr: int
    spec: ImageSpec
    owner: object
    stream: int | None
    readonly: bool


def check_pointer(ptr: object, itemsize: int, *, where: str) -> int:
    """Return ``ptr`` if it is a non-NULL int aligned to the item size, else raise ``SpecError``."""
    if type(ptr) is not int or ptr <= 0 or ptr >= 2**64:
        raise SpecError(
            f"{where}: expected a non-NULL pointer (a positive int below 2**64), got ptr={ptr!r}."
        )
    if ptr % itemsize:
        raise SpecError(
            f"{where}: ptr={ptr:#x} is not aligned to the item size ({itemsize} bytes); CUDA loads of "
            "misaligned elements fault. Copy the data to an aligned buffer first."
        )
    return ptr


def spec_from_strided(
    ptr: int,
    shape: Sequence[int],
    strides: Sequence[int],
    dtype: DTypeName,
    layout: Layout | None,
    device: Device,
    *,
    where: str,
    allocation: tuple[int, int] | None = None,
) -> ImageSpec:
    """Check an array's pointer, shape and byte strides and return its spec.

    ``allocation`` is the ``(base, size)`` of the memory the array lives in, where the source knows it:
    the image must lie entirely inside it.
    """
    itemsize = dtype_info(dtype).itemsize
    check_pointer(ptr, itemsize, where=where)
    layout, geometry = geometry_from_strided(shape, strides, layout, itemsize, where=where)
    spec = trusted_spec(geometry, dtype, layout, device)
    if allocation is not None:
        check_within(ptr, spec.nbytes, allocation[0], allocation[1], where=where)
    return spec
