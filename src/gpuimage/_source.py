"""What a spoke hands to the hub: a pointer, a checked spec, and what keeps the memory alive."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from typing import Generic, NamedTuple, TypeVar, cast

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
    "SpecCache",
    "SpecMemo",
    "check_placement",
    "check_address_range",
    "check_pointer",
    "imported",
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
    keep: object = None
    """The stream object that keeps ``stream`` alive, where the source library can destroy it."""
    located: bool = True
    """The source library reported the memory's device (rather than a caller, or a guess)."""


imported: Callable[[tuple[int, ImageSpec, object, int | None, bool, object, bool]], Imported] = (
    functools.partial(
        tuple.__new__,  # pyright: ignore[reportUnknownMemberType]
        Imported,
    )
)
"""``Imported`` from all seven fields, without NamedTuple's Python ``__new__`` (a frame loop's wrap)."""

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


class SpecCache:
    """A spoke's specs by the source's own geometry key (dtype, shape, strides, device, layout).

    A frame loop wraps the same geometry on every call: the first import of a geometry runs every
    check and builds the spec; later ones reuse it and check only what depends on the pointer
    (``check_placement``). Only specs that passed every check are stored; the cache is bounded.
    """

    __slots__ = ("_specs",)

    _LIMIT = 512

    def __init__(self) -> None:
        self._specs: dict[object, ImageSpec] = {}

    def get(self, key: object) -> ImageSpec | None:
        """The spec stored for ``key``, or None."""
        return self._specs.get(key)

    def put(self, key: object, spec: ImageSpec) -> ImageSpec:
        """Store ``spec`` (checked) for ``key`` and return it, its derived values computed once."""
        if len(self._specs) >= self._LIMIT:
            self._specs.clear()  # a loop over more geometries than this pays the full check again
        _ = spec.nbytes, spec.itemsize, spec.shape, spec.strides, spec.is_contiguous
        self._specs[key] = spec
        return spec


T = TypeVar("T")


class SpecMemo(Generic[T]):
    """What a spoke derives from a spec (a view's header arguments, its checks), once per spec.

    Specs are shared per description (``trusted_spec``, ``SpecCache``), so a frame loop's views hit
    this memo. An entry lives as long as its spec: it holds the spec weakly and goes with it, so a
    stream of one-off specs leaves nothing behind. ``make`` may raise; nothing is stored then.
    """

    __slots__ = ("_make", "_values")

    def __init__(self, make: Callable[[ImageSpec], T]) -> None:
        self._make = make
        self._values: dict[int, tuple[weakref.ref[ImageSpec], T]] = {}

    def __call__(self, spec: ImageSpec) -> T:
        key = id(spec)
        entry = self._values.get(key)
        if entry is not None and entry[0]() is spec:
            return entry[1]
        value = self._make(spec)
        values = self._values

        def forget(reference: weakref.ref[ImageSpec]) -> None:
            current = values.get(key)
            if current is not None and current[0] is reference:  # not a newer spec's at a reused id
                values.pop(key, None)

        values[key] = (weakref.ref(spec, forget), value)
        return value


def check_placement(ptr: object, spec: ImageSpec, base: int, size: int, *, where: str) -> int:
    """Return ``ptr`` if the image ``spec`` describes lies at ``ptr`` inside the allocation
    ``[base, base + size)`` (``size`` < 0: unknown), aligned and below 2**64; else raise."""
    nbytes = spec.nbytes
    if (
        type(ptr) is not int
        or ptr <= 0
        or ptr % spec.itemsize
        or ptr + nbytes > ADDRESS_SPACE
        or (size >= 0 and (ptr < base or ptr + nbytes > base + size))
    ):
        check_pointer(ptr, spec.itemsize, extent=nbytes, where=where)
        if size >= 0:
            check_within(cast(int, ptr), nbytes, base, size, where=where)
    return cast(int, ptr)


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
