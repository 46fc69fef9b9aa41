"""``ImageCore``: what every ``GpuImage`` is, and the one path that makes one.

A pointer, an ``ImageSpec``, the stream its data is ready on, and the owner that keeps the memory
alive: the slots, the construction path that constructors and conversions share, the metadata
properties, ``__repr__`` and ``crop``. The hub is one class over three modules: this base,
``_image_constructors`` (the ``from_*`` constructors and ``empty``) and ``_image`` (``GpuImage``: the
GpuMat view, the conversions and copies, and ``_wrap``, which makes a ``GpuImage``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Generic, Self, cast

from typing_extensions import TypeVar

from ._channel_order import ChannelOrdered
from ._device import Device
from ._dtypes import AnyDType, DTypeName
from ._exports import ImageExports
from ._formats import ChannelOrder
from ._geometry import crop_offset
from ._layout import AnyLayout, Layout
from ._lifetime import Lifetime
from ._ordering import BY_HANDLE, keep_for_handle
from ._runtime import runtime
from ._source import Imported, check_address_range
from ._spec import ImageSpec, trusted_spec
from ._spokes import spoke
from ._streams import ReadyState, stream_handle, stream_keep

if TYPE_CHECKING:
    from ._image import GpuImage

__all__ = ["D", "ImageCore", "L"]

L = TypeVar("L", bound=AnyLayout, covariant=True, default=AnyLayout)
D = TypeVar("D", bound=AnyDType, covariant=True, default=AnyDType)


class ImageCore(ImageExports, ChannelOrdered, Generic[L, D]):
    """The base of ``GpuImage``: its slots, construction path, metadata and crops (see ``GpuImage``)."""

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

    if TYPE_CHECKING:  # GpuImage's own (``_image``): the one construction path makes a GpuImage

        @classmethod
        def _wrap(cls, ptr: int, spec: ImageSpec, life: Lifetime, ready: ReadyState, readonly: bool,
                  order: ChannelOrder | None = None) -> GpuImage[Any, Any]: ...  # fmt: skip

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
        if stream is None:  # a frame loop's wrap: the parse unpacked here, one call to _family
            ptr, spec, owner, ready_on, readonly, keep, known = parse(
                obj, layout=layout, device=device, stream=None, where=where
            )
            return cls._family(ptr, spec, owner, ready_on, readonly, keep, located=located and known)
        handle = stream_handle(stream, where=where)
        imported = parse(obj, layout=layout, device=device, stream=handle, where=where)
        return cls._from_imported(imported, stream_keep(stream), located=located)

    @classmethod
    def _allocated(
        cls, spec: ImageSpec, row_alignment: int, stream: int | None, keep: object
    ) -> GpuImage[Any, Any]:
        """New memory for ``spec``, ready on ``stream`` (default: the allocator's own stream)."""
        # every row starts on a multiple of both: rows aligned as asked, elements on their size
        alignment = math.lcm(row_alignment, spec.itemsize)
        memory = runtime().allocate(spec.nbytes, spec.device, alignment=alignment, stream=stream)
        # home: the allocating stream, which the allocator itself accounts for
        device = spec.device
        if device.kind == "cuda":  # _family's, without its call (a loop's conversion allocates each call)
            life = Lifetime(memory.owner, device.index, memory.stream, cuda=True)  # its runtime reaches a GPU
            image = cls._wrap(memory.ptr, spec, life, ReadyState(memory.stream), False)
        else:
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

    # -- regions --------------------------------------------------------------------------------

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
