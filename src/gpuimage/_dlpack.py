"""DLPack spoke: capsules in both directions, versioned (DLPack 1.x) and legacy, with ctypes.

Export: each capsule points at a ``DLManagedTensor[Versioned]`` that Python owns, kept in a registry
with the image's memory owner until the consumer calls the deleter (or the capsule is dropped
unconsumed, when its destructor does). Import: the capsule is renamed ``used_dltensor[_versioned]``
and its deleter is called once, when the last image or view of it is gone.

Strides in DLPack are in ELEMENTS; gpuimage's are in bytes. Conversion happens here only.
"""

from __future__ import annotations

import ctypes
from contextlib import nullcontext
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
from typing import Any, cast

from typing_extensions import CapsuleType

from . import _cuda
from ._device import CPU, DLPACK_CPU, DLPACK_CUDA, DLPACK_CUDA_HOST, Device
from ._dtypes import dtype_from_dlpack, dtype_info
from ._errors import DeviceError, InteropError, LifetimeError
from ._layout import Layout
from ._source import Imported, spec_from_strided
from ._spec import ImageSpec

__all__ = ["export_capsule", "parse"]

READ_ONLY = 1 << 0
IS_COPIED = 1 << 1
DLPACK_VERSION = (1, 1)


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


_Deleter = CFUNCTYPE(None, c_void_p)


class DLManagedTensor(Structure):
    _fields_ = (("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", _Deleter))


class DLPackVersion(Structure):
    _fields_ = (("major", c_uint32), ("minor", c_uint32))


class DLManagedTensorVersioned(Structure):
    _fields_ = (
        ("version", DLPackVersion),
        ("manager_ctx", c_void_p),
        ("deleter", _Deleter),
        ("flags", c_uint64),
        ("dl_tensor", DLTensor),
    )


_CapsuleDestructor = CFUNCTYPE(None, c_void_p)
_capsule_new = PYFUNCTYPE(py_object, c_void_p, c_char_p, _CapsuleDestructor)(
    ("PyCapsule_New", ctypes.pythonapi)
)
_capsule_is_valid = PYFUNCTYPE(c_int, py_object, c_char_p)(("PyCapsule_IsValid", ctypes.pythonapi))
_capsule_pointer = PYFUNCTYPE(c_void_p, py_object, c_char_p)(("PyCapsule_GetPointer", ctypes.pythonapi))
_capsule_set_name = PYFUNCTYPE(c_int, py_object, c_char_p)(("PyCapsule_SetName", ctypes.pythonapi))
# Inside a capsule destructor the capsule is dying: read it through a raw pointer, never a py_object.
_raw_capsule_is_valid = PYFUNCTYPE(c_int, c_void_p, c_char_p)(("PyCapsule_IsValid", ctypes.pythonapi))
_raw_capsule_pointer = PYFUNCTYPE(c_void_p, c_void_p, c_char_p)(("PyCapsule_GetPointer", ctypes.pythonapi))


def _immortal(obj: Any) -> Any:
    """Keep ``obj`` alive past interpreter teardown: consumers may free our capsules after it."""
    ctypes.pythonapi.Py_IncRef(py_object(obj))
    return obj


_NAME = _immortal(ctypes.create_string_buffer(b"dltensor"))
_NAME_VERSIONED = _immortal(ctypes.create_string_buffer(b"dltensor_versioned"))
_USED = _immortal(ctypes.create_string_buffer(b"used_dltensor"))
_USED_VERSIONED = _immortal(ctypes.create_string_buffer(b"used_dltensor_versioned"))

# address of a DLManagedTensor[Versioned] we exported -> (struct, shape, strides, memory owner)
_exports: dict[int, tuple[object, ...]] = _immortal({})


def _release_export(address: int | None, registry: dict[int, tuple[object, ...]] = _exports) -> None:
    if address is not None:
        registry.pop(address, None)


_DELETER = _immortal(_Deleter(_release_export))


def _destroy_unconsumed(capsule: int | None) -> None:
    """Capsule destructor: a capsule still named ``dltensor*`` was never consumed, so delete it."""
    for name in (_NAME, _NAME_VERSIONED):
        if _raw_capsule_is_valid(capsule, name):
            _release_export(_raw_capsule_pointer(capsule, name))
            return


_DESTRUCTOR = _immortal(_CapsuleDestructor(_destroy_unconsumed))


def export_capsule(
    ptr: int, spec: ImageSpec, owner: object, *, versioned: bool, readonly: bool, copied: bool
) -> CapsuleType:
    """A DLPack capsule of the image (non-NULL strides, in elements) that keeps ``owner`` alive."""
    itemsize = spec.itemsize
    info = dtype_info(spec.dtype)
    shape = (c_int64 * 3)(*spec.shape)
    strides = (c_int64 * 3)(*(stride // itemsize for stride in spec.strides))
    managed: DLManagedTensor | DLManagedTensorVersioned
    if versioned:
        managed = DLManagedTensorVersioned()
        managed.version.major, managed.version.minor = DLPACK_VERSION
        managed.flags = (READ_ONLY if readonly else 0) | (IS_COPIED if copied else 0)
        name = _NAME_VERSIONED
    else:
        managed = DLManagedTensor()
        name = _NAME
    tensor = managed.dl_tensor
    tensor.data = ptr
    tensor.device.device_type, tensor.device.device_id = spec.device.dlpack
    tensor.ndim = 3
    tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes = info.dlpack_code, itemsize * 8, 1
    tensor.shape = ctypes.cast(shape, POINTER(c_int64))
    tensor.strides = ctypes.cast(strides, POINTER(c_int64))
    tensor.byte_offset = 0
    managed.deleter = _DELETER
    address = ctypes.addressof(managed)
    _exports[address] = (managed, shape, strides, owner)
    capsule: CapsuleType = _capsule_new(address, name, _DESTRUCTOR)
    return capsule


class DLPackOwner:
    """Owns a consumed capsule's tensor: calls the producer's deleter once, when dropped."""

    __slots__ = ("_address", "_deleter", "capsule_name")

    def __init__(self, address: int, deleter: Any, capsule_name: str) -> None:
        self._address = address
        self._deleter = deleter
        self.capsule_name = capsule_name

    def __del__(self) -> None:
        deleter, self._deleter = self._deleter, None
        if deleter:
            deleter(self._address)


def _is_capsule(obj: object) -> bool:
    return type(obj).__name__ == "PyCapsule"


def parse(obj: object, *, layout: Layout | None, stream: int | None, where: str) -> Imported:
    """Consume ``obj.__dlpack__()`` (or a bare capsule) as an image, without copying.

    ``stream``: the stream the image will be used on; a CUDA producer orders its work before it,
    per the array API standard. The image is then ready on ``stream``.
    """
    # DLPack has no 0: the legacy default stream is 1. It is the stream the image is ready on when
    # none is asked for.
    consumer = stream or 1
    capsule = obj if _is_capsule(obj) else _request_capsule(obj, stream=consumer, where=where)
    if _capsule_is_valid(capsule, _NAME_VERSIONED):
        versioned = True
        address = _capsule_pointer(capsule, _NAME_VERSIONED)
        versioned_tensor = DLManagedTensorVersioned.from_address(address)
        managed: DLManagedTensor | DLManagedTensorVersioned = versioned_tensor
        if versioned_tensor.version.major != 1:
            raise InteropError(
                f"{where}: the producer speaks DLPack {versioned_tensor.version.major}."
                f"{versioned_tensor.version.minor}; gpuimage reads 1.x."
            )
        readonly = bool(versioned_tensor.flags & READ_ONLY)
    elif _capsule_is_valid(capsule, _NAME):
        versioned = False
        address = _capsule_pointer(capsule, _NAME)
        managed = DLManagedTensor.from_address(address)
        readonly = False
    else:
        ctypes.pythonapi.PyErr_Clear()
        if _capsule_is_valid(capsule, _USED) or _capsule_is_valid(capsule, _USED_VERSIONED):
            raise LifetimeError(f"{where}: this DLPack capsule was already consumed; a capsule is used once.")
        raise InteropError(f"{where}: {type(obj).__name__} is not a DLPack tensor capsule.")
    spec = _spec_of(managed.dl_tensor, layout, where=where)
    tensor = managed.dl_tensor
    ptr = (tensor.data or 0) + tensor.byte_offset
    # Take ownership only once the tensor is known to be usable: otherwise the capsule's own
    # destructor still frees it.
    _capsule_set_name(capsule, _USED_VERSIONED if versioned else _USED)
    owner = DLPackOwner(address, managed.deleter, "dltensor_versioned" if versioned else "dltensor")
    # A bare capsule was exported without our stream: the caller's ``stream`` says where it is ready.
    asked = (0 if consumer == 1 else consumer) if not _is_capsule(obj) else stream
    ready_on = asked if spec.device.is_cuda else None
    return Imported(ptr, spec, owner, ready_on, readonly)


def _request_capsule(obj: object, *, stream: int, where: str) -> object:
    dlpack = getattr(obj, "__dlpack__", None)
    dlpack_device = getattr(obj, "__dlpack_device__", None)
    if dlpack is None or dlpack_device is None:
        raise InteropError(f"{where}: {type(obj).__name__} has no __dlpack__/__dlpack_device__.")
    device: object = dlpack_device()
    if not (isinstance(device, tuple) and len(cast("tuple[object, ...]", device)) == 2):
        raise InteropError(f"{where}: __dlpack_device__() returned {device!r}, not a (type, id) pair.")
    kwargs: dict[str, Any] = (
        {"stream": stream} if cast("tuple[object, ...]", device)[0] == DLPACK_CUDA else {}
    )
    # A CUDA producer makes our stream wait on its own device; torch insists that it be current.
    scope = _cuda.current_device(int(cast("tuple[int, int]", device)[1])) if kwargs else nullcontext()
    try:
        with scope:
            try:
                return dlpack(max_version=(1, 0), **kwargs)
            except TypeError:  # a producer from before DLPack 1.0 takes no max_version
                return dlpack(**kwargs)
    except (BufferError, RuntimeError, ValueError, TypeError) as exc:  # the producer's own refusal
        raise InteropError(f"{where}: {type(obj).__name__}.__dlpack__() refused to export: {exc}") from exc


def _spec_of(tensor: DLTensor, layout: Layout | None, *, where: str) -> ImageSpec:
    device_type, device_id = tensor.device.device_type, tensor.device.device_id
    device: Device
    if device_type == DLPACK_CUDA:
        device = Device("cuda", device_id)
    elif device_type in (DLPACK_CPU, DLPACK_CUDA_HOST):
        device = CPU  # pinned host memory is host memory that the GPU can also read
    else:
        raise DeviceError(
            f"{where}: DLPack device type {device_type} is neither CUDA (2), CPU (1) nor CUDA host (3)."
        )
    dtype = dtype_from_dlpack(tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes, where=where)
    itemsize = dtype_info(dtype).itemsize
    ndim = tensor.ndim
    if ndim not in (2, 3):
        raise InteropError(f"{where}: expected a 2-D or 3-D tensor, got ndim={ndim}.")
    shape = tuple(tensor.shape[index] for index in range(ndim))
    if tensor.strides:
        strides = tuple(tensor.strides[index] * itemsize for index in range(ndim))
    else:  # NULL strides mean compact row-major (DLPack < 1.2 allowed it)
        strides = tuple(itemsize * _product(shape[index + 1 :]) for index in range(ndim))
    ptr = (tensor.data or 0) + tensor.byte_offset
    return spec_from_strided(ptr, shape, strides, dtype, layout, device, where=where)


def _product(values: tuple[int, ...]) -> int:
    result = 1
    for value in values:
        result *= value
    return result
