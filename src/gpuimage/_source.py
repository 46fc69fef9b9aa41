"""What a spoke hands to the hub: a pointer, a checked spec, and what keeps the memory alive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ._device import Device
from ._dtypes import DTYPES, DTypeName, dtype_info
from ._errors import GpuImageError, InteropError, SpecError
from ._geometry import Geometry, check_geometry, check_within, geometry_from_strided
from ._layout import Layout
from ._spec import ImageSpec, field_names, trusted_spec
from ._spec_errors import as_spec_error

__all__ = [
    "ADDRESS_SPACE",
    "Imported",
    "check_address_range",
    "check_pointer",
    "revalidated_spec",
    "spec_from_strided",
]


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


ADDRESS_SPACE = 2**64
"""Pointers are 64-bit: every image's bytes ``[ptr, ptr + extent)`` must lie below this."""


def check_pointer(ptr: object, itemsize: int, *, extent: int, where: str) -> int:
    """Return ``ptr`` if it is a non-NULL int aligned to the item size whose ``extent`` bytes end at
    or below 2**64, else raise ``SpecError``."""
    if type(ptr) is not int or ptr <= 0 or ptr >= ADDRESS_SPACE:
        raise SpecError(
            f"{where}: expected a non-NULL pointer (a positive int below 2**64), got ptr={ptr!r}."
        )
    if ptr % itemsize:
        raise SpecError(
            f"{where}: ptr={ptr:#x} is not aligned to the item size ({itemsize} bytes); CUDA loads of "
            "misaligned elements fault. Copy the data to an aligned buffer first."
        )
    check_address_range(ptr, extent, where=where)
    return ptr


def check_address_range(ptr: int, extent: int, *, where: str) -> None:
    """Raise ``SpecError`` unless ``0 < ptr`` and ``ptr + extent <= 2**64`` (no wrap-around)."""
    if ptr <= 0 or ptr + extent > ADDRESS_SPACE:
        # A wrapped range would be truncated by ctypes (DLPack) and by every C consumer.
        raise SpecError(
            f"{where}: expected the image's bytes to end at or below 2**64, got ptr={ptr:#x} with an "
            f"extent of {extent} bytes (ending at {ptr + extent:#x}, past the 64-bit address space). "
            "The pointer or the spec is wrong: check both."
        )


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
    check_pointer(ptr, itemsize, extent=0, where=where)  # the extent is known once the geometry is
    layout, geometry = geometry_from_strided(shape, strides, layout, itemsize, where=where)
    spec = trusted_spec(geometry, dtype, layout, device)
    check_address_range(ptr, spec.nbytes, where=where)
    if allocation is not None:
        check_within(ptr, spec.nbytes, allocation[0], allocation[1], where=where)
    return spec


def revalidated_spec(spec: ImageSpec, *, where: str) -> ImageSpec:
    """``spec`` checked again, every field (``model_construct()`` and ``trusted_spec`` skip validation).

    A spec whose fields have their exact types only has its geometry checked again, and is returned
    as it is; any other is validated from its fields (a layout given as ``"CHW"`` becomes
    ``Layout.CHW``) and the validated copy is returned. Raises ``SpecError`` (or a subclass) only.
    """
    fields = spec.__dict__
    missing = [name for name in field_names() if name not in fields]
    if missing:
        raise SpecError(
            f"{where}: expected a spec with every field, got one without {', '.join(missing)} (built "
            "with ImageSpec.model_construct()?). Build specs with ImageSpec(...) or ImageSpec.packed(...)."
        )
    dtype, layout, device = fields["dtype"], fields["layout"], fields["device"]
    if type(dtype) is str and dtype in DTYPES and type(layout) is Layout and type(device) is Device:
        geometry = Geometry(*(fields[name] for name in Geometry._fields))
        check_geometry(geometry, DTYPES[dtype].itemsize, where=where)  # also checks the int types
        return spec
    try:
        return ImageSpec(**{name: fields[name] for name in field_names()})
    except GpuImageError as exc:
        error = as_spec_error(exc)
        raise type(error)(f"{where}: the spec does not validate: {error}") from None


def refuse_lazy_negation(obj: object, *, where: str) -> None:
    """Refuse a source that carries a pending negation or conjugation (torch's neg and conj bits,
    ``t.conj().imag``): its memory holds the values before the sign change, and the protocols
    (DLPack, CAI) export the memory without saying so, so the sign would be lost."""
    for bit, fix in (("is_neg", "resolve_neg"), ("is_conj", "resolve_conj")):
        check = getattr(obj, bit, None)
        if callable(check) and check() is True:
            raise InteropError(
                f"{where}: expected memory that holds the values, got a {type(obj).__name__} with "
                f"{bit}() set (a lazy sign change its memory does not hold). Call .{fix}() first."
            )
