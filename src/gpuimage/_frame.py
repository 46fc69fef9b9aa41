"""``GpuFrame``: a video frame of two or three planes (NV12, P010, I420, ...) or one packed plane.

A frame is not an image: it holds one ``GpuImage`` view per plane, each with its own pitch, and
converts to an image with ``to_image``. Its constructors read decoders' outputs as they are
(separate planes, one ``(1.5 H, W)`` tensor, a pointer and pitch); ``_frame_build`` does the reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar, overload

from ._channel_order import known_order, recorded
from ._device import Device, DeviceLike
from ._dtypes import AnyDType, DTypeLike, UInt8
from ._formats import ChannelOrderLike, ColorSpec, PixelFormat, PixelFormatLike
from ._frame_build import (
    frame_at_pointer,
    frame_of_planes,
    frame_of_tensor,
    frame_over,
    parse_frame_format,
)
from ._frame_exports import FrameExports
from ._frame_layout import FrameLayout, frame_layout
from ._image import GpuImage
from ._layout import CHW, HWC, CHWLike, HWCLike, LayoutLike

__all__ = ["GpuFrame"]

DT = TypeVar("DT", bound=AnyDType)
Image = GpuImage[Any, Any]


class GpuFrame(FrameExports):
    """A video frame in GPU (or host) memory: ``format``, size, colour description, and its planes.

    ``planes`` are ``GpuImage`` views, interleaved (HWC), one per plane of ``format`` with its own
    pitch: NV12's are ``(H, W, 1)`` luma and ``(H/2, W/2, 2)`` interleaved UV. ``colour`` says how
    YUV codes map to RGB; None means unknown, and conversions refuse it (``with_colour`` sets it).
    Build one with ``from_planes``, ``from_dlpack``, ``from_pointer`` or ``empty``.

    Notes:
        Lifetime: every plane keeps its memory's owner alive, as an image does, so the memory
        outlives the frame and each plane view, whichever goes last.

        Streams: the planes share one ready state: ``stream`` is where their data is ready, and a
        write recorded on one plane (``record_write``) orders the views of all. Views order their
        consumer streams as images' views do.
    """

    __slots__ = (
        "__weakref__",
        "_block",
        "_colour",
        "_format",
        "_height",
        "_layout",
        "_planes",
        "_views",
        "_width",
    )

    _format: PixelFormat
    _width: int
    _height: int
    _colour: ColorSpec | None
    _planes: tuple[GpuImage[HWC, AnyDType], ...]
    _layout: FrameLayout | None
    _block: Image | None
    _views: dict[str, tuple[object, object]]

    def __init__(self) -> None:
        raise TypeError(
            "GpuFrame() cannot be called directly; use GpuFrame.from_planes(), .from_dlpack(), "
            ".from_pointer() or .empty()."
        )

    @classmethod
    def _make(
        cls,
        colour: ColorSpec | None,
        fmt: PixelFormat,
        size: tuple[int, int],
        planes: tuple[Image, ...],
        layout: FrameLayout | None,
        block: Image | None,
    ) -> GpuFrame:
        """The one construction path: no checks here, every caller passes checked values."""
        frame = object.__new__(cls)
        frame._format = fmt
        frame._width, frame._height = size
        frame._colour = colour
        frame._planes = planes
        frame._layout = layout
        frame._block = block
        frame._views = {}
        return frame

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def from_planes(
        cls,
        planes: Sequence[object],
        *,
        format: PixelFormatLike,
        colour: ColorSpec | None = None,
        stream: object = None,
    ) -> GpuFrame:
        """Wrap a frame's planes, each in memory of its own or not, without copying.

        Parameters:
            planes: one source per plane of ``format``, in order (NV12: Y, UV): a ``GpuImage``, a
                torch tensor, a CuPy or NumPy array, or anything with ``__dlpack__`` or
                ``__cuda_array_interface__``. A plane is ``(h, w, c)``, or ``(h, w*c)`` as decoders
                give NV12's UV plane (``(H/2, W)``), read as ``c`` channels when each pixel's
                samples are adjacent. The frame's size is read off plane 0.
            format: the pixel format.
            colour: the matrix and range of a YUV frame; None: unknown (set it later with
                ``with_colour``). Must be None for the packed formats.
            stream: where every plane's data is ready (any stream-like). Default: where each source
                says, which must be one stream.

        Raises:
            SpecError: a wrong number of planes, a plane of the wrong size, an odd frame size where
                the format subsamples, planes that overlap, or planes ready on different streams.
            DTypeError: planes not of the format's dtype (uint8; uint16 for P010, P016).
            DeviceError: planes on different devices.
            InteropError: a source that is not an array, or a ``colour`` that is not a ``ColorSpec``.

        Notes:
            The frame keeps each plane's source alive. ``layout`` is None: planes imported one by one
            are not known to share an allocation, so the frame has per-plane views only.
        """
        info = parse_frame_format(format, colour, where="GpuFrame.from_planes()")
        return cls._make(colour, *frame_of_planes(planes, info, stream, where="GpuFrame.from_planes()"))

    @classmethod
    def from_dlpack(
        cls,
        obj: object,
        *,
        format: PixelFormatLike,
        colour: ColorSpec | None = None,
        stream: object = None,
    ) -> GpuFrame:
        """Wrap a whole frame exported as ONE 2-D tensor, as PyNvVideoCodec and torchcodec export it.

        Shapes: ``(1.5 H, W)`` for NV12, NV21, I420 (uint8) and P010, P016 (uint16); ``(2 H, W)``
        for NV16; ``(3 H, W)`` for YUV444: the planes one after the other, each row of the tensor's
        pitch. I420's U and V rows are half rows, two to a tensor row, so the tensor must be packed.
        A packed format (GRAY, RGB, ...) takes its one plane, as ``from_planes`` does.

        Parameters:
            obj: anything with ``__dlpack__``, or a DLPack capsule.
            format, colour: as in ``from_planes``.
            stream: passed to the producer, which orders its pending work before it (array API);
                the frame is then ready on ``stream``.

        Raises:
            SpecError: a tensor that is not 2-D, rows that are not the format's multiple of a
                whole frame height, an odd size where the format subsamples.
            PitchError: a padded I420 tensor.
            DTypeError: a tensor not of the format's dtype.

        Notes:
            The frame and every plane keep the producer's memory alive; the producer's deleter
            runs when the last of them is gone. ``frame.as_torch()`` is the same 2-D block again.
        """
        where = "GpuFrame.from_dlpack()"
        info = parse_frame_format(format, colour, where=where)
        if len(info.planes) == 1:  # a packed image is its one plane
            return cls._make(colour, *frame_of_planes([obj], info, stream, where=where))
        return cls._make(colour, *frame_of_tensor(obj, info, stream, where=where))

    @classmethod
    def from_pointer(
        cls,
        ptr: int,
        *,
        format: PixelFormatLike,
        width: int,
        height: int,
        device: DeviceLike,
        owner: object,
        pitch: int | Sequence[int] | None = None,
        plane_offsets: Sequence[int] | None = None,
        aligned_height: int | None = None,
        nbytes: int | None = None,
        colour: ColorSpec | None = None,
        stream: object = None,
        readonly: bool = False,
    ) -> GpuFrame:
        """Wrap a frame in one allocation at ``ptr`` (NvBufSurface, NVDEC surfaces, ``cudaMallocPitch``).

        Parameters:
            ptr: the address of the frame (plane offsets count from it), device or host per ``device``.
            format, width, height: the pixel format and the frame's size in pixels.
            device: where the memory lives (``"cuda:0"``, ``0``, ``"cpu"``).
            owner: kept alive as long as the frame or any plane view; None is a borrow (the caller
                keeps the memory alive), and must be said explicitly.
            pitch, plane_offsets, aligned_height: the plane geometry, in bytes and rows, as
                ``frame_layout`` takes it (NV12's UV at ``ptr + pitch * aligned_height`` by default).
            nbytes: the allocation's size from ``ptr``, when known: the frame must lie inside it.
            colour: as in ``from_planes``.
            stream: where the data is ready (any stream-like).
            readonly: the memory must not be written (propagated to DLPack and CAI; torch and CuPy
                views are refused).

        Raises:
            SpecError: a NULL, misaligned or out-of-range pointer, a bad layout (see ``frame_layout``).
            PitchError: a bad pitch (see ``frame_layout``).
            BoundsError: a negative plane offset, or a frame reaching past ``nbytes``.
        """
        where = "GpuFrame.from_pointer()"
        info = parse_frame_format(format, colour, where=where)
        layout = frame_layout(
            info.format,
            width,
            height,
            pitch=pitch,
            plane_offsets=plane_offsets,
            aligned_height=aligned_height,
        )
        return cls._make(
            colour,
            *frame_at_pointer(ptr, layout, device, owner, nbytes, stream, readonly, where=where),
        )

    @classmethod
    def empty(
        cls,
        width: int,
        height: int,
        *,
        format: PixelFormatLike,
        colour: ColorSpec | None = None,
        device: DeviceLike = "cuda:0",
        row_alignment: int = 1,
        stream: object = None,
    ) -> GpuFrame:
        """Allocate an uninitialized frame in one allocation, planes one after the other.

        Each luma row starts every ``row_alignment`` bytes (256 pads like ``cudaMallocPitch``), the
        chroma rows take the pitch ``frame_layout`` gives them. With the default, an NV12 frame is
        the packed ``(1.5 H, W)`` block decoders export. Memory comes from where ``GpuImage.empty``
        takes it (``device="cpu"``: NumPy).
        """
        info = parse_frame_format(format, colour, where="GpuFrame.empty()")
        layout = frame_layout(info.format, width, height, row_alignment=row_alignment)
        base = GpuImage.empty(
            1,
            layout.nbytes // info.itemsize,
            1,
            info.dtype,
            device=device,
            row_alignment=row_alignment,
            stream=stream,
        )
        return cls._make(colour, *frame_over(base, layout))

    # -- metadata -------------------------------------------------------------------------------

    @property
    def format(self) -> PixelFormat:
        """The pixel format."""
        return self._format

    @property
    def width(self) -> int:
        """Pixels per row (luma samples)."""
        return self._width

    @property
    def height(self) -> int:
        """Rows (luma rows)."""
        return self._height

    @property
    def colour(self) -> ColorSpec | None:
        """How YUV codes map to RGB; None: unknown (conversions refuse it; see ``with_colour``)."""
        return self._colour

    @property
    def planes(self) -> tuple[GpuImage[HWC, AnyDType], ...]:
        """One HWC view per plane, each with its own pitch (NV12: ``(H, W, 1)``, ``(H/2, W/2, 2)``)."""
        return self._planes

    @property
    def layout(self) -> FrameLayout | None:
        """Where the planes lie in one allocation (byte offsets from the frame's pointer, the first
        byte of ``from_pointer``'s ``ptr`` or of ``from_dlpack``'s tensor), or None when the planes
        were imported one by one (``from_planes``)."""
        return self._layout

    @property
    def device(self) -> Device:
        """Where the memory lives."""
        return self._planes[0].device

    @property
    def stream(self) -> int | None:
        """The raw ``cudaStream_t`` on which every plane's data is ready, or None (nothing pending)."""
        return self._planes[0].stream

    @property
    def readonly(self) -> bool:
        """True when a plane's source said its memory must not be written."""
        return any(plane.readonly for plane in self._planes)

    @property
    def nbytes(self) -> int:
        """Bytes of the frame: the layout's extent in one allocation, else the planes' extents summed."""
        layout = self._layout
        return layout.nbytes if layout is not None else sum(plane.nbytes for plane in self._planes)

    def with_colour(self, colour: ColorSpec | None) -> GpuFrame:
        """This frame (the same planes, memory and stream) with colour description ``colour``."""
        parse_frame_format(self._format, colour, where="with_colour()")
        size = (self._width, self._height)
        return self._make(colour, self._format, size, self._planes, self._layout, self._block)

    def __repr__(self) -> str:
        colour = (
            "unknown" if self._colour is None else f"{self._colour.matrix.value} {self._colour.range.value}"
        )
        planes = ", ".join(f"{p.height}x{p.width}x{p.channels} pitch {p.row_pitch}" for p in self._planes)
        where = "one allocation" if self._layout is not None else "planes apart"
        return (
            f"GpuFrame({self._format.value} {self._width}x{self._height}, {self.device}, colour={colour}, "
            f"planes=[{planes}], {where}, ptr={self._planes[0].ptr:#x})"
        )

    # -- conversions ----------------------------------------------------------------------------

    @overload
    def to_image(
        self, *, layout: HWCLike = ..., dtype: type[DT], order: ChannelOrderLike = ...
    ) -> GpuImage[HWC, DT]: ...
    @overload
    def to_image(
        self, *, layout: HWCLike = ..., dtype: Literal["uint8"] = ..., order: ChannelOrderLike = ...
    ) -> GpuImage[HWC, UInt8]: ...
    @overload
    def to_image(
        self, *, layout: HWCLike = ..., dtype: DTypeLike, order: ChannelOrderLike = ...
    ) -> GpuImage[HWC]: ...
    @overload
    def to_image(
        self, *, layout: CHWLike, dtype: type[DT], order: ChannelOrderLike = ...
    ) -> GpuImage[CHW, DT]: ...
    @overload
    def to_image(
        self, *, layout: CHWLike, dtype: Literal["uint8"] = ..., order: ChannelOrderLike = ...
    ) -> GpuImage[CHW, UInt8]: ...
    @overload
    def to_image(
        self, *, layout: CHWLike, dtype: DTypeLike, order: ChannelOrderLike = ...
    ) -> GpuImage[CHW]: ...
    @overload
    def to_image(
        self, *, layout: LayoutLike, dtype: DTypeLike = ..., order: ChannelOrderLike = ...
    ) -> GpuImage: ...
    def to_image(
        self, *, layout: LayoutLike = "HWC", dtype: DTypeLike = "uint8", order: ChannelOrderLike = "RGB"
    ) -> GpuImage[Any, Any]:
        """The frame as an R'G'B' image in new memory (one launch; see ``gpuimage._sampling``).

        ``layout`` HWC or CHW, ``dtype`` uint8 (``rint(255 v)``) or a float type (``v`` in [0, 1]),
        ``order`` RGB, BGR, RGBA or BGRA, which the image records (``channel_order``). A YUV frame
        needs its ``colour``.
        """
        from ._frame_convert import frame_to_image  # it reads frames: imported on use

        image = frame_to_image(self, layout=layout, dtype=dtype, order=order)
        return recorded(image, known_order(order, where="GpuFrame.to_image()"))
