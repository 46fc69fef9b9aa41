"""DLPack spoke: capsules both ways, versioned (1.x) and legacy, with ctypes. Export: each capsule points
at a ``DLManagedTensor[Versioned]`` Python owns, kept in a registry with the memory's owner until the
consumer calls the deleter; capsules have no destructor (a ctypes callback cannot leave a consumer's
pending exception in place), so one dropped unconsumed is found by a sweep after each collection and
whenever the registry has doubled. Import: the capsule is renamed under a lock (one consumer wins); its
deleter runs once, when the last image or view of it is gone. DLPack strides are in ELEMENTS."""

from __future__ import annotations

import ctypes
import gc
import math
import reprlib
import sys
import threading
from collections.abc import Callable
from ctypes import POINTER, c_int64
from typing import Any, cast

from typing_extensions import CapsuleType

from ._device import CPU, DLPACK_CPU, DLPACK_CUDA, DLPACK_CUDA_HOST, Device
from ._dlpack_abi import (
    NAME,
    NAME_VERSIONED,
    NO_DESTRUCTOR,
    USED,
    USED_VERSIONED,
    Deleter,
    DLManagedTensor,
    DLManagedTensorVersioned,
    DLTensor,
    capsule_is_valid,
    capsule_new,
    capsule_pointer,
    capsule_set_name,
    immortal,
)
from ._dtypes import dtype_from_dlpack, dtype_info
from ._errors import DeviceError, ExportError, GpuImageError, InteropError, LifetimeError
from ._layout import Layout
from ._runtime import runtime
from ._source import Imported, SpecCache, check_placement, refuse_lazy_negation, spec_from_strided
from ._spec import ImageSpec
from ._spokes import Spoke, spoke_of
from ._streams import LEGACY_DEFAULT, from_protocol, to_protocol

__all__ = ["export_capsule", "live_exports", "parse"]

READ_ONLY = 1 << 0
IS_COPIED = 1 << 1
DLPACK_VERSION = (1, 1)
_C_INT_MAX = 2**31 - 1  # DLPack's device_id is an int32


# address of a DLManagedTensor[Versioned] we exported -> (struct, shape, strides, memory owner, capsule)
_exports: dict[int, tuple[object, ...]] = immortal({})
_CAPSULE = 4
_MIN_SWEEP = 16
_sweep_at = [_MIN_SWEEP]


def _release_export(address: int | None, registry: dict[int, tuple[object, ...]] = _exports) -> None:
    """The deleter of every tensor we export: the consumer is done with it."""
    if address is not None:
        registry.pop(address, None)


_DELETER = immortal(Deleter(_release_export))


def _references(entry: tuple[object, ...]) -> int:
    return sys.getrefcount(entry[_CAPSULE])


# The count a capsule has when only its registry entry refers to it, measured as the sweep does.
_BASELINE = _references((None, None, None, None, object()))


def live_exports() -> int:
    """Release the exports whose capsule was dropped unconsumed; return how many are still live
    (capsules not yet dropped, and tensors whose consumer has not called the deleter yet)."""
    for address, entry in list(_exports.items()):
        # Only the registry holds it, and nobody renamed it: it was never consumed and never will be
        # (nothing else can reach it now). The entry is popped once: dict.pop is atomic.
        if _references(entry) <= _BASELINE and (
            capsule_is_valid(entry[_CAPSULE], NAME) or capsule_is_valid(entry[_CAPSULE], NAME_VERSIONED)
        ):
            _exports.pop(address, None)
    _sweep_at[0] = max(_MIN_SWEEP, 2 * len(_exports))
    return len(_exports)


def _sweep_after_collection(phase: str, info: dict[str, int]) -> None:
    if phase == "stop" and _exports:
        live_exports()


gc.callbacks.append(_sweep_after_collection)


def export_capsule(
    ptr: int, spec: ImageSpec, owner: object, *, versioned: bool, readonly: bool, copied: bool
) -> CapsuleType:
    """A DLPack capsule of the image (non-NULL strides, in elements) that keeps ``owner`` alive.

    Raises:
        ExportError: read-only memory asked for as a legacy capsule, which cannot say so.
    """
    if readonly and not versioned:
        raise ExportError(
            "__dlpack__(): expected max_version >= (1, 0) for read-only memory, got a request for a legacy "
            "capsule (max_version None or below (1, 0)), which has no read-only flag: the consumer would "
            "write to memory that must not change. Ask with max_version=(1, 0) (np.from_dlpack and "
            "torch.from_dlpack do), or pass copy=True for a writable copy."
        )
    if len(_exports) >= _sweep_at[0]:
        live_exports()
    itemsize = spec.itemsize
    info = dtype_info(spec.dtype)
    shape = (c_int64 * 3)(*spec.shape)
    strides = (c_int64 * 3)(*(stride // itemsize for stride in spec.strides))
    managed: DLManagedTensor | DLManagedTensorVersioned
    if versioned:
        managed = DLManagedTensorVersioned()
        managed.version.major, managed.version.minor = DLPACK_VERSION
        managed.flags = (READ_ONLY if readonly else 0) | (IS_COPIED if copied else 0)
        name = NAME_VERSIONED
    else:
        managed = DLManagedTensor()
        name = NAME
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
    capsule: CapsuleType = capsule_new(address, name, NO_DESTRUCTOR)
    _exports[address] = (managed, shape, strides, owner, capsule)
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


# Check-and-rename of a capsule is one step: two threads consuming one capsule must not both win (the
# deleter would run twice). Re-entrant; the name is checked again before the rename, in case a finalizer
# run by a collection inside the step consumes the same capsule on this thread.
_consume_lock = threading.RLock()


def parse(
    obj: object, /, *, layout: Layout | None, device: Device | None = None, stream: int | None, where: str
) -> Imported:
    """Consume ``obj.__dlpack__()`` (or a bare capsule) as an image, without copying.

    ``stream``: the stream the image will be used on; a CUDA producer orders its work before it,
    per the array API standard. The image is then ready on ``stream``.

    Raises:
        LifetimeError: a capsule that was already consumed (also by another thread).
        InteropError: a producer that raises, returns something else than a DLPack capsule, or
            describes a tensor that is malformed (NULL shape, ndim out of range, a bad device).
    """
    consumer = to_protocol(LEGACY_DEFAULT if stream is None else stream)  # None: DLPack's 1, then ready there
    bare = type(obj) is CapsuleType
    producer = "a DLPack capsule" if bare else _name_of(obj)
    announced = None
    if bare:
        capsule: object = obj
    else:
        native = spoke_of(obj) if device is None else None
        if native is not None and native.parses_as_dlpack(obj):  # ready on the consumer's own stream:
            imported = native.parse(obj, layout=layout, device=None, stream=None, where=where)
            if imported.stream == (from_protocol(consumer) if imported.spec.device.is_cuda else None):
                return imported  # __dlpack__ would queue nothing and give the same tensor
        capsule, announced = _request_capsule(obj, stream=consumer, producer=producer, where=where)
        if type(capsule) is not CapsuleType:
            raise InteropError(
                f"{where}: expected {producer}.__dlpack__() to return a DLPack capsule, got "
                f"{type(capsule).__name__}. The producer does not implement DLPack; use its "
                "__cuda_array_interface__ or as_* methods instead."
            )
    with _consume_lock:
        address, versioned = _claim(capsule, producer, where=where)
        managed: DLManagedTensor | DLManagedTensorVersioned
        if versioned:
            managed = DLManagedTensorVersioned.from_address(address)
            major, minor = managed.version.major, managed.version.minor
            if major != 1:
                raise InteropError(
                    f"{where}: expected DLPack 1.x from {producer}, got version={major}.{minor}; "
                    "gpuimage reads 1.x. Update the producer, or ask it for a legacy capsule."
                )
            readonly = bool(managed.flags & READ_ONLY)
        else:
            managed = DLManagedTensor.from_address(address)
            readonly = False
        tensor = managed.dl_tensor
        spec = _spec_of(tensor, layout, producer, where=where)
        if announced is not None and announced != spec.device:
            raise InteropError(
                f"{where}: expected {producer}'s tensor on the device its __dlpack_device__() names "
                f"({announced}), got device={spec.device} (the producer ordered its work for the wrong "
                "device, if at all). Report it to the producer's authors."
            )
        ptr = (tensor.data or 0) + tensor.byte_offset
        # Take ownership only once the tensor is known to be usable: otherwise whoever holds the
        # capsule still frees it.
        _claim(capsule, producer, where=where)
        capsule_set_name(capsule, USED_VERSIONED if versioned else USED)
        deleter = managed.deleter
    owner = DLPackOwner(address, deleter, "dltensor_versioned" if versioned else "dltensor")
    # A bare capsule was exported without our stream: the caller's ``stream`` says where it is ready.
    asked = from_protocol(consumer) if not bare else stream
    ready_on = asked if spec.device.is_cuda else None
    return Imported(ptr, spec, owner, ready_on, readonly)


def _claim(capsule: object, producer: str, *, where: str) -> tuple[int, bool]:
    """The tensor's address and whether it is versioned, if ``capsule`` is an unconsumed DLPack one."""
    for name, versioned in ((NAME_VERSIONED, True), (NAME, False)):
        if capsule_is_valid(capsule, name):
            address = capsule_pointer(capsule, name)
            if address:  # PyCapsule_New refuses NULL: a valid capsule has a pointer
                return address, versioned
    ctypes.pythonapi.PyErr_Clear()
    if capsule_is_valid(capsule, USED) or capsule_is_valid(capsule, USED_VERSIONED):
        raise LifetimeError(
            f"{where}: expected an unconsumed DLPack capsule, got one that was already consumed (by another "
            "call, or another thread); a capsule is used once. Ask the producer for a new capsule."
        )
    raise InteropError(
        f"{where}: expected a capsule named 'dltensor' or 'dltensor_versioned', got another capsule from "
        f"{producer}. Pass the array itself, or a capsule from its __dlpack__()."
    )


def _name_of(obj: object) -> str:
    kind = type(obj)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _request_capsule(obj: object, *, stream: int, producer: str, where: str) -> tuple[object, Device | None]:
    """Call the producer's ``__dlpack__``; return the capsule and the device it announced."""
    try:
        dlpack = getattr(obj, "__dlpack__", None)
        dlpack_device = getattr(obj, "__dlpack_device__", None)
    except Exception as exc:  # a property that raises: the producer is broken, not absent
        raise InteropError(
            f"{where}: expected {producer} to have DLPack methods, got {type(exc).__name__}: {exc} "
            "while looking them up. Report it to the producer's authors."
        ) from exc
    if not callable(dlpack) or not callable(dlpack_device):
        raise InteropError(f"{where}: {producer} has no __dlpack__/__dlpack_device__ methods to call.")
    refuse_lazy_negation(obj, where=where)  # torch exports a negated view without its sign
    announced = _announced_device(dlpack_device, producer, where=where)
    if announced is None or not announced.is_cuda:
        return _call_producer(dlpack, {}, producer, where=where), announced
    kwargs: dict[str, Any] = {"stream": stream}
    try:
        # A CUDA producer makes our stream wait on its own device; torch insists that it be current.
        with runtime().device(announced.index):
            return _call_producer(dlpack, kwargs, producer, where=where), announced
    except GpuImageError:
        raise
    except Exception as exc:
        raise DeviceError(
            f"{where}: expected a CUDA device this machine has, got {announced} from {producer}."
            f"__dlpack_device__() ({type(exc).__name__}: {exc}). Check CUDA_VISIBLE_DEVICES."
        ) from exc


def _announced_device(dlpack_device: Callable[[], object], producer: str, *, where: str) -> Device | None:
    """The device of ``__dlpack_device__()``; None for kinds that the capsule's own check refuses."""
    try:
        pair: object = dlpack_device()
        items = tuple(cast("tuple[object, ...]", pair)) if isinstance(pair, tuple) else ()
        values = [int.__int__(item) for item in items if isinstance(item, int)]  # IntEnum included
    except Exception as exc:
        raise InteropError(
            f"{where}: expected {producer}.__dlpack_device__() to return (device_type, device_id), got "
            f"{type(exc).__name__}: {exc}. Report it to the producer's authors."
        ) from exc
    if len(items) != 2 or len(values) != 2:
        try:  # only for a refusal: a repr on every import would cost more than the import
            shown = reprlib.repr(pair)  # pyright: ignore[reportUnknownArgumentType]
        except Exception:  # a hostile __repr__
            shown = f"a {type(pair).__name__}"  # pyright: ignore[reportUnknownArgumentType]
        raise InteropError(
            f"{where}: expected {producer}.__dlpack_device__() to return a (device_type, device_id) pair "
            f"of ints, got {shown}. Report it to the producer's authors."
        )
    device_type, device_id = values
    if not 0 <= device_id <= _C_INT_MAX:
        raise InteropError(
            f"{where}: expected a device_id from 0 to 2**31-1 from {producer}.__dlpack_device__(), got "
            f"device_id={device_id}. Report it to the producer's authors."
        )
    if device_type == DLPACK_CUDA:
        return Device("cuda", device_id)
    return CPU if device_type in (DLPACK_CPU, DLPACK_CUDA_HOST) else None


def _call_producer(
    dlpack: Callable[..., object], kwargs: dict[str, Any], producer: str, *, where: str
) -> object:
    try:
        try:
            return dlpack(max_version=(1, 0), **kwargs)
        except TypeError:  # a producer from before DLPack 1.0 takes no max_version
            return dlpack(**kwargs)
    except Exception as exc:  # the producer's own refusal, whatever its class
        hint = "Ask the producer for a form it can export (contiguous(), a copy)."
        if isinstance(exc, OverflowError) and "stream" in kwargs:
            hint = (
                f"It cannot take stream={kwargs['stream']:#x} (OpenCV's GpuMat.__dlpack__ takes a C int, "
                "too small for a stream handle). For a GpuMat use GpuImage.from_gpumat(mat) instead."
            )
        raise InteropError(
            f"{where}: expected a capsule from {producer}.__dlpack__(), but it refused to export: "
            f"{type(exc).__name__}: {exc}. {hint}"
        ) from exc


def _spec_of(tensor: DLTensor, layout: Layout | None, producer: str, *, where: str) -> ImageSpec:
    device_type, device_id = tensor.device.device_type, tensor.device.device_id
    device: Device
    if device_type == DLPACK_CUDA:
        if device_id < 0:
            raise InteropError(
                f"{where}: expected a CUDA device_id from 0 to 2**31-1 in {producer}'s tensor, got "
                f"device_id={device_id}. Report it to the producer's authors."
            )
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
        raise InteropError(f"{where}: expected a 2-D or 3-D tensor from {producer}, got ndim={ndim}.")
    if not tensor.shape:
        raise InteropError(
            f"{where}: expected a shape array in {producer}'s tensor, got a NULL shape "
            f"pointer (ndim={ndim}). Report it to the producer's authors."
        )
    shape = tuple(tensor.shape[index] for index in range(ndim))
    if tensor.strides:
        strides = tuple(tensor.strides[index] * itemsize for index in range(ndim))
    else:  # NULL strides mean compact row-major (DLPack < 1.2 allowed it)
        strides = tuple(itemsize * math.prod(shape[index + 1 :]) for index in range(ndim))
    ptr = (tensor.data or 0) + tensor.byte_offset
    # a decoder loop exports one geometry per frame: its spec is checked once, the pointer every time
    key = (device, dtype, shape, strides, layout)
    spec = _specs.get(key)
    if spec is not None:
        check_placement(ptr, spec, 0, -1, where=where)
        return spec
    return _specs.put(key, spec_from_strided(ptr, shape, strides, dtype, layout, device, where=where))


_specs = SpecCache()


SPOKE = Spoke(name="dlpack", parse=parse)
