"""Conversions between images: checks, allocation and stream ordering around one executor call.

The public conversions (``to_layout``, ``copy``, ``astype``, ``normalize``, ``denormalize``,
``normalize_batch``) come here; this module checks the images, allocates a result (through the hub's
``_allocated``), orders the work, and hands it to the executor that ``executor_for`` picks
(``_executor``: the CUDA kernels, torch operations or NumPy). It names no library.

Work is queued on the source's stream (the one its data is ready on; the executor's current stream
when nothing is pending), on the source's device, ordered after the source's data and any pending
use of the destination, and recorded on both (``_ordering.begin_conversion``/``end_conversion``).
Host images are converted when the call returns.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, cast

from ._affine import Affine, ChannelValues, check_finite_map
from ._backends import is_installed
from ._device import Device
from ._dtypes import DTypeName
from ._errors import DeviceError, InteropError, LayoutError, MissingBackendError, ReadOnlyError, SpecError
from ._executor import Executor, Operand
from ._exports import ImageExports
from ._layout import Layout
from ._ordering import begin_conversion, end_conversion, ready_stream
from ._plan import BatchItem, ranges_overlap
from ._runtime import why_no_gpu
from ._spec import ImageSpec

if TYPE_CHECKING:
    from ._image import GpuImage

__all__ = [
    "ChannelValues",
    "check_is_image",
    "chosen",
    "convert_batch_into",
    "convert_into",
    "converted",
    "executor_for",
    "override_executor",
]

# -- the executor ------------------------------------------------------------------------------------

chosen: dict[str, Executor] = {}
"""The executor per ``Device.kind``, chosen on first use (``executor_for``); a replayed conversion
(``_convert_replay``) reads it to launch only with the executor that checked it."""


def executor_for(device: Device, where: str) -> Executor:
    """The executor that converts images on ``device``, chosen once per process in one order:

    1. host images: NumPy (``_host_convert``);
    2. GPU images: the CUDA kernels (``_kernel_convert``) when CuPy reaches a GPU, else torch
       operations (``_torch_convert``) when a CUDA build of torch sees one, else
       ``MissingBackendError`` naming what to install.

    ``override_executor`` replaces the choice (tests, benchmarks)."""
    executor = chosen.get(device.kind)
    if executor is None:
        executor = _host_executor() if device.kind == "cpu" else _gpu_executor()
        if executor is None:
            raise MissingBackendError(
                f"{where}: converting a GPU image needs CuPy (its kernels) or torch to reach a GPU, and "
                f"neither does here: {why_no_gpu()}"
            )
        chosen[device.kind] = executor
    return executor


def _host_executor() -> Executor:
    from ._host_convert import EXECUTOR

    return EXECUTOR


@functools.cache
def _gpu_executor() -> Executor | None:
    """The first executor in the documented order whose library reaches a GPU (None: none does)."""
    if is_installed("cupy"):
        from . import _kernel_convert

        if _kernel_convert.reaches_gpu():
            return _kernel_convert.EXECUTOR
    if is_installed("torch"):
        from . import _torch_convert

        if _torch_convert.reaches_gpu():
            return _torch_convert.EXECUTOR
    return None


@contextlib.contextmanager
def override_executor(executor: Executor) -> Generator[Executor]:
    """Convert every image (host and GPU) with ``executor`` inside the block, then choose as before."""
    saved = dict(chosen)
    chosen.update(cpu=executor, cuda=executor)
    try:
        yield executor
    finally:
        chosen.clear()
        chosen.update(saved)


def _launch_stream(image: GpuImage[Any, Any], executor: Executor) -> tuple[int | None, object]:
    """The stream a conversion of ``image`` queues on, and what keeps it alive: the stream its data
    is ready on, so the conversion follows its producer without a cross-stream wait, else the
    executor's current stream; (None, None) for host images."""
    device = image.device
    if device.kind == "cpu":
        return None, None
    stream, keep = ready_stream(image)
    if stream is not None:
        return stream, keep
    return executor.stream_for(device.index)


def _run(
    executor: Executor,
    source: GpuImage[Any, Any],
    target: GpuImage[Any, Any],
    affine: Affine,
    stream: int | None,
    keep: object,
) -> None:
    """``executor.convert`` ordered on ``stream`` (None: host images, nothing to order)."""
    if stream is None:
        executor.convert(source, target, affine, 0)
        return
    record_read = begin_conversion(source, target, stream, keep)
    try:
        executor.convert(source, target, affine, stream)
    finally:  # even a failed launch may have queued work: later users wait for the stream
        end_conversion(source, target, stream, keep, record_read=record_read)


# -- single images -----------------------------------------------------------------------------------


def _check_pair(source: GpuImage[Any, Any], target: GpuImage[Any, Any], where: str) -> None:
    if target.readonly:
        raise ReadOnlyError(f"{where}: the destination image is read-only.")
    source_spec, target_spec = source.spec, target.spec
    if source_spec.device != target_spec.device:
        raise DeviceError(
            f"{where}: expected the destination on {source_spec.device}, got device={target_spec.device}. "
            "Convert on the source's device, then move the result with cuda() or cpu()."
        )
    if source_spec.geometry[:3] != target_spec.geometry[:3]:
        raise SpecError(
            f"{where}: expected a destination of {source.height}x{source.width}x{source.channels} "
            f"(height x width x channels), got {target.height}x{target.width}x{target.channels}."
        )
    if ranges_overlap((source.ptr, source_spec.nbytes), (target.ptr, target_spec.nbytes)):
        raise SpecError(f"{where}: the destination overlaps the source; convert into separate memory.")


def convert_into(
    source: GpuImage[Any, Any], target: GpuImage[Any, Any], affine: Affine, *, where: str
) -> None:
    """Write ``affine(source)`` into ``target`` (same sizes and device; any layouts, pitches, dtypes)."""
    _check_pair(source, target, where)
    executor = executor_for(source.device, where)
    _run(executor, source, target, affine, *_launch_stream(source, executor))


def converted(
    source: GpuImage[Any, Any],
    *,
    dtype: DTypeName,
    layout: Layout,
    affine: Affine,
    row_alignment: int = 1,
    where: str,
    out: GpuImage[Any, Any] | None = None,
    map_checked: bool = False,
) -> GpuImage[Any, Any]:
    """A new ``dtype``, ``layout`` image (rows every ``row_alignment`` bytes) holding ``affine(source)``,
    or ``out`` holding it.

    ``affine`` is ``astype``'s ``x * scale + offset`` (or the identity), checked here unless the
    caller checked it (``map_checked``: ``normalize`` checks its own map, naming its arguments)."""
    if not map_checked:
        _checked_map(affine, source.dtype, dtype, where)
    if out is not None:
        _check_destination(out, dtype=dtype, layout=layout, where=where)
        convert_into(source, out, affine, where=where)
        return out
    executor = executor_for(source.device, where)
    stream, keep = _launch_stream(source, executor)
    target = _new_like(source, dtype, layout, row_alignment, stream, keep)
    _run(executor, source, target, affine, stream, keep)
    return target


def _checked_map(affine: Affine, source: DTypeName, target: DTypeName, where: str) -> None:
    """``astype``'s map checked once per map and dtypes (it raises, so failures are not stored).
    Maps are shared (``identity_affine`` is cached), so a frame loop finds its map by identity."""
    key = (id(affine), source, target)
    if _checked_maps.get(key) is not affine:
        check_finite_map(affine, source, target, origin="astype", where=where)
        if len(_checked_maps) >= 256:
            _checked_maps.clear()
        _checked_maps[key] = affine


_checked_maps: dict[tuple[int, DTypeName, DTypeName], Affine] = {}


def _new_like(
    source: GpuImage[Any, Any],
    dtype: DTypeName,
    layout: Layout,
    row_alignment: int,
    stream: int | None,
    keep: object,
) -> GpuImage[Any, Any]:
    """New packed memory for the result, ready on ``stream`` (the conversion's)."""
    if type(row_alignment) is not int:  # untyped callers: ImageSpec.packed says what is wrong
        ImageSpec.packed(height=1, width=1, channels=1, row_alignment=row_alignment)
    spec = source.spec
    # a frame loop converts one source description again and again: its result's spec by identity
    key = (id(spec), dtype, layout, row_alignment)
    entry = _results.get(key)
    if entry is None or entry[0] is not spec:
        device = spec.device
        index = device.index if device.kind == "cuda" else -1
        result = packed_spec(spec.height, spec.width, spec.channels, dtype, layout, index, row_alignment)
        if len(_results) >= 256:
            _results.clear()
        entry = _results[key] = (spec, result)
    return type(source)._allocated(entry[1], row_alignment, stream, keep)  # pyright: ignore[reportPrivateUsage]


_results: dict[tuple[int, DTypeName, Layout, int], tuple[ImageSpec, ImageSpec]] = {}


@functools.lru_cache(maxsize=256)
def packed_spec(
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


def _check_destination(out: GpuImage[Any, Any], *, dtype: DTypeName, layout: Layout, where: str) -> None:
    """Raise unless ``out`` is a GpuImage of ``layout`` and ``dtype``."""
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


def check_is_image(image: GpuImage[Any, Any], *, where: str) -> None:
    """Raise unless ``image`` is a GpuImage (untyped callers pass arrays and tensors)."""
    if not isinstance(cast(object, image), ImageExports):  # GpuImage's base: no import circle
        raise InteropError(
            f"{where}: expected a GpuImage, got {type(image).__name__}. Wrap it first: "
            "GpuImage.from_numpy(array, layout='HWC'), GpuImage.from_torch(tensor, layout=...) or "
            "GpuImage.from_cupy(array, layout=...)."
        )


# -- batches -----------------------------------------------------------------------------------------


def convert_batch_into(
    sources: Sequence[GpuImage[Any, Any]],
    regions: Sequence[BatchItem],
    target: Operand,
    item_pitch: int,
    affine: Affine,
    pad: float,
    stream: int,
    *,
    where: str,
) -> None:
    """Region ``i`` of ``sources[i]`` converted into slot ``i`` of a batch (``target`` is slot 0,
    checked by the caller), padded with ``pad``; on a GPU queued on ``stream`` after every source's
    data, with one event recording the reads (``reading_all``)."""
    first = sources[0]
    executor = executor_for(first.device, where)
    if first.device.kind == "cpu":
        executor.convert_batch(sources, regions, target, item_pitch, affine, pad, 0)
        return
    with type(first).reading_all(sources, stream):
        executor.convert_batch(sources, regions, target, item_pitch, affine, pad, stream)
