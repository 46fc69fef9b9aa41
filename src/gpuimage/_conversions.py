"""Conversions between images: layout, pitch, dtype, normalization, batches.

Every conversion is planned in ``_convert`` (pure) and run by one executor: the CuPy kernels
(``_kernels``) on a GPU when CuPy is installed, torch operations (``_torch_convert``, slower) when only
torch is, NumPy (``_host_convert``) for host images. Work is queued on the source's stream (the one its
data is ready on; the executor's current stream when nothing is pending), on the source's device,
ordered after the source's data and any pending use of the destination, and recorded on both.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar, cast

import numpy as np
import numpy.typing as npt

from . import _convert
from ._backends import is_installed
from ._convert import Affine
from ._device import Device
from ._dtypes import AnyDType, DTypeName
from ._errors import DeviceError, InteropError, LayoutError, MissingBackendError, ReadOnlyError, SpecError
from ._exports import ImageExports
from ._layout import Layout
from ._lazy import LazyModule
from ._ordering import begin_conversion, end_conversion, ready_stream
from ._spec import ImageSpec

if TYPE_CHECKING:
    import torch

    from . import _kernels
    from ._image import GpuImage

__all__ = [
    "check_is_image",
    "convert_into",
    "converted",
    "current_stream",
    "destination_for",
    "ChannelValues",
    "executor_for",
    "numpy_hwc",
    "torch_hwc",
]

if not TYPE_CHECKING:  # the kernels (and CuPy) load on the first GPU conversion, without an import per call
    _kernels = LazyModule("gpuimage._kernels", globals(), "_kernels")

DT = TypeVar("DT", bound=AnyDType)

ChannelValues: TypeAlias = float | Sequence[float] | npt.NDArray[np.floating[Any]] | np.floating[Any]
"""What ``mean`` and ``std`` accept: one number for every channel, or one per channel (a sequence or a
NumPy array)."""
Executor = Literal["cupy", "torch", "numpy"]


@functools.cache
def _gpu_executor() -> Executor | None:
    """CuPy's kernels where CuPy reaches a GPU, else torch's operations; asked once per process."""
    if is_installed("cupy"):
        from . import _cupy

        if _cupy.gpu_available():
            return "cupy"
    if is_installed("torch"):
        from . import _torch

        if _torch.cuda_available():
            return "torch"
    return None


def executor_for(device: Device, where: str) -> Executor:
    """Which library runs conversions of images on ``device``."""
    if not device.is_cuda:
        return "numpy"
    executor = _gpu_executor()
    if executor is None:
        raise MissingBackendError(
            f"{where}: converting a GPU image needs CuPy (fast kernels: pip install 'gpuimage[cupy]') or a "
            "CUDA build of torch that sees the GPU."
        )
    return executor


def current_stream(executor: Executor, device: Device) -> int:
    """The executor's current stream on ``device`` (0 for host work)."""
    if executor == "cupy":
        from . import _cupy

        return _cupy.current_stream(device.index)
    if executor == "torch":
        from . import _torch

        return _torch.current_stream(device.index)
    return 0


def _launch_stream(image: GpuImage[Any, Any], executor: Executor) -> tuple[int, object]:
    """The source's stream, so the conversion follows its producer without a cross-stream wait (the
    executor's current stream when nothing is pending), and what keeps that stream alive."""
    stream, keep = ready_stream(image)
    if stream is not None:
        return stream, keep
    index = image.device.index
    if executor == "cupy":
        from . import _cupy

        return _cupy.current_stream(index), _cupy.current_stream_object(index)
    return current_stream(executor, image.device), None  # torch never destroys its streams


def _hwc_axes(layout: Layout) -> tuple[int, int, int]:
    return (1, 2, 0) if layout is Layout.CHW else (0, 1, 2)


def numpy_hwc(ptr: int, spec: ImageSpec, owner: object, *, readonly: bool = False) -> npt.NDArray[Any]:
    """A NumPy view in HWC order (bfloat16 as its uint16 bits)."""
    from . import _numpy

    carrier: DTypeName | None = "uint16" if spec.dtype == "bfloat16" else None
    array = _numpy.view(ptr, spec, owner, readonly=readonly, as_dtype=carrier)
    return array.transpose(_hwc_axes(spec.layout))


def torch_hwc(ptr: int, spec: ImageSpec, owner: object) -> torch.Tensor:
    """A torch view in HWC order."""
    from . import _torch

    return _torch.view(ptr, spec, owner).permute(_hwc_axes(spec.layout))


def _check_pair(source: GpuImage[Any, Any], target: GpuImage[Any, Any], where: str) -> None:
    if target.readonly:
        raise ReadOnlyError(f"{where}: the destination image is read-only.")
    if source.device != target.device:
        raise DeviceError(
            f"{where}: expected the destination on {source.device}, got device={target.device}. "
            "Convert on the source's device, then move the result with cuda() or cpu()."
        )
    if (source.height, source.width, source.channels) != (target.height, target.width, target.channels):
        raise SpecError(
            f"{where}: expected a destination of {source.height}x{source.width}x{source.channels} "
            f"(height x width x channels), got {target.height}x{target.width}x{target.channels}."
        )
    if _convert.ranges_overlap((source.ptr, source.nbytes), (target.ptr, target.nbytes)):
        raise SpecError(f"{where}: the destination overlaps the source; convert into separate memory.")


def convert_into(
    source: GpuImage[Any, Any], target: GpuImage[Any, Any], affine: Affine, *, where: str, fresh: bool = False
) -> None:
    """Write ``affine(source)`` into ``target`` (same sizes and device; any layouts, pitches, dtypes).

    ``fresh``: ``target`` was just allocated for this result, so the pair needs no checking."""
    if not fresh:
        _check_pair(source, target, where)
    device = source.device
    executor = executor_for(device, where)
    if executor == "numpy":
        from . import _host_convert

        _host_convert.convert(
            numpy_hwc(source.ptr, source.spec, source.owner, readonly=source.readonly),
            numpy_hwc(target.ptr, target.spec, target.owner),
            source.dtype,
            target.dtype,
            affine,
        )
        return
    stream, keep = _launch_stream(source, executor)
    record_read = begin_conversion(source, target, stream, keep)
    try:
        if executor == "cupy":
            source_ptr, target_ptr = source.ptr, target.ptr
            source_spec, target_spec = source.spec, target.spec
            variant = _convert.plan_single(
                source_spec.dtype,
                target_spec.dtype,
                (source_ptr % _convert.MAX_VECTOR, source_spec.geometry),
                (target_ptr % _convert.MAX_VECTOR, target_spec.geometry),
                affine,
            )
            _kernels.launch(
                variant,
                source=(source_ptr, source_spec.geometry),
                target=(target_ptr, target_spec.geometry),
                affine=affine,
                stream=stream,
                device=device.index,
            )
        else:
            from . import _torch, _torch_convert

            with _torch.stream_context(stream, source.device.index):
                _torch_convert.convert(
                    torch_hwc(source.ptr, source.spec, source.owner),
                    torch_hwc(target.ptr, target.spec, target.owner),
                    source.dtype,
                    target.dtype,
                    affine,
                )
    finally:  # even a failed launch may have queued work: later users wait for the stream
        end_conversion(source, target, stream, keep, record_read=record_read)


def _new_like(
    source: GpuImage[Any, Any],
    *,
    dtype: DTypeName,
    layout: Layout,
    row_alignment: int,
    executor: Executor,
) -> GpuImage[Any, Any]:
    shape = source.spec
    if type(row_alignment) is not int:  # untyped callers: ImageSpec.packed says what is wrong
        ImageSpec.packed(height=1, width=1, channels=1, row_alignment=row_alignment)
    spec = _packed_spec(
        shape.height,
        shape.width,
        shape.channels,
        dtype,
        layout,
        shape.device.index if shape.device.is_cuda else -1,
        row_alignment,
    )
    if executor == "numpy":
        return type(source)._allocated(spec, row_alignment, None, None)  # pyright: ignore[reportPrivateUsage]
    return type(source)._allocated(spec, row_alignment, *_launch_stream(source, executor))  # pyright: ignore[reportPrivateUsage]


@functools.lru_cache(maxsize=256)
def _packed_spec(
    height: int,
    width: int,
    channels: int,
    dtype: DTypeName,
    layout: Layout,
    device: int,
    row_alignment: int,
) -> ImageSpec:
    """The spec of a conversion's result on ``cuda:device`` (-1: the host): a frame loop asks for
    the same one every call."""
    return ImageSpec.packed(
        height=height,
        width=width,
        channels=channels,
        dtype=dtype,
        layout=layout,
        device="cpu" if device < 0 else device,
        row_alignment=row_alignment,
    )


def converted(
    source: GpuImage[Any, Any],
    *,
    dtype: DTypeName,
    layout: Layout,
    affine: Affine,
    row_alignment: int = 1,
    where: str,
    out: GpuImage[Any, Any] | None = None,
) -> GpuImage[Any, Any]:
    """A new ``dtype``, ``layout`` image (rows every ``row_alignment`` bytes) holding ``affine(source)``,
    or ``out`` holding it.

    ``affine`` is ``astype``'s ``x * scale + offset`` (or the identity)."""
    _checked_map(affine, source.dtype, dtype, where)
    if out is not None:
        destination = destination_for(source, out, dtype=dtype, layout=layout, where=where)
        convert_into(source, destination, affine, where=where)
        return destination
    executor = executor_for(source.device, where)
    target = _new_like(source, dtype=dtype, layout=layout, row_alignment=row_alignment, executor=executor)
    convert_into(source, target, affine, where=where, fresh=True)
    return target


@functools.lru_cache(maxsize=256)
def _checked_map(affine: Affine, source: DTypeName, target: DTypeName, where: str) -> None:
    """``astype``'s map checked once per map and dtypes (it raises, so failures are not cached)."""
    _convert.check_finite_map(affine, source, target, origin="astype", where=where)


def destination_for(
    source: GpuImage[Any, Any],
    out: GpuImage[Any, Any] | None,
    *,
    dtype: DTypeName,
    layout: Layout,
    where: str,
) -> GpuImage[Any, Any]:
    if out is None:
        return _new_like(
            source, dtype=dtype, layout=layout, row_alignment=1, executor=executor_for(source.device, where)
        )
    if not isinstance(cast(object, out), ImageExports):  # GpuImage's base; untyped callers pass arrays
        raise InteropError(
            f"{where}: expected out to be a {layout.value} GpuImage or None, got {type(out).__name__}. "
            f"Wrap the array first, for example GpuImage.from_numpy(out, layout='{layout.value}') "
            "(or from_torch(), from_cupy()), and pass that."
        )
    if out.layout is not layout:
        raise LayoutError(
            f"{where}: expected a {layout.value} destination, got out.layout={out.layout.value}."
        )
    if out.dtype != dtype:
        raise SpecError(
            f"{where}: expected a {dtype} destination (dtype={dtype}), got out.dtype={out.dtype}."
        )
    return out


def check_is_image(image: GpuImage[Any, Any], *, where: str) -> None:
    """Raise unless ``image`` is a GpuImage (untyped callers pass arrays and tensors)."""
    if not isinstance(cast(object, image), ImageExports):  # GpuImage's base: no import circle
        raise InteropError(
            f"{where}: expected a GpuImage, got {type(image).__name__}. Wrap it first: "
            "GpuImage.from_numpy(array, layout='HWC'), GpuImage.from_torch(tensor, layout=...) or "
            "GpuImage.from_cupy(array, layout=...)."
        )
