"""OpenCV spoke: ``cv2.cuda.GpuMat`` in and out. Everything gpuimage knows about OpenCV is here.

Facts this module is built on (OpenCV 4.8 to 5.x):

- ``createGpuMatFromCudaMemory``, ``cudaPtr()``, ``step``, ``size()`` (which is ``(cols, rows)``)
  and ROIs are pure headers: they work on builds without CUDA, which is every PyPI wheel.
- On builds without CUDA, ``cv2.cuda.wrapStream`` and ``cv2.cuda.Stream.Null()`` abort the process,
  so nothing here touches OpenCV streams unless ``getCudaEnabledDeviceCount() > 0``.
- Type codes changed in 5.0 (``CV_8UC3`` is 64 there, 16 in 4.x): codes come from ``CV_MAKETYPE``.
- A GpuMat is one interleaved (HWC) plane with a positive step, 1 to 4 channels.
- A GpuMat made over foreign memory keeps no reference to it, and cv2 objects take neither
  attributes nor weak references (and subclassing GpuMat crashes the interpreter at exit).

Lifetime of ``as_gpumat()`` views: each mat is entered in a registry together with the owner of its
memory. The registry drops an entry once nothing but the registry refers to the mat (it reads the
reference counts after each garbage collection, and whenever the registry has doubled in size).
So the memory stays valid as long as any Python reference to the mat exists. Headers OpenCV
derives from it (``rowRange``, ``GpuMat(mat, roi)``) are not tracked: take ROIs with
``GpuImage.crop()`` instead.
"""

from __future__ import annotations

import gc
import sys
import threading
from typing import NoReturn, cast

from ._backends import missing_backend

try:
    import cv2
except ImportError as exc:  # pragma: no cover - exercised only where OpenCV is absent
    raise missing_backend("cv2") from exc

from ._device import Device, parse_device
from ._dtypes import DTypeName
from ._errors import DeviceError, DTypeError, InteropError, LayoutError, SpecError, StrideError
from ._layout import Layout
from ._pointers import device_of
from ._source import Imported, SpecMemo, spec_from_strided
from ._spec import ImageSpec
from ._spokes import Spoke

__all__ = ["DEPTHS", "cuda_enabled", "held_mats", "parse", "view"]

_DEPTH_NAMES: dict[DTypeName, str] = {
    "bool": "CV_Bool",  # 5.0+
    "uint8": "CV_8U",
    "int8": "CV_8S",
    "uint16": "CV_16U",
    "int16": "CV_16S",
    "uint32": "CV_32U",  # 5.0+
    "int32": "CV_32S",
    "int64": "CV_64S",  # 5.0+
    "float16": "CV_16F",
    "bfloat16": "CV_16BF",  # not exported to Python as of 5.0
    "float32": "CV_32F",
    "float64": "CV_64F",
}
DEPTHS: dict[DTypeName, int] = {
    dtype: getattr(cv2, name) for dtype, name in _DEPTH_NAMES.items() if hasattr(cv2, name)
}
"""OpenCV depth code of each dtype that this OpenCV has."""
_DTYPES_BY_DEPTH: dict[int, DTypeName] = {depth: dtype for dtype, depth in DEPTHS.items()}
_TYPE_CODES: dict[tuple[DTypeName, int], int] = {
    (dtype, channels): cv2.CV_MAKETYPE(depth, channels)
    for dtype, depth in DEPTHS.items()
    for channels in range(1, 5)
}
"""OpenCV type code of each (dtype, channels) a GpuMat can hold; the codes differ between 4.x and 5.x."""
_HWC = Layout.HWC

_cuda_device_count: int | None = None


def cuda_enabled() -> bool:
    """True when this OpenCV build has CUDA and sees a GPU (only then are its streams safe to touch)."""
    global _cuda_device_count
    if _cuda_device_count is None:
        _cuda_device_count = int(cv2.cuda.getCudaEnabledDeviceCount())
    return _cuda_device_count > 0


def parse(mat: object, *, device: object, stream: int | None, where: str) -> Imported:
    """Wrap a GpuMat (always HWC) as it is, pitch and ROI included."""
    if not isinstance(mat, cv2.cuda.GpuMat):
        raise InteropError(f"{where}: expected a cv2.cuda.GpuMat, got {type(mat).__name__}.")
    if mat.empty():
        raise SpecError(f"{where}: the GpuMat is empty (no rows or columns); there is no image to wrap.")
    dtype = _DTYPES_BY_DEPTH.get(mat.depth())
    if dtype is None:
        raise DTypeError(f"{where}: OpenCV depth {mat.depth()} has no gpuimage dtype.")
    cols, rows = mat.size()
    ptr = mat.cudaPtr()
    mat_device = _mat_device(device, ptr, where=where)
    if not mat_device.is_cuda:
        raise DeviceError(
            f"{where}: expected a CUDA device, got device={device!r} (a GpuMat always holds device memory, "
            "which host code must not read). Leave device=None for OpenCV's current device, or pass the "
            "mat's CUDA ordinal ('cuda:N'); for a host copy, call cpu() on the wrapped image."
        )
    spec = spec_from_strided(
        ptr,
        (rows, cols, mat.channels()),
        (mat.step, mat.elemSize(), mat.elemSize1()),
        dtype,
        Layout.HWC,
        mat_device,
        where=where,
    )
    if stream is None and cuda_enabled():
        stream = 0  # OpenCV's default stream (Stream::Null) is the legacy default stream
    # OpenCV keeps no device for memory it did not allocate: the mat's device is never reported
    return Imported(ptr, spec, mat, stream, False, located=False)


def _mat_device(device: object, ptr: int, *, where: str) -> Device:
    """``device`` if given, else the device CUDA reports for the pointer, else OpenCV's current one."""
    if device is not None:
        return parse_device(device, where=where)
    located = device_of(ptr)
    if located is not None:
        return located
    if cuda_enabled():
        return Device("cuda", int(cv2.cuda.getDevice()))
    return Device("cuda", 0)  # headers without CUDA and no runtime to ask: OpenCV's default device


def view(ptr: int, spec: ImageSpec, owner: object) -> cv2.cuda.GpuMat:
    """A GpuMat header over the image, registered so that ``owner`` outlives it (see module doc).

    Raises the reason (``_refuse``) when the image is not one interleaved device plane of 1 to 4
    channels of a depth this OpenCV has, on OpenCV's current device.
    """
    rows, cols, type_code, step = _headers(spec)
    if _cuda_device_count and int(cv2.cuda.getDevice()) != spec.device.index:
        _refuse(spec)
    mat = cv2.cuda.createGpuMatFromCudaMemory(rows, cols, type_code, ptr, step)
    _keepalive.hold(mat, owner)
    return mat


def _header(spec: ImageSpec) -> tuple[int, int, int, int]:
    """``(rows, cols, type, step)`` of a GpuMat over an image of ``spec``; raises why there is none."""
    channels, itemsize = spec.channels, spec.itemsize
    type_code = _TYPE_CODES.get((spec.dtype, channels))
    cuda_enabled()  # reads the device count once, which ``view`` then checks
    # With interleaved pixels, ImageSpec's overlap check already ensures row_pitch >= a row.
    if (
        type_code is None
        or spec.layout is not _HWC
        or spec.pixel_stride != channels * itemsize
        or spec.channel_stride != itemsize
        or not spec.device.is_cuda
    ):
        _refuse(spec)
    height, width = spec.height, spec.width
    _check_c_int_sizes(height, width)
    return height, width, type_code, spec.row_pitch if height > 1 else width * spec.pixel_stride


_headers = SpecMemo(_header)


_C_INT_MAX = 2**31 - 1


def _check_c_int_sizes(height: int, width: int) -> None:
    """A GpuMat's rows and cols are C ints (its step is a size_t, which any valid spec fits), and
    OpenCV answers a larger side with a bare ``cv2.error`` from overload resolution."""
    if height > _C_INT_MAX or width > _C_INT_MAX:
        raise SpecError(
            f"as_gpumat(): expected height and width up to {_C_INT_MAX} (GpuMat rows and cols are C "
            f"ints), got height={height}, width={width}. Take crop()s of at most {_C_INT_MAX} rows and "
            "columns and view each as its own GpuMat, or use as_torch()/as_cupy()."
        )


def _refuse(spec: ImageSpec) -> NoReturn:
    """Raise why a GpuMat cannot show this image."""
    if not spec.device.is_cuda:
        raise DeviceError(
            "as_gpumat(): the image is in host memory; a GpuMat needs device memory. Call image.cuda() "
            "first, or use as_numpy() with cv2 host functions."
        )
    if spec.layout is not Layout.HWC:
        raise LayoutError(
            "as_gpumat(): a GpuMat holds one interleaved plane, got layout=CHW. Call "
            "image.to_layout('HWC') first, or use as_torch()/as_cupy()."
        )
    if not 1 <= spec.channels <= 4:
        raise LayoutError(f"as_gpumat(): a GpuMat has 1 to 4 channels, got channels={spec.channels}.")
    if spec.dtype not in DEPTHS:
        raise DTypeError(
            f"as_gpumat(): OpenCV {cv2.__version__} has no {spec.dtype} depth; it has "
            f"{', '.join(DEPTHS)}. Convert the data in torch or CuPy first."
        )
    if spec.pixel_stride != spec.channels * spec.itemsize or spec.channel_stride != spec.itemsize:
        raise StrideError(
            f"as_gpumat(): a GpuMat needs interleaved pixels (pixel_stride={spec.channels * spec.itemsize}, "
            f"channel_stride={spec.itemsize} bytes), got pixel_stride={spec.pixel_stride}, "
            f"channel_stride={spec.channel_stride} (a permuted or channel-sliced view). "
            "Call image.contiguous() first."
        )
    raise DeviceError(
        f"as_gpumat(): the image is on {spec.device} but OpenCV's current device is "
        f"cuda:{cv2.cuda.getDevice()}; call cv2.cuda.setDevice({spec.device.index}) first."
    )


_MIN_SWEEP = 16


class _MatKeepAlive:
    """Holds each mat's memory owner while anything besides this registry refers to the mat.

    A sweep drops the entries whose mat only the registry still refers to. Sweeps run after each
    garbage collection and whenever the registry has doubled since the last one, so holding a mat
    costs amortized O(1).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[object, object]] = []
        self._sweep_at = _MIN_SWEEP
        # The count a mat has when only its registry entry refers to it, measured the same way the
        # sweep measures it, rather than assumed (it differs between Python versions).
        self._baseline = self._references((object(), None))

    @staticmethod
    def _references(entry: tuple[object, object]) -> int:
        return sys.getrefcount(entry[0])

    def hold(self, mat: object, owner: object) -> None:
        with self._lock:
            self._entries.append((mat, owner))
            if len(self._entries) >= self._sweep_at:
                self._sweep_locked()

    def sweep(self, *, blocking: bool = True) -> None:
        # Non-blocking from the gc callback: a collection can start inside our own sweep, in this
        # thread, while the lock is held.
        if not self._lock.acquire(blocking=blocking):
            return
        try:
            self._sweep_locked()
        finally:
            self._lock.release()

    def _sweep_locked(self) -> None:
        baseline = self._baseline
        self._entries = [entry for entry in self._entries if self._references(entry) > baseline]
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


_keepalive = _MatKeepAlive()


def _sweep_after_collection(phase: str, info: dict[str, int]) -> None:
    if phase == "stop":
        _keepalive.sweep(blocking=False)


gc.callbacks.append(_sweep_after_collection)


def held_mats() -> int:
    """How many GpuMat views still hold their memory's owner (after a sweep)."""
    _keepalive.sweep()
    return len(_keepalive)


def _parse(
    obj: object, /, *, layout: Layout | None, device: Device | None, stream: int | None, where: str
) -> Imported:
    return parse(obj, device=device, stream=stream, where=where)  # a GpuMat is always HWC


def _stream_handle(stream: object, /, *, where: str) -> int:
    # On builds without CUDA, touching a cv2.cuda.Stream aborts the interpreter: refuse first.
    if not cuda_enabled():
        raise InteropError(f"{where}: this OpenCV build has no CUDA, so a cv2.cuda.Stream has no handle.")
    handle = cast(object, stream.cudaPtr())  # type: ignore[attr-defined]  # cv2.cuda.Stream on CUDA builds
    if type(handle) is not int:
        raise InteropError(f"{where}: cv2.cuda.Stream.cudaPtr() returned {handle!r}, not an int.")
    return handle


SPOKE = Spoke(name="opencv", parse=_parse, view=view, stream_handle=_stream_handle)
