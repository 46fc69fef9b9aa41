"""CuPy spoke: ``cupy.ndarray`` in, ``cupy.ndarray`` out. Everything gpuimage knows about CuPy is here.

Views are built as headers (``UnownedMemory`` + ``MemoryPointer`` + ``ndarray``): no CUDA call, no
host synchronization (``cupy.asarray`` on a CAI with a stream would block the host), and it works on
machines without a GPU, which is how CPU-only tests check them.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ._backends import missing_backend

try:
    import cupy
except ImportError as exc:  # pragma: no cover - exercised only where CuPy is absent
    raise missing_backend("cupy") from exc


import numpy as np

from ._cupy_runtime import CupyRuntime, current_stream, current_stream_object
from ._device import Device, cuda_device
from ._dtypes import DTypeName, parse_dtype
from ._errors import CudaError, DeviceError, DTypeError, InteropError, MissingBackendError
from ._layout import Layout
from ._source import Imported, SpecCache, SpecMemo, check_placement, imported, spec_from_strided
from ._spec import ImageSpec
from ._spokes import OutArray, Spoke

__all__ = [
    "current_stream",
    "current_stream_object",
    "empty",
    "strided_parts",
    "gpu_available",
    "gpu_runtime",
    "parse",
    "view",
]


_specs = SpecCache()


def parse(
    array: object, /, *, layout: Layout | None, device: Device | None = None, stream: int | None, where: str
) -> Imported:
    """Wrap a ``cupy.ndarray`` (2-D, or 3-D with a layout) as it is, strided or sliced.

    Without ``stream``, the data is ready on CuPy's current stream, whose object is kept: CuPy
    destroys a stream with its object."""
    if not isinstance(array, cupy.ndarray):
        raise InteropError(f"{where}: expected a cupy.ndarray, got {type(array).__name__}.")
    data = array.data
    device_id = data.device_id
    spec = _specs.get((array.dtype, array.shape, array.strides, device_id, layout))
    if spec is None:
        spec = _checked_spec(array, layout, where)
    memory = data.mem
    ptr = check_placement(data.ptr, spec, memory.ptr, memory.size, where=where)
    keep: object = None
    if stream is None and gpu_available():
        current = cupy.cuda.get_current_stream(device_id)
        stream, keep = int(current.ptr), current
    # memory CuPy did not allocate carries the device its wrapper gave (our own views included)
    located = type(memory) is not cupy.cuda.UnownedMemory
    return imported((ptr, spec, array, stream, False, keep, located))


def _checked_spec(array: cupy.ndarray, layout: Layout | None, where: str) -> ImageSpec:
    """Every check of an array's dtype and geometry; the spec, stored for reuse."""
    dtype = parse_dtype(array.dtype, where=where)
    memory = array.data.mem
    spec = spec_from_strided(
        array.data.ptr,
        array.shape,
        array.strides,
        dtype,
        layout,
        cuda_device(array.data.device_id),
        where=where,
        allocation=(memory.ptr, memory.size),
    )
    return _specs.put((array.dtype, array.shape, array.strides, array.data.device_id, layout), spec)


def view(ptr: int, spec: ImageSpec, owner: object) -> cupy.ndarray:
    """A ``cupy.ndarray`` header over the image (same pointer, same byte strides) keeping ``owner`` alive."""
    shape, dtype, strides, nbytes, index = _headers(spec)
    # positional arguments: Cython parses them faster than keywords (a first view per frame)
    memory = cupy.cuda.UnownedMemory(ptr, nbytes, owner, index)
    return cupy.ndarray(shape, dtype, cupy.cuda.MemoryPointer(memory, 0), strides)


def _header(spec: ImageSpec) -> tuple[tuple[int, ...], np.dtype[Any], tuple[int, ...], int, int]:
    """``(shape, dtype, byte strides, extent, device)`` of an array over an image of ``spec``."""
    if not spec.device.is_cuda:
        raise DeviceError(
            "as_cupy(): the image is in host memory; CuPy arrays live on a GPU. Call image.cuda() first, "
            "or use as_numpy()."
        )
    if spec.dtype == "bfloat16":
        raise DTypeError("as_cupy(): CuPy has no bfloat16 dtype. Use as_torch() instead.")
    return spec.shape, np.dtype(spec.dtype), spec.strides, spec.nbytes, spec.device.index


_headers = SpecMemo(_header)


def gpu_available() -> bool:
    """True when CuPy can reach a GPU (a yes is kept: every wrap asks)."""
    if _available:
        return True
    found = bool(cupy.is_available())
    if found:
        _available.append(True)
    return found


_available: list[bool] = []


def gpu_runtime() -> CupyRuntime | None:
    """CuPy's runtime calls where CuPy reaches a GPU, else None (``_runtime`` asks once)."""
    return CupyRuntime(view) if gpu_available() else None


def strided_parts(
    array: object, *, where: str = "out"
) -> tuple[int, tuple[int, ...], tuple[int, ...], DTypeName, Device]:
    """(pointer, shape, byte strides, dtype, device) of a CuPy array of an image dtype (an ``out=``)."""
    if not isinstance(array, cupy.ndarray):
        raise InteropError(f"{where}: expected out to be a cupy.ndarray, got {type(array).__name__}.")
    dtype = parse_dtype(array.dtype, where=f"{where} out")
    return array.data.ptr, tuple(array.shape), tuple(array.strides), dtype, Device("cuda", array.device.id)


def empty(
    shape: tuple[int, ...], dtype: DTypeName, device: Device, *, where: str = "like='cupy'"
) -> cupy.ndarray:
    """A new packed array on ``device`` (CuPy has no bfloat16: ``DTypeError``)."""
    if dtype == "bfloat16":
        raise DTypeError(f"{where}: CuPy has no bfloat16 dtype; use like='torch'.")
    if not device.is_cuda:
        raise DeviceError(f"{where}: CuPy arrays live on a GPU, got device={device}; use like='numpy'.")
    if not gpu_available():  # without a GPU, cupy.empty raises CUDARuntimeError
        raise MissingBackendError(
            f"{where}: expected a GPU that CuPy can reach for a new CuPy array on {device}, got none "
            "(cupy.is_available() is False: no GPU or driver). Run where CuPy sees the GPU, or pass "
            "like='torch' or out=."
        )
    try:
        with cupy.cuda.Device(device.index):
            return cupy.empty(shape, dtype=np.dtype(dtype))
    except (cupy.cuda.runtime.CUDARuntimeError, cupy.cuda.memory.OutOfMemoryError) as exc:
        raise CudaError(
            f"{where}: expected a new {dtype} CuPy array of shape {shape} on {device}, got a CUDA "
            f"error ({exc}). Free GPU memory, or check the device index."
        ) from exc


def _describe_out(out: object, /, *, where: str) -> OutArray:
    return OutArray(*strided_parts(out, where=where))


def _out_signature(out: object, /) -> tuple[int, Hashable] | None:
    """A plain array's pointer, and what ``strided_parts`` reads of it besides. None for
    subclasses, which may override any of it."""
    if type(out) is not cupy.ndarray:
        return None
    array = out
    return array.data.ptr, (array.shape, array.strides, array.dtype, array.device.id)


def _always(array: object, /) -> bool:
    return True  # CuPy's __dlpack__ exports every array parse reads


SPOKE = Spoke(
    name="cupy",
    parse=parse,
    view=view,
    current_stream=current_stream,
    current_stream_object=current_stream_object,
    describe_out=_describe_out,
    gpu_runtime=gpu_runtime,
    parses_as_dlpack=_always,
    out_signature=_out_signature,
)
