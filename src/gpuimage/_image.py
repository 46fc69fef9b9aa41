"""``GpuImage``: the hub. A pointer, an ``ImageSpec``, a stream, and the owner that keeps memory alive.

Foreign objects come in through a spoke's ``parse`` (one module per library) and go out through a
spoke's ``view``; the hub itself never imports torch, CuPy or OpenCV.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Generic, Self, SupportsIndex, cast, overload

from typing_extensions import TypeVar

from . import _ops
from ._affine import identity_affine, scaled_affine
from ._channel_order import ChannelOrdered, ordered, recorded, reordered
from ._device import CPU, Device, DeviceLike, parse_device
from ._dtypes import AnyDType, DTypeLike, DTypeName, parse_dtype, parse_dtype_marker
from ._errors import (
    DeviceError,
    DTypeError,
    InteropError,
    LayoutError,
)
from ._exports import ImageExports
from ._formats import ChannelOrder, ChannelOrderLike
from ._geometry import crop_offset
from ._layout import CHW, HWC, AnyLayout, CHWLike, HWCLike, Layout, LayoutLike, parse_layout
from ._lifetime import Lifetime
from ._ordering import BY_HANDLE, keep_for_handle
from ._pointers import device_of
from ._runtime import missing_runtime, runtime
from ._source import Imported, check_address_range, check_pointer, revalidated_spec
from ._spec import ImageSpec, trusted_spec
from ._spokes import spoke
from ._streams import ReadyState, StreamLike, stream_handle, stream_keep

if TYPE_CHECKING:
    import cupy
    import cv2
    import numpy.typing as npt
    import torch

__all__ = ["GpuImage"]

L = TypeVar("L", bound=AnyLayout, covariant=True, default=AnyLayout)
D = TypeVar("D", bound=AnyDType, covariant=True, default=AnyDType)
DT = TypeVar("DT", bound=AnyDType)


_PLAIN = frozenset({int, str, Layout, Device})
"""Argument types of ``empty`` whose values can key its spec cache (marker classes and dtypes
objects take the validation every time)."""
_empty_specs: dict[tuple[object, ...], ImageSpec] = {}


class GpuImage(ImageExports, ChannelOrdered, Generic[L, D]):
    """An image in GPU (or host) memory, shared without copying between torch, CuPy and OpenCV.

    ``GpuImage[HWC, UInt8]`` is an interleaved uint8 image; ``GpuImage[CHW]`` a planar image of any
    dtype. Build one with a ``from_*`` constructor or ``GpuImage.empty``; look at it through the
    ``as_*`` views, which are made on first use, cached, and share the image's pointer and strides.

    Notes:
        Lifetime: the image keeps the owner of its memory alive (the tensor, array, GpuMat or DLPack
        capsule it came from), and every view keeps that owner alive too, so memory outlives
        whichever of them is used last. ``from_pointer`` without ``owner`` is a borrow: the caller
        keeps the memory alive.

        Streams: ``stream`` is the raw ``cudaStream_t`` on which the data is ready (None: no work is
        pending). Every view and export takes a consumer stream (default: the consuming library's
        current stream) and makes it wait for ``stream`` with an event, on the GPU; the host never
        blocks unless you call ``synchronize()``. Tell the image about writes made on other streams
        with ``record_write(stream)`` or ``with image.writing(stream):``.
    """

    __slots__ = ("__weakref__", "_channel_order", "_device_index", "_life", "_ptr", "_readonly", "_ready",
                 "_spec", "_views")  # fmt: skip

    _ptr: int
    _spec: ImageSpec
    _life: Lifetime
    _ready: ReadyState
    _device_index: int
    _readonly: bool
    _views: dict[str, Any]

    def __init__(self) -> None:
        raise TypeError(
            "GpuImage() cannot be called directly; use GpuImage.from_torch(), .from_cupy(), .from_gpumat(), "
            ".from_dlpack(), .from_cuda_array_interface(), .from_numpy(), .from_pointer() or .empty()."
        )

    @classmethod
    def _wrap(cls, ptr: int, spec: ImageSpec, life: Lifetime, ready: ReadyState, readonly: bool,
              order: ChannelOrder | None = None) -> GpuImage[Any, Any]:  # fmt: skip
        """The one construction path: no checks here, every caller passes checked values."""
        image: GpuImage[Any, Any] = object.__new__(GpuImage)
        image._ptr = ptr
        image._spec = spec
        image._life = life
        image._ready = ready
        image._device_index = spec.device.index
        image._readonly = readonly
        image._views = {}
        image._channel_order = order
        return image

    def _relabelled(self, order: ChannelOrder | None) -> Self:
        return cast(Self, self._wrap(self._ptr, self._spec, self._life, self._ready, self._readonly, order))

    @classmethod
    def _family(
        cls,
        ptr: int,
        spec: ImageSpec,
        owner: object,
        stream: int | None,
        readonly: bool,
        keep: object = None,
        *,
        located: bool = True,
    ) -> GpuImage[Any, Any]:
        """A new image family: memory ready on ``stream`` (its home stream), kept alive by ``owner``.

        ``keep`` keeps ``stream`` alive while consumers may still record on it (``BY_HANDLE``: the
        current stream object of a loaded spoke, if it is that stream)."""
        device = spec.device
        if device.kind != "cuda":
            return cls._wrap(ptr, spec, Lifetime(owner, 0, None, cuda=False), ReadyState(None), readonly)
        index = device.index
        if keep is BY_HANDLE:
            keep = None if stream is None else keep_for_handle(stream, index)
        life = Lifetime(owner, index, stream, cuda=runtime().has_gpu, located=located)
        return cls._wrap(ptr, spec, life, ReadyState(stream, None, keep), readonly)

    @classmethod
    def _from_imported(
        cls, imported: Imported, keep: object = None, *, located: bool = True
    ) -> GpuImage[Any, Any]:
        """A family for what a spoke read off a foreign object; ``keep`` overrides the spoke's."""
        ptr, spec, owner, stream, readonly, source_keep, source_located = imported
        keep = source_keep if keep is None else keep
        return cls._family(ptr, spec, owner, stream, readonly, keep, located=located and source_located)

    @classmethod
    def _import(
        cls,
        name: str,
        obj: object,
        layout: Layout | None,
        device: Device | None,
        stream: object,
        where: str,
        located: bool | None = None,
    ) -> GpuImage[Any, Any]:
        """Read ``obj`` through spoke ``name``; the data is ready on ``stream`` (a stream-like, kept
        alive while consumers may record on it), or where the spoke says."""
        parse = spoke(name).parse
        if located is None:  # a caller's device= is a say-so; the spoke adds what it knows (Imported)
            located = device is None
        if stream is None:
            imported = parse(obj, layout=layout, device=device, stream=None, where=where)
            return cls._from_imported(imported, located=located)
        handle = stream_handle(stream, where=where)
        imported = parse(obj, layout=layout, device=device, stream=handle, where=where)
        return cls._from_imported(imported, stream_keep(stream), located=located)

    # -- constructors ---------------------------------------------------------------------------

    @overload
    @classmethod
    def from_torch(
        cls, tensor: torch.Tensor, *, layout: HWCLike | None = None, stream: object = None
    ) -> GpuImage[HWC]: ...
    @overload
    @classmethod
    def from_torch(cls, tensor: torch.Tensor, *, layout: CHWLike, stream: object = None) -> GpuImage[CHW]: ...
    @overload
    @classmethod
    def from_torch(cls, tensor: torch.Tensor, *, layout: LayoutLike, stream: object = None) -> GpuImage: ...
    @classmethod
    def from_torch(
        cls, tensor: torch.Tensor, *, layout: LayoutLike | None = None, stream: object = None
    ) -> GpuImage[Any, Any]:
        """Wrap a CUDA (or CPU) tensor without copying, strided, permuted and sliced views included.

        Parameters:
            tensor: a 2-D ``(H, W)`` or 3-D tensor.
            layout: required for 3-D tensors: ``"HWC"`` for ``(H, W, C)``, ``"CHW"`` for ``(C, H, W)``.
            stream: where the tensor's data is ready (any stream-like); stored as ``image.stream``.

        Raises:
            LayoutError: a 3-D tensor without ``layout``, or a tensor that is not 2-D or 3-D.
            DTypeError: a dtype that is not an image dtype (complex, for example).
            StrideError: negative strides.
            PitchError: overlapping elements (an ``expand``).
            BoundsError: a view that reaches outside its storage.
        """
        where = "GpuImage.from_torch()"
        layout_value = None if layout is None else parse_layout(layout, where=where)
        # torch never destroys its own streams: its current one needs no keeping
        return cls._import("torch", tensor, layout_value, None, stream, where)

    @overload
    @classmethod
    def from_cupy(
        cls, array: cupy.ndarray, *, layout: HWCLike | None = None, stream: object = None
    ) -> GpuImage[HWC]: ...
    @overload
    @classmethod
    def from_cupy(cls, array: cupy.ndarray, *, layout: CHWLike, stream: object = None) -> GpuImage[CHW]: ...
    @overload
    @classmethod
    def from_cupy(cls, array: cupy.ndarray, *, layout: LayoutLike, stream: object = None) -> GpuImage: ...
    @classmethod
    def from_cupy(
        cls, array: cupy.ndarray, *, layout: LayoutLike | None = None, stream: object = None
    ) -> GpuImage[Any, Any]:
        """Wrap a ``cupy.ndarray`` without copying (sliced and transposed arrays as they are).

        ``layout`` is required for 3-D arrays; see ``from_torch`` for the parameters and errors.
        """
        where = "GpuImage.from_cupy()"
        layout_value = None if layout is None else parse_layout(layout, where=where)
        # CuPy destroys a stream with its object: the spoke keeps its current one, the hub a given one
        return cls._import("cupy", array, layout_value, None, stream, where)

    @classmethod
    def from_gpumat(
        cls, mat: cv2.cuda.GpuMat, *, device: DeviceLike | None = None, stream: object = None
    ) -> GpuImage[HWC]:
        """Wrap a ``cv2.cuda.GpuMat`` (always HWC), pitch and ROI included, without copying.

        ``device`` defaults to OpenCV's current CUDA device (``cuda:0`` on builds without CUDA).
        The image keeps the mat alive, and with it memory that OpenCV allocated.
        """
        where = "GpuImage.from_gpumat()"
        device_value = None if device is None else parse_device(device, where=where)
        return cast("GpuImage[HWC]", cls._import("opencv", mat, Layout.HWC, device_value, stream, where))

    @overload
    @classmethod
    def from_dlpack(
        cls, obj: object, *, layout: HWCLike | None = None, stream: object = None
    ) -> GpuImage[HWC]: ...
    @overload
    @classmethod
    def from_dlpack(cls, obj: object, *, layout: CHWLike, stream: object = None) -> GpuImage[CHW]: ...
    @overload
    @classmethod
    def from_dlpack(cls, obj: object, *, layout: LayoutLike, stream: object = None) -> GpuImage: ...
    @classmethod
    def from_dlpack(
        cls, obj: object, *, layout: LayoutLike | None = None, stream: object = None
    ) -> GpuImage[Any, Any]:
        """Consume an object's ``__dlpack__`` (or a DLPack capsule) without copying.

        Asks for a versioned (DLPack 1.x) capsule and falls back to a legacy one. ``stream`` is
        passed to the producer, which orders its pending work before it (array API semantics); the
        image is then ready on ``stream``. The producer's deleter runs when the image and all its
        views are gone.
        """
        where = "GpuImage.from_dlpack()"
        layout_value = _source_layout(obj, layout, where=where)
        # an image exported and imported again keeps what was known of its device and channel order
        source = cast("GpuImage[Any, Any]", obj) if isinstance(obj, ImageExports) else None
        located = None if source is None else source._life.located
        image = cls._import("dlpack", obj, layout_value, None, stream, where, located)
        return image if source is None else recorded(image, source._channel_order)

    @overload
    @classmethod
    def from_cuda_array_interface(
        cls,
        obj: object,
        *,
        layout: HWCLike | None = None,
        device: DeviceLike | None = None,
        stream: object = None,
    ) -> GpuImage[HWC]: ...
    @overload
    @classmethod
    def from_cuda_array_interface(
        cls, obj: object, *, layout: CHWLike, device: DeviceLike | None = None, stream: object = None
    ) -> GpuImage[CHW]: ...
    @overload
    @classmethod
    def from_cuda_array_interface(
        cls, obj: object, *, layout: LayoutLike, device: DeviceLike | None = None, stream: object = None
    ) -> GpuImage: ...
    @classmethod
    def from_cuda_array_interface(
        cls,
        obj: object,
        *,
        layout: LayoutLike | None = None,
        device: DeviceLike | None = None,
        stream: object = None,
    ) -> GpuImage[Any, Any]:
        """Wrap any object with ``__cuda_array_interface__`` (v0 to v3) without copying; keeps it alive.

        CAI has no device field: ``device`` defaults to the device CUDA reports for the pointer
        (through CuPy when it sees a GPU), else ``cuda:0``. The data is ready on ``stream`` if given,
        else on the interface's own ``stream``.
        """
        where = "GpuImage.from_cuda_array_interface()"
        layout_value = _source_layout(obj, layout, where=where)
        found = None if device is not None else _locate(obj)
        device_value = found or (Device("cuda", 0) if device is None else parse_device(device, where=where))
        if not device_value.is_cuda:
            raise DeviceError(
                f"{where}: the CUDA Array Interface describes device memory, got device={device!r}. For host "
                "memory use from_numpy() or from_dlpack()."
            )
        if stream is not None:
            return cls._import("cai", obj, layout_value, device_value, stream, where, found is not None)
        imported = spoke("cai").parse(obj, layout=layout_value, device=device_value, stream=None, where=where)
        # the interface's own raw stream; the device the driver reported for the pointer, or the caller's
        return cls._from_imported(imported, BY_HANDLE, located=found is not None)

    @overload
    @classmethod
    def from_numpy(cls, array: npt.NDArray[Any], *, layout: HWCLike | None = None) -> GpuImage[HWC]: ...
    @overload
    @classmethod
    def from_numpy(cls, array: npt.NDArray[Any], *, layout: CHWLike) -> GpuImage[CHW]: ...
    @overload
    @classmethod
    def from_numpy(cls, array: npt.NDArray[Any], *, layout: LayoutLike) -> GpuImage: ...
    @classmethod
    def from_numpy(cls, array: npt.NDArray[Any], *, layout: LayoutLike | None = None) -> GpuImage[Any, Any]:
        """Wrap a NumPy array as a host image without copying (for staging, and machines without a GPU).

        A read-only array gives a read-only image.
        """
        where = "GpuImage.from_numpy()"
        layout_value = None if layout is None else parse_layout(layout, where=where)
        return cls._import("numpy", array, layout_value, None, None, where)

    @classmethod
    def from_pointer(
        cls,
        ptr: int,
        spec: ImageSpec,
        *,
        owner: object = None,
        stream: object = None,
        readonly: bool = False,
    ) -> GpuImage:
        """Wrap raw memory described by ``spec`` (device or host, per ``spec.device``).

        ``owner`` is kept alive as long as the image or any view of it; without one the image is a
        borrow and the caller must keep the memory alive. Narrow the static layout with
        ``expect()``.
        """
        where = "GpuImage.from_pointer()"
        if not isinstance(cast(object, spec), ImageSpec):  # untyped callers pass anything
            raise InteropError(f"{where}: expected an ImageSpec, got {type(spec).__name__}.")
        # model_construct() skips pydantic's validation: check every field again (SpecError only).
        spec = revalidated_spec(spec, where=where)
        check_pointer(ptr, spec.itemsize, extent=spec.nbytes, where=where)
        handle = stream_handle(stream, where=where)
        family = cls._family(ptr, spec, owner, handle, bool(readonly), stream_keep(stream), located=False)
        return cast("GpuImage", family)

    @overload
    @classmethod
    def empty(
        cls,
        height: int,
        width: int,
        channels: int = 1,
        dtype: DTypeLike = "uint8",
        *,
        layout: HWCLike = Layout.HWC,
        device: DeviceLike = 0,
        row_alignment: int = 1,
        stream: object = None,
    ) -> GpuImage[HWC]: ...
    @overload
    @classmethod
    def empty(
        cls,
        height: int,
        width: int,
        channels: int = 1,
        dtype: DTypeLike = "uint8",
        *,
        layout: CHWLike,
        device: DeviceLike = 0,
        row_alignment: int = 1,
        stream: object = None,
    ) -> GpuImage[CHW]: ...
    @overload
    @classmethod
    def empty(
        cls,
        height: int,
        width: int,
        channels: int = 1,
        dtype: DTypeLike = "uint8",
        *,
        layout: LayoutLike,
        device: DeviceLike = 0,
        row_alignment: int = 1,
        stream: object = None,
    ) -> GpuImage: ...
    @classmethod
    def empty(
        cls,
        height: int,
        width: int,
        channels: int = 1,
        dtype: DTypeLike = "uint8",
        *,
        layout: LayoutLike = Layout.HWC,
        device: DeviceLike = 0,
        row_alignment: int = 1,
        stream: object = None,
    ) -> GpuImage[Any, Any]:
        """Allocate an uninitialized image; rows start every ``row_alignment`` bytes (256 pads like
        ``cudaMallocPitch``). Device memory comes from torch's caching allocator, or CuPy's pool when
        torch is absent; host memory (``device="cpu"``) from NumPy.
        """
        arguments = (height, width, channels, dtype, layout, device, row_alignment)
        # a frame loop asks for one description again and again; the types are part of the key, so
        # that True is never taken for 1 (the validation refuses bools)
        key = (*arguments, *map(type, arguments))
        plain = all(type(value) in _PLAIN for value in arguments)
        spec = _empty_specs.get(key) if plain else None
        if spec is None:
            spec = ImageSpec.packed(
                height=height,
                width=width,
                channels=channels,
                dtype=dtype,
                layout=layout,
                device=device,
                row_alignment=row_alignment,
            )
            if plain:
                if len(_empty_specs) >= 256:
                    _empty_specs.clear()
                _empty_specs[key] = spec
        given = None if stream is None else stream_handle(stream, where="GpuImage.empty()")
        return cls._allocated(spec, row_alignment, given, stream_keep(stream))

    @classmethod
    def _allocated(
        cls, spec: ImageSpec, row_alignment: int, stream: int | None, keep: object
    ) -> GpuImage[Any, Any]:
        """New memory for ``spec``, ready on ``stream`` (default: the allocator's own stream)."""
        # every row starts on a multiple of both: rows aligned as asked, elements on their size
        alignment = math.lcm(row_alignment, spec.itemsize)
        memory = runtime().allocate(spec.nbytes, spec.device, alignment=alignment, stream=stream)
        # home: the allocating stream, which the allocator itself accounts for
        image = cls._family(memory.ptr, spec, memory.owner, memory.stream, False)
        if stream is not None and memory.stream is not None and stream != memory.stream:
            # the pool handed out memory that earlier work on the allocating stream may still use
            image._use(stream, keep, None)
            image._ready.stream, image._ready.keep = stream, keep
        return image

    # -- metadata -------------------------------------------------------------------------------

    @property
    def ptr(self) -> int:
        """Address of the first element (pixel (0, 0), channel 0)."""
        return self._ptr

    @property
    def spec(self) -> ImageSpec:
        """The full, validated description of the memory."""
        return self._spec

    @property
    def height(self) -> int:
        """Rows."""
        return self._spec.height

    @property
    def width(self) -> int:
        """Columns."""
        return self._spec.width

    @property
    def channels(self) -> int:
        """Channels per pixel."""
        return self._spec.channels

    @property
    def dtype(self) -> DTypeName:
        """Element type name (``"uint8"``, ``"float32"``, ...)."""
        return self._spec.dtype

    @property
    def layout(self) -> Layout:
        """``Layout.HWC`` or ``Layout.CHW``."""
        return self._spec.layout

    @property
    def row_pitch(self) -> int:
        """Bytes from one row to the next."""
        return self._spec.row_pitch

    @property
    def shape(self) -> tuple[int, int, int]:
        """Sizes in layout order, ``(H, W, C)`` or ``(C, H, W)``."""
        return self._spec.shape

    @property
    def strides(self) -> tuple[int, int, int]:
        """Strides in **bytes**, in layout order."""
        return self._spec.strides

    @property
    def device(self) -> Device:
        """Where the memory lives."""
        return self._spec.device

    @property
    def stream(self) -> int | None:
        """The raw ``cudaStream_t`` whose queued work produces the data (0 is the legacy default
        stream), or None when no work is pending."""
        return self._ready.stream

    @property
    def owner(self) -> object:
        """The object kept alive for the memory's sake (None for a borrowed pointer)."""
        return self._life.owner

    @property
    def readonly(self) -> bool:
        """True when the source said the memory must not be written (propagated to DLPack and CAI)."""
        return self._readonly

    @property
    def nbytes(self) -> int:
        """Bytes from the first element to one past the last, padding included."""
        return self._spec.nbytes

    @property
    def is_contiguous(self) -> bool:
        """True when packed in layout order, without padding."""
        return self._spec.is_contiguous

    def __repr__(self) -> str:
        spec = self._spec
        return (
            f"GpuImage({spec.height}x{spec.width}x{spec.channels} {spec.dtype} {spec.layout.value}"
            f"{'' if self._channel_order is None else ' ' + self._channel_order.value}, "
            f"{spec.device}, row_pitch={spec.row_pitch}, strides={spec.strides}, ptr={self._ptr:#x})"
        )

    # -- views ----------------------------------------------------------------------------------

    def as_gpumat(self: GpuImage[HWC, AnyDType], *, stream: StreamLike = None) -> cv2.cuda.GpuMat:
        """A ``cv2.cuda.GpuMat`` header over an HWC image with 1 to 4 channels. Cached.

        Each call makes ``stream`` (a ``cv2.cuda.Stream`` on CUDA builds of OpenCV, or any
        stream-like; default: the legacy default stream, OpenCV's ``Stream::Null()``) wait for the
        data, on the GPU.

        A refused call raises the first error below, checked in this order whatever is installed,
        and its message names every fix the call needs (for a host CHW image, the call
        ``image.to_layout('HWC').cuda().as_gpumat()``).

        Raises:
            LayoutError: a CHW image (call ``to_layout('HWC')``), or not 1 to 4 channels.
            DTypeError: a dtype this OpenCV has no depth for (bfloat16; bool, uint32 and int64
                before OpenCV 5).
            StrideError: an HWC image whose pixels are not interleaved (a permuted or
                channel-sliced view; call ``contiguous()``).
            ReadOnlyError: read-only memory (call ``copy()``).
            DeviceError: a host image (call ``cuda()``), or one on another GPU than OpenCV's current
                device.
            MissingBackendError: OpenCV is not installed.

        Notes:
            OpenCV keeps no reference to memory it did not allocate. gpuimage registers the mat with
            the memory's owner and releases the owner only once no Python reference to the mat is
            left, so the mat stays valid as long as you hold it. Headers OpenCV derives from it
            (``rowRange``, ROI constructors) are not tracked: use ``crop()`` for ROIs.
        """
        return cast("cv2.cuda.GpuMat", self._view("opencv", "as_gpumat()", stream, by_current=False))

    # -- regions, layouts and copies -----------------------------------------------------------

    def crop(self, x: int, y: int, width: int, height: int) -> Self:
        """A zero-copy region of interest: offset pointer, same pitch and strides, same owner.

        Raises:
            BoundsError: a rectangle that is empty or reaches outside the image.
        """
        offset = crop_offset(self._spec.geometry, x, y, width, height)
        geometry = self._spec.geometry._replace(height=height, width=width)
        spec = trusted_spec(geometry, self._spec.dtype, self._spec.layout, self._spec.device)
        check_address_range(self._ptr + offset, spec.nbytes, where="crop()")
        # A crop shares its parent's ready state: a write recorded on either is seen by both.
        ptr, order = self._ptr + offset, self._channel_order
        return cast(Self, self._wrap(ptr, spec, self._life, self._ready, self._readonly, order))

    @overload
    def expect(self, layout: HWCLike) -> GpuImage[HWC, D]: ...
    @overload
    def expect(self, layout: CHWLike) -> GpuImage[CHW, D]: ...
    @overload
    def expect(self, layout: HWCLike, dtype: type[DT]) -> GpuImage[HWC, DT]: ...
    @overload
    def expect(self, layout: CHWLike, dtype: type[DT]) -> GpuImage[CHW, DT]: ...
    @overload
    def expect(self, layout: LayoutLike, dtype: type[DT]) -> GpuImage[AnyLayout, DT]: ...
    @overload
    def expect(self, layout: LayoutLike) -> GpuImage[AnyLayout, D]: ...
    def expect(self, layout: LayoutLike, dtype: type[AnyDType] | None = None) -> GpuImage[Any, Any]:
        """Return this image, typed with ``layout`` (and ``dtype``, a marker such as ``UInt8``).

        The checked narrowing from an image known only at run time (``GpuImage``, as
        ``from_pointer`` returns) to ``GpuImage[HWC, UInt8]``: raises ``LayoutError`` or
        ``DTypeError`` when the image is not what is expected.
        """
        wanted = parse_layout(layout, where="expect()")
        if wanted is not self._spec.layout:
            raise LayoutError(
                f"expect(): expected a {wanted.value} image, got layout={self._spec.layout.value}. Convert "
                f"with to_layout('{wanted.value}')."
            )
        expected = None if dtype is None else parse_dtype_marker(dtype, where="expect()")
        if expected is not None and expected != self._spec.dtype:
            raise DTypeError(f"expect(): expected a {expected} image, got dtype={self._spec.dtype}.")
        return self

    def copy(self, *, row_alignment: int = 1, out: GpuImage[Any, Any] | None = None) -> Self:
        """A copy (same layout and dtype) on the same device, in new memory: packed, or with each row
        starting every ``row_alignment`` bytes (256 pads rows like ``cudaMallocPitch``); or written
        into ``out`` (an image of the same size, layout and dtype, any pitch), which is returned.

        One kernel on the image's stream (see ``normalize`` for how conversions are ordered). A
        frame loop that passes ``out=`` allocates nothing.
        """
        spec = self._spec
        return cast(Self, self._converted(spec.dtype, spec.layout, row_alignment, "copy()", out))

    def contiguous(self) -> Self:
        """This image if it is already packed, else a packed copy (like ``torch.Tensor.contiguous``)."""
        return self if self._spec.is_contiguous else self.copy()

    def to_channel_order(self, order: ChannelOrderLike) -> Self:
        """This image if it records ``order``, else a packed copy (same layout and dtype) with red and
        blue swapped (RGB <-> BGR, RGBA <-> BGRA: alpha stays last), queued as ``copy`` is. Raises
        ``LayoutError`` for an image whose order is not recorded (``with_channel_order`` says it)."""
        return cast(Self, reordered(self, order))

    @overload
    def to_layout(self, layout: HWCLike, *, out: GpuImage[Any, Any] | None = None) -> GpuImage[HWC, D]: ...
    @overload
    def to_layout(self, layout: CHWLike, *, out: GpuImage[Any, Any] | None = None) -> GpuImage[CHW, D]: ...
    @overload
    def to_layout(
        self, layout: LayoutLike, *, out: GpuImage[Any, Any] | None = None
    ) -> GpuImage[AnyLayout, D]: ...
    def to_layout(self, layout: LayoutLike, *, out: GpuImage[Any, Any] | None = None) -> GpuImage[Any, D]:
        """This image itself if it already has ``layout``, else a packed copy in ``layout`` (one kernel).

        Like ``torch.Tensor.contiguous()`` on a contiguous tensor, or ``.to()`` with the dtype a
        tensor already has, asking for the layout an image has is a no-op that returns the very
        object, pitch and crop included (``roi.to_layout("HWC") is roi`` for an HWC crop). Use
        ``copy()`` or ``contiguous()`` for packed memory. With ``out`` (an image of that layout, same
        size and dtype, any pitch), the result is written there and ``out`` is returned, also when no
        conversion is needed.
        """
        target = parse_layout(layout, where="to_layout()")
        spec = self._spec
        if target is spec.layout and out is None:
            return self
        result = self._converted(spec.dtype, target, 1, "to_layout()", out)
        return cast("GpuImage[Any, D]", result)

    @overload
    def astype(
        self,
        dtype: type[DT],
        *,
        scale: float = 1.0,
        offset: float = 0.0,
        out: GpuImage[Any, Any] | None = None,
    ) -> GpuImage[L, DT]: ...
    @overload
    def astype(
        self,
        dtype: DTypeLike,
        *,
        scale: float = 1.0,
        offset: float = 0.0,
        out: GpuImage[Any, Any] | None = None,
    ) -> GpuImage[L]: ...
    def astype(
        self,
        dtype: DTypeLike,
        *,
        scale: float = 1.0,
        offset: float = 0.0,
        out: GpuImage[Any, Any] | None = None,
    ) -> GpuImage[Any, Any]:
        """A packed copy of element type ``dtype`` (a marker such as ``Float32``, or a name), same
        layout: ``x * scale + offset`` per element.

        The arithmetic runs in float32 (float64 where either side is a 32- or 64-bit integer or
        float64). Integer targets round half to even and saturate (NaN becomes 0), like OpenCV's
        ``convertTo``; bool targets are ``x != 0``; float16 and bfloat16 round to nearest even.
        Without scale and offset, an integer-to-integer cast saturates exactly. With ``out`` (an
        image of the same size and layout, of ``dtype``, any pitch), the result is written there and
        ``out`` is returned.
        """
        target = parse_dtype(dtype, where="astype()")
        affine = scaled_affine(self._spec.channels, scale, offset, where="astype()")
        layout, order = self._spec.layout, self._channel_order
        return ordered(self, order, dtype=target, layout=layout, affine=affine, where="astype()", out=out)

    def _converted(
        self, dtype: DTypeName, layout: Layout, row_alignment: int, where: str, out: GpuImage[Any, Any] | None
    ) -> GpuImage[Any, Any]:
        affine, order = identity_affine(self._spec.channels), self._channel_order
        return ordered(
            self,
            order,
            dtype=dtype,
            layout=layout,
            affine=affine,
            row_alignment=row_alignment,
            where=where,
            out=out,
        )

    def cuda(self, device: DeviceLike | None = None) -> Self:
        """This image if it is on ``device`` (default: its own GPU, or cuda:0 for host images), else a
        packed copy there.

        Raises:
            MissingBackendError: no CUDA runtime reaches a GPU here (the message says why).
        """
        where = "image.cuda()" if device is None else f"image.cuda({device!r})"
        if device is None:
            target = self._spec.device if self._spec.device.is_cuda else Device("cuda", 0)
        else:
            target = parse_device(device, where=where)
            if not target.is_cuda:
                raise DeviceError(f"{where}: expected a CUDA device, got device={device!r}; use cpu().")
        if target == self._spec.device:
            return self
        if not runtime().has_gpu:  # named here: the transfer would name its allocation instead
            raise missing_runtime(f"{where}: copying the image from {self._spec.device} to {target}")
        return cast(Self, recorded(_ops.transfer(self, target), self._channel_order))

    def cpu(self) -> Self:
        """This image if it is in host memory, else a packed host copy (waits for the copy).

        Raises:
            MissingBackendError: no CUDA runtime reaches a GPU here (the message says why).
        """
        if not self._spec.device.is_cuda:
            return self
        if not runtime().has_gpu:
            raise missing_runtime("image.cpu(): copying a GPU image")
        return cast(Self, recorded(_ops.transfer(self, CPU), self._channel_order))

    # -- copy and pickle ------------------------------------------------------------------------

    def __copy__(self) -> Self:
        """``copy.copy(image)`` is the image itself: an image is a handle (pointer, spec, owner, ready
        stream) that a shallow copy would share in full anyway, and it keeps the owner alive. For
        new memory use ``copy()`` or ``copy.deepcopy``."""
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        """``copy.deepcopy(image)`` copies the pixels into new memory, as ``image.copy()`` does
        (packed, same device, layout and dtype, and writable)."""
        copied = self.copy()
        memo[id(self)] = copied
        return copied

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[object, ...]:
        """Pickle a device image (every protocol) to a CUDA IPC description: unpickled in another
        process of this host it is the same memory, zero-copy (``docs/processes.md``). Host images
        pickle by value: a packed copy of the pixels."""
        from ._ipc import reduce_image  # pickling is rare: imported on use

        return reduce_image(self)

    def __reduce__(self) -> tuple[object, ...]:
        """As ``__reduce_ex__``."""
        return self.__reduce_ex__(2)


def _source_layout(obj: object, layout: LayoutLike | None, *, where: str) -> Layout | None:
    """The layout asked for, or the one a GpuImage source already knows (they must agree)."""
    asked = None if layout is None else parse_layout(layout, where=where)
    if isinstance(obj, GpuImage):
        if asked is not None and asked is not obj.layout:
            raise LayoutError(f"{where}: the source is a {obj.layout.value} image, got layout={asked.value}.")
        return obj.layout
    return asked


def _locate(obj: object) -> Device | None:
    """The device of a CAI pointer, as CUDA reports it; None when no GPU runtime can tell."""
    interface: object = getattr(obj, "__cuda_array_interface__", None)
    data = cast("dict[str, object]", interface).get("data") if isinstance(interface, dict) else None
    items = cast("tuple[object, ...]", data) if isinstance(data, tuple) else ()
    pointer = items[0] if items and type(items[0]) is int else 0
    return device_of(pointer)
