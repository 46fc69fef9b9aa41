"""The torch spoke's fast view: torch's DLPack C exchange API (``__dlpack_c_exchange_api__``).

torch >= 2.10 publishes a table of C functions (DLPack 1.3 ``DLPackExchangeAPI``); its
``managed_tensor_to_py_object_no_sync`` makes a tensor of a ``DLManagedTensorVersioned`` without a
Python capsule. Measured on an H200 (``benchmarks/dlpack_exchange.py``): a view this way costs
2.4 us against 4.0 for ``torch.as_tensor`` of an array-interface dict, when the struct is copied
from a template made once per spec. Where the table is missing or of another major version, the
torch spoke keeps the array-interface route (``view_through_exchange`` returns None).

What torch does with the struct: it copies shape and strides, calls no synchronization, ignores
the read-only flag (the hub refuses writable views of read-only memory first) and trusts the device
(the spoke uses this route only for memory whose device its source library reported). On success
torch owns the struct and calls its deleter when the tensor's storage goes; on failure it does not,
and the struct is released here.
"""

from __future__ import annotations

import ctypes
from ctypes import PYFUNCTYPE, Structure, addressof, byref, c_int, c_int64, c_void_p, py_object
from typing import Any

from typing_extensions import CapsuleType

from ._dlpack_abi import (
    Deleter,
    DLManagedTensorVersioned,
    DLPackVersion,
    capsule_pointer,
    immortal,
)
from ._dtypes import dtype_info
from ._errors import InteropError
from ._source import SpecMemo
from ._spec import ImageSpec

__all__ = ["view_through_exchange"]

_TABLE_NAME = immortal(ctypes.create_string_buffer(b"dlpack_exchange_api"))


class _Header(Structure):
    _fields_ = (("version", DLPackVersion), ("prev_api", c_void_p))


# PYFUNCTYPE: called with the GIL held; a Python error the function sets is raised on return.
_ToPyObject = PYFUNCTYPE(c_int, ctypes.POINTER(DLManagedTensorVersioned), ctypes.POINTER(py_object))


class _Table(Structure):
    _fields_ = (
        ("header", _Header),
        ("managed_tensor_allocator", c_void_p),
        ("managed_tensor_from_py_object_no_sync", c_void_p),
        ("managed_tensor_to_py_object_no_sync", _ToPyObject),
        ("dltensor_from_py_object_no_sync", c_void_p),
        ("current_work_stream", c_void_p),
    )


_decref = PYFUNCTYPE(None, py_object)(("Py_DecRef", ctypes.pythonapi))

# Structs handed to torch, by address, with the owner they keep alive: until torch calls the deleter
# (at interpreter exit too, hence immortal).
_live: dict[int, tuple[object, ...]] = immortal({})


def _deleted(address: int | None) -> None:
    _live.pop(address or 0, None)


_DELETER = immortal(Deleter(_deleted))


def _to_py_object(table_type: type) -> Any:
    """torch's ``managed_tensor_to_py_object_no_sync``, or None where the table is unusable."""
    capsule: object = getattr(table_type, "__dlpack_c_exchange_api__", None)
    if type(capsule) is not CapsuleType:
        return None
    try:
        address = capsule_pointer(capsule, _TABLE_NAME)
    except ValueError:  # a capsule of another name
        return None
    table = _Table.from_address(address)
    if table.header.version.major != 1 or not table.managed_tensor_to_py_object_no_sync:
        return None  # a consumer reads only a table of its own major version
    return table.managed_tensor_to_py_object_no_sync


class _Template:
    """A filled tensor of one spec, with no pointer: a view copies its bytes and sets ``data``."""

    __slots__ = ("raw", "shape", "strides")

    def __init__(self, spec: ImageSpec) -> None:
        itemsize = spec.itemsize
        # torch copies shape and strides in: the template keeps the arrays its bytes point at
        self.shape = (c_int64 * 3)(*spec.shape)
        self.strides = (c_int64 * 3)(*(stride // itemsize for stride in spec.strides))  # elements
        managed = DLManagedTensorVersioned()
        managed.version.major, managed.version.minor = 1, 1
        tensor = managed.dl_tensor
        tensor.device.device_type, tensor.device.device_id = spec.device.dlpack
        tensor.ndim = 3
        tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes = (
            dtype_info(spec.dtype).dlpack_code,
            itemsize * 8,
            1,
        )
        tensor.shape = ctypes.cast(self.shape, ctypes.POINTER(c_int64))
        tensor.strides = ctypes.cast(self.strides, ctypes.POINTER(c_int64))
        managed.deleter = _DELETER
        self.raw = bytes(managed)


_templates = SpecMemo(_Template)


def view_through_exchange(table_type: type, ptr: int, spec: ImageSpec, owner: object) -> Any:
    """A tensor over ``ptr`` described by ``spec`` that keeps ``owner`` alive, made by torch's C
    exchange function; None where torch has no usable exchange table."""
    to_py = _exchange(table_type)
    if to_py is None:
        return None
    template = _templates(spec)
    managed = DLManagedTensorVersioned.from_buffer_copy(template.raw)
    managed.dl_tensor.data = ptr
    address = addressof(managed)
    _live[address] = (managed, template, owner)
    out = py_object()
    try:
        status = to_py(byref(managed), byref(out))
        tensor = out.value if status == 0 else None  # .value raises ValueError for a NULL result
    except Exception as exc:
        _live.pop(address, None)  # torch refused before taking ownership: no deleter call follows
        raise InteropError(f"as_torch(): torch's DLPack exchange function refused the view: {exc}") from exc
    if tensor is None:
        _live.pop(address, None)
        raise InteropError(f"as_torch(): torch's DLPack exchange function returned status {status}.")
    _decref(tensor)  # torch handed over a new reference, and .value took one more
    return tensor


_found: dict[type, Any] = {}


def _exchange(table_type: type) -> Any:
    """The exchange function of ``table_type``'s table, looked up once per type."""
    try:
        return _found[table_type]
    except KeyError:
        found = _found[table_type] = _to_py_object(table_type)
        return found
