"""``ImageConstructors``: how a ``GpuImage`` is made, from a foreign object or in new memory.

The ``from_*`` constructors read a tensor, an array, a GpuMat, a DLPack capsule, a CUDA Array
Interface or a raw pointer through its spoke's ``parse`` and build the image on ``ImageCore``'s
construction path; ``empty`` allocates through the runtime. A base of ``GpuImage`` (``_image``), whose
docstring tells lifetime and streams; the API reference reads the overloads of these constructors here
(``docs/_ext/gpuimage_api.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast, overload

from ._channel_order import recorded
from ._device import Device, DeviceLike, parse_device
from ._dtypes import DTypeLike
from ._errors import DeviceError, InteropError, LayoutError
from ._exports import ImageExports
from ._image_core import D, ImageCore, L
from ._layout import CHW, HWC, CHWLike, HWCLike, Layout, LayoutLike, parse_layout
from ._ordering import BY_HANDLE
from ._pointers import device_of
from ._source import check_pointer, revalidated_spec
from ._spec import ImageSpec
from ._spokes import spoke
from ._streams import stream_handle, stream_keep

if TYPE_CHECKING:
    import cupy
    import cv2
    import numpy.typing as npt
    import torch

    from ._image import GpuImage

__all__ = ["ImageConstructors"]


_PLAIN = frozenset({int, str, Layout, Device})
"""Argument types of ``empty`` whose values can key its spec cache (marker classes and dtypes
objects take the validation every time)."""
_empty_specs: dict[tuple[object, ...], ImageSpec] = {}


class ImageConstructors(ImageCore[L, D]):
    """The constructors of ``GpuImage`` (see ``GpuImage`` for lifetime and streams)."""

    __slots__ = ()

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

        Raises:
            DeviceError: CUDA reports ``ptr`` on another GPU than ``spec.device`` (asked where the
                runtime can tell: with CuPy; torch's runtime cannot, and trusts ``spec``).
        """
        where = "GpuImage.from_pointer()"
        if not isinstance(cast(object, spec), ImageSpec):  # untyped callers pass anything
            raise InteropError(f"{where}: expected an ImageSpec, got {type(spec).__name__}.")
        # model_construct() skips pydantic's validation: check every field again (SpecError only).
        spec = revalidated_spec(spec, where=where)
        check_pointer(ptr, spec.itemsize, extent=spec.nbytes, where=where)
        if spec.device.is_cuda:
            # a view on the wrong GPU is no copy and no error under unified addressing: ask CUDA
            found = device_of(ptr)
            if found is not None and found != spec.device:
                raise DeviceError(
                    f"{where}: the memory at {ptr:#x} is on {found}, not on {spec.device}. Describe it "
                    f"with device={found.index}."
                )
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


def _source_layout(obj: object, layout: LayoutLike | None, *, where: str) -> Layout | None:
    """The layout asked for, or the one a GpuImage source already knows (they must agree)."""
    asked = None if layout is None else parse_layout(layout, where=where)
    if isinstance(obj, ImageCore):  # a GpuImage
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
