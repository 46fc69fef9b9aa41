"""The views and protocol exports of ``GpuImage``: torch, CuPy and NumPy views, ``__array__``,
``__cuda_array_interface__`` and DLPack.

A mixin of the hub, as ``StreamOrdering`` is, so that the hub module keeps construction, metadata,
regions and conversions. ``as_gpumat`` stays on the hub: its ``self`` type checks the layout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Self, cast

from typing_extensions import CapsuleType

from ._backends import Backend, install_hint
from ._device import CPU
from ._errors import (
    DeviceError,
    DTypeError,
    ExportError,
    GpuImageError,
    HostMemoryError,
    LayoutError,
    MissingBackendError,
    ReadOnlyError,
    StrideError,
)
from ._interfaces import array_request, cuda_array_interface
from ._layout import Layout
from ._lifetime import Lifetime
from ._ordering import BY_HANDLE, StreamOrdering
from ._runtime import runtime
from ._spokes import Spoke, spoke
from ._streams import LEGACY_DEFAULT, StreamLike, from_protocol

if TYPE_CHECKING:
    import cupy
    import numpy.typing as npt
    import torch

    from ._dtypes import DTypeName
    from ._spec import ImageSpec

__all__ = ["ImageExports", "view_refusal"]

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
        if view is not None and stream is None:  # nothing to order: a frame loop's call, inlined
            ready, life = self._ready, self._life
            if ready.event is None and life.tracked:
                consumer = _current_stream[_TORCH](self._device_index)
                producer = ready.stream
                if (producer is None or consumer == producer) and (
                    consumer == life.home or (life.uses is not None and consumer in life.uses)
                ):
                    return view  # type: ignore[no-any-return]
        return cast("torch.Tensor", self._view(_TORCH, "as_torch()", stream))

    def as_cupy(self, *, stream: StreamLike = None) -> cupy.ndarray:
        """A ``cupy.ndarray`` header over the image (no CUDA call, no host sync). Cached.

        Each call makes ``stream`` (default: CuPy's current stream) wait for the data, on the GPU.

        Raises:
            DTypeError: bfloat16, which CuPy lacks; checked first, then
            ReadOnlyError: read-only memory; then
            DeviceError: a host image (call ``cuda()``); then
            MissingBackendError: CuPy is not installed. The first error names every fix the call
                needs, whatever is installed.
        """
        view = self._views.get(_CUPY)
        if view is not None and stream is None:  # nothing to order (as in as_torch), inlined
            ready, life = self._ready, self._life
            if ready.event is None and life.tracked:
                consumer = _current_stream[_CUPY](self._device_index)
                producer = ready.stream
                if (producer is None or consumer == producer) and (
                    consumer == life.home or (life.uses is not None and consumer in life.uses)
                ):
                    return view  # type: ignore[no-any-return]
        return cast("cupy.ndarray", self._view(_CUPY, "as_cupy()", stream))

    def _view(self, name: str, where: str, stream: StreamLike, *, by_current: bool = True) -> object:
        """The one path of every device view: spoke ``name``'s view, made once and cached (writable
        views of read-only memory refused), then ordered for its consumer on every call: ``stream``,
        else the spoke's current stream (``by_current``), else the legacy default stream."""
        view = self._views.get(name)
        source: Spoke | None = None
        if view is None:
            view = self._views.setdefault(name, self._new_view(name, where))
            source = spoke(name)  # loaded: the view was made; looked up once more, not twice
            _current_stream.setdefault(name, source.current_stream)
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
                consumer = (source or spoke(name)).current_stream(self._device_index)
            else:
                consumer = -1  # no runtime: _consume says what ordering would need
            if (producer is None or consumer == producer) and (
                consumer == life.home or not life.tracked or (life.uses is not None and consumer in life.uses)
            ):
                return view
        self._consume(stream, (source or spoke(name)) if by_current else None)
        return view

    def _new_view(self, name: str, where: str) -> object:
        """Spoke ``name``'s view of the image, or the refusal of ``view_refusal``: the same error for
        the same misuse whatever is installed (a spoke checks in its own order, or cannot load)."""
        try:
            if self._readonly:  # torch, CuPy and OpenCV have no read-only arrays
                raise ReadOnlyError(f"{where}: the image is read-only.")  # view_refusal says it in full
            return spoke(name).view(self._ptr, self._spec, self._life)
        except GpuImageError:
            refusal = view_refusal(name, where, self._spec, readonly=self._readonly)
            if refusal is None:
                raise
            try:
                raise refusal from refusal.__cause__  # a missing library's ImportError, else nothing
            finally:
                del refusal  # no cycle through this frame: the image's memory goes when the error does

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


# -- refusals: one order, whatever is installed --------------------------------------------------------


class _Target(NamedTuple):
    """What a view needs, known without importing its library (checked by ``view_refusal``)."""

    library: str
    backend: Backend
    device_only: str  # why host memory will not do ("" where it will)
    one_plane: bool  # one interleaved (HWC) plane of 1 to 4 channels
    lacks: Callable[[DTypeName], str]  # why a dtype will not do ("" where it will)
    host_alternative: str
    device_alternative: str


def _torch_lacks(dtype: DTypeName) -> str:
    return ""  # torch has every image dtype


def _cupy_lacks(dtype: DTypeName) -> str:
    return "CuPy has no bfloat16 dtype" if dtype == "bfloat16" else ""


def _opencv_lacks(dtype: DTypeName) -> str:
    """No OpenCV has bfloat16; the installed one before 5.0 has no bool, uint32 or int64 either."""
    if dtype == "bfloat16":
        return "OpenCV has no bfloat16 depth"
    version = str(getattr(sys.modules.get("cv2"), "__version__", "5"))  # not installed: ask no more
    if dtype in ("bool", "uint32", "int64") and int(version.partition(".")[0]) < 5:
        return f"OpenCV {version} has no {dtype} depth (OpenCV 5 has)"
    return ""


_TARGETS: dict[str, _Target] = {
    _TORCH: _Target("torch", "torch", "", False, _torch_lacks, "", ""),
    _CUPY: _Target(
        "CuPy", "cupy", "CuPy arrays live on a GPU", False, _cupy_lacks, "use as_numpy()", "use as_torch()"
    ),
    _OPENCV: _Target(
        "OpenCV",
        "cv2",
        "a GpuMat needs device memory",
        True,
        _opencv_lacks,
        "use as_numpy() with cv2's host functions",
        "use as_torch()/as_cupy()",
    ),
}
_CONVERTIBLE: dict[str, str] = {
    "bfloat16": "float32",
    "bool": "uint8",
    "uint32": "float64",
    "int64": "float64",
}
"""The dtype a fix converts to, where a library lacks one (exact, but for int64 beyond 2**53)."""


def view_refusal(name: str, where: str, spec: ImageSpec, *, readonly: bool) -> GpuImageError | None:
    """Why spoke ``name`` gives no view of an image of ``spec``, checked in one fixed order whatever
    is installed: layout and type (layout, channels, dtype, strides, read-only), then the device, then
    the library. The error is the first problem's class, and its message names every problem and
    the one chain of calls that fixes them all. None: nothing known here stands in the way."""
    target = _TARGETS[name]
    missing = _import_error(name)  # first: what the installed library lacks depends on its version
    installed = missing is None
    problems: list[tuple[type[GpuImageError], str]] = []
    steps: list[str] = []  # each step makes a packed, writable copy, so one fixes the later checks
    fixable = True
    hwc = spec.layout is Layout.HWC
    if target.one_plane and not hwc:
        problems.append(
            (LayoutError, f"a GpuMat holds one interleaved plane, got layout={spec.layout.value}")
        )
        steps.append("to_layout('HWC')")
    if target.one_plane and not 1 <= spec.channels <= 4:
        problems.append((LayoutError, f"a GpuMat has 1 to 4 channels, got channels={spec.channels}"))
        fixable = False
    lacking = target.lacks(spec.dtype)
    if lacking:
        problems.append((DTypeError, f"{lacking}, got dtype={spec.dtype}"))
        steps.append(f"astype('{_CONVERTIBLE[spec.dtype]}')")
    packed_pixel = spec.channels * spec.itemsize
    if target.one_plane and hwc and (spec.pixel_stride, spec.channel_stride) != (packed_pixel, spec.itemsize):
        problems.append(
            (
                StrideError,
                f"a GpuMat needs interleaved pixels (pixel_stride={packed_pixel}, channel_stride="
                f"{spec.itemsize} bytes), got pixel_stride={spec.pixel_stride}, channel_stride="
                f"{spec.channel_stride} (a permuted or channel-sliced view)",
            )
        )
        if not steps:
            steps.append("contiguous()")
    host = target.device_only and not spec.device.is_cuda
    if readonly and not steps and not host:  # the copies of the other fixes are writable
        problems.append(
            (
                ReadOnlyError,
                f"the image is read-only (its source said so), and {target.library} has no read-only "
                "arrays: a write through the view would change memory that must not change",
            )
        )
        steps.append("copy()")
    if host:
        problems.append((DeviceError, f"the image is in host memory, and {target.device_only}"))
        steps.append("cuda()")
    if not installed:
        problems.append((MissingBackendError, f"{target.library} is not installed"))
    if not problems:
        return None
    todo = [] if installed else [f"install {target.library}: {install_hint(target.backend)}"]
    if steps and fixable:
        todo.append(f"call image.{'.'.join(steps)}.{where}")
    if readonly and problems[0][0] is ReadOnlyError:
        alternative = "read it through " + ("as_numpy() or " if not spec.device.is_cuda else "") + "DLPack"
    else:
        alternative = target.device_alternative if spec.device.is_cuda else target.host_alternative
    advice = "; then ".join(todo)
    if alternative and len(problems) > (not installed):
        advice = f"{advice}, or {alternative}" if advice else alternative
    text = "; ".join(problem for _, problem in problems)
    error = problems[0][0](f"{where}: {text}. {advice[:1].upper()}{advice[1:]}.")
    error.__cause__ = None if missing is None else missing.__cause__  # the failed import, if any
    return error


def _import_error(name: str) -> MissingBackendError | None:
    """Why spoke ``name`` does not load (its library is not installed); loads it, as the view would."""
    try:
        spoke(name)
    except MissingBackendError as exc:
        return exc
    return None
