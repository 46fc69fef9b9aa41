"""The whole-frame side of ``GpuFrame``: its stream calls, and the exports of a frame whose planes
form one ``(rows, W)`` block (as decoders export NV12: ``(1.5 H, W)``) through the image over that
block, so views, caching and ordering are the images'.

A mixin of ``GpuFrame``, as ``ImageExports`` is of ``GpuImage``, so that the frame module keeps
construction and metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn, Self, SupportsIndex, cast

from typing_extensions import CapsuleType

from ._errors import LayoutError
from ._formats import PixelFormat
from ._frame_layout import FrameLayout
from ._image import GpuImage
from ._streams import StreamLike

if TYPE_CHECKING:
    import cupy
    import numpy.typing as npt
    import torch

    from ._frame import GpuFrame

__all__ = ["FrameExports", "block_rows"]

Image = GpuImage[Any, Any]


class _NoBlockError(LayoutError, AttributeError):
    """No whole-frame protocol: a ``LayoutError`` that ``hasattr`` reads as an absent attribute."""


class FrameExports:
    """Streams and whole-frame exports of ``GpuFrame`` (see ``GpuFrame`` for lifetime and streams)."""

    __slots__ = ()

    _format: PixelFormat
    _planes: tuple[Image, ...]
    _layout: FrameLayout | None
    _block: Image | None
    _views: dict[str, tuple[object, object]]

    # -- streams --------------------------------------------------------------------------------

    def record_write(self, stream: StreamLike) -> None:
        """Tell the frame that work queued on ``stream`` (so far) wrote it; see ``GpuImage.record_write``."""
        lives: set[int] = set()
        for plane in self._planes:  # one event per allocation; the planes share the ready state
            if id(plane.owner) not in lives or plane.owner is None:
                lives.add(id(plane.owner))
                plane.record_write(stream)

    def synchronize(self) -> None:
        """Block the host until the frame's data is ready (the planes share one ready state)."""
        self._planes[0].synchronize()

    # -- exports of the whole frame: the 2-D block decoders export -------------------------------

    def _whole(self, where: str, error: type[LayoutError] = LayoutError) -> Image:
        block = self._block
        if block is None:
            reason = (
                "its planes were imported one by one (layout=None)"
                if self._layout is None
                else "its planes do not tile one (rows, W) block of one pitch"
            )
            raise error(
                f"{where}: expected a frame whose planes form one (rows, W) block in one allocation, got "
                f"a frame of format={self._format.value} where {reason}. Use the planes: "
                f"frame.planes[i].{where}."
            )
        return block

    def as_torch(self, *, stream: StreamLike = None) -> torch.Tensor:
        """The whole frame as one 2-D tensor (NV12: ``(1.5 H, W)``), as decoders export it. Cached;
        each call orders ``stream`` as ``GpuImage.as_torch`` does. Packed formats: the plane's
        ``(H, W, C)`` tensor.

        Raises:
            LayoutError: planes that do not form one block in one allocation (use ``planes``).
        """
        return cast("torch.Tensor", self._flat("torch", self._whole("as_torch()").as_torch(stream=stream)))

    def as_cupy(self, *, stream: StreamLike = None) -> cupy.ndarray:
        """The whole frame as one 2-D ``cupy.ndarray``, as ``as_torch`` describes."""
        return cast("cupy.ndarray", self._flat("cupy", self._whole("as_cupy()").as_cupy(stream=stream)))

    def as_numpy(self) -> npt.NDArray[Any]:
        """The whole host frame as one 2-D NumPy array, as ``as_torch`` describes."""
        return cast("npt.NDArray[Any]", self._flat("numpy", self._whole("as_numpy()").as_numpy()))

    def _flat(self, name: str, view: Any) -> object:
        """``view`` (the block image's cached ``(rows, W, 1)`` view) as ``(rows, W)``, made once."""
        if len(self._planes) == 1:
            return cast(object, view)
        cached = self._views.get(name)
        if cached is not None and cached[0] is view:
            return cached[1]
        flat = cast(object, view[..., 0])
        self._views[name] = (view, flat)
        return flat

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        """CAI v3 of the whole frame's 2-D block (device frames only). Absent (an ``AttributeError``
        too) where the planes form no block, so that ``hasattr`` says so."""
        block = self._whole("__cuda_array_interface__", _NoBlockError)
        interface = block.__cuda_array_interface__
        if len(self._planes) > 1:
            interface = {**interface, "shape": interface["shape"][:2]}
            if interface.get("strides") is not None:
                interface["strides"] = interface["strides"][:2]
        return interface

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(device type, ordinal)`` of the frame's memory."""
        return self._planes[0].__dlpack_device__()

    def __dlpack__(
        self,
        *,
        stream: int | None = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> CapsuleType:
        """Export the whole frame's block as a DLPack capsule; see ``GpuImage.__dlpack__``.

        The capsule is 3-D, ``(rows, W, 1)`` (NV12: ``(1.5 H, W, 1)``): gpuimage's capsules are
        three-dimensional. ``GpuFrame.from_dlpack`` reads it back."""
        block = self._whole("__dlpack__()")
        return block.__dlpack__(stream=stream, max_version=max_version, dl_device=dl_device, copy=copy)

    if not TYPE_CHECKING:

        def as_gpumat(self, *args: object, **kwargs: object) -> NoReturn:
            """Refused: a GpuMat holds one interleaved plane (a static type error too)."""
            raise LayoutError(
                f"as_gpumat(): a GpuFrame has no GpuMat (a GpuMat holds one interleaved image), got a frame "
                f"of format={self._format.value} with {len(self._planes)} plane(s). Use "
                "frame.planes[i].as_gpumat() or frame.to_image()."
            )

    # -- copy and pickle ------------------------------------------------------------------------

    def __copy__(self) -> Self:
        """``copy.copy(frame)`` is the frame itself: a handle whose planes a copy would share anyway."""
        return self

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[object, ...]:
        """Pickle a device frame to a CUDA IPC description (see ``GpuImage.__reduce_ex__``): its planes
        as they lie in memory. Host frames pickle by value: one packed block."""
        from ._ipc import reduce_frame  # pickling is rare: imported on use

        return reduce_frame(cast("GpuFrame", self))

    def __reduce__(self) -> tuple[object, ...]:
        """As ``__reduce_ex__``."""
        return self.__reduce_ex__(2)


def block_rows(layout: FrameLayout) -> int | None:
    """The rows of the one 2-D ``(rows, W)`` block the planes tile, as decoders export a frame (NV12:
    ``1.5 H`` rows of one pitch, the chroma right after the luma), or None when they tile none."""
    planes = layout.planes
    first = planes[0]
    itemsize = 2 if first.dtype == "uint16" else 1
    pitch, row = first.row_pitch, first.width * first.channels * itemsize
    end = 0
    for plane in planes:
        plane_row = plane.width * plane.channels * itemsize
        full_rows = plane.row_pitch == pitch and plane_row == row
        packed = pitch == row and plane.row_pitch == plane_row  # I420's half rows, two to a row
        if plane.offset != end or not (full_rows or packed):
            return None
        end = plane.offset + plane.height * plane.row_pitch
    return end // pitch if end % pitch == 0 else None
