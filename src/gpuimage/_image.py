"""``GpuImage``: the hub. A pointer, an ``ImageSpec``, a stream, and the owner that keeps memory alive.

Foreign objects come in through a spoke's ``parse`` (one module per library) and go out through a
spoke's ``view``; the hub itself never imports torch, CuPy or OpenCV.

The class spans three modules: ``_image_core`` (slots, the construction path, metadata, crops),
``_image_constructors`` (``from_*`` and ``empty``) and this one (``_wrap``, the GpuMat view, the
typed conversions, the copies and pickling).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self, SupportsIndex, cast, overload

from typing_extensions import TypeVar

from . import _ops
from ._affine import identity_affine, scaled_affine
from ._channel_order import ordered, recorded, reordered
from ._convert_replay import replayed
from ._device import CPU, Device, DeviceLike, parse_device
from ._dtypes import AnyDType, DTypeLike, DTypeName, parse_dtype, parse_dtype_marker
from ._errors import DeviceError, DTypeError, LayoutError
from ._formats import ChannelOrder, ChannelOrderLike
from ._image_constructors import ImageConstructors
from ._image_core import D, L
from ._layout import CHW, HWC, AnyLayout, CHWLike, HWCLike, Layout, LayoutLike, parse_layout
from ._lifetime import Lifetime
from ._runtime import missing_runtime, runtime
from ._spec import ImageSpec
from ._streams import LEGACY_DEFAULT, ReadyState, StreamLike

if TYPE_CHECKING:
    import cv2

__all__ = ["GpuImage"]

DT = TypeVar("DT", bound=AnyDType)


class GpuImage(ImageConstructors[L, D]):
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

    __slots__ = ()

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
        view = self._views.get("opencv")
        if view is not None and stream is None:  # OpenCV's stream: the legacy default, no query; inlined
            ready, life = self._ready, self._life
            producer = ready.stream
            if (
                ready.event is None
                and (producer is None or producer == LEGACY_DEFAULT)
                and (
                    not life.tracked
                    or life.home == LEGACY_DEFAULT
                    or (life.uses is not None and LEGACY_DEFAULT in life.uses)
                )
            ):
                return view  # type: ignore[no-any-return]
        return cast("cv2.cuda.GpuMat", self._view("opencv", "as_gpumat()", stream, by_current=False))

    # -- layouts and copies ---------------------------------------------------------------------

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
        result = replayed(self, order, dtype, layout, affine, row_alignment, out)  # a loop's call: here
        if result is not None:
            return result
        return ordered(
            self,
            order,
            dtype=dtype,
            layout=layout,
            affine=affine,
            row_alignment=row_alignment,
            where=where,
            out=out,
            replay=False,
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
