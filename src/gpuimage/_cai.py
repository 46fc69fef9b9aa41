"""CUDA Array Interface spoke: reading a foreign ``__cuda_array_interface__`` (versions 0 to 3).

Building the interface dicts gpuimage exports is neutral ground shared by the spokes that make
views through them: ``_interfaces``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeGuard, cast

import numpy as np

from ._device import Device, cuda_device
from ._dtypes import DTYPES, DTypeName, dtype_info
from ._errors import DTypeError, InteropError
from ._layout import Layout
from ._source import Imported, refuse_lazy_negation, spec_from_strided
from ._spokes import Spoke
from ._streams import from_protocol

__all__ = ["dtype_of_typestr", "parse"]


def _typestr_table() -> dict[str, DTypeName]:
    """Every exact typestr the array interface gives an image dtype: ``<byte order><kind><size>``.

    One-byte types take any byte order (NumPy writes ``'|u1'``); wider ones are little-endian, as
    GPUs and gpuimage's exports are. NumPy's other spellings (``'b'`` is int8 there, ``'f'``,
    ``'float32'``) are not typestrs.
    """
    table: dict[str, DTypeName] = {}
    for info in DTYPES.values():
        if info.cai_typestr is not None:
            code = info.cai_typestr[1:]
            for order in "|<>" if info.itemsize == 1 else "<":
                table[order + code] = info.name
    return table


_TYPESTRS = _typestr_table()


def dtype_of_typestr(typestr: object, *, where: str) -> DTypeName:
    """The dtype of an exact array-interface typestr such as ``'|u1'``, ``'|b1'`` or ``'<f4'``."""
    dtype = _TYPESTRS.get(typestr) if isinstance(typestr, str) else None
    if dtype is None:
        raise DTypeError(
            f"{where}: expected an array-interface typestr of an image dtype (such as "
            f"{', '.join(info.cai_typestr for info in DTYPES.values() if info.cai_typestr)}), got "
            f"typestr={typestr!r}. A typestr is <byte order><kind><bytes>: '|b1' is bool, '|i1' int8."
        )
    return dtype


def _readonly_flag(value: object, *, where: str) -> bool:
    """The readonly half of CAI's ``data``: a bool (NumPy's bool scalar too), nothing else."""
    if type(value) is bool:
        return value
    if isinstance(value, np.bool_):  # a NumPy bool scalar (not a 0-d array, not a list)
        return value.item() is True
    raise InteropError(
        f"{where}: expected the readonly flag of 'data' (pointer, readonly) to be a bool, got "
        f"readonly={value!r} ({type(value).__name__}). The producer's __cuda_array_interface__ is malformed."
    )


def _items(value: object) -> tuple[object, ...] | list[object] | None:
    """A foreign tuple or list with its (unknown) items typed as objects; None for anything else."""
    if isinstance(value, tuple | list):
        return cast("tuple[object, ...] | list[object]", value)
    return None


def _all_ints(items: tuple[object, ...] | list[object]) -> TypeGuard[tuple[int, ...] | list[int]]:
    return all(type(item) is int for item in items)


def _int_tuple(value: object, *, key: str, where: str) -> tuple[int, ...]:
    items = _items(value)
    if items is None or not _all_ints(items):
        raise InteropError(f"{where}: expected '{key}' to be a tuple of ints, got {key}={value!r}.")
    return tuple(items)


def parse(
    obj: object, /, *, layout: Layout | None, device: Device | None, stream: int | None, where: str
) -> Imported:
    """Read an object's ``__cuda_array_interface__`` (versions 0 to 3).

    The stream the data is ready on is ``stream`` if given, else the interface's own ``stream``.
    """
    refuse_lazy_negation(obj, where=where)  # torch's CAI exports a negated view without its sign
    try:
        interface = cast(object, obj.__cuda_array_interface__)  # type: ignore[attr-defined]  # the protocol
    except AttributeError as exc:
        raise InteropError(f"{where}: {type(obj).__name__} has no __cuda_array_interface__.") from exc
    if not isinstance(interface, Mapping):
        raise InteropError(f"{where}: __cuda_array_interface__ is a {type(interface).__name__}, not a dict.")
    fields = cast("Mapping[str, object]", interface)  # a foreign dict: every value is checked below
    version = fields.get("version")
    if type(version) is not int or not 0 <= version <= 3:
        raise InteropError(
            f"{where}: expected __cuda_array_interface__ version 0 to 3, got version={version!r}."
        )
    if fields.get("mask") is not None:
        raise InteropError(f"{where}: masked arrays (a CAI 'mask') are not images; fill the mask first.")
    data = fields.get("data")
    pair = _items(data)
    if pair is None or len(pair) != 2 or type(pair[0]) is not int:
        raise InteropError(f"{where}: expected 'data' to be a (pointer, readonly) pair, got data={data!r}.")
    ptr, readonly = pair[0], _readonly_flag(pair[1], where=where)
    shape = _int_tuple(fields.get("shape"), key="shape", where=where)
    dtype = dtype_of_typestr(fields.get("typestr"), where=where)
    itemsize = dtype_info(dtype).itemsize
    raw_strides = fields.get("strides")
    if raw_strides is None:
        strides = _c_contiguous_strides(shape, itemsize)
    else:
        strides = _int_tuple(raw_strides, key="strides", where=where)
    interface_stream = fields.get("stream")
    # A caller's stream= overrides the producer's key, even the forbidden 0 (PyNvVideoCodec 2.2
    # exports 0 for a decoder on the default stream, and 2 for one on its own): the caller knows.
    if stream is not None and interface_stream == 0:
        interface_stream = None
    if interface_stream is not None and (type(interface_stream) is not int or interface_stream <= 0):
        raise InteropError(
            f"{where}: CAI 'stream' must be None or a positive handle (0 is forbidden: it could mean "
            f"either default stream), got stream={interface_stream!r}. If you know the stream the "
            "producer wrote on, pass it as stream= (it overrides the producer's key)."
        )
    device = cuda_device(0) if device is None else device  # CAI has no device field
    spec = spec_from_strided(ptr, shape, strides, dtype, layout, device, where=where)
    if interface_stream is not None:
        interface_stream = from_protocol(interface_stream)  # CAI's 1 is the legacy default stream
    ready_on = stream if stream is not None else interface_stream
    return Imported(ptr, spec, obj, ready_on, readonly)


def _c_contiguous_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides: list[int] = []
    step = itemsize
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


SPOKE = Spoke(name="cai", parse=parse)
