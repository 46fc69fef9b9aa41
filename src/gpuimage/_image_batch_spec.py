"""A batch's description, checked: its layout (``NCHW``/``NHWC``), its item count and item pitch, and
the items of a 4-D ``__cuda_array_interface__``. Pure metadata; no GPU calls, no foreign libraries.

Every pitch here is in BYTES: item ``i`` of a batch starts at ``ptr + i * item_pitch``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal, TypeAlias, cast

from ._device import Device, DeviceLike
from ._dtypes import DTypeLike
from ._errors import InteropError, LayoutError, PitchError, SpecError, StrideError
from ._geometry import MAX_EXTENT
from ._layout import Layout
from ._spec import ImageSpec

__all__ = [
    "BatchLayout",
    "BY_ITEM_LAYOUT",
    "BatchLayoutLike",
    "CaiItem",
    "cai_items",
    "checked_count",
    "checked_item_pitch",
    "packed_item_spec",
    "parse_batch_layout",
]


class BatchLayout(StrEnum):
    """The order of a batch's dimensions, slowest first: ``NCHW`` (planar items, most networks'
    input) or ``NHWC`` (interleaved items, CV-CUDA's and TensorRT's HWC inputs)."""

    NCHW = "NCHW"
    NHWC = "NHWC"

    @property
    def item(self) -> Layout:
        """The layout of one item: ``CHW`` or ``HWC``."""
        return Layout.CHW if self is BatchLayout.NCHW else Layout.HWC


BatchLayoutLike: TypeAlias = BatchLayout | Literal["NCHW", "NHWC"]
"""What every batch ``layout=`` accepts: a ``BatchLayout`` or its name (an item ``Layout`` too)."""

BY_ITEM_LAYOUT = {Layout.CHW: BatchLayout.NCHW, Layout.HWC: BatchLayout.NHWC}


def parse_batch_layout(value: object, *, where: str) -> BatchLayout:
    """``"NCHW"``/``"NHWC"`` (any case), a ``BatchLayout``, or an item layout (``CHW`` -> ``NCHW``)."""
    if isinstance(value, Layout):
        return BY_ITEM_LAYOUT[value]
    if isinstance(value, str) and value.upper() in BatchLayout.__members__:
        return BatchLayout(value.upper())
    raise LayoutError(
        f"{where}: expected layout 'NCHW' or 'NHWC' (or gpuimage's BatchLayout), got layout={value!r}."
    )


def checked_count(value: object, *, where: str) -> int:
    """``value`` if it is a positive int number of items, else ``SpecError``."""
    if type(value) is not int or value <= 0:
        raise SpecError(f"{where}: expected a positive int number of items, got n={value!r}.")
    return value


def checked_item_pitch(pitch: object, size: int, spec: ImageSpec, *, where: str, given: bool = True) -> int:
    """``pitch`` if items ``size`` apart by it never overlap: a non-negative multiple of the item size,
    at least one item's extent, the whole batch below 2**63 bytes. For one item, a pitch read off an
    array (``given`` False) carries nothing: an unusable one becomes the item's extent."""
    extent, itemsize = spec.nbytes, spec.itemsize
    usable = type(pitch) is int and pitch >= extent and pitch % itemsize == 0 and pitch < MAX_EXTENT
    if size == 1 and not given and not usable:
        return extent
    if type(pitch) is not int:
        raise PitchError(f"{where}: expected an int item_pitch in bytes, got item_pitch={pitch!r}.")
    if pitch < 0:
        raise StrideError(
            f"{where}: expected a non-negative item_pitch, got item_pitch={pitch} (items in reverse "
            "order). Make a copy in the source library first."
        )
    if pitch % itemsize:
        raise PitchError(
            f"{where}: expected an item_pitch that is a multiple of the item size ({itemsize} bytes), got "
            f"item_pitch={pitch}; every item must start on an item boundary."
        )
    if pitch < extent:
        raise PitchError(
            f"{where}: expected an item_pitch of at least one item's extent ({extent} bytes), got "
            f"item_pitch={pitch} (items would overlap, or interleave). Copy the batch into packed memory."
        )
    if (size - 1) * pitch + extent >= MAX_EXTENT:
        raise SpecError(f"{where}: the batch spans more than 2**63 bytes ({size} items every {pitch} bytes).")
    return pitch


_PLAIN = frozenset({int, str, Layout, Device})
"""Argument types whose values can key the spec cache (marker classes take the validation each time)."""
_packed_specs: dict[tuple[object, ...], ImageSpec] = {}


def packed_item_spec(
    height: int, width: int, channels: int, dtype: DTypeLike, layout: Layout, device: DeviceLike
) -> ImageSpec:
    """``ImageSpec.packed`` of one item of a new batch, validated once per description: a frame loop
    asks for the same one again and again. Types are part of the key (True is never taken for 1)."""
    arguments = (height, width, channels, dtype, layout, device)
    plain = all(type(value) in _PLAIN for value in arguments)
    key = (*arguments, *map(type, arguments))
    spec = _packed_specs.get(key) if plain else None
    if spec is None:
        spec = ImageSpec.packed(
            height=height, width=width, channels=channels, dtype=dtype, layout=layout, device=device
        )
        if plain:
            if len(_packed_specs) >= 256:
                _packed_specs.clear()
            _packed_specs[key] = spec
    return spec


class CaiItem:
    """One item of a 4-D CUDA Array Interface, as a 3-D interface the CAI spoke parses like an image."""

    __slots__ = ("__cuda_array_interface__",)

    def __init__(self, interface: dict[str, Any]) -> None:
        self.__cuda_array_interface__ = interface


def _ints(value: object, key: str, where: str) -> tuple[int, ...]:
    items = cast("tuple[object, ...]", value) if isinstance(value, tuple | list) else None
    if items is None or not all(type(item) is int for item in items):
        raise InteropError(f"{where}: expected '{key}' to be a tuple of ints, got {key}={value!r}.")
    return cast("tuple[int, ...]", tuple(items))


def cai_items(obj: object, *, where: str) -> tuple[CaiItem, CaiItem, int, int]:
    """Items 0 and N-1 of ``obj``'s 4-D ``__cuda_array_interface__``, N and the item pitch (bytes).

    Only the batch dimension is read here; the CAI spoke checks each item as it checks an image
    (version, typestr, mask, strides, stream)."""
    try:
        interface = cast(object, obj.__cuda_array_interface__)  # type: ignore[attr-defined]  # the protocol
    except AttributeError as exc:
        raise InteropError(f"{where}: {type(obj).__name__} has no __cuda_array_interface__.") from exc
    kind = type(interface).__name__
    if not isinstance(interface, Mapping):
        raise InteropError(f"{where}: __cuda_array_interface__ is a {kind}, not a dict.")
    fields = dict(cast("Mapping[str, object]", interface))
    shape = _ints(fields.get("shape"), "shape", where)
    if len(shape) != 4:
        raise LayoutError(
            f"{where}: expected a 4-D (N, C, H, W) or (N, H, W, C) interface, got shape {shape}. Wrap a "
            "single image with GpuImage.from_cuda_array_interface()."
        )
    data = fields.get("data")
    pair = cast("tuple[object, ...]", data) if isinstance(data, tuple | list) else ()
    if len(pair) != 2 or type(pair[0]) is not int:
        raise InteropError(f"{where}: expected 'data' to be a (pointer, readonly) pair, got data={data!r}.")
    ptr = pair[0]
    raw_strides = fields.get("strides")
    if raw_strides is None:  # C-contiguous: the batch stride is one packed item
        typestr = fields.get("typestr")
        # '<f4' -> 4; a malformed typestr is the CAI spoke's to refuse, when it parses item 0
        itemsize = int(typestr[2:]) if isinstance(typestr, str) and typestr[2:].isdigit() else 1
        item_bytes = itemsize * shape[1] * shape[2] * shape[3]
        pitch, item_strides = item_bytes, None
    else:
        strides = _ints(raw_strides, "strides", where)
        if len(strides) != 4:
            raise InteropError(f"{where}: expected 4 strides for shape {shape}, got strides={strides}.")
        pitch, item_strides = strides[0], strides[1:]
    size = checked_count(shape[0], where=where)
    first = {**fields, "shape": shape[1:], "strides": item_strides}
    last = {**first, "data": (ptr + (size - 1) * pitch, pair[1])}
    return CaiItem(first), CaiItem(last), size, pitch
