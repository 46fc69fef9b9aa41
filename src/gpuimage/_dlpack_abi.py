"""DLPack's C ABI as ctypes sees it: the tensor structures (legacy and versioned), the capsule calls
of the Python C API, and the capsule names. The protocol itself (export, import, ownership) is in
``_dlpack``."""

from __future__ import annotations

import ctypes
from ctypes import (
    CFUNCTYPE,
    POINTER,
    PYFUNCTYPE,
    Structure,
    c_char_p,
    c_int,
    c_int32,
    c_int64,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
    py_object,
)
from typing import Any

__all__ = [
    "NAME",
    "NAME_VERSIONED",
    "NO_DESTRUCTOR",
    "USED",
    "USED_VERSIONED",
    "CapsuleDestructor",
    "DLDataType",
    "DLDevice",
    "DLManagedTensor",
    "DLManagedTensorVersioned",
    "DLPackVersion",
    "DLTensor",
    "Deleter",
    "capsule_is_valid",
    "capsule_new",
    "capsule_pointer",
    "capsule_set_name",
    "immortal",
]


class DLDevice(Structure):
    _fields_ = (("device_type", c_int32), ("device_id", c_int32))


class DLDataType(Structure):
    _fields_ = (("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16))


class DLTensor(Structure):
    _fields_ = (
        ("data", c_void_p),
        ("device", DLDevice),
        ("ndim", c_int32),
        ("dtype", DLDataType),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
        ("byte_offset", c_uint64),
    )


Deleter = CFUNCTYPE(None, c_void_p)


class DLManagedTensor(Structure):
    _fields_ = (("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", Deleter))


class DLPackVersion(Structure):
    _fields_ = (("major", c_uint32), ("minor", c_uint32))


class DLManagedTensorVersioned(Structure):
    _fields_ = (
        ("version", DLPackVersion),
        ("manager_ctx", c_void_p),
        ("deleter", Deleter),
        ("flags", c_uint64),
        ("dl_tensor", DLTensor),
    )


CapsuleDestructor = CFUNCTYPE(None, c_void_p)
capsule_new = PYFUNCTYPE(py_object, c_void_p, c_char_p, CapsuleDestructor)(
    ("PyCapsule_New", ctypes.pythonapi)
)
capsule_is_valid = PYFUNCTYPE(c_int, py_object, c_char_p)(("PyCapsule_IsValid", ctypes.pythonapi))
capsule_pointer = PYFUNCTYPE(c_void_p, py_object, c_char_p)(("PyCapsule_GetPointer", ctypes.pythonapi))
capsule_set_name = PYFUNCTYPE(c_int, py_object, c_char_p)(("PyCapsule_SetName", ctypes.pythonapi))
NO_DESTRUCTOR = CapsuleDestructor()  # NULL: see the module docstring


def immortal(obj: Any) -> Any:
    """Keep ``obj`` alive past interpreter teardown: consumers may call our deleter after it."""
    ctypes.pythonapi.Py_IncRef(py_object(obj))
    return obj


NAME = immortal(ctypes.create_string_buffer(b"dltensor"))
NAME_VERSIONED = immortal(ctypes.create_string_buffer(b"dltensor_versioned"))
USED = immortal(ctypes.create_string_buffer(b"used_dltensor"))
USED_VERSIONED = immortal(ctypes.create_string_buffer(b"used_dltensor_versioned"))
