"""The views and protocol exports of ``GpuImage``: torch, CuPy and NumPy views, ``__array__``,
``__cuda_array_interface__`` and DLPack.

A mixin of the hub, as ``StreamOrdering`` is, so that the hub module keeps construction, metadata,
regions and conversions. ``as_gpumat`` stays on the hub: its ``self`` type checks the layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self, cast

from typing_extensions import CapsuleType

from ._device import CPU
from ._errors import DeviceError, ExportError, HostMemoryError, ReadOnlyError
from ._interfaces import array_request, cuda_array_interface
from ._lifetime import Lifetime
from ._ordering import BY_HANDLE, StreamOrdering
from ._runtime import runtime
from ._spokes import spoke
from ._streams import LEGACY_DEFAULT, StreamLike, from_protocol

if TYPE_CHECKING:
    import cupy
    import numpy.typing as npt
    import torch


__all__ = ["ImageExports"]

_TORCH, _CUPY, _NUMPY, _OPENCV = "torch", "cupy", "numpy", "opencv"

# spoke name -> its current-stream getter, filled when the spoke's first view is made: the cached
# views' fast path reads it without asking the registry
_current_stream: dict[str, Callable[[int], int]] = {}


class ImageExports(StreamOrdering):
    """The view and export side of ``GpuImage`` (see ``GpuImage`` for lifetime and streams)."""

    __slots__ = ()

    _ptr: int
    _readonly: bool
    _views: dict[str, Any]
    _life: Lifetime

    if TYPE_CHECKING:  # the hub's copies, which exports that must copy ask for

        def cpu(self) -> Self: ...
        def copy(self, *, row_alignment: int = 1) -> Self: ...

    def as_torch(self, *, stream: StreamLike = None) -> torch.Tensor:
        """A tensor over the image: same pointer, same strides, on the image's device. Cached.

        Shape and strides follow the layout (``(H, W, C)`` or ``(C, H, W)``). bfloat16 is supported.

        Notes:
            Each call makes ``stream`` (default: torch's current stream) wait for the image's
            data on the GPU, so the tensor may be used there at once; the cached tensor is ordered
            again on every call, for whichever stream asks. Ask again for each stream you use it
            on: that is also how the memory learns not to go back to its allocator before the
            work queued there has finished.
        """
        view = self._views.get(_TORCH)
        if view is not None and stream is None and self._settled_for(_current_stream[_TORCH]):
            return cast("torch.Tensor", view)
        return cast("torch.Tensor", self._view(_TORCH, "as_torch()", stream))

    def as_cupy(self, *, stream: StreamLike = None) -> cupy.ndarray:
        """A ``cupy.ndarray`` header over the image (no CUDA call, no host sync). Cached.

        Each call makes ``stream`` (default: CuPy's current stream) wait for the data, on the GPU.
        """
        view = self._views.get(_CUPY)
        if view is not None and stream is None and self._settled_for(_current_stream[_CUPY]):
            return cast("cupy.ndarray", view)
        return cast("cupy.ndarray", self._view(_CUPY, "as_cupy()", stream))

    def _settled_for(self, current_stream: Callable[[int], int]) -> bool:
        """The cached view's fast path (a frame loop asks for it every frame): True when nothing is
        pending for the consumer ``current_stream`` gives and it is the memory's home or already
        noted. False sends the call down ``_view``, which decides the same thing slowly and orders."""
        ready, life = self._ready, self._life
        if ready.event is not None or not life.tracked:
            return False
        consumer = current_stream(self._device_index)
        producer = ready.stream
        return (producer is None or consumer == producer) and (
            consumer == life.home or (life.uses is not None and consumer in life.uses)
        )

    def _view(self, name: str, where: str, stream: StreamLike, *, by_current: bool = True) -> object:
        """The one path of every device view: spoke ``name``'s view, made once and cached (writable
        views of read-only memory refused), then ordered for its consumer on every call: ``stream``,
        else the spoke's current stream (``by_current``), else the legacy default stream."""
        view = self._views.get(name)
        if view is None:
            self._refuse_if_readonly(where)
            maker = spoke(name)
            view = self._views.setdefault(name, maker.view(self._ptr, self._spec, self._life))
            _current_stream.setdefault(name, maker.current_stream)
        ready, life = self._ready, self._life
        producer = ready.stream
        if producer is None and not life.tracked:
            return view
        if stream is None and ready.event is None:
            # the frame loop's case: the consumer (the spoke's current stream, or OpenCV's legacy
            # default) is where the data is ready, or nothing is pending, and it is the memory's home
            # or already noted: there is nothing to order or note
            if not by_current:
                consumer = LEGACY_DEFAULT
            elif life.tracked or runtime().has_gpu:  # a tracked family was made with a GPU runtime
                consumer = spoke(name).current_stream(self._device_index)
            else:
                consumer = -1  # no runtime: _consume says what ordering would need
            if (producer is None or consumer == producer) and (
                consumer == life.home or not life.tracked or (life.uses is not None and consumer in life.uses)
            ):
                return view
        source = spoke(name) if by_current else None
        self._consume(stream, source)
        return view

    def _refuse_if_readonly(self, where: str) -> None:
        if self._readonly:
            raise ReadOnlyError(
                f"{where}: the image is read-only (its source said so), and torch, CuPy and OpenCV have no "
                "read-only arrays: a write through the view would change memory that must not change. Take "
                "a writable copy with image.copy(), or read it through as_numpy() or DLPack (read-only flag)."
            )

    def as_numpy(self) -> npt.NDArray[Any]:
        """A NumPy array over a host image (read-only if the image is). Cached."""
        view = self._views.get(_NUMPY)
        if view is None:
            made = cast("npt.NDArray[Any]", spoke(_NUMPY).view(self._ptr, self._spec, self._life))
            if self._readonly:
                made.flags.writeable = False  # NumPy, unlike torch and CuPy, has read-only arrays
            view = self._views.setdefault(_NUMPY, made)
        return cast("npt.NDArray[Any]", view)

    def __array__(self, dtype: object = None, copy: bool | None = None) -> npt.NDArray[Any]:
        """NumPy's conversion hook: host images only; device images must be copied with ``cpu()``."""
        if self._spec.device.is_cuda:
            raise DeviceError(
                f"numpy.asarray(image): the image is on {self._spec.device}. Call image.cpu().as_numpy() "
                "for a host copy."
            )
        return array_request(self.as_numpy(), dtype, copy, "image")

    # -- protocols ------------------------------------------------------------------------------

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        """CAI v3 (strides in bytes; ``stream`` is the image's ready stream). Device images only."""
        if not self._spec.device.is_cuda:
            raise HostMemoryError(
                "__cuda_array_interface__: the image is in host memory; use as_numpy() or __dlpack__."
            )
        self._note_current_streams()  # where the consumer will read, though CAI cannot say
        return cuda_array_interface(self._ptr, self._spec, stream=self._ready.stream, readonly=self._readonly)

    def __dlpack_device__(self) -> tuple[int, int]:
        """``(kDLCUDA, ordinal)`` for device images, ``(kDLCPU, 0)`` for host images."""
        return self._spec.device.dlpack

    def __dlpack__(
        self,
        *,
        stream: int | None = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> CapsuleType:
        """Export a DLPack capsule (versioned when ``max_version >= (1, 0)``), per the array API.

        ``stream`` is the consumer's stream, which is made to wait for the data on the GPU: None or
        1 is the legacy default stream, 2 the per-thread default stream, -1 asks for no ordering.
        ``dl_device`` may name the image's own device, or the CPU (a host copy, unless ``copy`` is
        False). ``copy=True`` exports a packed copy. The capsule keeps the memory alive until the
        consumer calls its deleter.
        """
        source: ImageExports = self
        copied = False
        if (
            self._spec.device.is_cuda
            and stream is not None
            and (type(stream) is not int or stream == 0 or stream < -1)
        ):
            raise ExportError(
                f"__dlpack__(): expected stream None, -1, 1, 2 or a stream handle, got stream={stream!r}."
            )
        if not self._spec.device.is_cuda and stream is not None:
            raise ExportError(f"__dlpack__(): a host image takes no stream, got stream={stream!r}.")
        for name, pair in (("max_version", max_version), ("dl_device", dl_device)):
            if pair is not None and not _is_int_pair(pair):  # consumers are untyped callers
                raise ExportError(f"__dlpack__(): expected {name} to be a pair of ints, got {name}={pair!r}.")
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            if tuple(dl_device) != CPU.dlpack:
                raise ExportError(
                    f"__dlpack__(): cannot export a {self._spec.device} image to DLPack device {dl_device}."
                )
            if copy is False:
                raise ExportError("__dlpack__(): dl_device is the CPU, which needs a copy, but copy=False.")
            source, copied = self.cpu(), True
        elif copy:
            source, copied = self.copy(), True
        if source._spec.device.is_cuda and stream != -1:
            source._use(LEGACY_DEFAULT if stream is None else from_protocol(stream), BY_HANDLE, None)
        versioned = max_version is not None and tuple(max_version) >= (1, 0)
        from ._dlpack import export_capsule  # capsules are made rarely: no lookup worth caching

        return export_capsule(
            source._ptr,
            source._spec,
            source._life,
            versioned=versioned,
            readonly=source._readonly,
            copied=copied,
        )


def _is_int_pair(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and len(cast("tuple[object, ...]", value)) == 2
        and all(type(item) is int for item in cast("tuple[object, ...]", value))
    )
