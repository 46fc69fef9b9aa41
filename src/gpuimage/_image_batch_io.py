"""The 4-D views and exports of a ``GpuBatch``: torch, CuPy and NumPy arrays over the whole batch, its
``__cuda_array_interface__`` and DLPack capsules (a mixin of the batch, as ``ImageExports`` is of images).

Image views go through each spoke's ``view``, which takes a 3-D ``ImageSpec``. A batch has one more
dimension, so its views are made here from a ``BatchHeader`` (pointer, 4-D shape, byte strides)
through the protocols the libraries read: the CUDA Array Interface for torch on a GPU (what the
torch spoke does for images without a known device), the array interface on the host, and a CuPy
header (``UnownedMemory``: no CUDA call, so it works without a GPU). Each library is imported when
its first view is made; the batch caches its views.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, NamedTuple, Self, SupportsIndex, cast

import numpy as np
import numpy.typing as npt
from typing_extensions import CapsuleType

from ._backends import missing_backend
from ._device import Device
from ._dtypes import DTypeName, dtype_info
from ._errors import (
    DeviceError,
    DTypeError,
    ExportError,
    HostMemoryError,
    InteropError,
    MissingBackendError,
    ReadOnlyError,
)
from ._interfaces import ArrayExport, CudaArrayExport, array_request
from ._ordering import BY_HANDLE, StreamOrdering
from ._runtime import runtime
from ._spokes import spoke
from ._streams import LEGACY_DEFAULT, StreamLike, from_protocol, to_protocol

if TYPE_CHECKING:
    import cupy
    import torch

    from ._image_batch import GpuBatch

__all__ = [
    "BatchExports",
    "BatchHeader",
    "consume_dlpack",
    "cuda_interface",
    "cupy_view",
    "host_interface",
    "numpy_view",
    "torch_view",
]


_NO_GUARD = contextlib.nullcontext()


class BatchHeader(NamedTuple):
    """A batch as arrays see it: first element, shape and strides in **bytes** (batch layout order,
    ``(N, C, H, W)`` or ``(N, H, W, C)``), dtype, device, and the byte extent of the whole batch."""

    ptr: int
    shape: tuple[int, int, int, int]
    strides: tuple[int, int, int, int]
    dtype: DTypeName
    device: Device
    nbytes: int


def _typestr(dtype: DTypeName, where: str) -> str:
    typestr = dtype_info(dtype).cai_typestr
    if typestr is None:
        raise DTypeError(
            f"{where}: expected a dtype with an array-interface typestr, got dtype={dtype} (torch would "
            "read it back as float16). Use DLPack (__dlpack__ / as_torch()) for bfloat16 batches."
        )
    return typestr


def cuda_interface(
    header: BatchHeader, *, stream: int | None, readonly: bool, as_dtype: DTypeName | None = None
) -> dict[str, Any]:
    """The v3 ``__cuda_array_interface__`` of a batch (strides explicit, in bytes); ``stream`` is the
    raw handle the data is ready on (exported as CAI's code: the legacy default stream is 1)."""
    return {
        "shape": header.shape,
        "typestr": _typestr(as_dtype or header.dtype, "__cuda_array_interface__"),
        "data": (header.ptr, readonly),
        "strides": header.strides,
        "version": 3,
        "stream": None if stream is None else to_protocol(stream),
    }


def host_interface(
    header: BatchHeader, *, readonly: bool, as_dtype: DTypeName | None = None
) -> dict[str, Any]:
    """The ``__array_interface__`` (v3) of a batch in host memory."""
    return {
        "shape": header.shape,
        "typestr": _typestr(as_dtype or header.dtype, "__array_interface__"),
        "data": (header.ptr, readonly),
        "strides": header.strides,
        "version": 3,
    }


def numpy_view(header: BatchHeader, owner: object, *, readonly: bool) -> npt.NDArray[Any]:
    """A NumPy array over a host batch that keeps ``owner`` alive (read-only if asked)."""
    if header.device.is_cuda:
        raise DeviceError(
            f"as_numpy(): expected a host batch, got one on {header.device}; NumPy sees host memory only. "
            "Use as_torch() or as_cupy() for a device view."
        )
    if header.dtype == "bfloat16":
        raise DTypeError("as_numpy(): expected a dtype NumPy has, got dtype=bfloat16. Use as_torch().")
    array: npt.NDArray[Any] = np.asarray(ArrayExport(host_interface(header, readonly=readonly), owner))
    return array


def torch_view(header: BatchHeader, owner: object) -> torch.Tensor:
    """A tensor over the batch (same pointer, same strides) that keeps ``owner`` alive.

    bfloat16 has no array-interface code: its elements travel as int16 and the tensor is
    reinterpreted (``Tensor.view(dtype)``, no copy)."""
    try:
        import torch
    except ImportError as exc:
        raise missing_backend("torch") from exc
    bfloat16 = header.dtype == "bfloat16"
    carrier: DTypeName | None = "int16" if bfloat16 else None
    if header.device.is_cuda:
        if not torch.cuda.is_available():
            raise MissingBackendError(
                f"as_torch(): expected a torch that sees a GPU for a batch on {header.device}, got a "
                "build without CUDA or no GPU. Install a CUDA build of torch."
            )
        # torch ignores the CAI stream: the batch orders the consumer's stream itself
        interface = cuda_interface(header, stream=None, readonly=False, as_dtype=carrier)
        device = torch.device("cuda", header.device.index)
        tensor = torch.as_tensor(CudaArrayExport(interface, owner), device=device)
        if tensor.data_ptr() != header.ptr:  # torch copies rather than fail when the device is wrong
            raise DeviceError(
                f"as_torch(): expected a view of the memory at {header.ptr:#x}, got a copy (the memory is "
                f"not on {header.device}). Give the right device when wrapping it."
            )
    else:
        array = np.asarray(ArrayExport(host_interface(header, readonly=False, as_dtype=carrier), owner))
        tensor = torch.from_numpy(array)  # pyright: ignore[reportUnknownMemberType]
    return tensor.view(torch.bfloat16) if bfloat16 else tensor


def cupy_view(header: BatchHeader, owner: object) -> cupy.ndarray:
    """A ``cupy.ndarray`` header over a device batch (no CUDA call) that keeps ``owner`` alive."""
    if not header.device.is_cuda:
        raise DeviceError(
            "as_cupy(): expected a batch on a GPU, got one in host memory (CuPy arrays live on a GPU). "
            "Use as_numpy() or as_torch()."
        )
    if header.dtype == "bfloat16":
        raise DTypeError("as_cupy(): expected a dtype CuPy has, got dtype=bfloat16. Use as_torch().")
    try:
        import cupy
    except ImportError as exc:
        raise missing_backend("cupy") from exc
    memory = cupy.cuda.UnownedMemory(header.ptr, header.nbytes, owner, device_id=header.device.index)
    pointer = cupy.cuda.MemoryPointer(memory, 0)
    return cupy.ndarray(header.shape, np.dtype(header.dtype), pointer, strides=header.strides)


def consume_dlpack(obj: object, *, where: str) -> torch.Tensor:
    """A 4-D DLPack producer consumed by ``torch.from_dlpack`` (the DLPack spoke reads 2-D and 3-D
    tensors only): torch orders the producer's work before its current stream and keeps the capsule's
    deleter for when the tensor, and so the batch, is gone."""
    try:
        from torch.utils.dlpack import from_dlpack
    except ImportError as exc:
        raise missing_backend("torch") from exc
    try:
        return from_dlpack(obj)
    except Exception as exc:  # the producer's or torch's refusal, whatever its class
        raise InteropError(
            f"{where}: expected a DLPack producer (or capsule) that torch can consume, got "
            f"{type(obj).__name__} ({type(exc).__name__}: {exc}). Pass a torch tensor, CuPy array, NumPy "
            "array or an object with __cuda_array_interface__ to its own constructor."
        ) from exc


class BatchExports(StreamOrdering):
    """The view and export side of ``GpuBatch`` (see ``GpuBatch`` for lifetime and streams)."""

    __slots__ = ()

    _ptr: int
    _size: int
    _item_pitch: int
    _readonly: bool
    _views: dict[object, Any]

    def _header(self) -> BatchHeader:
        """The batch as arrays see it, made once (every CAI read asks for it)."""
        header = self._views.get("header")
        if header is None:
            spec = self._spec
            header = self._views.setdefault(
                "header",
                BatchHeader(self._ptr, self.shape, self.strides, spec.dtype, spec.device, self.nbytes),
            )
        return cast(BatchHeader, header)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Sizes in batch layout order: ``(N, C, H, W)`` or ``(N, H, W, C)``."""
        return (self._size, *self._spec.shape)

    @property
    def strides(self) -> tuple[int, int, int, int]:
        """Strides in **bytes**, in batch layout order (the first is ``item_pitch``)."""
        return (self._item_pitch, *self._spec.strides)

    @property
    def nbytes(self) -> int:
        """Bytes from item 0's first element to one past the last item's last element."""
        return (self._size - 1) * self._item_pitch + self._spec.nbytes

    @property
    def is_contiguous(self) -> bool:
        """True when packed in batch layout order, without padding between or inside items."""
        return self._spec.is_contiguous and (self._size == 1 or self._item_pitch == self._spec.nbytes)

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[object, ...]:
        """Pickle a device batch to a CUDA IPC description (see ``GpuImage.__reduce_ex__``). Host
        batches pickle by value, packed."""
        from ._ipc import reduce_batch  # pickling is rare: imported on use

        return reduce_batch(cast("GpuBatch", self))

    def __copy__(self) -> Self:
        """The batch itself: a handle that a shallow copy would share in full."""
        return self

    def as_torch(self, *, stream: StreamLike = None) -> torch.Tensor:
        """A 4-D tensor over the batch: same pointer, byte strides as ``strides``. Cached.

        Each call makes ``stream`` (default: torch's current stream) wait for the batch's data, on
        the GPU, and notes it as a user of the memory, as ``GpuImage.as_torch`` does."""
        return cast("torch.Tensor", self._view("torch", "as_torch()", stream))

    def as_cupy(self, *, stream: StreamLike = None) -> cupy.ndarray:
        """A 4-D ``cupy.ndarray`` header over a device batch (no CUDA call). Cached; each call makes
        ``stream`` (default: CuPy's current stream) wait for the data, on the GPU."""
        return cast("cupy.ndarray", self._view("cupy", "as_cupy()", stream))

    def _view(self, name: str, where: str, stream: StreamLike) -> object:
        view = self._views.get(name)
        if view is None:
            self._refuse_if_readonly(where)
            make = torch_view if name == "torch" else cupy_view
            view = self._views.setdefault(name, make(self._header(), self._life))
        if self._ready.stream is not None or self._life.tracked:
            self._consume(stream, spoke(name))
        return view

    def _refuse_if_readonly(self, where: str) -> None:
        if self._readonly:
            raise ReadOnlyError(
                f"{where}: expected a writable batch, got a read-only one (its source said so), and torch "
                "and CuPy have no read-only arrays. Read it through as_numpy() (host) instead."
            )

    def as_numpy(self) -> npt.NDArray[Any]:
        """A 4-D NumPy array over a host batch (read-only if the batch is). Cached."""
        view = self._views.get("numpy")
        if view is None:
            view = self._views.setdefault(
                "numpy", numpy_view(self._header(), self._life, readonly=self._readonly)
            )
        return cast("npt.NDArray[Any]", view)

    def __array__(self, dtype: object = None, copy: bool | None = None) -> npt.NDArray[Any]:
        """NumPy's conversion hook: host batches only (without it NumPy would iterate the items)."""
        if self._spec.device.is_cuda:
            raise DeviceError(
                f"numpy.asarray(batch): expected a host batch, got one on {self._spec.device}. Copy it to "
                "the host through as_torch() or as_cupy()."
            )
        return array_request(self.as_numpy(), dtype, copy, "batch")

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        """CAI v3 of the whole batch (strides in bytes; ``stream`` is the batch's ready stream, which
        the consumer must order after). Device batches only."""
        if not self._spec.device.is_cuda:
            raise HostMemoryError(
                "__cuda_array_interface__: expected a device batch, got one in host memory; use "
                "as_numpy() or __dlpack__."
            )
        self._note_current_streams()  # where the consumer will read, though CAI cannot say
        return cuda_interface(self._header(), stream=self._ready.stream, readonly=self._readonly)

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(kDLCUDA, ordinal)`` for device batches, ``(kDLCPU, 0)`` for host batches."""
        return self._spec.device.dlpack

    def __dlpack__(
        self,
        *,
        stream: int | None = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> CapsuleType:
        """Export a 4-D DLPack capsule (versioned when ``max_version >= (1, 0)``), per the array API.

        ``stream`` (None or 1: the legacy default stream, 2: per-thread, -1: no ordering, else a
        handle) is made to wait for the data on the GPU. The capsule is made by torch from the
        batch's ``as_torch()`` tensor, which keeps the memory alive until the consumer's deleter runs.

        Raises:
            ExportError: a bad stream, another device, ``copy=True``, or a read-only batch.
        """
        cuda = self._spec.device.is_cuda
        if stream is not None and (not cuda or type(stream) is not int or stream == 0 or stream < -1):
            expected = "None, -1, 1, 2 or a stream handle" if cuda else "None (a host batch has no stream)"
            raise ExportError(f"__dlpack__(): expected stream {expected}, got stream={stream!r}.")
        for name, pair in (("max_version", max_version), ("dl_device", dl_device)):
            items = cast("tuple[object, ...]", pair) if isinstance(pair, tuple) else ()
            ints = all(isinstance(item, int) and type(item) is not bool for item in items)  # IntEnum too
            if pair is not None and (len(items) != 2 or not ints):
                raise ExportError(f"__dlpack__(): expected {name} to be a pair of ints, got {name}={pair!r}.")
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise ExportError(
                f"__dlpack__(): expected dl_device None or {self.__dlpack_device__()}, got dl_device="
                f"{dl_device!r} (a batch exports its own memory only). Copy it in the consumer."
            )
        if copy:
            raise ExportError(
                "__dlpack__(): expected copy None or False, got copy=True; copy in the consumer."
            )
        if self._readonly:
            raise ExportError(
                "__dlpack__(): expected a writable batch, got a read-only one (torch makes the capsule and "
                "cannot mark it read-only). Read it through as_numpy() or __cuda_array_interface__."
            )
        if cuda and stream != -1:
            self._use(LEGACY_DEFAULT if stream is None else from_protocol(stream), BY_HANDLE, None)
        tensor = self._views.get("torch")
        if tensor is None:
            tensor = self._views.setdefault("torch", torch_view(self._header(), self._life))
        with (
            runtime().device(self._device_index) if cuda else _NO_GUARD
        ):  # torch exports from the current device
            return cast(CapsuleType, tensor.__dlpack__(stream=-1, max_version=max_version))
